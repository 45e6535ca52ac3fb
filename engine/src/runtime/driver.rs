//! The task that owns a node's `Core`: it feeds the core what arrives from the transport, the
//! clock and the application, and carries out the effects the core produces.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use foundation_transport::{Channel, Endpoint, Inbox, Message, NodeAddr, SendMode};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant as TokioInstant;
use tracing::{debug, info, warn};

use super::cluster_config::{mirror_apply, Mirror};
use super::metrics::MembershipMetrics;
use super::timers::Timers;
use crate::core::{Command, Core, Input};
use crate::discovery::Candidate;
use crate::effects::{Effect, Event};
use crate::membership::{MemberView, MembershipEvent};
use crate::replication::{ReplicationEvent, Write};
use crate::services::Directory;
use crate::time::Instant;

/// Least time between two join attempts at the same address.
const JOIN_RETRY_MIN: Duration = Duration::from_secs(3);
/// How often metrics are refreshed and, while we know no live member, seeds retried.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);
/// Longest a join attempt (QUIC handshake and hello) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the node handle asks of the driver.
pub(crate) enum Request {
    Core(Command),
    /// A local write to a replicated keyspace, answered once applied here.
    Write(
        Write,
        oneshot::Sender<Result<(), crate::replication::ReplicationError>>,
    ),
    /// Own (or stop owning) an ephemeral entry, answered once applied here and the directory
    /// reflects it.
    SetEphemeral {
        keyspace: &'static str,
        name: String,
        value: Option<Vec<u8>>,
        done: oneshot::Sender<Result<(), crate::core::WriteError>>,
    },
    /// Leave gracefully, then stop.
    Stop(oneshot::Sender<()>),
    /// Stop at once without telling anyone, as a crash would.
    Abort(oneshot::Sender<()>),
}

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
    pub events: broadcast::Sender<MembershipEvent>,
    /// Replicated key changes, for config watchers.
    pub replication_events: broadcast::Sender<ReplicationEvent>,
    /// Live replicated values, for local reads.
    pub mirror: Mirror,
    pub metrics: MembershipMetrics,
    pub timers: Timers,
    pub join_attempts: BTreeMap<SocketAddr, TokioInstant>,
    /// Running discovery strategies, stopped (advertisements withdrawn) when the node stops.
    pub discovery: Vec<crate::discovery::DiscoveryHandle>,
    /// Where the services directory is published, rebuilt when what it is built from changes.
    pub directory: watch::Sender<Arc<Directory>>,
}

impl Driver {
    pub async fn run(mut self) {
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
        for seed in self.seeds.clone() {
            self.consider(Candidate {
                addr: seed,
                id: None,
                source: "seed",
            });
        }
        loop {
            self.carry_out_effects().await;
            let next_timer = self.timers.next_due().map(|at| self.epoch + at.elapsed());
            let sleep = tokio::time::sleep_until(
                next_timer.unwrap_or_else(|| TokioInstant::now() + HOUSEKEEPING_INTERVAL),
            );
            tokio::select! {
                request = self.requests.recv() => match request {
                    Some(Request::Core(command)) => self.core.handle(self.now(), Input::Command(command)),
                    Some(Request::Write(write, done)) => self.write(write, done).await,
                    Some(Request::SetEphemeral { keyspace, name, value, done }) => {
                        let result = self.core.set_ephemeral(self.now(), keyspace, &name, value);
                        self.carry_out_effects().await;
                        let _ = done.send(result);
                    }
                    Some(Request::Stop(done)) => return self.stop(done).await,
                    Some(Request::Abort(done)) => return self.abort(done).await,
                    None => return,
                },
                Some(message) = self.inbox.membership.recv() => self.deliver(message),
                Some(message) = self.inbox.coordination.recv() => self.deliver(message),
                Some(message) = self.inbox.replication.recv() => self.deliver(message),
                Some(candidate) = self.candidates.recv() => self.consider(candidate),
                _ = sleep => self.fire_due_timers(),
                _ = housekeeping.tick() => self.housekeeping(),
            }
        }
    }

