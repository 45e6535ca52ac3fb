//! A connection's life after the hello: the duplicate tie-break that installs it on its peer,
//! the tasks that read what arrives on it, and the clean-up when it closes.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use bytes::Bytes;
use quinn::{Connection, RecvStream, SendStream, VarInt};
use tracing::{debug, info, warn};

use crate::bulk;
use crate::endpoint::Shared;
use crate::frame::{decode_datagram, FrameDecoder, FrameError, StreamKind};
use crate::handshake::Established;
use crate::inbox::{Message, PeerEvent};
use crate::metrics::{Direction, DropReason};
use crate::peer::{Live, Peer};
use crate::rpc;
use crate::stream_io::{read_header, ReadError};
use crate::wire::code;
use foundation_core::identity::NodeId;
use foundation_core::Channel;

/// Largest chunk a reader takes from a stream at once.
const READ_CHUNK_MAX: usize = 256 << 10;
/// Frames smaller than this are copied out of the read buffer instead of sliced from it.
const COPY_BELOW: usize = 4096;
/// How long a connection that lost the duplicate tie-break stays open: long enough for both
/// sides' writers to move to the winner and for data in flight on the loser to be read.
const DUPLICATE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// How often a connection's RTT and path losses are sampled into the metrics.
const STATS_SAMPLE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Decides whether a new connection replaces the peer's current one.
///
/// Both nodes apply the same rule to the same pair of connections, so they keep the same one:
/// a connection from a restarted peer (new instance) always wins; so does a redial by the node
/// that dialled the current connection (it gave up on it); otherwise, of two connections dialled
/// from opposite sides at once, the one dialled by the lower node id survives.
fn new_wins(current: &Live, new: &Live) -> bool {
    if current.conn.close_reason().is_some() || current.instance != new.instance {
        return true;
    }
    current.initiator == new.initiator || new.initiator < current.initiator
}

/// Installs an established connection on its peer, or retires it if it loses the tie-break.
///
/// Every established connection is read until it closes, even one that loses: the peer may
/// have written on it before it learned the outcome. The loser is closed after a grace period
/// instead of at once, so nothing already in flight on it is lost.
///
/// A dial outlives the record it was made for when the record is forgotten meanwhile: its
/// connection is closed then, and nothing of it kept.
pub(crate) fn install(shared: &Arc<Shared>, peer: &Arc<Peer>, established: Established) {
    if peer.is_retired() {
        established.conn.close(code::NORMAL.into(), b"forgotten");
        return;
    }
    let established_conn = established.conn.clone();
    let new = Live {
        conn: established.conn,
        initiator: established.initiator,
        instance: established.hello.instance,
        rpc: Arc::new(rpc::mux::MuxSlot::new(shared.config.rpc_streams.into())),
        own_streams: Arc::new(tokio::sync::Semaphore::new(
            shared.config.own_stream_requests() as usize,
        )),
    };
    shared.metrics.connection_opened();
    spawn_readers(shared, peer, &new.conn);
    if shared.config.sealed_membership {
        tokio::spawn(keep_open_while_calling(shared.clone(), new.clone()));
    }
    let mut replaced = None;
    let mut first = false;
    let installed = peer.live.send_if_modified(|current| match current {
        Some(old) if !new_wins(old, &new) => false,
        slot => {
            first = slot.is_none();
            replaced = slot.replace(new.clone());
            true
        }
    });
    let loser = if installed { replaced } else { Some(new) };
    if let Some(loser) = loser.filter(|l| l.conn.close_reason().is_none()) {
        retire(shared, loser.conn);
    }
    if installed {
        peer.set_addr(established.hello.advertise);
        peer.set_bulk_port(established.hello.bulk_port);
    }
    let receive_key = crate::sealed::take_keys(
        shared,
        peer,
        &established_conn,
        established.initiator == shared.local.id,
        installed,
        established.hello.sealed_port,
    );
    if peer.is_retired() {
        // Forgotten while this ran: whatever `release` saw, this connection and its key go.
        crate::forget::release_late(shared, peer, &established_conn, receive_key);
        return;
    }
    if first {
        info!(peer = %peer.node_addr(), "peer connected");
        if let Some(inbox) = shared.inbox.senders() {
            let _ = inbox.peers.try_send(PeerEvent::Connected {
                peer: peer.node_addr(),
            });
        }
    }
}

