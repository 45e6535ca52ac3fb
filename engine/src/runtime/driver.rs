//! The task that owns a node's `Core`: it feeds the core what arrives from the transport, the
//! clock and the application, and carries out the effects the core produces.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use foundation_transport::{Channel, Endpoint, Inbox, Message, NodeAddr, PeerEvent, SendMode};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant as TokioInstant;
use tracing::{debug, info, warn};

use super::cluster_config::{mirror_apply, Mirror, CONFIG_KEYSPACE};
use super::metrics::{MembershipMetrics, ReplicationMetrics};
use super::request::{MajorityWait, Request};
use super::storage::{BatchOutcome, NodeStorage};
use crate::discovery::Candidate;
use foundation_core::effects::{Effect, Event};
use foundation_core::membership::{MemberState, MemberView, MembershipEvent};
use foundation_core::node::{Command, Core, Input};
use foundation_core::replication::{
    Durability, Origin, ReplicationError, ReplicationEvent, RestoreError, RestoredKeyspace,
    Snapshot, Write,
};
use foundation_core::services::{Directory, DirectoryChanges};
use foundation_core::time::Instant;
use foundation_core::NodeId;

/// Least time between two join attempts at the same address.
const JOIN_RETRY_MIN: Duration = Duration::from_secs(3);
/// How often metrics are refreshed and, while we know no live member, seeds retried.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);
/// Longest a join attempt (QUIC handshake and hello) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a bulk transfer (a large keyspace's full state) may take to send; anti-entropy
/// offers it again later if it does not make it.
const BULK_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the connection to a member declared failed stays open: its last words (a leave
/// notice) may trail the gossip that declared it down by a round trip and a scheduling delay.
const FAILED_DISCONNECT_GRACE: Duration = Duration::from_secs(1);
/// Largest bulk transfer read into memory; the sender's own cap is lower.
const BULK_RECEIVE_MAX: u64 = foundation_core::replication::FULL_STATE_BYTES_MAX as u64 + 64 * 1024;

pub(crate) struct Driver {
    pub core: Core,
    pub endpoint: Endpoint,
    pub inbox: Inbox,
    pub epoch: TokioInstant,
    pub requests: mpsc::Receiver<Request>,
    pub requests_tx: mpsc::Sender<Request>,
    pub candidates: mpsc::Receiver<Candidate>,
    pub seeds: Vec<SocketAddr>,
    pub view: watch::Sender<Vec<MemberView>>,
    /// Members SWIM suspects, refreshed on every membership event and housekeeping tick.
    pub suspects: watch::Sender<BTreeSet<NodeId>>,
    pub events: broadcast::Sender<MembershipEvent>,
    /// Changes of config keys, for config watchers.
    pub config_events: broadcast::Sender<ReplicationEvent>,
    /// Live replicated values, for local reads.
    pub mirror: Mirror,
    /// Holder counts of majority writes still awaited, by (keyspace, origin, seq).
    pub majority_waits: BTreeMap<(String, Origin, u64), tokio::sync::watch::Sender<usize>>,
    pub metrics: MembershipMetrics,
    pub replication_metrics: ReplicationMetrics,
    pub join_attempts: BTreeMap<SocketAddr, TokioInstant>,
    /// Timers the core refused (its bound reached) that a warning already reported.
    pub timers_dropped: u64,
    /// Variables: writes awaiting their outcome, the published view, the watchers.
    pub vars: super::vars::VarsRuntime,
    /// Running discovery strategies, stopped (advertisements withdrawn) when the node stops.
    pub discovery: Vec<crate::discovery::DiscoveryHandle>,
    /// Where the services directory is published when what it is derived from changes.
    pub directory: watch::Sender<Arc<Directory>>,
    /// The directory as last published, brought up to date with each batch's changes.
    pub directory_now: Directory,
    /// The node's store, if it keeps its keyspaces on disk.
    pub storage: Option<NodeStorage>,
    /// What became of the batches handed to the store.
    pub batch_outcomes: mpsc::UnboundedReceiver<BatchOutcome>,
    /// Answers to local writes that wait for their storage batch, by batch.
    pub durable_replies: BTreeMap<u64, Vec<DurableReply>>,
    /// Placement: decisions to the supervisor, the published view.
    pub placement: super::placement::PlacementRuntime,
    /// Caches: replies owed and compute functions waiting for their grant.
    pub caches: super::caches::CachesRuntime,
    /// Where this node's own metadata is published for what it shows operators.
    pub own_metadata: watch::Sender<Arc<foundation_core::membership::NodeMetadata>>,
}

/// An answer to a local write, owed once the write is durable here.
pub(crate) enum DurableReply {
    Write(oneshot::Sender<Result<(), ReplicationError>>),
    Majority(
        oneshot::Sender<Result<MajorityWait, ReplicationError>>,
        MajorityWait,
    ),
    Restore(
        oneshot::Sender<Result<Vec<RestoredKeyspace>, RestoreError>>,
        Vec<RestoredKeyspace>,
    ),
}

impl DurableReply {
    fn send(self, result: Result<(), ReplicationError>) {
        match self {
            DurableReply::Write(done) => {
                let _ = done.send(result);
            }
            DurableReply::Majority(done, wait) => {
                let _ = done.send(result.map(|()| wait));
            }
            DurableReply::Restore(done, restored) => {
                let result = result.map(|()| restored).map_err(|e| match e {
                    ReplicationError::NotDurable { reason } => RestoreError::NotDurable { reason },
                    other => RestoreError::NotDurable {
                        reason: other.to_string(),
                    },
                });
                let _ = done.send(result);
            }
        }
    }
}

impl Driver {
    pub async fn run(mut self) {
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
        self.publish_own_metadata();
        for seed in self.seeds.clone() {
            self.consider(Candidate {
                addr: seed,
                id: None,
                source: "seed",
            });
        }
        loop {
            self.carry_out_effects().await;
            if !self.core.placement().is_handing_off()
                && !self.placement.stop_after_handoffs.is_empty()
            {
                let waiting = std::mem::take(&mut self.placement.stop_after_handoffs);
                return self.stop(waiting).await;
            }
            let next_timer = self.core.poll_timeout().map(|at| self.epoch + at.elapsed());
            let sleep = tokio::time::sleep_until(
                next_timer.unwrap_or_else(|| TokioInstant::now() + HOUSEKEEPING_INTERVAL),
            );
            tokio::select! {
                request = self.requests.recv() => match request {
                    Some(Request::Core(command)) => self.core.handle(self.now(), Input::Command(command)),
                    Some(Request::Input(input)) => self.core.handle(self.now(), input),
                    Some(Request::Write(write, done)) => self.write(write, done).await,
                    Some(Request::SetEphemeral { keyspace, name, value, done }) => {
                        let result = self.core.set_ephemeral(self.now(), keyspace, &name, value);
                        self.carry_out_effects().await;
                        let _ = done.send(result);
                    }
                    Some(Request::SetHealth { service, local, health, done }) => {
                        let now = self.now();
                        let result = self.core.set_instance_health(now, &service, local, health);
                        self.carry_out_effects().await;
                        let _ = done.send(result.map(|_| ()));
                    }
                    Some(Request::WriteMajority(write, timeout, done)) => {
                        self.write_majority(write, timeout, done).await
                    }
                    Some(Request::Vars(request)) => {
                        let now = self.now();
                        self.vars.request(&mut self.core, now, request);
                    }
                    Some(Request::Snapshot(done)) => {
                        let _ = done.send(self.core.snapshot(self.now()));
                    }
                    Some(Request::Restore(snapshot, done)) => self.restore(*snapshot, done).await,
                    Some(Request::SetMetadata(metadata, done)) => {
                        self.set_metadata(metadata, done).await
                    }
                    Some(Request::ForceLeave(node, done)) => {
                        let result = self.core.force_leave(self.now(), node);
                        self.carry_out_effects().await;
                        let _ = done.send(result);
                    }
                    Some(Request::Placement(request)) => {
                        let now = self.now();
                        self.placement.request(&mut self.core, now, request);
                    }
                    Some(Request::Cache(request)) => {
                        let now = self.now();
                        self.caches.request(&mut self.core, now, request);
                    }
                    Some(Request::Stop(done)) => {
                        if self.placement.stop_after_handoffs.is_empty() {
                            self.leave().await;
                        }
                        // Instances being handed over finish first (within the handoff
                        // timeout): the loop goes on until they are done.
                        self.placement.stop_after_handoffs.push(done);
                    }
                    Some(Request::Abort(done)) => return self.abort(done).await,
                    None => return,
                },
                Some(message) = self.inbox.membership.recv() => self.deliver(message),
                Some(message) = self.inbox.coordination.recv() => self.deliver(message),
                Some(message) = self.inbox.replication.recv() => self.deliver(message),
                Some(transfer) = self.inbox.transfers.recv() => self.receive_bulk(transfer),
                Some(event) = self.inbox.peers.recv() => self.peer_event(event),
                Some(candidate) = self.candidates.recv() => self.consider(candidate),
                Some(outcome) = self.batch_outcomes.recv() => self.persisted(outcome),
                _ = sleep => self.core.handle_timeout(self.now()),
                _ = housekeeping.tick() => self.housekeeping(),
            }
        }
    }

    fn now(&self) -> Instant {
        Instant::from_elapsed(self.epoch.elapsed())
    }

    /// Connectivity news from the transport: only a closed port is the core's business
    /// (connections come and go with use).
    fn peer_event(&mut self, event: PeerEvent) {
        if let PeerEvent::PortClosed { peer, .. } = event {
            self.core
                .handle(self.now(), Input::PortClosed { node: peer });
        }
    }

    fn deliver(&mut self, message: Message) {
        let input = Input::Received {
            from: message.from,
            channel: message.channel,
            payload: message.payload,
        };
        self.core.handle(self.now(), input);
    }

    async fn carry_out_effects(&mut self) {
        let mut directory_changes = DirectoryChanges::default();
        // Told once the directory follows them: a subscriber looks services up on the news.
        let mut told = Vec::new();
        while let Some(effect) = self.core.poll_effect() {
            if let Effect::Event(event) = &effect {
                directory_changes.note(event);
            }
            match effect {
                Effect::Send {
                    to,
                    channel,
                    payload,
                } => self.send(to, channel, payload).await,
                Effect::Event(Event::Vars(event)) => self.vars.event(&self.core, event),
                Effect::Event(Event::Placement(event)) => self.placement.event(&self.core, event),
                Effect::Event(Event::Cache(event)) => self.caches.event(self.epoch, event),
                Effect::Event(Event::Membership(event)) => {
                    self.placement.publish(&self.core);
                    self.drop_connection_of_failed(&event);
                    self.forget_removed(&event);
                    self.publish(&event);
                    told.push(event);
                }
                Effect::Persist { seq, batch } => match &self.storage {
                    Some(storage) => storage.submit(seq, batch),
                    None => warn!(
                        seq,
                        "a storage batch but no store; the core persists only with one"
                    ),
                },
                Effect::Event(Event::Replication(ReplicationEvent::Acked {
                    keyspace,
                    origin,
                    seq,
                    holders,
                    ..
                })) => {
                    if let Some(count) = self.majority_waits.get(&(keyspace, origin, seq)) {
                        count.send_replace(holders);
                    }
                }
                Effect::Event(Event::Replication(event)) => {
                    let ReplicationEvent::KeyChanged { keyspace, .. } = &event else {
                        continue;
                    };
                    let config = keyspace == CONFIG_KEYSPACE;
                    mirror_apply(&self.mirror, &event);
                    // Config watchers hear only config changes, not every registry update.
                    if config {
                        let _ = self.config_events.send(event);
                    }
                }
            }
        }
        if self
            .directory_now
            .needs_update(&self.core, &directory_changes)
        {
            self.directory_now.update(&self.core, &directory_changes);
            self.directory
                .send_replace(Arc::new(self.directory_now.clone()));
        }
        self.vars.publish_alive(&self.core, !told.is_empty());
        for event in told {
            // No subscriber is fine; a lagging one loses the oldest events (tokio broadcast).
            let _ = self.events.send(event);
        }
    }

    /// Replaces our metadata and answers once its effects (placement by the new tags) are
    /// carried out, so a read of this node's placement right after sees them.
    async fn set_metadata(
        &mut self,
        mut metadata: foundation_core::membership::NodeMetadata,
        done: oneshot::Sender<()>,
    ) {
        // The application rarely knows the address the node advertises for HTTP; without it,
        // the other members could no longer reach this node's pages.
        if metadata.http.is_none() {
            let me = self.core.membership().me().node;
            metadata.http = self.core.membership().metadata_of(me).and_then(|m| m.http);
        }
        let command = Input::Command(Command::SetMetadata(metadata));
        self.core.handle(self.now(), command);
        self.publish_own_metadata();
        self.carry_out_effects().await;
        let _ = done.send(());
    }

    /// Publishes our metadata as the core holds it (the one copy operators' pages read).
    fn publish_own_metadata(&self) {
        let me = self.core.membership().me().node;
        if let Some(metadata) = self.core.membership().metadata_of(me) {
            self.own_metadata.send_replace(Arc::new(metadata.clone()));
        }
    }

    /// Applies a local write and answers only after its effects (the mirror update included)
    /// are carried out, so a read right after the write sees it.
    async fn write(
        &mut self,
        write: Write,
        done: oneshot::Sender<Result<(), foundation_core::replication::ReplicationError>>,
    ) {
        let keyspace = write.keyspace.clone();
        let result = self.core.write(self.now(), write);
        self.carry_out_effects().await;
        match result {
            Ok(_) => self.reply_when_durable(&keyspace, DurableReply::Write(done)),
            Err(error) => {
                let _ = done.send(Err(error));
            }
        }
    }

    /// Merges a snapshot, and answers once the merge is durable here (every keyspace it
    /// touched persists alike: none of them is ephemeral).
    async fn restore(
        &mut self,
        snapshot: Snapshot,
        done: oneshot::Sender<Result<Vec<RestoredKeyspace>, RestoreError>>,
    ) {
        let result = self.core.restore_snapshot(self.now(), &snapshot);
        self.carry_out_effects().await;
        match (result, snapshot.keyspaces.first()) {
            (Ok(restored), Some(first)) => {
                let reply = DurableReply::Restore(done, restored);
                self.reply_when_durable(&first.name.clone(), reply);
            }
            (result, _) => {
                let _ = done.send(result);
            }
        }
    }

    /// Answers a local write that was applied once it is durable here.
    fn reply_when_durable(&mut self, keyspace: &str, reply: DurableReply) {
        match self.core.replication().durability(keyspace) {
            Durability::Now => reply.send(Ok(())),
            Durability::After(seq) => self.durable_replies.entry(seq).or_default().push(reply),
            Durability::Failing => reply.send(Err(not_durable("an earlier batch failed"))),
        }
    }

    /// Storage finished batch `seq`: tells the core, and answers the writes that waited. A
    /// failure fails every write still waiting (later batches are not trusted until the core
    /// has written everything again).
    fn persisted(&mut self, BatchOutcome { seq, result }: BatchOutcome) {
        let now = self.now();
        match result {
            Ok(()) => {
                self.core.handle(now, Input::Persisted { upto: seq });
                let later = self.durable_replies.split_off(&(seq + 1));
                let ready = std::mem::replace(&mut self.durable_replies, later);
                for reply in ready.into_values().flatten() {
                    reply.send(Ok(()));
                }
            }
            Err(error) => {
                warn!(seq, %error, "a storage batch failed; writes are not durable until it recovers");
                self.core.handle(now, Input::PersistFailed { seq });
                let reason = error.to_string();
                for reply in std::mem::take(&mut self.durable_replies)
                    .into_values()
                    .flatten()
                {
                    reply.send(Err(not_durable(&reason)));
                }
            }
        }
    }

    /// Applies a local write that asks for acks, and answers with what to wait on once its
    /// effects (the pushes, the mirror update) are carried out.
    async fn write_majority(
        &mut self,
        write: Write,
        timeout: Duration,
        done: oneshot::Sender<Result<MajorityWait, foundation_core::replication::ReplicationError>>,
    ) {
        // Waiters that gave up (their receiver is gone) need no more counting.
        self.majority_waits.retain(|_, count| !count.is_closed());
        let now = self.now();
        let keyspace = write.keyspace.clone();
        let answer = self
            .core
            .write_acked(now, write, now + timeout)
            .map(|ticket| {
                let (count, holders) = tokio::sync::watch::channel(1);
                self.majority_waits
                    .insert((ticket.keyspace.clone(), ticket.origin, ticket.seq), count);
                (ticket.majority(), holders)
            });
        self.carry_out_effects().await;
        match answer {
            Ok(wait) => self.reply_when_durable(&keyspace, DurableReply::Majority(done, wait)),
            Err(error) => {
                let _ = done.send(Err(error));
            }
        }
    }

    /// Reads a bulk transfer in its own task (a large state must not hold up the driver) and
    /// feeds it back as a request once complete.
    fn receive_bulk(&mut self, transfer: foundation_transport::IncomingTransfer) {
        let from = transfer.from;
        if transfer.len > BULK_RECEIVE_MAX {
            debug!(peer = %from, len = transfer.len, "bulk transfer too large; refused");
            return;
        }
        let requests = self.requests_tx.clone();
        tokio::spawn(async move {
            match transfer.read_to_end().await {
                Ok(payload) => {
                    let input = Input::Received {
                        from,
                        channel: Channel::Bulk,
                        payload: payload.into(),
                    };
                    let _ = requests.send(Request::Input(input)).await;
                }
                Err(error) => debug!(peer = %from, %error, "bulk transfer failed"),
            }
        });
    }

    async fn send(&mut self, to: NodeAddr, channel: Channel, payload: bytes::Bytes) {
        // Never block the core: a full queue drops the message (and the transport counts it);
        // every protocol above tolerates loss.
        let result = match channel {
            Channel::Membership => self.endpoint.send_datagram(to, payload),
            Channel::Bulk => {
                // A transfer waits for the peer to take all of it: in its own task.
                let endpoint = self.endpoint.clone();
                tokio::spawn(async move {
                    if let Err(error) = endpoint.send_bulk(to, payload, BULK_SEND_TIMEOUT).await {
                        debug!(peer = %to, %error, "bulk transfer dropped");
                    }
                });
                Ok(())
            }
            _ => {
                self.endpoint
                    .send(to, channel, payload, SendMode::NoWait)
                    .await
            }
        };
        if let Err(error) = result {
            debug!(peer = %to, %channel, %error, "send dropped");
        }
    }

    /// Publishes the member table `event` changed; the event itself goes out later.
    fn publish(&mut self, event: &MembershipEvent) {
        log_event(event);
        self.view.send_replace(self.core.members().collect());
        self.publish_suspects();
        self.metrics.sync(&self.core);
    }

    /// Closes the connection to a member declared failed, a moment later, unless by then a
    /// life of the node is alive or it turned out to have left. Membership is the failure
    /// detector: requests in flight to the dead node end then (and are retried elsewhere)
    /// instead of at the connection's idle timeout, which can then be long enough that idle
    /// connections stay quiet.
    ///
    /// Not at once: SWIM's gossip of a departure can beat the leaver's own notice here (the
    /// members it told first gossip on arrival), and closing the connection discards what the
    /// leaver already sent on it, notice included; we would record a failure for a leave.
    fn drop_connection_of_failed(&self, event: &MembershipEvent) {
        let MembershipEvent::Failed(failed) = event else {
            return;
        };
        let (endpoint, view, node) = (self.endpoint.clone(), self.view.subscribe(), failed.id);
        tokio::spawn(async move {
            tokio::time::sleep(FAILED_DISCONNECT_GRACE).await;
            if close_after_grace(&view.borrow(), node) {
                endpoint.disconnect(node);
            }
        });
    }

    /// Lets the transport forget a member removed from the table (reaped after `reap_after`,
    /// or forced out): its record, queues and sealed keys go now, not after
    /// `forget_peers_after` unused. Should it come back, the next send dials it afresh. Not
    /// while connected: a new life restarted under the node's id may have connected before
    /// its join made it a member again (the sweep forgets the record once it is unused).
    fn forget_removed(&self, event: &MembershipEvent) {
        if let MembershipEvent::Removed(gone) = event {
            if !self.endpoint.is_connected(gone.id) {
                self.endpoint.forget(gone.id);
            }
        }
    }

    /// Joins `candidate` unless it is already a live member or was tried moments ago.
    fn consider(&mut self, candidate: Candidate) {
        let me = self.endpoint.local();
        let known_alive = self
            .core
            .membership()
            .alive()
            .any(|m| Some(m.id) == candidate.id || m.addr == candidate.addr);
        if candidate.addr == me.addr || Some(me.id) == candidate.id || known_alive {
            return;
        }
        let now = TokioInstant::now();
        if self
            .join_attempts
            .get(&candidate.addr)
            .is_some_and(|last| now - *last < JOIN_RETRY_MIN)
        {
            return;
        }
        self.join_attempts.insert(candidate.addr, now);
        let (endpoint, requests) = (self.endpoint.clone(), self.requests_tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect(candidate.addr)).await {
                Ok(Ok(peer)) => {
                    let _ = requests.send(Request::Core(Command::Join(peer))).await;
                }
                Ok(Err(error)) => {
                    debug!(addr = %candidate.addr, source = candidate.source, %error, "join attempt failed")
                }
                Err(_) => debug!(addr = %candidate.addr, "join attempt timed out"),
            }
        });
    }

    /// Tells watchers which members are suspected, when that changed. Foca does not report
    /// suspicions, so this is polled: on every membership event and once a second.
    fn publish_suspects(&self) {
        let now: BTreeSet<NodeId> = self.core.membership().suspects().collect();
        self.suspects.send_if_modified(|held| {
            let changed = *held != now;
            *held = now;
            changed
        });
    }

    fn housekeeping(&mut self) {
        self.publish_suspects();
        let dropped = self.core.timers_dropped();
        if dropped > self.timers_dropped {
            warn!(dropped, "timer bound reached; the core dropped timers");
            self.timers_dropped = dropped;
        }
        self.metrics.sync(&self.core);
        self.replication_metrics.sync(&self.core);
        self.vars.sync_metrics(&self.core);
        self.placement.sync_metrics(&self.core);
        self.caches.sync_metrics(&self.core);
        let horizon = TokioInstant::now() - JOIN_RETRY_MIN * 10;
        self.join_attempts.retain(|_, last| *last > horizon);
        if self.core.membership().alive().next().is_none() {
            for seed in self.seeds.clone() {
                self.consider(Candidate {
                    addr: seed,
                    id: None,
                    source: "seed",
                });
            }
        }
    }

    /// Withdraws discovery and starts the leave (placement hands over first; the membership
    /// hears of it once that is done).
    async fn leave(&mut self) {
        for handle in std::mem::take(&mut self.discovery) {
            handle.stop().await;
        }
        self.core.handle(self.now(), Input::Command(Command::Leave));
    }

    async fn stop(mut self, waiting: Vec<oneshot::Sender<()>>) {
        self.carry_out_effects().await;
        // QUIC's close abandons unsent stream data: give the "leaving" notices a moment to go
        // out, so peers record "left" rather than waiting to declare us failed.
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.endpoint.close().await;
        for done in waiting {
            let _ = done.send(());
        }
    }
}

