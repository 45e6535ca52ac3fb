//! TLS of the links between gateways of different clusters.
//!
//! A gateway presents its own node certificate (its cluster's CA, its cluster's name). It
//! trusts a remote cluster's root *for that link only*: as a client it dials a link with that
//! link's root and that cluster's name; as a server it accepts a client certificate only when
//! it chains to one link's root *and* is valid for that same link's cluster name, so a root
//! trusted for cluster `b` cannot vouch for a certificate naming `c`. A node of a cluster that
//! is not linked is refused in the handshake.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use super::verifier::{client_tls, cluster_server_name, SameClusterClientVerifier};
use super::{ClusterSecret, Credentials, SecurityError, Trust};
use foundation_core::identity::ClusterName;

/// The ALPN protocol of gateway links: a regular node endpoint never accepts one.
pub const FEDERATION_ALPN: &[u8] = b"foundation-federation/1";

/// What a link trusts the remote cluster by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteRoot {
    /// The remote cluster's secret, from which its CA is derived.
    Secret(ClusterSecret),
    /// The remote cluster's CA certificate (PEM file).
    CaFile(PathBuf),
}

impl RemoteRoot {
    fn certificate(&self) -> Result<CertificateDer<'static>, SecurityError> {
        match self {
            RemoteRoot::Secret(secret) => secret.ca_certificate(),
            RemoteRoot::CaFile(path) => super::files::first_certificate(path, "remote CA"),
        }
    }
}

/// The quinn configurations of one gateway: one server configuration for every link, and a
/// client configuration per linked cluster.
pub struct FederationTls {
    /// Accepts gateways of linked clusters only.
    pub server: quinn::ServerConfig,
    /// Dials a linked cluster's gateways, trusting only that cluster's root.
    pub clients: BTreeMap<ClusterName, quinn::ClientConfig>,
}

/// Builds the TLS of a gateway of `local` (proving itself with `trust`) for `links`.
pub fn federation_tls(
    trust: &Trust,
    local: &ClusterName,
    links: &[(ClusterName, RemoteRoot)],
) -> Result<FederationTls, SecurityError> {
    let credentials = Credentials::load(trust, local)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut verifiers = Vec::new();
    let mut clients = BTreeMap::new();
    for (cluster, root) in links {
        let roots = Arc::new(single_root(root.certificate()?)?);
        verifiers.push(SameClusterClientVerifier::new(&provider, &roots, cluster)?);
        let client = client_config(&provider, &roots, &credentials)?;
        clients.insert(cluster.clone(), client);
    }
    let verifier = Arc::new(LinkedClusters { verifiers });
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(credentials.chain.clone(), credentials.key.clone_key())?;
    server.alpn_protocols = vec![FEDERATION_ALPN.to_vec()];
    let server = quinn::crypto::rustls::QuicServerConfig::try_from(server)
        .map_err(|e| SecurityError::Certificate(e.to_string()))?;
    Ok(FederationTls {
        server: quinn::ServerConfig::with_crypto(Arc::new(server)),
        clients,
    })
}

/// The linked cluster whose name the certificate `end_entity` is valid for (the handshake
/// already checked it against that cluster's root).
pub fn cluster_of<'a>(
    end_entity: &CertificateDer<'_>,
    linked: impl IntoIterator<Item = &'a ClusterName>,
) -> Option<ClusterName> {
    let certificate = webpki::EndEntityCert::try_from(end_entity).ok()?;
    linked.into_iter().find_map(|cluster| {
        let name = cluster_server_name(cluster).ok()?;
        let valid = certificate.verify_is_valid_for_subject_name(&name).is_ok();
        valid.then(|| cluster.clone())
    })
}

fn single_root(certificate: CertificateDer<'static>) -> Result<RootCertStore, SecurityError> {
    let mut roots = RootCertStore::empty();
    roots.add(certificate)?;
    Ok(roots)
}

/// A node's client TLS (the link's root, the cluster's name on the server's certificate), on
/// the gateways' ALPN.
fn client_config(
    provider: &Arc<CryptoProvider>,
    roots: &Arc<RootCertStore>,
    credentials: &Credentials,
) -> Result<quinn::ClientConfig, SecurityError> {
    let chain = credentials.chain.clone();
    let mut tls = client_tls(provider, roots, chain, credentials.key.clone_key())?;
    tls.alpn_protocols = vec![FEDERATION_ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| SecurityError::Certificate(e.to_string()))?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}

/// Accepts a client certificate that one link's verifier accepts: it chains to that link's root
/// *and* names that link's cluster.
#[derive(Debug)]
struct LinkedClusters {
    verifiers: Vec<SameClusterClientVerifier>,
}

impl ClientCertVerifier for LinkedClusters {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::CertificateError::BadEncoding)?;
        let linked = self.verifiers.iter().any(|verifier| {
            verifier
                .verify_client_cert(end_entity, intermediates, now)
                .is_ok()
        });
        if linked {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::CertificateError::UnknownIssuer.into())
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.first()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.first()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.first()
            .map(|v| v.supported_verify_schemes())
            .unwrap_or_default()
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }
}

impl LinkedClusters {
    /// Signature checks do not depend on the roots, so any link's verifier does them; without
    /// links nobody is accepted.
    fn first(&self) -> Result<&SameClusterClientVerifier, rustls::Error> {
        self.verifiers
            .first()
            .ok_or_else(|| rustls::CertificateError::UnknownIssuer.into())
    }
}