/// Closes a connection that lost the duplicate tie-break once writers on both sides have moved
/// to the winner and whatever was in flight on it has been read.
fn retire(shared: &Shared, conn: Connection) {
    debug!(remote = %conn.remote_address(), "retiring duplicate connection");
    shared.metrics.duplicate_closed();
    tokio::spawn(async move {
        tokio::time::sleep(DUPLICATE_GRACE).await;
        conn.close(code::DUPLICATE.into(), b"duplicate connection");
    });
}

/// With sealed membership a connection sends no QUIC keep-alives, and while a handler runs
/// nothing else need cross it, so a call held past `idle_timeout` would lose its connection
/// with both ends waiting. While this node waits on an answer, an empty datagram every
/// `keep_alive` keeps the connection open (it asks for an ACK, so both ends' idle timers
/// restart); a connection nobody waits on still idles out.
async fn keep_open_while_calling(shared: Arc<Shared>, live: Live) {
    let own_streams_max = shared.config.own_stream_requests() as usize;
    loop {
        tokio::select! {
            _ = live.conn.closed() => return,
            _ = tokio::time::sleep(shared.config.keep_alive) => {}
        }
        if live.awaits_answers(own_streams_max) {
            let _ = live.conn.send_datagram(Bytes::new());
        }
    }
}

fn spawn_readers(shared: &Arc<Shared>, peer: &Arc<Peer>, conn: &Connection) {
    tokio::spawn(read_datagrams(shared.clone(), peer.clone(), conn.clone()));
    tokio::spawn(accept_uni(shared.clone(), peer.clone(), conn.clone()));
    tokio::spawn(accept_bi(shared.clone(), peer.id, conn.clone()));
    tokio::spawn(watch_close(shared.clone(), peer.clone(), conn.clone()));
}

/// Clears the peer's connection when this one closes, and reports the disconnect if it was
/// the current one (a replaced duplicate closing is not a disconnect).
async fn watch_close(shared: Arc<Shared>, peer: Arc<Peer>, conn: Connection) {
    let mut path = quinn::PathStats::default();
    let reason = loop {
        tokio::select! {
            reason = conn.closed() => break reason,
            _ = tokio::time::sleep(STATS_SAMPLE_INTERVAL) => {
                shared.metrics.observe_rtt(conn.rtt());
                path = shared.metrics.observe_path(path, &conn);
            }
        }
    };
    shared.metrics.observe_path(path, &conn);
    shared.metrics.connection_closed();
    let cleared = peer.live.send_if_modified(|current| match current {
        Some(live) if live.same_connection(&conn) => current.take().is_some(),
        _ => false,
    });
    if cleared {
        peer.touch(); // a record is forgotten only once unused since its last connection
        if ended_by_peer(&reason) {
            // The peer closed or (a new life) reset it: our sealing key may be one it lost.
            peer.set_sealed(None);
        }
        info!(peer = %peer.node_addr(), %reason, "peer disconnected");
        let event = PeerEvent::Disconnected {
            peer: peer.id,
            addr: peer.addr(),
            reason: reason.to_string(),
        };
        if let Some(inbox) = shared.inbox.senders() {
            let _ = inbox.peers.try_send(event);
        }
        // Messages may be waiting for this peer: let the dialer decide whether to reconnect.
        peer.demand.notify_one();
    }
}

/// Whether the peer ended the connection (a close, or a stateless reset from a new life),
/// rather than it timing out or being closed here.
fn ended_by_peer(reason: &quinn::ConnectionError) -> bool {
    use quinn::ConnectionError as E;
    matches!(
        reason,
        E::ApplicationClosed(_) | E::ConnectionClosed(_) | E::Reset
    )
}

