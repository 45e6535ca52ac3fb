//! Mutual TLS: who gets in and who is refused, and that refusals are counted.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use foundation_transport::{
    CertificateFiles, ClusterName, ConnectError, Endpoint, HandshakeFailure, LocalIdentity, NodeId,
    TransportMetrics, Trust,
};

async fn refused(from: &Node, to: &Node) -> HandshakeFailure {
    match from.endpoint.connect(to.endpoint.local().addr).await {
        Err(ConnectError::Handshake(failure)) => failure,
        other => panic!("expected a refused handshake, got {other:?}"),
    }
}

#[tokio::test]
async fn a_node_with_the_wrong_secret_is_refused_and_counted() {
    let member = node("orders").await;
    let intruder = node_with(
        "orders",
        &secret("some other secret entirely"),
        fast_config(),
    )
    .await;
    assert_eq!(
        refused(&intruder, &member).await,
        HandshakeFailure::UntrustedCertificate
    );
    let metrics = member.endpoint.metrics().clone();
    eventually(
        Duration::from_secs(2),
        "member counts the untrusted peer",
        || metrics.handshake_failures(&HandshakeFailure::UntrustedCertificate) == 1,
    )
    .await;
    assert!(member.endpoint.connected_peers().is_empty());
}

#[tokio::test]
async fn a_node_of_another_cluster_is_refused_even_with_the_same_secret() {
    let member = node("orders").await;
    let foreigner = node("billing").await;
    assert_eq!(
        refused(&foreigner, &member).await,
        HandshakeFailure::ForeignCluster
    );
    assert_eq!(
        refused(&member, &foreigner).await,
        HandshakeFailure::ForeignCluster
    );
    let metrics = member.endpoint.metrics().clone();
    eventually(Duration::from_secs(2), "both refusals counted", || {
        metrics.handshake_failures(&HandshakeFailure::ForeignCluster) == 2
    })
    .await;
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_and_counted() {
    let files = write_pki("orders", &tempdir("nocert"));
    let member = node_from_files("orders", files.clone()).await.unwrap();
    let cluster = ClusterName::new("orders").unwrap();
    let no_cert = client_without_certificate(&files);
    let quic = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let connecting = quic
        .connect_with(
            no_cert,
            member.endpoint.local().addr,
            &cluster.certificate_dns_name(),
        )
        .unwrap();
    let result = match connecting.await {
        Ok(conn) => conn.accept_uni().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(
        result.is_err(),
        "a client without certificate must not get a usable connection"
    );
    let metrics = member.endpoint.metrics().clone();
    eventually(
        Duration::from_secs(2),
        "member counts the missing certificate",
        || metrics.handshake_failures(&HandshakeFailure::NoCertificate) == 1,
    )
    .await;
}

/// A client that trusts the cluster CA but presents no certificate of its own.
fn client_without_certificate(files: &CertificateFiles) -> quinn::ClientConfig {
    let ca = std::fs::read(&files.ca).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(&ca) {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"foundation/1".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    quinn::ClientConfig::new(Arc::new(quic))
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(Result::unwrap)
        .collect()
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "foundation-test-{name}-{}",
        NodeId::random().short()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a CA and two node certificates for `cluster` into `dir`, as an operator would.
fn write_pki(cluster: &str, dir: &std::path::Path) -> CertificateFiles {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let node_key = rcgen::KeyPair::generate().unwrap();
    let mut node_params =
        rcgen::CertificateParams::new(vec![format!("{cluster}.foundation")]).unwrap();
    node_params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let node = node_params.signed_by(&node_key, &ca, &ca_key).unwrap();
    let files = CertificateFiles {
        ca: dir.join("ca.pem"),
        certificate: dir.join("node.pem"),
        key: dir.join("node.key"),
    };
    std::fs::write(&files.ca, ca.pem()).unwrap();
    std::fs::write(&files.certificate, node.pem()).unwrap();
    std::fs::write(&files.key, node_key.serialize_pem()).unwrap();
    files
}

async fn node_from_files(cluster: &str, files: CertificateFiles) -> Result<Node, String> {
    let identity = LocalIdentity {
        id: NodeId::random(),
        cluster: ClusterName::new(cluster).unwrap(),
    };
    let metrics = Arc::new(TransportMetrics::unregistered());
    let (endpoint, inbox) = Endpoint::start(identity, &Trust::Files(files), fast_config(), metrics)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Node { endpoint, inbox })
}

#[tokio::test]
async fn operator_certificates_admit_their_cluster_only() {
    let dir = tempdir("files");
    let files = write_pki("orders", &dir);
    let a = node_from_files("orders", files.clone()).await.unwrap();
    let b = node_from_files("orders", files.clone()).await.unwrap();
    let found = a.endpoint.connect(b.endpoint.local().addr).await.unwrap();
    assert_eq!(found, b.endpoint.local());
    // A certificate issued for the "orders" cluster does not make its holder a member of "billing".
    let impostor = node_from_files("billing", files).await.unwrap();
    assert_eq!(
        refused(&impostor, &a).await,
        HandshakeFailure::ForeignCluster
    );
}

#[tokio::test]
async fn missing_or_garbage_certificate_files_fail_with_the_path() {
    let dir = tempdir("garbage");
    let files = CertificateFiles {
        ca: dir.join("missing.pem"),
        certificate: dir.join("x"),
        key: dir.join("y"),
    };
    let error = node_from_files("orders", files).await.err().unwrap();
    assert!(error.contains("missing.pem"), "{error}");
    std::fs::write(dir.join("ca.pem"), "not a certificate").unwrap();
    let files = CertificateFiles {
        ca: dir.join("ca.pem"),
        certificate: dir.join("x"),
        key: dir.join("y"),
    };
    let error = node_from_files("orders", files).await.err().unwrap();
    assert!(error.contains("CA certificate"), "{error}");
}
