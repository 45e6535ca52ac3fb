//! One running instance of an agent: a tokio task that takes messages from the agent's mailbox
//! one at a time until told to stop, and a monitor that turns the way the task ended — its
//! `JoinError` included — into the supervisor's [`Exit`].

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use foundation_core::agents::supervisor::Exit;
use foundation_core::agents::{AgentState, DeliveryError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinError};

use super::agent::{Agent, Context, Health, Message, StopReason};
use crate::runtime::services::lock;

/// Where a request's answer goes.
pub(super) type Reply = oneshot::Sender<Result<Bytes, DeliveryError>>;

/// What a mailbox carries.
pub(super) enum Envelope {
    /// A message, and where its answer goes if someone waits for one.
    Message {
        message: Message,
        reply: Option<Reply>,
    },
    /// A question for the agent's health.
    Health(oneshot::Sender<Health>),
}

/// A local agent's mailbox and the answer its current message owes. Both outlive instances:
/// messages queued while the agent restarts reach the next instance, and the monitor of an
/// instance that panicked answers the message it was handling.
pub(super) struct Mailbox {
    pub sender: mpsc::Sender<Envelope>,
    receiver: tokio::sync::Mutex<mpsc::Receiver<Envelope>>,
    pending: Mutex<Option<Reply>>,
}

impl Mailbox {
    pub fn new(capacity: usize) -> Arc<Self> {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        Arc::new(Self {
            sender,
            receiver: tokio::sync::Mutex::new(receiver),
            pending: Mutex::new(None),
        })
    }

    /// Answers the message being handled, if it waits for an answer.
    fn fail_pending(&self, error: DeliveryError) {
        if let Some(reply) = lock(&self.pending).take() {
            let _ = reply.send(Err(error));
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Builds and runs a fresh instance of one agent; the type-erased form of its factory.
pub(super) type Launch =
    Arc<dyn Fn(Context, Arc<Mailbox>, oneshot::Receiver<()>) -> BoxFuture<Exit> + Send + Sync>;

/// The launcher of agents built by `factory`. The factory runs inside the instance's task, so
/// a factory that panics is a failed start like any other.
pub(super) fn launcher<A, F>(factory: F) -> Launch
where
    A: Agent,
    F: Fn() -> A + Send + Sync + 'static,
{
    let factory = Arc::new(factory);
    Arc::new(move |ctx, mailbox, stop| {
        let factory = factory.clone();
        Box::pin(async move { run(factory(), ctx, mailbox, stop).await })
    })
}

async fn run<A: Agent>(
    mut agent: A,
    ctx: Context,
    mailbox: Arc<Mailbox>,
    mut stop: oneshot::Receiver<()>,
) -> Exit {
    if let Err(e) = agent.init(&ctx).await {
        return Exit::Failed(format!("init: {}", e.message));
    }
    let mut inbox = mailbox.receiver.lock().await;
    loop {
        let envelope = tokio::select! {
            biased;
            _ = &mut stop => break,
            envelope = inbox.recv() => envelope,
        };
        match envelope {
            None => break,
            Some(Envelope::Health(reply)) => {
                let _ = reply.send(agent.health());
            }
            Some(Envelope::Message { message, reply }) => {
                // Nobody waits for this answer any more: the work would be wasted.
                if message
                    .deadline
                    .is_some_and(|d| d <= tokio::time::Instant::now())
                {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(DeliveryError::DeadlineExceeded));
                    }
                    continue;
                }
                *lock(&mailbox.pending) = reply;
                let result = agent.handle(&ctx, message).await;
                if let Some(reply) = lock(&mailbox.pending).take() {
                    let _ = reply.send(result.map_err(|e| DeliveryError::Handler {
                        name: ctx.name.clone(),
                        message: e.message,
                    }));
                }
            }
        }
    }
    drop(inbox);
    agent.terminate(&ctx, StopReason::Stopped).await;
    Exit::Normal
}

/// A started instance, as its supervisor holds it.
pub(super) struct Running {
    stop: Option<oneshot::Sender<()>>,
    abort: AbortHandle,
}

impl Running {
    /// Asks the instance to finish its current message, terminate and exit; aborts it if it
    /// has not exited after `grace` (its exit is then reported as a failure).
    pub fn stop(&mut self, grace: std::time::Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let abort = self.abort.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            abort.abort();
        });
    }

    /// Ends the instance at once, without `terminate`: a crash.
    pub fn kill(&self) {
        self.abort.abort();
    }
}

/// Starts an instance of `launch` and calls `exited` with how it ended.
pub(super) fn start(
    launch: &Launch,
    ctx: Context,
    mailbox: Arc<Mailbox>,
    exited: impl FnOnce(Exit) -> BoxFuture<()> + Send + 'static,
) -> Running {
    let (stop, stopped) = oneshot::channel();
    let name = ctx.name.clone();
    let task = tokio::spawn(launch(ctx, mailbox.clone(), stopped));
    let abort = task.abort_handle();
    tokio::spawn(async move {
        let exit = match task.await {
            Ok(exit) => exit,
            Err(error) => exit_of(&name, &mailbox, error),
        };
        exited(exit).await;
    });
    Running {
        stop: Some(stop),
        abort,
    }
}

/// The exit of a task that did not return: it panicked, or it was aborted.
fn exit_of(name: &str, mailbox: &Mailbox, error: JoinError) -> Exit {
    if error.is_panic() {
        let message = panic_message(error.into_panic());
        mailbox.fail_pending(DeliveryError::Panicked {
            name: name.to_owned(),
            message: message.clone(),
        });
        Exit::Panicked(message)
    } else {
        mailbox.fail_pending(DeliveryError::DeadAgent {
            name: name.to_owned(),
            state: AgentState::Stopped,
        });
        Exit::Failed("aborted: did not stop within its grace period".into())
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload.downcast_ref::<&str>().map_or_else(
            || "a panic without a message".to_owned(),
            |s| (*s).to_owned(),
        ),
    }
}
