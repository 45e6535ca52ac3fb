//! The services layer of a running node: the registry ([`ServicesHandle`]), RPC
//! ([`RpcHandle`]) and pub/sub ([`PubSubHandle`]), built on the directory the driver publishes
//! and on the transport's rpc and events channels.

mod handler;
mod health;
mod metrics;
mod pubsub;
mod registry;
mod rpc;

pub use handler::{typed, BoxFuture, Call, Handler, HandlerError, HandlerResult};
pub use health::{HealthCheck, Probe};
pub(crate) use metrics::latency_histogram;
pub use pubsub::{
    Message, PubSubError, PubSubHandle, PublishOptions, SlowPolicy, SubscribeOptions, Subscription,
};
pub(crate) use registry::lock;
pub use registry::{Registration, ServiceError, ServiceOptions, ServiceWatch, ServicesHandle};
pub use rpc::{current_trace, with_trace, CallOptions, RpcConfig, RpcError, RpcHandle};

use std::sync::Arc;

use foundation_transport::{Endpoint, IncomingRequest, Message as Received};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};

use super::agents::AgentRequests;
use super::request::Request;
use foundation_core::services::breaker::BreakerConfigError;
use foundation_core::services::Directory;
use metrics::ServicesMetrics;

/// The three handles of a node's services layer.
#[derive(Clone)]
pub(crate) struct Services {
    pub registry: ServicesHandle,
    pub rpc: RpcHandle,
    pub pubsub: PubSubHandle,
}

/// What the services layer takes from the transport's inbox.
pub(crate) struct ServicesInbox {
    /// The transport's rpc requests queued before the services layer took them over (it takes
    /// them in the transport's reading tasks); the agents' messages are passed on to `agents`.
    pub requests: mpsc::Receiver<IncomingRequest>,
    pub agents: AgentRequests,
    pub events: mpsc::Receiver<Received>,
}

/// Starts the services layer's tasks and returns its handles.
pub(crate) fn start(
    requests: mpsc::Sender<Request>,
    directory: watch::Receiver<Arc<Directory>>,
    endpoint: Endpoint,
    config: RpcConfig,
    inbox: ServicesInbox,
    registry: &mut Registry,
) -> Result<Services, BreakerConfigError> {
    let metrics = ServicesMetrics::register(registry);
    let shared = Arc::new(registry::Shared::new(requests, directory.clone()));
    let rpc = RpcHandle {
        shared: shared.clone(),
        state: Arc::new(rpc::RpcState::new(&config, metrics.clone())?),
        endpoint: endpoint.clone(),
    };
    let pubsub = PubSubHandle {
        shared: shared.clone(),
        state: Arc::new(pubsub::PubSubState::new(metrics.clone())),
        endpoint: endpoint.clone(),
    };
    let calls = rpc::CallServer::new(shared.clone(), &config, metrics.clone(), inbox.agents);
    let taker = calls.clone();
    endpoint.serve_requests(Arc::new(move |request| taker.take(request)));
    tokio::spawn(rpc::serve_queued(calls, inbox.requests));
    tokio::spawn(pubsub::serve(pubsub.clone(), inbox.events));
    let (state, endpoint) = (rpc.state.clone(), endpoint.clone());
    let held = shared.clone();
    tokio::spawn(async move {
        follow_directory(directory, metrics, state).await;
        release(&held, &endpoint).await;
    });
    Ok(Services {
        registry: ServicesHandle {
            shared,
            rpc: rpc.clone(),
        },
        rpc,
        pubsub,
    })
}

/// Once the driver has ended — the node left, was aborted, or its driver panicked — closes
/// the endpoint (already closed unless the driver panicked) and lets go of the application's
/// handlers, which may hold the node.
async fn release(registry: &registry::Shared, endpoint: &Endpoint) {
    endpoint.close().await;
    registry.release();
}

/// Keeps the instance gauge in step with the directory, and forgets the routing state of
/// instances that are gone, until the driver (which publishes the directory) ends.
async fn follow_directory(
    mut directory: watch::Receiver<Arc<Directory>>,
    metrics: ServicesMetrics,
    rpc: Arc<rpc::RpcState>,
) {
    loop {
        let current = directory.borrow_and_update().clone();
        metrics.instances.set(current.all().count() as i64);
        rpc.forget_missing(&current);
        if directory.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::agents::AgentRequests;
    use foundation_transport::{
        ClusterName, ClusterSecret, ConnectError, LocalIdentity, NodeId, TransportConfig,
        TransportMetrics, Trust,
    };

    /// However the driver ends — a return, or a panic, which drops it all the same — the
    /// directory's watch closes, and the services layer then closes the endpoint (which the
    /// driver did not, had it panicked) and lets go of the handlers.
    #[tokio::test]
    async fn the_drivers_end_closes_the_endpoint_and_drops_the_handlers() {
        let (endpoint, services, directory) = started().await;
        let held = Arc::new(());
        let gone = Arc::downgrade(&held);
        let handler = move |_: Call| {
            let _ = &held;
            async { Ok(bytes::Bytes::new()) }
        };
        services
            .registry
            .shared
            .handlers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(("held".to_owned(), 1), Arc::new(handler));
        drop(directory);
        let start = tokio::time::Instant::now();
        while gone.strong_count() > 0 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(5),
                "handler still held"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let dial = endpoint.connect("127.0.0.1:9".parse().unwrap()).await;
        assert!(
            matches!(dial, Err(ConnectError::ShutDown)),
            "endpoint closed"
        );
    }

    /// An endpoint on loopback and the services layer on it, with no driver: the returned
    /// sender stands for the driver's end of the directory.
    pub(super) async fn started() -> (Endpoint, Services, watch::Sender<Arc<Directory>>) {
        let identity = LocalIdentity {
            id: NodeId::random(),
            cluster: ClusterName::new("services-test").unwrap(),
        };
        let trust = Trust::Secret(ClusterSecret::new("services unit test secret").unwrap());
        let metrics = Arc::new(TransportMetrics::unregistered());
        let (endpoint, mut inbox) =
            Endpoint::start(identity, &trust, TransportConfig::default(), metrics)
                .await
                .unwrap();
        let (directory_tx, directory) = watch::channel(Arc::new(Directory::default()));
        let services_inbox = ServicesInbox {
            requests: std::mem::replace(&mut inbox.requests, mpsc::channel(1).1),
            agents: AgentRequests::new().0,
            events: std::mem::replace(&mut inbox.events, mpsc::channel(1).1),
        };
        let services = start(
            mpsc::channel(8).0,
            directory,
            endpoint.clone(),
            RpcConfig::default(),
            services_inbox,
            &mut Registry::default(),
        )
        .unwrap();
        (endpoint, services, directory_tx)
    }
}
