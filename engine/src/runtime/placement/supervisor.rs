//! The task that runs this node's placed instances: it starts a factory's future when the core
//! decides this node owns an instance, aborts it when the core decides otherwise, and starts it
//! again with backoff when it panics or returns while still owned here. It hands each run its
//! [`InstanceContext`]: the state a previous owner handed over, and an inbox of the messages
//! routed to the instance and of the request to hand it over.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use foundation_core::placement::Instance;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{info, warn};

/// What a factory makes: the instance's work, as a future the supervisor spawns.
pub type InstanceFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Makes the work of one shard (0 for a singleton) from its context.
pub type Factory = Arc<dyn Fn(InstanceContext) -> InstanceFuture + Send + Sync + 'static>;

/// Messages waiting for an instance to take them; past this, routed messages are dropped
/// (counted as `undelivered`, with a warning).
pub const INBOX_CAPACITY: usize = 1024;

/// What a run of an instance is given.
pub struct InstanceContext {
    /// The shard (0 for a singleton).
    pub shard: u32,
    /// The state its previous owner handed over (`end_handoff`), if it was handed over.
    pub handed_over: Option<Bytes>,
    inbox: mpsc::Receiver<Inbox>,
}

impl InstanceContext {
    /// The next message routed to the instance, or the request to hand it over; `None` once
    /// the instance is stopped here.
    pub async fn recv(&mut self) -> Option<Inbox> {
        self.inbox.recv().await
    }
}

/// What reaches a running instance.
pub enum Inbox {
    /// A message routed to it by key.
    Message(Bytes),
    /// `begin_handoff`: it moves to another node. Stop the work, give the state with
    /// [`super::HandoffReply::hand_over`]; the instance is stopped here once the next owner
    /// holds it.
    HandOff(super::HandoffReply),
}

/// First wait before starting an instance that panicked or returned; doubled per repeat.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between restarts.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A run this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// What the driver tells the supervisor.
pub(crate) enum Decision {
    Start(Instance),
    Stop(Instance),
    /// The state handed over for an instance about to start here.
    HandedOver(Instance, Bytes),
    BeginHandoff(Instance),
    Deliver(Instance, Bytes),
}

/// What a handle tells the supervisor: the factory of a workload, before it is declared.
pub(crate) struct Registration {
    pub name: String,
    pub factory: Factory,
}

/// Counters the handle and metrics read.
#[derive(Debug, Default)]
pub struct SupervisorCounters {
    /// Instances started by decision of the core.
    pub started: AtomicU64,
    /// Instances stopped by decision of the core.
    pub stopped: AtomicU64,
    /// Starts again after a panic or a return.
    pub restarts: AtomicU64,
    /// Runs that panicked.
    pub panics: AtomicU64,
    /// Routed messages the core delivered here that no run took (inbox full or closed).
    pub undelivered: AtomicU64,
    /// Duplicates the run-time detector reported here (should stay 0).
    pub duplicates: AtomicU64,
}

/// Internal notices from the tasks the supervisor spawned.
enum Notice {
    Exited { instance: Instance, run: u64 },
    Retry { instance: Instance, run: u64 },
}

struct Running {
    /// Which run of the instance this is: notices of earlier runs are stale.
    run: u64,
    abort: Option<AbortHandle>,
    /// The current run's inbox.
    inbox: Option<mpsc::Sender<Inbox>>,
    /// The state it was handed, given to every run (a restart after a panic starts from it).
    handed_over: Option<Bytes>,
    started: Instant,
    failures: u32,
}

struct Supervisor {
    factories: BTreeMap<String, Factory>,
    running: BTreeMap<Instance, Running>,
    /// Starts decided before the factory was registered.
    pending: Vec<Instance>,
    /// States handed over for instances not started yet.
    handed_over: BTreeMap<Instance, Bytes>,
    /// The driver's requests, for handoff replies.
    requests: mpsc::Sender<super::super::request::Request>,
    notices: mpsc::UnboundedSender<Notice>,
    counters: Arc<SupervisorCounters>,
    next_run: u64,
}

/// Spawns the supervisor; it ends, aborting every instance, when `decisions` closes (the node
/// stopped or crashed).
pub(crate) fn spawn(
    mut registrations: mpsc::UnboundedReceiver<Registration>,
    mut decisions: mpsc::UnboundedReceiver<Decision>,
    requests: mpsc::Sender<super::super::request::Request>,
    counters: Arc<SupervisorCounters>,
) {
    let (notices, mut notices_rx) = mpsc::unbounded_channel();
    let mut s = Supervisor {
        factories: BTreeMap::new(),
        running: BTreeMap::new(),
        pending: Vec::new(),
        handed_over: BTreeMap::new(),
        requests,
        notices,
        counters,
        next_run: 1,
    };
    tokio::spawn(async move {
        loop {
            // Registrations first: a handle registers before it declares, so the factory of
            // any start the driver sends is already queued here.
            tokio::select! {
                biased;
                Some(r) = registrations.recv() => s.register(r),
                decision = decisions.recv() => match decision {
                    Some(decision) => s.decide(decision),
                    None => break,
                },
                Some(notice) = notices_rx.recv() => s.notice(notice),
            }
        }
        s.stop_all();
    });
}

