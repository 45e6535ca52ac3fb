//! A hand-driven peer: real TLS and hello, then whatever bytes the test wants.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use foundation_transport::frame::{encode_frame, encode_message, FrameDecoder, StreamHeader};
use foundation_transport::rpc::codec::MuxFrame;
use foundation_transport::security::{raw_bulk_client_config, raw_quic_configs};
use foundation_transport::wire::Hello;
use foundation_transport::{ClusterName, NodeAddr, NodeId};

use super::{secret, Node, SECRET};

pub struct RawPeer {
    pub conn: quinn::Connection,
    /// Who the raw peer said it is in its hello.
    pub addr: NodeAddr,
    _endpoint: quinn::Endpoint,
}

impl RawPeer {
    pub async fn connect(to: &Node) -> RawPeer {
        Self::connect_pinging(to, None).await
    }

    /// Connects, sending QUIC keep-alives every `ping` if given: a connection whose peers both
    /// wait on flow control is otherwise idle, and times out.
    pub async fn connect_pinging(to: &Node, ping: Option<Duration>) -> RawPeer {
        let cluster = ClusterName::new("orders").unwrap();
        let (_, mut client) = raw_quic_configs(&secret(SECRET), &cluster).unwrap();
        if let Some(ping) = ping {
            let mut transport = quinn::TransportConfig::default();
            transport.keep_alive_interval(Some(ping));
            client.transport_config(std::sync::Arc::new(transport));
        }
        Self::connect_as(client, to.endpoint.local().addr, NodeId::random()).await
    }

    /// Dials a bulk-only connection to `to`'s bulk endpoint, saying it is node `id`.
    pub async fn connect_bulk(to: &Node, id: NodeId) -> RawPeer {
        let cluster = ClusterName::new("orders").unwrap();
        let client = raw_bulk_client_config(&secret(SECRET), &cluster).unwrap();
        let bulk_addr = to.endpoint.bulk_addr().expect("a bulk endpoint");
        Self::connect_as(client, bulk_addr, id).await
    }

    /// Dials `to` with `client` and exchanges hellos as node `id`.
    async fn connect_as(client: quinn::ClientConfig, to: SocketAddr, id: NodeId) -> RawPeer {
        let cluster = ClusterName::new("orders").unwrap();
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let conn = endpoint
            .connect_with(client, to, &cluster.certificate_dns_name())
            .unwrap()
            .await
            .unwrap();
        let addr = NodeAddr {
            id,
            addr: endpoint.local_addr().unwrap(),
        };
        let hello = Hello {
            cluster: cluster.to_string(),
            node: addr.id,
            advertise: addr.addr,
            instance: 1,
            bulk_port: None,
            sealed_port: None,
        };
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let mut out = BytesMut::from(&StreamHeader::HELLO.encode()[..]);
        encode_frame(&mut out, &encode_message(&hello).unwrap(), 512).unwrap();
        send.write_all(&out).await.unwrap();
        // The node's hello; a connection it refuses right after may end before it is read,
        // which the test then finds on `conn`.
        let mut reply = [0u8; 64];
        let _ = recv.read(&mut reply).await;
        RawPeer {
            conn,
            addr,
            _endpoint: endpoint,
        }
    }

    /// Writes `bytes` on a new unidirectional stream and returns the code the receiver stopped it with.
    pub async fn stopped_with(&self, bytes: &[u8], finish: bool) -> Option<u64> {
        let mut send = self.conn.open_uni().await.unwrap();
        let _ = send.write_all(bytes).await;
        if finish {
            let _ = send.finish();
        }
        let stopped = tokio::time::timeout(Duration::from_secs(5), send.stopped())
            .await
            .expect("receiver reacts");
        stopped.ok().flatten().map(|code| code.into_inner())
    }

    /// Opens a multiplexed RPC stream to the node, as a caller.
    pub async fn open_mux(&self) -> MuxWire {
        let (mut send, recv) = self.conn.open_bi().await.unwrap();
        send.write_all(&StreamHeader::RPC_MUX.encode())
            .await
            .unwrap();
        MuxWire::new(send, recv)
    }

    /// Accepts the multiplexed RPC stream the node opens to us, as a responder, header read.
    pub async fn accept_mux(&self) -> MuxWire {
        let (send, mut recv) = tokio::time::timeout(Duration::from_secs(5), self.conn.accept_bi())
            .await
            .expect("node opens a stream")
            .unwrap();
        let mut header = [0u8; 3];
        recv.read_exact(&mut header).await.unwrap();
        assert_eq!(header, StreamHeader::RPC_MUX.encode());
        MuxWire::new(send, recv)
    }
}

/// One multiplexed RPC stream, driven frame by frame.
pub struct MuxWire {
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    decoder: FrameDecoder,
}

impl MuxWire {
    fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> MuxWire {
        MuxWire {
            send,
            recv,
            decoder: FrameDecoder::new(8 << 20),
        }
    }

    pub async fn write(&mut self, frame: &MuxFrame) {
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        self.send.write_all(&out).await.unwrap();
    }

    /// Writes raw bytes as one length-prefixed frame body.
    pub async fn write_body(&mut self, body: &[u8]) {
        let mut out = BytesMut::new();
        encode_frame(&mut out, body, 1 << 20).unwrap();
        self.send.write_all(&out).await.unwrap();
    }

    /// The next frame from the node, failing the test after 5 s.
    pub async fn next(&mut self) -> MuxFrame {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(body) = self.decoder.next_frame().unwrap() {
                    return MuxFrame::decode(body).unwrap();
                }
                let chunk = self
                    .recv
                    .read_chunk(1 << 16, true)
                    .await
                    .unwrap()
                    .expect("stream still open");
                self.decoder.extend(&chunk.bytes);
            }
        })
        .await
        .expect("a frame within 5 s")
    }
}

/// A request frame.
pub fn request(id: u64, payload: &'static [u8]) -> MuxFrame {
    MuxFrame::Request {
        id,
        deadline_ms: 5_000,
        payload: Bytes::from_static(payload),
    }
}