    fn now(&self) -> Instant {
        Instant::from_elapsed(self.epoch.elapsed())
    }

    fn deliver(&mut self, message: Message) {
        let input = Input::Received {
            from: message.from,
            channel: message.channel,
            payload: message.payload,
        };
        self.core.handle(self.now(), input);
    }

    fn fire_due_timers(&mut self) {
        let now = self.now();
        while let Some((scheduled, timer)) = self.timers.pop_due(now) {
            self.core.handle(now, Input::Timer { scheduled, timer });
        }
    }

    async fn carry_out_effects(&mut self) {
        let mut directory_changed = false;
        while let Some(effect) = self.core.poll_effect() {
            match effect {
                Effect::Send {
                    to,
                    channel,
                    payload,
                } => self.send(to, channel, payload).await,
                Effect::Timer { at, timer } => {
                    if !self.timers.arm(at, timer) {
                        warn!("timer bound reached; dropping a timer");
                    }
                }
                Effect::Event(Event::Membership(event)) => {
                    directory_changed = true;
                    self.publish(event);
                }
                Effect::Event(Event::Replication(event)) => {
                    let ReplicationEvent::KeyChanged { keyspace, .. } = &event;
                    directory_changed |= self.core.ephemeral_keyspace(keyspace);
                    mirror_apply(&self.mirror, &event);
                    let _ = self.replication_events.send(event);
                }
            }
        }
        if directory_changed {
            self.directory
                .send_replace(Arc::new(Directory::build(&self.core)));
        }
    }

    /// Applies a local write and answers only after its effects (the mirror update included)
    /// are carried out, so a read right after the write sees it.
    async fn write(
        &mut self,
        write: Write,
        done: oneshot::Sender<Result<(), crate::replication::ReplicationError>>,
    ) {
        let result = self.core.write(self.now(), write);
        self.carry_out_effects().await;
        let _ = done.send(result);
    }

    async fn send(&mut self, to: NodeAddr, channel: Channel, payload: bytes::Bytes) {
        // Never block the core: a full queue drops the message (and the transport counts it);
        // every protocol above tolerates loss.
        let result = match channel {
            Channel::Membership => self.endpoint.send_datagram(to, payload),
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

    fn publish(&mut self, event: MembershipEvent) {
        log_event(&event);
        self.view
            .send_replace(self.core.members().cloned().collect());
        self.metrics.sync(&self.core);
        // No subscriber is fine; a lagging one loses the oldest events (tokio broadcast).
        let _ = self.events.send(event);
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

    fn housekeeping(&mut self) {
        self.metrics.sync(&self.core);
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

    async fn stop(mut self, done: oneshot::Sender<()>) {
        for handle in std::mem::take(&mut self.discovery) {
            handle.stop().await;
        }
        self.core.handle(self.now(), Input::Command(Command::Leave));
        self.carry_out_effects().await;
        // QUIC's close abandons unsent stream data: give the "leaving" notices a moment to go
        // out, so peers record "left" rather than waiting to declare us failed.
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.endpoint.close().await;
        let _ = done.send(());
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

fn log_event(event: &MembershipEvent) {
    match event {
        MembershipEvent::Up(m) => info!(member = %m.id.short(), addr = %m.addr, "member up"),
        MembershipEvent::Updated(m) => info!(member = %m.id.short(), "member metadata updated"),
        MembershipEvent::Failed(m) => {
            warn!(member = %m.id.short(), addr = %m.addr, "member failed")
        }
        MembershipEvent::Left(m) => info!(member = %m.id.short(), "member left"),
        MembershipEvent::Joined => info!("joined the cluster"),
        MembershipEvent::Isolated => warn!("no live members: isolated"),
    }
}
