//! Membership datagrams outside QUIC: plain UDP on a socket of their own, sealed with keys
//! exported from the TLS session of the peer's QUIC connection.
//!
//! Why: a membership datagram inside QUIC is ack-eliciting, so every probe exchange ends with
//! an ACK-only packet 25 ms later (quinn's max ACK delay is fixed), and a connection with
//! nothing else to say sends keep-alives. On a full mesh that was 3.1 packets/s per node
//! where Serf sends 2.0. Sealed datagrams cost one UDP packet each and nothing more.
//!
//! How:
//! - **Socket.** A second UDP socket per node (bound IP, a port the kernel picks, or
//!   [`TransportConfig::sealed_port`](crate::TransportConfig::sealed_port)), announced in the
//!   hello as the bulk socket is. Demultiplexing on the QUIC socket would need a wrapper under
//!   quinn's own socket I/O (GRO batches, GSO), for one byte of saving; a socket of its own is
//!   simpler and cannot disturb QUIC.
//! - **Keys.** Both ends of every established connection export the same material from its TLS
//!   session (`keys::PairKeys::export`): a key and a 32-bit id per direction. A datagram that
//!   opens under a key was sealed by the node authenticated in that handshake, which is what a
//!   QUIC datagram on that connection proves too. The receiver finds the key by the id in the
//!   header, refuses counters already taken (a 64-wide replay window per key), and keeps each
//!   peer's 4 newest keys so a replaced connection's datagrams in flight still open.
//! - **Fallback.** With no key for a peer (first contact, a peer that announced no sealed
//!   port) membership datagrams take the QUIC path, which also dials; the connection's keys
//!   then take over. A peer that restarted holds none of our keys, and its new socket may have
//!   another port. Three things bring us back to QUIC, whose next packet to the old connection
//!   draws a stateless reset, then a redial and new keys: (1) sealing stops for a spell
//!   ([`QUIC_SPELL`], doubling) once the peer has been silent for [`SILENCE_FALLBACK`] since
//!   our oldest unanswered sealed datagram of a kind that is answered (a probe, by its ack;
//!   acks and gossip are not: [`membership::wire::expects_no_answer`]), so silence means the
//!   peer may not be reading them (restarted elsewhere, or a firewall drops the port), and a
//!   dead peer gets what it got before, QUIC datagrams and redials;
//!   (2) a peer that gets a sealed datagram under a key id it does not know (a restart on a
//!   fixed sealed port) answers with a 5-byte notice, and we drop that key; (3) a connection
//!   the peer ended (closed, or reset by its new life) takes our key for it along. A forged
//!   notice can only send us back to authenticated QUIC; it is smaller than the packet it
//!   answers, so it reflects nothing.
//! - **Connections.** Keys outlive the connection they came from. With sealed membership on,
//!   connections carry no QUIC keep-alive: one used for nothing else closes silently after
//!   `idle_timeout`, and is dialled again when a stream, request or transfer needs it.
//!
//! Refusals (malformed, unknown key, bad tag, replay, oversized) are dropped and counted in
//! `foundation_transport_sealed_refused_total{reason}`; nothing here panics on received bytes.

pub mod codec;
mod keys;
mod unreachable;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

use quinn::Connection;
use tokio::net::UdpSocket;
use tracing::debug;

use crate::endpoint::Shared;
use crate::inbox::{Message, PeerEvent};
use crate::metrics::{Direction, DropReason, SealedEvent};
use crate::peer::Peer;
use codec::{OpeningKey, Packet, SealedError, SealingKey};
use foundation_core::identity::NodeId;
use foundation_core::membership;
use foundation_core::Channel;
use keys::{KeyTable, PairKeys};

/// Largest packet read from the socket: anything longer is cut and fails its tag.
const RECEIVE_BUFFER: usize = 2048;

/// How long a peer may stay silent after a sealed datagram before membership to it goes back
/// to QUIC. Longer than a probe's round trip with the peer's processing, shorter than any
/// profile's suspicion timeout, so a restarted peer is re-keyed before it could be suspected.
pub const SILENCE_FALLBACK: Duration = Duration::from_millis(1000);