async fn read_datagrams(shared: Arc<Shared>, peer: Arc<Peer>, conn: Connection) {
    let max = shared.config.limits.membership;
    let from = peer.id;
    let Some(inbox) = shared.inbox.senders() else {
        return;
    };
    while let Ok(datagram) = conn.read_datagram().await {
        if datagram.is_empty() {
            continue; // a keep-alive (see `keep_open_while_calling`)
        }
        let len = datagram.len() as u64;
        match decode_datagram(datagram, max) {
            Ok(payload) => {
                peer.answered();
                shared
                    .metrics
                    .traffic(Channel::Membership, Direction::Received, 1, len);
                let message = Message::new(from, Channel::Membership, payload);
                if inbox.membership.try_send(message).is_err() {
                    shared
                        .metrics
                        .dropped(Channel::Membership, DropReason::InboxFull, 1);
                }
            }
            Err(error) => {
                debug!(peer = %from.short(), %error, "dropping malformed datagram");
                shared
                    .metrics
                    .dropped(Channel::Membership, drop_reason(&error), 1);
            }
        }
    }
}

async fn accept_uni(shared: Arc<Shared>, peer: Arc<Peer>, conn: Connection) {
    while let Ok(recv) = conn.accept_uni().await {
        tokio::spawn(serve_uni(shared.clone(), peer.clone(), recv));
    }
}

async fn accept_bi(shared: Arc<Shared>, from: NodeId, conn: Connection) {
    // Calls in flight over all the connection's multiplexed RPC streams.
    let mux_calls = Arc::new(AtomicUsize::new(0));
    while let Ok((send, recv)) = conn.accept_bi().await {
        tokio::spawn(serve_bi(
            shared.clone(),
            from,
            send,
            recv,
            mux_calls.clone(),
        ));
    }
}

async fn serve_uni(shared: Arc<Shared>, peer: Arc<Peer>, mut recv: RecvStream) {
    let from = peer.id;
    let header = match read_header(&mut recv).await {
        Ok(header) => header,
        Err(error) => return reject_stream(&shared, from, None, &mut recv, &error),
    };
    let result = match header.kind {
        StreamKind::Channel(Channel::Bulk) => return bulk::receive(&shared, from, recv).await,
        StreamKind::Channel(channel) if Channel::STREAMED.contains(&channel) => {
            read_frames(&shared, &peer, channel, &mut recv).await
        }
        other => Err(misplaced(other)),
    };
    if let Err(error) = result {
        reject_stream(&shared, from, header.channel(), &mut recv, &error);
    }
}

/// Serves a bulk-only connection a peer dialled to send us its transfers: every stream on it
/// must be a bulk transfer. It is not the peer's connection: nothing else is read from it, and
/// its closing is not a disconnect.
pub(crate) fn serve_bulk(shared: &Arc<Shared>, established: Established) {
    let (shared, from, conn) = (shared.clone(), established.hello.node, established.conn);
    let Some(place) = shared.bulk_quota.take(from) else {
        debug!(peer = %from.short(), "bulk connection refused: quota held");
        shared.metrics.bulk_connection_refused();
        let reason: &[u8] = b"too many bulk connections";
        return conn.close(code::TOO_MANY_CONNECTIONS.into(), reason);
    };
    debug!(peer = %from.short(), "bulk connection accepted");
    shared.metrics.bulk_connection_opened(false);
    tokio::spawn(async move {
        let _place = place; // held while the connection is served
        while let Ok(mut recv) = conn.accept_uni().await {
            let shared = shared.clone();
            tokio::spawn(async move {
                match read_header(&mut recv).await {
                    Ok(header) if header.kind == StreamKind::Channel(Channel::Bulk) => {
                        bulk::receive(&shared, from, recv).await;
                    }
                    Ok(header) => {
                        let error = misplaced(header.kind);
                        reject_stream(&shared, from, header.channel(), &mut recv, &error);
                    }
                    Err(error) => reject_stream(&shared, from, None, &mut recv, &error),
                }
            });
        }
    });
}

