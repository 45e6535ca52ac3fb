//! Establishing a connection: the TLS handshake, then the hello exchange that tells each side
//! which node the other is. Failures are classified so operators see *why* a peer was refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, ConnectionError, RecvStream, SendStream};
use tokio::time::timeout;

use crate::endpoint::Shared;
use crate::error::{ConnectError, HandshakeFailure};
use crate::frame::{decode_message, encode_message, StreamHeader, StreamKind};
use crate::intruders::Side;
use crate::security::BULK_ALPN;
use crate::stream_io::{header_and_frame, read_frame, read_header, ReadError};
use crate::wire::{code, Hello, MAX_HELLO_LEN};
use foundation_core::identity::NodeId;

/// A connection whose peer has introduced itself.
pub(crate) struct Established {
    pub conn: Connection,
    pub hello: Hello,
    /// Which side dialled: the duplicate tie-break needs it.
    pub initiator: NodeId,
    /// A connection that carries only the dialler's bulk transfers (ALPN
    /// [`BULK_ALPN`](crate::security::BULK_ALPN)), never installed as the peer's connection.
    pub bulk: bool,
}

impl Established {
    /// Closes the connection unless the peer introduced itself as `expected`, the node we
    /// meant to dial.
    pub(crate) fn expect_node(&self, expected: NodeId) -> Result<(), ConnectError> {
        if self.hello.node == expected {
            return Ok(());
        }
        self.conn.close(code::BAD_HELLO.into(), b"unexpected node");
        Err(ConnectError::WrongNode {
            expected: expected.to_string(),
            found: self.hello.node.to_string(),
        })
    }
}

/// Dials `addr` and exchanges hellos.
pub(crate) async fn dial(
    shared: &Arc<Shared>,
    addr: SocketAddr,
) -> Result<Established, ConnectError> {
    dial_with(shared, addr, None, shared.config.handshake_timeout).await
}

/// Dials a bulk-only connection to `addr` (see [`crate::bulk`]) and exchanges hellos, giving up
/// after `limit` (at most the handshake timeout).
pub(crate) async fn dial_bulk(
    shared: &Arc<Shared>,
    addr: SocketAddr,
    limit: Duration,
) -> Result<Established, ConnectError> {
    let limit = limit.min(shared.config.handshake_timeout);
    dial_with(shared, addr, Some(shared.bulk_client.clone()), limit).await
}

/// The endpoint bulk connections are dialled from: the bulk endpoint if there is one.
fn bulk_dialler(shared: &Shared) -> &quinn::Endpoint {
    shared.bulk.as_ref().map_or(&shared.quic, |bulk| &bulk.quic)
}

async fn dial_with(
    shared: &Arc<Shared>,
    addr: SocketAddr,
    client: Option<quinn::ClientConfig>,
    limit: Duration,
) -> Result<Established, ConnectError> {
    let server_name = shared.cluster.certificate_dns_name();
    let bulk = client.is_some();
    let connecting = match client {
        Some(client) => bulk_dialler(shared).connect_with(client, addr, &server_name),
        None => shared.quic.connect(addr, &server_name),
    }
    .map_err(|e| HandshakeFailure::Other(e.to_string()))?;
    let result = timeout(limit, async {
        let conn = connecting.await.map_err(|e| classify(&e))?;
        let (send, recv) = conn.open_bi().await.map_err(|e| classify(&e))?;
        let hello = exchange_as_dialer(shared, &conn, send, recv).await?;
        Ok::<_, HandshakeFailure>((conn, hello))
    })
    .await
    .unwrap_or(Err(HandshakeFailure::Timeout));
    let (conn, hello) =
        result.inspect_err(|failure| failed(shared, addr, Side::Dialled, failure))?;
    check_not_self(shared, &conn, &hello)?;
    Ok(Established {
        conn,
        hello,
        initiator: shared.local.id,
        bulk,
    })
}