/// A datagram sent this soon after we last heard from the peer is taken for a reply (an ack,
/// an indirect probe's answer), which the peer does not answer, so it starts no silence.
pub const REPLY_WINDOW: Duration = Duration::from_millis(500);

/// The least time a new key waits before it seals: the peer installs the same connection (and
/// takes its receive key) up to a round trip after us, and a datagram sealed before that would
/// be refused as an unknown key. Until then membership goes on the new connection as QUIC
/// datagrams. Twice the connection's RTT when that is longer.
pub const KEY_SETTLE: Duration = Duration::from_millis(100);

/// How long membership to a peer stays on QUIC after its first silence; each further silence
/// under the same key doubles it, up to [`QUIC_SPELL_MAX`]. A peer whose sealed port a
/// firewall drops thus costs about a second of lost datagrams per spell, ever more rarely,
/// instead of one every second.
pub const QUIC_SPELL: Duration = Duration::from_secs(10);
/// The longest spell on QUIC before sealing is tried again.
pub const QUIC_SPELL_MAX: Duration = Duration::from_secs(600);

/// Where and how we seal membership datagrams to one peer.
pub(crate) struct SendKey {
    key: SealingKey,
    to: SocketAddr,
    /// When we sealed the oldest datagram, other than a reply, that the peer has not answered
    /// (by sending us anything on membership) yet.
    unanswered_since: Option<Instant>,
    /// When the peer last sent us a membership datagram.
    last_heard: Option<Instant>,
    /// Until when membership to the peer goes on QUIC after a silence.
    on_quic_until: Option<Instant>,
    /// Silences so far under this key.
    silences: u32,
}

impl SendKey {
    fn new(key: SealingKey, to: SocketAddr, usable_from: Instant) -> SendKey {
        SendKey {
            key,
            to,
            unanswered_since: None,
            last_heard: None,
            on_quic_until: Some(usable_from),
            silences: 0,
        }
    }

    /// Whether to seal now: not during a spell on QUIC, and not once the peer has been silent
    /// too long (which starts a spell). Only a datagram the peer answers (`answered`: a probe,
    /// not an ack or gossip) starts the silence clock: after gossip, silence means nothing, and
    /// a spell on QUIC it started would cost an ACK-only packet per datagram for 10 s. Asked
    /// only when the clock could start, so most datagrams are never classified.
    fn usable(&mut self, now: Instant, answered: impl FnOnce() -> bool) -> bool {
        if self.on_quic_until.is_some_and(|until| now < until) {
            return false;
        }
        let replying = self
            .last_heard
            .is_some_and(|heard| now.duration_since(heard) <= REPLY_WINDOW);
        if self.unanswered_since.is_none() && !replying && answered() {
            self.unanswered_since = Some(now);
        }
        let Some(since) = self.unanswered_since else {
            return true;
        };
        if now.duration_since(since) <= SILENCE_FALLBACK {
            return true;
        }
        let spell = QUIC_SPELL.saturating_mul(1 << self.silences.min(6));
        self.silences = self.silences.saturating_add(1);
        self.on_quic_until = Some(now + spell.min(QUIC_SPELL_MAX));
        self.unanswered_since = None;
        false
    }

    pub(crate) fn to(&self) -> SocketAddr {
        self.to
    }

    fn heard(&mut self, now: Instant) {
        self.unanswered_since = None;
        self.last_heard = Some(now);
    }

    pub(crate) fn seal_for_test(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        self.key.seal(payload)
    }
}

/// This node's sealed membership socket and its receive keys.
pub(crate) struct SealedSide {
    socket: UdpSocket,
    keys: Mutex<KeyTable>,
}

impl SealedSide {
    /// Binds the socket (call inside the runtime).
    pub fn bind(socket: std::net::UdpSocket) -> std::io::Result<SealedSide> {
        socket.set_nonblocking(true)?;
        unreachable::enable(&socket)?;
        Ok(SealedSide {
            socket: UdpSocket::from_std(socket)?,
            keys: Mutex::default(),
        })
    }

    /// The socket's port, announced in hellos.
    pub fn port(&self) -> Option<u16> {
        self.socket.local_addr().ok().map(|a| a.port())
    }