async fn serve_bi(
    shared: Arc<Shared>,
    from: NodeId,
    send: SendStream,
    mut recv: RecvStream,
    mux_calls: Arc<AtomicUsize>,
) {
    let result = match read_header(&mut recv).await {
        Ok(header) if header.kind == StreamKind::Channel(Channel::Rpc) => {
            rpc::serve(&shared, from, send, &mut recv).await
        }
        Ok(header) if header.kind == StreamKind::RpcMux => {
            rpc::mux::serve(&shared, from, send, &mut recv, mux_calls).await
        }
        Ok(header) => Err(misplaced(header.kind)),
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        reject_stream(&shared, from, Some(Channel::Rpc), &mut recv, &error);
    }
}

fn misplaced(kind: StreamKind) -> ReadError {
    let tag = match kind {
        StreamKind::Hello => 0,
        StreamKind::Channel(channel) => channel.tag(),
        StreamKind::RpcMux => crate::frame::RPC_MUX_TAG,
    };
    ReadError::Frame(FrameError::UnknownChannel(tag))
}

/// Reads frames off a long-lived stream into the channel's inbox until the stream ends.
///
/// Waiting for inbox space (in messages or in bytes) stops reading, which QUIC flow control
/// turns into backpressure on the sender: memory stays bounded without dropping anything. Only one stream per peer and
/// channel is read at a time, so when the sender moves to a new stream (a reconnect, or the
/// winner of a duplicate tie-break) the new stream waits until the old one has been read to
/// its end, and the channel stays in order.
async fn read_frames(
    shared: &Shared,
    peer: &Peer,
    channel: Channel,
    recv: &mut RecvStream,
) -> Result<(), ReadError> {
    let from = peer.id;
    let Some(senders) = shared.inbox.senders() else {
        return Ok(()); // closed: the connection goes with the endpoint
    };
    let (Some(inbox), Some(order)) = (senders.streamed(channel), peer.read_order(channel)) else {
        return Err(misplaced(StreamKind::Channel(channel)));
    };
    let _in_order = order.lock().await;
    let mut decoder = FrameDecoder::new(shared.config.limits.of(channel));
    loop {
        let chunk = match recv.read_chunk(READ_CHUNK_MAX, true).await {
            Ok(Some(chunk)) => chunk.bytes,
            Ok(None) => return Ok(decoder.finish()?),
            Err(error) => return stream_ended(error),
        };
        decoder.extend(&chunk);
        while let Some(mut payload) = decoder.next_frame()? {
            if payload.len() < COPY_BELOW {
                // A small message kept by the application would otherwise pin the whole read
                // buffer it was sliced from.
                payload = Bytes::copy_from_slice(&payload);
            }
            shared
                .metrics
                .traffic(channel, Direction::Received, 1, payload.len() as u64);
            let message = Message::new(from, channel, payload);
            if inbox.deliver(message, &shared.metrics).await.is_err() {
                let _ = recv.stop(code::UNAVAILABLE.into());
                return Ok(());
            }
        }
    }
}

/// A stream that ends because its connection closed is not an error of the peer's.
fn stream_ended(error: quinn::ReadError) -> Result<(), ReadError> {
    match error {
        quinn::ReadError::ConnectionLost(_) | quinn::ReadError::Reset(_) => Ok(()),
        other => Err(ReadError::Stream(other.to_string())),
    }
}

/// Closes a stream that carried bad bytes, with an error code and a log line; the connection and
/// every other stream keep going.
pub(crate) fn reject_stream(
    shared: &Shared,
    from: NodeId,
    channel: Option<Channel>,
    recv: &mut RecvStream,
    error: &ReadError,
) {
    let (code, reason) = match error {
        ReadError::Frame(frame) => (stream_code(frame), drop_reason(frame)),
        ReadError::Stream(_) => return,
    };
    warn!(peer = %from.short(), ?channel, %error, "rejecting stream");
    shared.metrics.rejected(channel, reason);
    let _ = recv.stop(VarInt::from_u32(code));
}

fn stream_code(error: &FrameError) -> u32 {
    match error {
        FrameError::Oversized { .. } => code::TOO_LARGE,
        _ => code::MALFORMED,
    }
}

fn drop_reason(error: &FrameError) -> DropReason {
    match error {
        FrameError::Oversized { .. } => DropReason::Oversized,
        _ => DropReason::Malformed,
    }
}