/// Counts a failed handshake, and tells the operator of a stranger.
fn failed(shared: &Shared, remote: SocketAddr, side: Side, failure: &HandshakeFailure) {
    shared.metrics.handshake_failed(failure);
    shared.intruders.failed(remote, side, failure);
}

/// Completes an incoming connection and exchanges hellos.
pub(crate) async fn accept(
    shared: &Arc<Shared>,
    incoming: quinn::Incoming,
) -> Result<Established, ConnectError> {
    let remote = incoming.remote_address();
    let result = timeout(shared.config.handshake_timeout, async {
        let conn = incoming.await.map_err(|e| classify(&e))?;
        let (send, recv) = conn.accept_bi().await.map_err(|e| classify(&e))?;
        let hello = exchange_as_acceptor(shared, &conn, send, recv).await?;
        Ok::<_, HandshakeFailure>((conn, hello))
    })
    .await
    .unwrap_or(Err(HandshakeFailure::Timeout));
    let (conn, hello) =
        result.inspect_err(|failure| failed(shared, remote, Side::Accepted, failure))?;
    check_not_self(shared, &conn, &hello)?;
    let initiator = hello.node;
    let bulk = negotiated_bulk(&conn);
    Ok(Established {
        conn,
        hello,
        initiator,
        bulk,
    })
}

/// Whether the dialler asked for a bulk-only connection.
fn negotiated_bulk(conn: &Connection) -> bool {
    conn.handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol)
        .is_some_and(|protocol| protocol == BULK_ALPN)
}

async fn exchange_as_dialer(
    shared: &Shared,
    conn: &Connection,
    mut send: SendStream,
    mut recv: RecvStream,
) -> Result<Hello, HandshakeFailure> {
    write_hello(shared, &mut send)
        .await
        .map_err(|e| lost(conn, e))?;
    // The acceptor verifies our certificate only now, after our Finished: if it refuses us,
    // the refusal arrives here as a closed connection, which `lost` classifies.
    let hello = read_hello(&mut recv).await.map_err(|e| lost(conn, e))?;
    check_hello(shared, conn, &hello)?;
    let _ = send.finish();
    Ok(hello)
}

async fn exchange_as_acceptor(
    shared: &Shared,
    conn: &Connection,
    mut send: SendStream,
    mut recv: RecvStream,
) -> Result<Hello, HandshakeFailure> {
    let hello = read_hello(&mut recv).await.map_err(|e| lost(conn, e))?;
    check_hello(shared, conn, &hello)?;
    write_hello(shared, &mut send)
        .await
        .map_err(|e| lost(conn, e))?;
    let _ = send.finish();
    Ok(hello)
}

async fn write_hello(shared: &Shared, send: &mut SendStream) -> Result<(), String> {
    let hello = Hello {
        cluster: shared.cluster.to_string(),
        node: shared.local.id,
        advertise: shared.local.addr,
        instance: shared.instance,
        bulk_port: shared.bulk_port(),
        sealed_port: shared.sealed.as_ref().and_then(|s| s.port()),
    };
    let payload = encode_message(&hello).map_err(|e| e.to_string())?;
    let bytes = header_and_frame(StreamHeader::HELLO, &payload, MAX_HELLO_LEN)
        .map_err(|e| e.to_string())?;
    send.write_all(&bytes).await.map_err(|e| e.to_string())
}

async fn read_hello(recv: &mut RecvStream) -> Result<Hello, String> {
    let header = read_header(recv).await.map_err(|e| e.to_string())?;
    if header.kind != StreamKind::Hello {
        return Err(format!("expected a hello stream, got {:?}", header.kind));
    }
    let frame = read_frame(recv, MAX_HELLO_LEN)
        .await
        .map_err(|e: ReadError| e.to_string())?;
    decode_message(&frame).map_err(|e| e.to_string())
}