impl Supervisor {
    fn decide(&mut self, decision: Decision) {
        match decision {
            Decision::Start(instance) => self.start(instance),
            Decision::Stop(instance) => self.stop(&instance),
            Decision::HandedOver(instance, state) => {
                self.handed_over.insert(instance, state);
            }
            Decision::BeginHandoff(instance) => {
                let reply = super::HandoffReply {
                    instance: instance.clone(),
                    requests: self.requests.clone(),
                };
                // A run that is not there (between restarts) cannot answer: the core ends the
                // handoff at its deadline.
                self.put_in_inbox(&instance, Inbox::HandOff(reply));
            }
            Decision::Deliver(instance, payload) => {
                self.put_in_inbox(&instance, Inbox::Message(payload));
            }
        }
    }

    fn put_in_inbox(&mut self, instance: &Instance, item: Inbox) {
        let sent = self
            .running
            .get(instance)
            .and_then(|r| r.inbox.as_ref())
            .is_some_and(|inbox| inbox.try_send(item).is_ok());
        if !sent {
            self.counters.undelivered.fetch_add(1, Ordering::Relaxed);
            warn!(%instance, "placement: no run of the instance took what was sent to it");
        }
    }

    /// The first factory of a name stays: a later declaration is either the same workload
    /// again (a no-op) or one the core refuses, and neither may change what runs.
    fn register(&mut self, registration: Registration) {
        self.factories
            .entry(registration.name)
            .or_insert(registration.factory);
        let waiting: Vec<Instance> = std::mem::take(&mut self.pending);
        for instance in waiting {
            self.start(instance);
        }
    }

    fn start(&mut self, instance: Instance) {
        if self.running.contains_key(&instance) {
            return;
        }
        if !self.factories.contains_key(&instance.workload) {
            self.pending.push(instance);
            return;
        }
        info!(%instance, "placement: starting here");
        self.counters.started.fetch_add(1, Ordering::Relaxed);
        let run = self.bump();
        self.running.insert(
            instance.clone(),
            Running {
                run,
                abort: None,
                inbox: None,
                handed_over: self.handed_over.remove(&instance),
                started: Instant::now(),
                failures: 0,
            },
        );
        self.spawn_run(&instance);
    }

    fn bump(&mut self) -> u64 {
        self.next_run += 1;
        self.next_run
    }

