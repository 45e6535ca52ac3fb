//! Forgetting peers that are gone, so their records do not pile up.
//!
//! A record ([`Peer`]) holds its queues, four tasks, and the peer's sealed keys here and in the
//! key table; before, every node id ever connected kept one until the endpoint closed. A record
//! is forgotten when the caller says so ([`Endpoint::forget`](crate::Endpoint::forget)), or by
//! the sweep once the peer has no connection, nothing waits on it, and it has been neither sent
//! to, heard from nor connected for [`TransportConfig::forget_peers_after`]. A later send makes
//! a new record and dials afresh, and the new connection brings new sealed keys, as after a
//! restart.
//!
//! [`TransportConfig::forget_peers_after`]: crate::TransportConfig::forget_peers_after

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use quinn::Connection;
use tracing::debug;

use crate::endpoint::Shared;
use crate::peer::Peer;
use crate::wire::code;

/// Shortest time between two sweeps, however short `forget_peers_after` is.
const SWEEP_MIN: Duration = Duration::from_millis(10);

/// Sweeps a record must go unused for before it is forgotten. Rounds are at least a quarter of
/// `forget_peers_after` apart, and a use noted during one round counts from its start: four
/// whole rounds after it, the record has been unused for at least `forget_peers_after`.
const ROUNDS_UNUSED: u64 = 5;

/// Forgets unused records every quarter of `forget_peers_after`, until the endpoint stops.
pub(crate) async fn sweep(shared: Arc<Shared>) {
    let every = (shared.config.forget_peers_after / 4).max(SWEEP_MIN);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shared.stopped() => return,
        }
        let round = shared.sweeps.fetch_add(1, Ordering::Relaxed) + 1;
        for peer in shared.take_peers(|peer| unused(peer, round)) {
            debug!(peer = %peer.node_addr(), "forgetting an unused peer");
            let_go(&shared, &peer);
        }
    }
}

/// Whether `peer` can be forgotten at sweep `round`: no connection, no work, long unused.
fn unused(peer: &Peer, round: u64) -> bool {
    peer.current().is_none()
        && !peer.has_work()
        && !crate::bulk::busy(peer)
        && peer.unused_rounds(round) >= ROUNDS_UNUSED
}

/// Lets go of a record already taken out of the peer table: closes its connections, ends its
/// tasks (which count what was still queued as lost) and drops its sealed keys.
pub(crate) fn let_go(shared: &Shared, peer: &Peer) {
    release(shared, peer);
    shared.metrics.peer_forgotten();
}

/// Lets go of what a forgotten record holds. Retired first: a dial under way when the record
/// was forgotten installs its connection and keys after this, and then sees the record retired
/// and releases them itself ([`release_late`]).
fn release(shared: &Shared, peer: &Peer) {
    peer.retire();
    if let Some(live) = peer.current() {
        live.conn.close(code::NORMAL.into(), b"forgotten");
    }
    crate::bulk::close(peer);
    peer.set_sealed(None);
    if let Some(sealed) = &shared.sealed {
        sealed.forget(peer.id);
    }
}

/// Lets go of what a connection installed on `peer` took after the record was forgotten: the
/// connection, out of the record first (its close then tells no one of a disconnection of a
/// connection never announced), and the one receive key it took — not all of the peer's, as
/// [`release`] drops them: a new record of the same peer may have keyed meanwhile.
pub(crate) fn release_late(
    shared: &Shared,
    peer: &Peer,
    conn: &Connection,
    receive_key: Option<u32>,
) {
    peer.live.send_if_modified(|current| match current {
        Some(live) if live.same_connection(conn) => current.take().is_some(),
        _ => false,
    });
    conn.close(code::NORMAL.into(), b"forgotten");
    peer.set_sealed(None);
    if let (Some(sealed), Some(key)) = (&shared.sealed, receive_key) {
        sealed.forget_receive_key(peer.id, key);
    }
}