fn check_hello(shared: &Shared, conn: &Connection, hello: &Hello) -> Result<(), HandshakeFailure> {
    if hello.cluster != shared.cluster.as_str() {
        conn.close(code::BAD_HELLO.into(), b"foreign cluster");
        return Err(HandshakeFailure::ForeignCluster);
    }
    Ok(())
}

fn check_not_self(shared: &Shared, conn: &Connection, hello: &Hello) -> Result<(), ConnectError> {
    if hello.node == shared.local.id {
        conn.close(code::BAD_HELLO.into(), b"connected to self");
        return Err(ConnectError::SelfConnect);
    }
    Ok(())
}

/// A failed hello: if the connection was closed (typically by a TLS alert from the peer),
/// that closure is the real reason; otherwise the hello itself was malformed.
fn lost(conn: &Connection, error: String) -> HandshakeFailure {
    match conn.close_reason() {
        Some(reason) => classify(&reason),
        None => {
            conn.close(code::MALFORMED.into(), b"malformed hello");
            HandshakeFailure::Protocol(error)
        }
    }
}

/// Maps a QUIC connection error to the handshake failure it means.
///
/// TLS failures travel as QUIC crypto errors: code 0x100 plus the TLS alert. The side that
/// verified the certificate sees rustls' own reason; the refused side sees only the alert.
pub(crate) fn classify(error: &ConnectionError) -> HandshakeFailure {
    match error {
        ConnectionError::TransportError(e) => from_tls(u64::from(e.code), &e.reason),
        ConnectionError::ConnectionClosed(close) => from_tls(
            u64::from(close.error_code),
            &String::from_utf8_lossy(&close.reason),
        ),
        ConnectionError::ApplicationClosed(close)
            if u64::from(close.error_code) == u64::from(code::BAD_HELLO) =>
        {
            match close.reason.as_ref() {
                b"foreign cluster" => HandshakeFailure::ForeignCluster,
                other => HandshakeFailure::Protocol(String::from_utf8_lossy(other).into_owned()),
            }
        }
        ConnectionError::TimedOut => HandshakeFailure::Timeout,
        other => HandshakeFailure::Other(other.to_string()),
    }
}

/// TLS alerts (RFC 8446 §6) as they reach us inside QUIC crypto error codes.
mod alert {
    pub const BAD_CERTIFICATE: u64 = 42;
    pub const CERTIFICATE_UNKNOWN: u64 = 46;
    pub const UNKNOWN_CA: u64 = 48;
    pub const DECRYPT_ERROR: u64 = 51;
    pub const CERTIFICATE_REQUIRED: u64 = 116;
    pub const NO_APPLICATION_PROTOCOL: u64 = 120;
}

fn from_tls(code: u64, reason: &str) -> HandshakeFailure {
    const CRYPTO_ERROR_BASE: u64 = 0x100;
    if reason.contains("NotValidForName") {
        return HandshakeFailure::ForeignCluster;
    }
    if reason.contains("UnknownIssuer") || reason.contains("BadSignature") {
        return HandshakeFailure::UntrustedCertificate;
    }
    if reason.contains("no certificates") {
        return HandshakeFailure::NoCertificate;
    }
    match code.checked_sub(CRYPTO_ERROR_BASE) {
        // Our verifiers raise "bad certificate" only for a certificate of another cluster.
        Some(alert::BAD_CERTIFICATE) => HandshakeFailure::ForeignCluster,
        Some(alert::UNKNOWN_CA | alert::DECRYPT_ERROR | alert::CERTIFICATE_UNKNOWN) => {
            HandshakeFailure::UntrustedCertificate
        }
        Some(alert::CERTIFICATE_REQUIRED) => HandshakeFailure::NoCertificate,
        Some(alert::NO_APPLICATION_PROTOCOL) => {
            HandshakeFailure::Protocol("no common ALPN protocol".into())
        }
        _ => HandshakeFailure::Other(format!("code {code:#x}: {reason}")),
    }
}
