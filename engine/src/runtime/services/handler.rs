//! What a registered service runs when called: a [`Handler`] gets a [`Call`] and answers with
//! bytes or a [`HandlerError`].

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use foundation_transport::{ClusterName, NodeId};
use serde::{de::DeserializeOwned, Serialize};

use foundation_core::services::trace::TraceContext;

/// A boxed, sendable future, as handlers return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// One request to a service instance.
#[derive(Clone, Debug)]
pub struct Call {
    /// The service called.
    pub service: String,
    /// The calling node (ourselves for a local call).
    pub caller: NodeId,
    /// The request's trace, continued from the caller; the handler's own calls continue it.
    pub trace: TraceContext,
    /// The cluster a federated call came from (`rpc().call_in` there, served through this
    /// cluster's gateway); `None` for a call from inside this cluster.
    pub origin: Option<ClusterName>,
    /// When the caller stops waiting: work past it is wasted.
    pub deadline: tokio::time::Instant,
    /// The request body.
    pub body: Bytes,
}

impl Call {
    /// Decodes the body as a typed request (postcard, as [`RpcHandle::call`] encodes it).
    ///
    /// [`RpcHandle::call`]: super::RpcHandle::call
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        postcard::from_bytes(&self.body)
            .map_err(|e| HandlerError::new(format!("request does not decode: {e}")))
    }
}

/// A handler's refusal or failure, returned to the caller as
/// [`RpcError::Handler`](super::RpcError::Handler).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    /// What went wrong, for the caller.
    pub message: String,
}

impl HandlerError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// What a handler answers.
pub type HandlerResult = Result<Bytes, HandlerError>;

/// Runs `handler` on `call`; a panic of the handler's, as it is called or as its future is
/// polled, fails this call with a [`HandlerError`]. A handler runs in the transport's task that
/// reads its connection's requests (in the caller's own task, for a call to this node), and a
/// bug in it must not end that task and the calls read with this one.
pub(crate) async fn handle_guarded(handler: &dyn Handler, call: Call) -> HandlerResult {
    let panicked = || {
        // Within the caller's `rpc.handle` span, which names the service.
        tracing::warn!("a handler panicked; its call fails");
        Err(HandlerError::new("the handler panicked"))
    };
    let Ok(mut answer) = catch_unwind(AssertUnwindSafe(|| handler.handle(call))) else {
        return panicked();
    };
    std::future::poll_fn(
        |cx| match catch_unwind(AssertUnwindSafe(|| answer.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(_) => Poll::Ready(panicked()),
        },
    )
    .await
}

/// A service's request handler. Any `Fn(Call) -> impl Future<Output = HandlerResult>` is one;
/// [`typed`] adapts a function of typed requests and responses.
pub trait Handler: Send + Sync + 'static {
    /// Answers one call.
    fn handle(&self, call: Call) -> BoxFuture<HandlerResult>;
}

impl<F, Fut> Handler for F
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    fn handle(&self, call: Call) -> BoxFuture<HandlerResult> {
        Box::pin(self(call))
    }
}

/// A handler from a function of typed requests to typed responses (postcard on the wire, as
/// [`RpcHandle::call`](super::RpcHandle::call) sends them).
pub fn typed<Req, Resp, F, Fut>(f: F) -> impl Handler
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + 'static,
    F: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, HandlerError>> + Send + 'static,
{
    move |call: Call| {
        let request = call.decode::<Req>();
        let answer = request.map(&f);
        async move {
            let response = answer?.await?;
            postcard::to_stdvec(&response)
                .map(Bytes::from)
                .map_err(|e| HandlerError::new(format!("response does not encode: {e}")))
        }
    }
}