    /// Drops `peer`'s receive keys: it is forgotten (see [`crate::forget`]).
    pub(crate) fn forget(&self, peer: NodeId) {
        self.keys().forget(peer);
    }

    /// Drops one receive key of `peer`, the one a connection took (see [`take_keys`]).
    pub(crate) fn forget_receive_key(&self, peer: NodeId, id: u32) {
        self.keys().remove(peer, id);
    }

    /// Peers we hold receive keys of.
    pub fn peers_keyed(&self) -> usize {
        self.keys().peers()
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, KeyTable> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Takes the keys of an established connection to `peer`: its receive key always (the peer may
/// seal with it while it keeps this connection), its send key only if this connection is the
/// one installed, and only if the peer announced a sealed port. Returns the receive key's id.
pub(crate) fn take_keys(
    shared: &Shared,
    peer: &Peer,
    conn: &Connection,
    we_dialled: bool,
    installed: bool,
    peer_port: Option<u16>,
) -> Option<u32> {
    let (Some(side), Some(port)) = (&shared.sealed, peer_port) else {
        return None;
    };
    let Some(keys) = PairKeys::export(conn, we_dialled) else {
        debug!(peer = %peer.node_addr(), "no keying material: membership stays on QUIC");
        return None;
    };
    let PairKeys {
        send,
        receive_id,
        receive,
    } = keys;
    side.keys().insert(peer.id, receive_id, receive);
    if installed {
        let to = SocketAddr::new(peer.addr().ip(), port);
        let settle = KEY_SETTLE.max(conn.rtt() * 2);
        peer.set_sealed(Some(SendKey::new(send, to, Instant::now() + settle)));
        shared.metrics.sealed_event(SealedEvent::Keyed);
    }
    Some(receive_id)
}

/// Sends one packet. With ICMP errors queued on the socket (`IP_RECVERR`), Linux fails the next
/// send of any destination once with the pending error: that says nothing about this
/// destination, so the send is made again.
fn send_past_error(socket: &UdpSocket, packet: &[u8], to: SocketAddr) -> std::io::Result<usize> {
    use std::io::ErrorKind;
    match socket.try_send_to(packet, to) {
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::ConnectionRefused | ErrorKind::HostUnreachable
            ) =>
        {
            socket.try_send_to(packet, to)
        }
        sent => sent,
    }
}

/// Seals `payload` to `peer` if we hold its key; `false` when the caller must use QUIC.
pub(crate) fn send(shared: &Shared, peer: &Peer, payload: &[u8]) -> bool {
    let Some(side) = &shared.sealed else {
        return false;
    };
    let Some((packet, to)) = peer.seal(payload) else {
        return false;
    };
    match send_past_error(&side.socket, &packet, to) {
        Ok(_) => {
            shared.metrics.traffic(
                Channel::Membership,
                Direction::Sent,
                1,
                payload.len() as u64,
            );
            shared.metrics.sealed_datagram(Direction::Sent);
        }
        Err(error) => {
            debug!(%to, %error, "sealed datagram not sent");
            shared
                .metrics
                .dropped(Channel::Membership, DropReason::QueueFull, 1);
        }
    }
    true
}

impl Peer {
    /// Seals the next datagram to this peer: the packet and where to send it; `None` without
    /// a key, or while the peer has been silent too long.
    fn seal(&self, payload: &[u8]) -> Option<(Vec<u8>, SocketAddr)> {
        let mut slot = self.sealed_slot();
        let send = slot.as_mut()?;
        let answered = || !membership::wire::expects_no_answer(payload);
        if !send.usable(Instant::now(), answered) {
            return None;
        }
        let packet = send.key.seal(payload)?;
        Some((packet, send.to))
    }

    /// The peer sent us a membership datagram: it is listening.
    pub(crate) fn answered(&self) {
        self.touch();
        if let Some(send) = self.sealed_slot().as_mut() {
            send.heard(Instant::now());
        }
    }

    /// Drops our key for this peer if it is `key_id` and sealed to `from`: the peer said it
    /// does not know it.
    fn forget_key(&self, key_id: u32, from: SocketAddr) -> bool {
        let mut slot = self.sealed_slot();
        let ours = slot
            .as_ref()
            .is_some_and(|s| s.key.id() == key_id && s.to == from);
        if ours {
            *slot = None;
        }
        ours
    }
}

/// Reads the sealed socket until the endpoint shuts down.
///
/// One wait covers datagrams and the ICMP error queue, and each is then read under its own
/// readiness only. tokio's `recv_from` waits on ERROR as well as READABLE: woken by an ICMP
/// error, it returned the pending error, and its next empty read cleared the ERROR readiness too
/// while the error sat unread in the queue. With edge-triggered readiness nothing woke us for it
/// until the next ICMP error, so a crash was read one or more datagrams late.
pub(crate) async fn receive(shared: Arc<Shared>) {
    let Some(side) = &shared.sealed else {
        return;
    };
    let mut buffer = vec![0u8; RECEIVE_BUFFER];
    loop {
        tokio::select! {
            ready = side.socket.ready(unreachable::INTEREST) => if ready.is_err() { return },
            _ = shared.stopped() => return,
        };
        closed_ports(&shared, side);
        read_datagrams(&shared, side, &mut buffer);
    }
}

/// Datagrams read per wake, so the reader returns to check for shutdown and ICMP errors.
const DATAGRAMS_PER_WAKE: usize = 64;

/// Takes the datagrams waiting on the socket, up to [`DATAGRAMS_PER_WAKE`].
fn read_datagrams(shared: &Shared, side: &SealedSide, buffer: &mut [u8]) {
    for _ in 0..DATAGRAMS_PER_WAKE {
        let (len, from) = match side.socket.try_recv_from(buffer) {
            Ok(received) => received,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(error) => {
                // The error of an ICMP message queued for `closed_ports` surfaces here once
                // as well: not fatal, and the queue keeps it.
                debug!(%error, "sealed socket receive error");
                continue;
            }
        };
        if let Err(error) = take_packet(shared, side, &buffer[..len], from) {
            refused(shared, side, error, from);
        }
    }
}

/// Tells the layers above of each peer whose membership port its host reported closed
/// ([`unreachable`]), reading the ICMP errors queued on the socket (a wake without any reads
/// nothing).
#[cfg(target_os = "linux")]
fn closed_ports(shared: &Shared, side: &SealedSide) {
    use std::os::fd::AsRawFd;
    let fd = side.socket.as_raw_fd();
    for _ in 0..ERRORS_PER_WAKE {
        let Ok(found) = side
            .socket
            .try_io(tokio::io::Interest::ERROR, || unreachable::next_closed(fd))
        else {
            return;
        };
        let Some(addr) = found else { continue };
        let Some(peer) = shared
            .peers_snapshot()
            .into_iter()
            .find(|p| p.seals_to(addr))
        else {
            continue;
        };
        debug!(peer = %peer.node_addr(), %addr, "membership port closed");
        shared.metrics.sealed_event(SealedEvent::PortClosed);
        // Until a new connection brings new keys, membership to the peer goes over QUIC: the
        // check that follows must reach a peer that restarted on another sealed port, or one
        // behind a firewall that refuses this port only, and QUIC's answer is authenticated.
        peer.set_sealed(None);
        let event = PeerEvent::PortClosed {
            peer: peer.id,
            addr,
        };
        if let Some(inbox) = shared.inbox.senders() {
            let _ = inbox.peers.try_send(event);
        }
    }
}

/// ICMP errors taken per wake of the sealed socket's reader, so a flood of them (forged or
/// not) cannot keep it from the datagrams.
#[cfg(target_os = "linux")]
const ERRORS_PER_WAKE: usize = 64;

#[cfg(not(target_os = "linux"))]
fn closed_ports(_shared: &Shared, _side: &SealedSide) {}

fn take_packet(
    shared: &Shared,
    side: &SealedSide,
    packet: &[u8],
    from: SocketAddr,
) -> Result<(), SealedError> {
    match codec::parse(packet)? {
        Packet::Sealed {
            key_id,
            counter,
            bytes,
        } => {
            let max = shared.config.limits.membership;
            let (peer, payload) = side.keys().open(key_id, counter, bytes, max)?;
            deliver(shared, peer, payload);
        }
        Packet::Notice { key_id } => {
            let forgot = shared
                .peers_snapshot()
                .iter()
                .any(|p| p.forget_key(key_id, from));
            if forgot {
                debug!(%from, "peer does not know our key: membership back on QUIC");
                shared.metrics.sealed_event(SealedEvent::NoticeTaken);
            }
        }
    }
    Ok(())
}

fn deliver(shared: &Shared, from: NodeId, payload: Vec<u8>) {
    shared.metrics.sealed_datagram(Direction::Received);
    if let Some(peer) = shared.existing_peer(from) {
        peer.answered();
    }
    shared.metrics.traffic(
        Channel::Membership,
        Direction::Received,
        1,
        payload.len() as u64,
    );
    let message = Message::new(from, Channel::Membership, payload.into());
    let delivered = shared
        .inbox
        .senders()
        .is_some_and(|inbox| inbox.membership.try_send(message).is_ok());
    if !delivered {
        shared
            .metrics
            .dropped(Channel::Membership, DropReason::InboxFull, 1);
    }
}

/// Counts a refused packet; an unknown key id is answered with a notice, so a sender whose
/// keys we lost (we restarted) goes back to QUIC and is re-keyed.
fn refused(shared: &Shared, side: &SealedSide, error: SealedError, from: SocketAddr) {
    shared.metrics.sealed_refused(error);
    if let SealedError::UnknownKey(key_id) = error {
        if side
            .socket
            .try_send_to(&codec::notice(key_id), from)
            .is_ok()
        {
            shared.metrics.sealed_event(SealedEvent::NoticeSent);
        }
    }
}

/// A fuzzable entry: parses `packet` and opens it with `key` as the receive path does.
pub fn open_with(key: &mut OpeningKey, packet: &[u8], max: usize) -> Result<Vec<u8>, SealedError> {
    match codec::parse(packet)? {
        Packet::Sealed { counter, bytes, .. } => key.open(counter, bytes, max),
        Packet::Notice { .. } => Err(SealedError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A send key usable from now, and now.
    fn fresh_key() -> (SendKey, Instant) {
        let key = SealingKey::new(1, &[3; codec::KEY_LEN]);
        let t = Instant::now();
        (
            SendKey::new(key, SocketAddr::from(([127, 0, 0, 1], 9)), t),
            t,
        )
    }

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn silence_starts_spells_on_quic_that_double() {
        let (mut send, t) = fresh_key();
        assert!(send.usable(t, || true), "the first datagram is sealed");
        assert!(
            send.usable(at(t, 1000), || true),
            "silent for the allowance, not past it"
        );
        assert!(!send.usable(at(t, 1001), || true), "silent too long: QUIC");
        assert!(!send.usable(at(t, 11_000), || true), "for a 10 s spell");
        assert!(send.usable(at(t, 11_002), || true), "then sealed again");
        send.heard(at(t, 19_000));
        assert!(send.usable(at(t, 20_000), || true));
        assert!(!send.usable(at(t, 21_001), || true), "silent again");
        assert!(!send.usable(at(t, 41_000), || true), "a 20 s spell");
        assert!(send.usable(at(t, 41_002), || true));
    }

    #[test]
    fn replies_start_no_silence() {
        let (mut send, t) = fresh_key();
        send.heard(t);
        assert!(
            send.usable(at(t, 10), || true),
            "an ack to the peer's probe"
        );
        assert!(
            send.usable(at(t, 3_000), || true),
            "the ack did not start a silence"
        );
        assert!(
            send.usable(at(t, 4_000), || true),
            "a probe 3 s later did, 1 s ago"
        );
        assert!(!send.usable(at(t, 4_001), || true));
    }

    #[test]
    fn datagrams_nobody_answers_start_no_silence() {
        let (mut send, t) = fresh_key();
        assert!(send.usable(t, || false), "gossip, which is never answered");
        assert!(
            send.usable(at(t, 5_000), || true),
            "a probe long after gossip: no silence yet"
        );
        assert!(
            send.usable(at(t, 6_000), || false),
            "gossip within the allowance"
        );
        assert!(
            !send.usable(at(t, 6_001), || false),
            "the probe went unanswered"
        );
    }
}