impl Driver {
    async fn abort(mut self, done: oneshot::Sender<()>) {
        for handle in std::mem::take(&mut self.discovery) {
            handle.stop().await;
        }
        self.endpoint.close().await;
        let _ = done.send(());
    }
}

/// Whether the connection to `node`, declared failed a grace ago, is to be closed now: unless
/// a life of it is alive again or its failure was corrected to a leave (a leaver closes its
/// connections itself).
fn close_after_grace(view: &[MemberView], node: NodeId) -> bool {
    !view
        .iter()
        .any(|m| m.id == node && matches!(m.state, MemberState::Alive | MemberState::Left))
}

fn not_durable(reason: &str) -> ReplicationError {
    ReplicationError::NotDurable {
        reason: reason.to_owned(),
    }
}

fn log_event(event: &MembershipEvent) {
    match event {
        MembershipEvent::Up(m) => info!(member = %m.id.short(), addr = %m.addr, "member up"),
        MembershipEvent::Updated(m) => info!(member = %m.id.short(), "member metadata updated"),
        MembershipEvent::Failed(m) => {
            warn!(member = %m.id.short(), addr = %m.addr, "member failed")
        }
        MembershipEvent::Left(m) => info!(member = %m.id.short(), "member left"),
        MembershipEvent::Removed(m) => {
            info!(member = %m.id.short(), "member removed from the table")
        }
        MembershipEvent::Joined => info!("joined the cluster"),
        MembershipEvent::Isolated => warn!("no live members: isolated"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view_of(node: NodeId, state: MemberState) -> Vec<MemberView> {
        vec![MemberView {
            id: node,
            addr: "127.0.0.1:1".parse().unwrap(),
            generation: 1,
            state,
            metadata: None,
            since: Instant::ZERO,
        }]
    }

    /// A failure that stood is closed; one corrected to a leave (the notice arrived after the
    /// gossip) or followed by a new life is not: that connection carries what the node says.
    #[test]
    fn only_a_failure_that_stood_through_the_grace_is_disconnected() {
        let node = NodeId::from_u128(7);
        assert!(close_after_grace(&view_of(node, MemberState::Failed), node));
        assert!(close_after_grace(&[], node), "forced out meanwhile");
        assert!(!close_after_grace(&view_of(node, MemberState::Left), node));
        assert!(!close_after_grace(&view_of(node, MemberState::Alive), node));
    }
}
