//! The cluster secret and the CA every holder of it derives.

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use ring::hkdf;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::{Credentials, ResetSeed, SecurityError};
use foundation_core::identity::ClusterName;

/// A shared secret from which every node of a cluster derives the same CA.
///
/// Its `Debug` output never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret {
    bytes: Vec<u8>,
    development: bool,
}

/// Why a secret is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cluster secret is too short: {len} bytes, at least {min} required")]
pub struct WeakSecretError {
    len: usize,
    min: usize,
}

impl ClusterSecret {
    /// Shortest secret accepted: 128 bits of ASCII entropy at the very least.
    pub const MIN_LEN: usize = 16;

    /// An operator-chosen secret.
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self, WeakSecretError> {
        let bytes = secret.into();
        if bytes.len() < Self::MIN_LEN {
            return Err(WeakSecretError {
                len: bytes.len(),
                min: Self::MIN_LEN,
            });
        }
        Ok(Self {
            bytes,
            development: false,
        })
    }

    /// The well-known development secret of `cluster`: anyone who knows the cluster's name can
    /// join. Convenient on a laptop, never acceptable in production.
    pub fn development(cluster: &ClusterName) -> Self {
        let bytes = format!("foundation-development-secret/{cluster}").into_bytes();
        Self {
            bytes,
            development: true,
        }
    }

    /// Whether this is the guessable development secret.
    pub fn is_development(&self) -> bool {
        self.development
    }

    /// This node's credentials: the derived CA and a fresh node certificate signed by it.
    pub(crate) fn issue(&self, cluster: &ClusterName) -> Result<Credentials, SecurityError> {
        let cert_err = |e: rcgen::Error| SecurityError::Certificate(e.to_string());
        let ca_key = self.ca_key()?;
        let ca = ca_params().self_signed(&ca_key).map_err(cert_err)?;
        let node_key = KeyPair::generate().map_err(cert_err)?;
        let node = node_params(cluster)
            .signed_by(&node_key, &ca, &ca_key)
            .map_err(cert_err)?;
        Ok(Credentials {
            ca: ca.der().clone(),
            chain: vec![node.der().clone(), ca.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(node_key.serialize_der())),
            reset: ResetSeed::new(&self.bytes),
        })
    }

    /// The CA certificate every holder of this secret derives (byte-identical on every node),
    /// which a federation link to this secret's cluster trusts.
    pub(crate) fn ca_certificate(&self) -> Result<CertificateDer<'static>, SecurityError> {
        let ca_key = self.ca_key()?;
        let ca = ca_params()
            .self_signed(&ca_key)
            .map_err(|e| SecurityError::Certificate(e.to_string()))?;
        Ok(ca.der().clone())
    }

    /// The CA key: an Ed25519 key whose seed is HKDF-SHA256 of the secret, so it is the same on
    /// every node and computable only with the secret.
    fn ca_key(&self) -> Result<KeyPair, SecurityError> {
        let mut seed = [0u8; 32];
        hkdf::Salt::new(hkdf::HKDF_SHA256, b"foundation/cluster-ca/v1")
            .extract(&self.bytes)
            .expand(&[b"ed25519-seed"], SeedLen)
            .and_then(|okm| okm.fill(&mut seed))
            .map_err(|_| SecurityError::Certificate("key derivation failed".into()))?;
        let mut pkcs8 = ED25519_PKCS8_PREFIX.to_vec();
        pkcs8.extend_from_slice(&seed);
        let der = PrivatePkcs8KeyDer::from(pkcs8);
        KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)
            .map_err(|e| SecurityError::Certificate(e.to_string()))
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.development {
            true => f.write_str("ClusterSecret(development)"),
            false => f.write_str("ClusterSecret(<redacted>)"),
        }
    }
}

struct SeedLen;

impl hkdf::KeyType for SeedLen {
    fn len(&self) -> usize {
        32
    }
}

/// DER of a PKCS#8 v1 Ed25519 private key up to (not including) its 32-byte seed (RFC 8410).
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The CA's parameters are fixed so that every node derives a byte-identical CA certificate.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "Foundation cluster CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(4000, 1, 1);
    params.serial_number = Some(rcgen::SerialNumber::from(1u64));
    params
}

fn node_params(cluster: &ClusterName) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, format!("foundation node of {cluster}"));
    params.distinguished_name = name;
    // ClusterName guarantees a valid DNS label, so this conversion cannot fail in practice;
    // it is still handled rather than unwrapped.
    params.subject_alt_names = match cluster.certificate_dns_name().try_into() {
        Ok(dns) => vec![SanType::DnsName(dns)],
        Err(_) => Vec::new(),
    };
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_secret_derives_the_same_ca_on_every_node() {
        let cluster = ClusterName::new("orders").unwrap();
        let secret = ClusterSecret::new("correct horse battery staple").unwrap();
        let a = secret.issue(&cluster).unwrap();
        let b = secret.issue(&cluster).unwrap();
        assert_eq!(a.ca, b.ca);
        assert_ne!(a.chain[0], b.chain[0], "node certificates are per node");
        let other = ClusterSecret::new("another secret, equally long").unwrap();
        assert_ne!(other.issue(&cluster).unwrap().ca, a.ca);
    }

    #[test]
    fn short_secrets_are_refused_and_debug_never_shows_the_secret() {
        assert!(ClusterSecret::new("short").is_err());
        let secret = ClusterSecret::new("a very secret value!").unwrap();
        assert!(!format!("{secret:?}").contains("secret value"));
    }
}
