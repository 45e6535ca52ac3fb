//! How a node proves it belongs to the cluster: a shared secret or operator-supplied files.

use std::fmt;
use std::path::PathBuf;

use foundation_transport::{CertificateFiles, ClusterName, ClusterSecret, Trust};

use super::error::{ConfigError, Origin};

/// The message production prints when it has no usable secret or certificates.
pub(crate) const PRODUCTION_NEEDS_SECURITY: &str =
    "the production profile needs a cluster secret or certificates, and refuses the guessable \
     development secret: set FOUNDATION_SECRET (at least 16 characters; TOML: [security] secret), \
     or FOUNDATION_CA, FOUNDATION_CERT and FOUNDATION_KEY (TOML: [security] ca, certificate, key)";

/// How this node is trusted by its peers.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Security {
    /// The secret derived from the cluster name: anyone who knows the name can join. The
    /// development profile's default; refused in production.
    #[default]
    DevelopmentSecret,
    /// A shared secret, at least 16 bytes, from which every node derives the cluster CA.
    Secret(String),
    /// PEM files supplied by the operator.
    Files {
        /// The cluster CA certificate.
        ca: PathBuf,
        /// This node's certificate, carrying the DNS name `<cluster>.foundation`.
        certificate: PathBuf,
        /// This node's private key.
        key: PathBuf,
    },
}

impl fmt::Debug for Security {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Security::DevelopmentSecret => f.write_str("DevelopmentSecret"),
            Security::Secret(_) => f.write_str("Secret(<redacted>)"),
            Security::Files {
                ca,
                certificate,
                key,
            } => f
                .debug_struct("Files")
                .field("ca", ca)
                .field("certificate", certificate)
                .field("key", key)
                .finish(),
        }
    }
}

impl Security {
    /// The transport's trust for `cluster`. Fails only for a secret that is too short.
    pub fn trust(&self, cluster: &ClusterName) -> Result<Trust, ConfigError> {
        match self {
            Security::DevelopmentSecret => Ok(Trust::Secret(ClusterSecret::development(cluster))),
            Security::Secret(secret) => ClusterSecret::new(secret.as_bytes())
                .map(Trust::Secret)
                .map_err(|e| ConfigError::invalid(Origin::Default, "security.secret", e)),
            Security::Files {
                ca,
                certificate,
                key,
            } => Ok(Trust::Files(CertificateFiles {
                ca: ca.clone(),
                certificate: certificate.clone(),
                key: key.clone(),
            })),
        }
    }

    /// Whether this is the guessable development secret.
    pub fn is_development(&self) -> bool {
        matches!(self, Security::DevelopmentSecret)
    }

    /// Checks the secret's length and that certificate files exist; `origin` is where the
    /// setting came from, for the message.
    pub(crate) fn check(&self, origin: &Origin) -> Result<(), ConfigError> {
        match self {
            Security::DevelopmentSecret => Ok(()),
            Security::Secret(secret) => check_secret(secret, origin),
            Security::Files {
                ca,
                certificate,
                key,
            } => [("ca", ca), ("certificate", certificate), ("key", key)]
                .into_iter()
                .try_for_each(|(name, path)| check_file(name, path, origin)),
        }
    }
}

fn check_secret(secret: &str, origin: &Origin) -> Result<(), ConfigError> {
    // The secret itself never appears in the message.
    if secret.len() < ClusterSecret::MIN_LEN {
        let problem = format!(
            "the cluster secret is {} bytes; at least {} are required",
            secret.len(),
            ClusterSecret::MIN_LEN
        );
        return Err(ConfigError::invalid(
            origin.clone(),
            "security.secret",
            problem,
        ));
    }
    Ok(())
}

fn check_file(name: &str, path: &std::path::Path, origin: &Origin) -> Result<(), ConfigError> {
    if path.is_file() {
        return Ok(());
    }
    let problem = format!("{} is not a readable file", path.display());
    Err(ConfigError::invalid(
        origin.clone(),
        format!("security.{name}"),
        problem,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> ClusterName {
        ClusterName::new("orders").unwrap()
    }

    #[test]
    fn the_development_secret_is_marked_as_such() {
        match Security::DevelopmentSecret.trust(&cluster()).unwrap() {
            Trust::Secret(secret) => assert!(secret.is_development()),
            Trust::Files(_) => panic!("expected a secret"),
        }
    }

    #[test]
    fn a_short_secret_is_refused_without_echoing_it() {
        let error = Security::Secret("hunter2".into())
            .trust(&cluster())
            .unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(Security::Secret("x".repeat(16)).trust(&cluster()).is_ok());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", Security::Secret("super-secret-value-123".into()));
        assert!(!shown.contains("super-secret"), "{shown}");
    }
}