    /// Spawns the factory's future for `instance` and a watcher that reports its end.
    fn spawn_run(&mut self, instance: &Instance) {
        let Some(factory) = self.factories.get(&instance.workload).cloned() else {
            return;
        };
        let Some(running) = self.running.get_mut(instance) else {
            return;
        };
        let (inbox, inbox_rx) = mpsc::channel(INBOX_CAPACITY);
        running.inbox = Some(inbox);
        let context = InstanceContext {
            shard: instance.shard,
            handed_over: running.handed_over.clone(),
            inbox: inbox_rx,
        };
        // A factory that panics while making the future counts as a panicking run.
        let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| factory(context)));
        let work: InstanceFuture = match made {
            Ok(work) => work,
            Err(_) => Box::pin(async { panic!("the factory panicked") }),
        };
        let task = tokio::spawn(work);
        running.abort = Some(task.abort_handle());
        running.started = Instant::now();
        let (notices, instance, run) = (self.notices.clone(), instance.clone(), running.run);
        let counters = self.counters.clone();
        tokio::spawn(async move {
            let ended = task.await;
            // An abort is our own stop: nothing to report.
            if ended.as_ref().is_err_and(|e| e.is_cancelled()) {
                return;
            }
            if let Err(e) = ended {
                counters.panics.fetch_add(1, Ordering::Relaxed);
                warn!(%instance, error = %e, "placement: instance panicked");
            }
            let _ = notices.send(Notice::Exited { instance, run });
        });
    }

    fn notice(&mut self, notice: Notice) {
        match notice {
            Notice::Exited { instance, run } => self.exited(instance, run),
            Notice::Retry { instance, run } => {
                if self.running.get(&instance).is_some_and(|r| r.run == run) {
                    self.counters.restarts.fetch_add(1, Ordering::Relaxed);
                    self.spawn_run(&instance);
                }
            }
        }
    }

    /// An instance still owned here ended on its own: start it again after a backoff that
    /// doubles with each quick failure.
    fn exited(&mut self, instance: Instance, run: u64) {
        let Some(running) = self.running.get_mut(&instance) else {
            return;
        };
        if running.run != run {
            return;
        }
        if running.started.elapsed() >= STABLE_AFTER {
            running.failures = 0;
        }
        let wait = BACKOFF_MIN
            .saturating_mul(1 << running.failures.min(16))
            .min(BACKOFF_MAX);
        running.failures += 1;
        running.abort = None;
        running.inbox = None;
        let notices = self.notices.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = notices.send(Notice::Retry { instance, run });
        });
    }

    fn stop(&mut self, instance: &Instance) {
        self.pending.retain(|i| i != instance);
        self.handed_over.remove(instance);
        if let Some(running) = self.running.remove(instance) {
            info!(%instance, "placement: stopping here");
            self.counters.stopped.fetch_add(1, Ordering::Relaxed);
            if let Some(abort) = running.abort {
                abort.abort();
            }
        }
    }

    fn stop_all(&mut self) {
        let all: Vec<Instance> = self.running.keys().cloned().collect();
        for instance in all {
            self.stop(&instance);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawned() -> (
        mpsc::UnboundedSender<Registration>,
        mpsc::UnboundedSender<Decision>,
        Arc<SupervisorCounters>,
    ) {
        let (registrations, registrations_rx) = mpsc::unbounded_channel();
        let (decisions, decisions_rx) = mpsc::unbounded_channel();
        let counters = Arc::new(SupervisorCounters::default());
        // Handoff replies would go to the driver; these tests have none.
        let (requests, _) = mpsc::channel(1);
        spawn(registrations_rx, decisions_rx, requests, counters.clone());
        (registrations, decisions, counters)
    }

    /// On tokio's paused clock (it jumps to the next timer whenever every task waits), so the
    /// backoff is counted exactly, not at the mercy of a loaded machine.
    #[tokio::test(start_paused = true)]
    async fn a_running_instance_is_left_alone_and_a_panicking_one_is_restarted_with_backoff() {
        let (registrations, decisions, counters) = spawned();
        let polled = Arc::new(AtomicU64::new(0));
        let seen = polled.clone();
        let factory: Factory = Arc::new(move |_| {
            let seen = seen.clone();
            Box::pin(async move {
                seen.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
            })
        });
        registrations
            .send(Registration {
                name: "calm".into(),
                factory,
            })
            .expect("up");
        let panicking: Factory = Arc::new(|_| Box::pin(async { panic!("on purpose") }));
        registrations
            .send(Registration {
                name: "wild".into(),
                factory: panicking,
            })
            .expect("up");
        decisions
            .send(Decision::Start(Instance::new("calm", 0)))
            .expect("up");
        decisions
            .send(Decision::Start(Instance::new("wild", 0)))
            .expect("up");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(
            polled.load(Ordering::SeqCst),
            1,
            "started once, still running"
        );
        // 100 + 200 + 400 ms of backoff fit in a second, 800 more do not.
        let restarts = counters.restarts.load(Ordering::SeqCst);
        assert_eq!(restarts, 3);
        decisions
            .send(Decision::Stop(Instance::new("wild", 0)))
            .expect("up");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(counters.restarts.load(Ordering::SeqCst), restarts);
    }

    /// Routed messages reach the running instance's inbox; a handed-over state is given to
    /// the run that starts after it.
    #[tokio::test(start_paused = true)]
    async fn a_run_gets_the_handed_over_state_and_the_messages_routed_to_it() {
        let (registrations, decisions, counters) = spawned();
        let (seen_tx, mut seen) = mpsc::unbounded_channel::<(Option<Bytes>, Bytes)>();
        let factory: Factory = Arc::new(move |mut context: InstanceContext| {
            let seen = seen_tx.clone();
            Box::pin(async move {
                while let Some(item) = context.recv().await {
                    if let Inbox::Message(m) = item {
                        let _ = seen.send((context.handed_over.clone(), m));
                    }
                }
            })
        });
        registrations
            .send(Registration {
                name: "acc".into(),
                factory,
            })
            .expect("up");
        let instance = Instance::new("acc", 3);
        let state = Bytes::from_static(b"seven");
        for decision in [
            Decision::HandedOver(instance.clone(), state.clone()),
            Decision::Start(instance.clone()),
            Decision::Deliver(instance.clone(), Bytes::from_static(b"m1")),
        ] {
            decisions.send(decision).expect("up");
        }
        let (handed, message) = seen.recv().await.expect("delivered");
        assert_eq!(handed, Some(state));
        assert_eq!(message, Bytes::from_static(b"m1"));
        // Nothing runs for another instance: what is sent to it is counted, not lost silently.
        decisions
            .send(Decision::Deliver(Instance::new("acc", 4), Bytes::new()))
            .expect("up");
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(counters.undelivered.load(Ordering::SeqCst), 1);
    }
}
