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

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

use crate::endpoint::Shared;
use crate::peer::Peer;
use crate::wire::code;

/// Shortest time between two sweeps, however short `forget_peers_after` is.
const SWEEP_MIN: Duration = Duration::from_millis(10);

/// Forgets unused records every quarter of `forget_peers_after`, until the endpoint stops.
pub(crate) async fn sweep(shared: Arc<Shared>) {
    let after = shared.config.forget_peers_after;
    let every = (after / 4).max(SWEEP_MIN);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shared.stopped() => return,
        }
        let now = Instant::now();
        for peer in shared.take_peers(|peer| unused(peer, now, after)) {
            debug!(peer = %peer.node_addr(), "forgetting an unused peer");
            let_go(&shared, &peer);
        }
    }
}

/// Whether `peer` can be forgotten: no connection, no work, unused for `after`.
fn unused(peer: &Peer, now: Instant, after: Duration) -> bool {
    peer.current().is_none()
        && !peer.has_work()
        && !crate::bulk::busy(peer)
        && peer.unused_for(now) >= after
}

/// Lets go of a record already taken out of the peer table: closes its connections, ends its
/// tasks (which count what was still queued as lost) and drops its sealed keys.
pub(crate) fn let_go(shared: &Shared, peer: &Peer) {
    if let Some(live) = peer.current() {
        live.conn.close(code::NORMAL.into(), b"forgotten");
    }
    crate::bulk::close(peer);
    peer.retire();
    peer.set_sealed(None);
    if let Some(sealed) = &shared.sealed {
        sealed.forget(peer.id);
    }
    shared.metrics.peer_forgotten();
}
