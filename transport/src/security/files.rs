//! Operator-supplied CA, certificate and key files (PEM).

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{Credentials, ResetSeed, SecurityError};

/// Paths of the PEM files an operator supplies in production.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The CA that signs every node certificate of the cluster.
    pub ca: PathBuf,
    /// This node's certificate (chain), which must carry the DNS name `<cluster>.foundation`
    /// and allow both server and client authentication.
    pub certificate: PathBuf,
    /// This node's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl CertificateFiles {
    pub(crate) fn load(&self) -> Result<Credentials, SecurityError> {
        let ca = first_certificate(&self.ca, "CA certificate")?;
        let chain = certificates(&self.certificate, "node certificate")?;
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| file_error("private key", &self.key, e))?;
        let reset = ResetSeed::new(key.secret_der());
        Ok(Credentials {
            ca,
            chain,
            key,
            reset,
        })
    }
}

fn certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, e))?;
    if chain.is_empty() {
        return Err(file_error(what, path, "no certificate in the file"));
    }
    Ok(chain)
}

pub(super) fn first_certificate(
    path: &Path,
    what: &'static str,
) -> Result<CertificateDer<'static>, SecurityError> {
    let mut all = certificates(path, what)?;
    Ok(all.swap_remove(0))
}

fn file_error(what: &'static str, path: &Path, reason: impl ToString) -> SecurityError {
    SecurityError::File {
        what,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}
