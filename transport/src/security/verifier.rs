//! rustls configurations: WebPKI chain verification against the cluster CA, plus a check that
//! the peer's certificate belongs to *our* cluster, on both sides of the handshake.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use super::{SecurityError, ALPN, BULK_ALPN};
use foundation_core::identity::ClusterName;

pub(super) fn server_tls(
    provider: &Arc<CryptoProvider>,
    roots: &Arc<RootCertStore>,
    cluster: &ClusterName,
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, SecurityError> {
    let verifier = Arc::new(SameClusterClientVerifier::new(provider, roots, cluster)?);
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.to_vec(), key.clone_key())?;
    config.alpn_protocols = vec![ALPN.to_vec(), BULK_ALPN.to_vec()];
    Ok(config)
}

/// The client verifies the server's chain *and* name with stock WebPKI: it dials the cluster's
/// DNS name, so a server of another cluster fails as "not valid for name".
pub(super) fn client_tls(
    provider: &Arc<CryptoProvider>,
    roots: &Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ClientConfig, SecurityError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// The name a certificate of `cluster` must be valid for: `<cluster>.foundation`.
pub(super) fn cluster_server_name(
    cluster: &ClusterName,
) -> Result<ServerName<'static>, SecurityError> {
    ServerName::try_from(cluster.certificate_dns_name())
        .map_err(|e| SecurityError::Certificate(e.to_string()))
}

/// Stock WebPKI client verification, then the same name check a client applies to a server:
/// the client's certificate must be valid for `<cluster>.foundation`.
#[derive(Debug)]
pub(super) struct SameClusterClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    cluster_name: ServerName<'static>,
}

impl SameClusterClientVerifier {
    /// Accepts client certificates that chain to `roots` and name `cluster`.
    pub(super) fn new(
        provider: &Arc<CryptoProvider>,
        roots: &Arc<RootCertStore>,
        cluster: &ClusterName,
    ) -> Result<Self, SecurityError> {
        let inner = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| SecurityError::Certificate(e.to_string()))?;
        Ok(Self {
            inner,
            cluster_name: cluster_server_name(cluster)?,
        })
    }
}

impl ClientCertVerifier for SameClusterClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let certificate = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::CertificateError::BadEncoding)?;
        certificate
            .verify_is_valid_for_subject_name(&self.cluster_name)
            .map_err(|_| rustls::CertificateError::NotValidForName)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }
}
