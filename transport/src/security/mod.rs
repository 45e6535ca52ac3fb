//! Mutual TLS for every connection: who we trust and how we prove who we are.
//!
//! Two ways to be trusted, both ending in the same place — a CA every node of the cluster
//! trusts, and a node certificate signed by it that carries the cluster's DNS name
//! (`<cluster>.foundation`):
//!
//! - [`Trust::Secret`]: the CA key is derived from the cluster secret, so every node that holds
//!   the secret derives the same CA and signs its own certificate with it. Nodes with another
//!   secret derive another CA and are refused as untrusted.
//! - [`Trust::Files`]: the operator supplies the CA, the node's certificate and its key as PEM
//!   files. The certificate must carry the DNS name `<cluster>.foundation`.
//!
//! Either way both sides verify the peer's chain *and* its cluster name during the handshake,
//! so a node of another cluster is refused even when one CA signed both clusters.

mod federation;
mod files;
mod reset;
mod secret;
mod verifier;

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use foundation_core::identity::ClusterName;

pub use federation::{cluster_of, federation_tls, FederationTls, RemoteRoot, FEDERATION_ALPN};
pub use files::CertificateFiles;
pub(crate) use reset::ResetSeed;
pub use secret::ClusterSecret;

/// The ALPN protocol both sides must offer.
pub const ALPN: &[u8] = b"foundation/1";

/// The ALPN protocol of a connection that carries only bulk transfers (see [`crate::bulk`]).
/// A server offers both; a peer that knows only [`ALPN`] refuses a bulk connection, and the
/// sender falls back to its regular connection.
pub const BULK_ALPN: &[u8] = b"foundation-bulk/1";

/// How this node proves its identity and decides whom to trust.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Derive the cluster CA from a shared secret.
    Secret(ClusterSecret),
    /// Operator-supplied CA, certificate and key files.
    Files(CertificateFiles),
}

/// Why TLS material could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A certificate or key file could not be read or parsed.
    #[error("cannot load {what} from {path}: {reason}")]
    File {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Generating or signing a certificate failed.
    #[error("cannot create certificate: {0}")]
    Certificate(String),
    /// rustls refused the configuration.
    #[error("TLS configuration rejected: {0}")]
    Tls(#[from] rustls::Error),
}

/// The CA to trust and the certificate chain and key to present.
pub(crate) struct Credentials {
    pub ca: CertificateDer<'static>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// What the stateless-reset key is derived from (see [`reset`]).
    pub reset: ResetSeed,
}

impl Credentials {
    /// Produces this node's credentials for `cluster`.
    pub(crate) fn load(trust: &Trust, cluster: &ClusterName) -> Result<Self, SecurityError> {
        match trust {
            Trust::Secret(secret) => secret.issue(cluster),
            Trust::Files(files) => files.load(),
        }
    }
}

/// The quinn server and client configurations a node of `cluster` uses with `trust`.
///
/// For tools and tests that speak the wire protocol directly; applications use the endpoint.
#[doc(hidden)]
pub fn raw_quic_configs(
    trust: &Trust,
    cluster: &ClusterName,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), SecurityError> {
    quic_configs(Credentials::load(trust, cluster)?, cluster)
}

/// The client configuration this node dials bulk-only connections with (ALPN [`BULK_ALPN`]),
/// for tests that drive a bulk connection by hand.
#[doc(hidden)]
pub fn raw_bulk_client_config(
    trust: &Trust,
    cluster: &ClusterName,
) -> Result<quinn::ClientConfig, SecurityError> {
    let (_, _, bulk) = quic_configs_with_bulk(Credentials::load(trust, cluster)?, cluster)?;
    Ok(bulk)
}

/// Builds the quinn server and client configurations for `cluster` from `credentials`.
pub(crate) fn quic_configs(
    credentials: Credentials,
    cluster: &ClusterName,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), SecurityError> {
    let (server, client, _bulk) = quic_configs_with_bulk(credentials, cluster)?;
    Ok((server, client))
}

/// The server configuration, the client configuration of regular connections and the client
/// configuration of bulk connections (the same credentials, ALPN [`BULK_ALPN`]).
pub(crate) fn quic_configs_with_bulk(
    credentials: Credentials,
    cluster: &ClusterName,
) -> Result<
    (
        quinn::ServerConfig,
        quinn::ClientConfig,
        quinn::ClientConfig,
    ),
    SecurityError,
> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(credentials.ca).map_err(SecurityError::Tls)?;
    let roots = Arc::new(roots);
    let server = verifier::server_tls(
        &provider,
        &roots,
        cluster,
        &credentials.chain,
        &credentials.key,
    )?;
    let client = verifier::client_tls(&provider, &roots, credentials.chain, credentials.key)?;
    let mut bulk = client.clone();
    bulk.alpn_protocols = vec![BULK_ALPN.to_vec()];
    let server = quinn::crypto::rustls::QuicServerConfig::try_from(server)
        .map_err(|e| SecurityError::Certificate(e.to_string()))?;
    let quic_client = |tls: rustls::ClientConfig| {
        quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map(|c| quinn::ClientConfig::new(Arc::new(c)))
            .map_err(|e| SecurityError::Certificate(e.to_string()))
    };
    Ok((
        quinn::ServerConfig::with_crypto(Arc::new(server)),
        quic_client(client)?,
        quic_client(bulk)?,
    ))
}
