//! Calls from the nodes of a cluster that are not gateways: each gateway registers
//! [`RELAY_SERVICE`] in its own cluster, and `call_in` on another node calls it with the
//! ordinary RPC (its deadline, retries, breakers and trace), so the cluster's gateways share
//! and fail over that traffic like any service's instances. `lookup_in` on such a node asks
//! the same service to read a gateway's global directory.
//!
//! Requests and replies go through the federation wire's codec (`wire::encode`/`decode`), so
//! during a rolling upgrade a gateway refuses a newer node's request, saying so, instead of
//! reading it by its own schema.

use bytes::Bytes;
use foundation_core::federation::wire::{
    self, RelayError, RelayReply, RelayRequest, RELAY_SERVICE,
};
use foundation_core::federation::ExportedService;
use std::time::Duration;

use super::{CrossClusterError, FederationHandle, Outgoing};
use crate::runtime::services::{
    Call, CallOptions, Handler, HandlerError, Registration, RpcError, RpcHandle, ServiceOptions,
    ServicesHandle,
};

/// Registers this gateway's relay in its cluster.
pub(super) async fn register(handle: &FederationHandle, rpc: &RpcHandle) -> Option<Registration> {
    let services = ServicesHandle {
        shared: rpc.shared.clone(),
        rpc: rpc.clone(),
    };
    let registered = services
        .register(
            RELAY_SERVICE,
            handler(handle.clone()),
            ServiceOptions::default(),
        )
        .await;
    match registered {
        Ok(registration) => Some(registration),
        Err(error) => {
            tracing::warn!(%error, "the federation relay did not register: only this gateway calls other clusters");
            None
        }
    }
}

fn handler(handle: FederationHandle) -> impl Handler {
    move |call: Call| {
        let handle = handle.clone();
        async move {
            let request: RelayRequest = wire::decode(&call.body)
                .map_err(|e| HandlerError::new(format!("relay request: {e}")))?;
            let reply: RelayReply = match request {
                RelayRequest::Call {
                    cluster,
                    service,
                    body,
                    idempotent,
                } => {
                    let outgoing = Outgoing {
                        body: body.into(),
                        deadline: call
                            .deadline
                            .saturating_duration_since(tokio::time::Instant::now()),
                        trace: call.trace,
                        idempotent,
                    };
                    let forwarded = handle.forward(&cluster, &service, outgoing).await;
                    forwarded.map(|b| b.to_vec()).map_err(relay_error)
                }
                RelayRequest::Lookup { cluster, service } => {
                    answer_lookup(&handle, &cluster, &service)
                }
            };
            wire::encode(&reply)
                .map(Bytes::from)
                .map_err(|e| HandlerError::new(format!("relay reply: {e}")))
        }
    }
}

/// The gateway's answer to a relayed look-up: the entry, encoded as the reply's body.
fn answer_lookup(handle: &FederationHandle, cluster: &str, service: &str) -> RelayReply {
    let found = handle.lookup(cluster, service)?;
    postcard::to_stdvec(&found).map_err(|e| RelayError::Gateway(format!("look-up encoding: {e}")))
}

fn relay_error(error: CrossClusterError) -> RelayError {
    match error {
        CrossClusterError::Federation(e) => RelayError::Federation(e),
        CrossClusterError::Remote(e) => RelayError::Remote(e),
        other => RelayError::Gateway(other.to_string()),
    }
}

/// `call_in` from a node that is not a gateway: through a gateway of its own cluster, which
/// applies `options` across the WAN. The hop to that gateway is routed as a call that is not
/// idempotent, so it keeps the whole deadline for the gateway's own attempts (halving it here
/// as well would leave each WAN attempt a ninth); it moves to another gateway only when the
/// first certainly did not take it.
pub(super) async fn call(
    rpc: &RpcHandle,
    cluster: &str,
    service: &str,
    body: Bytes,
    deadline: Duration,
    options: &CallOptions,
) -> Result<Bytes, CrossClusterError> {
    let request = RelayRequest::Call {
        cluster: cluster.to_owned(),
        service: service.to_owned(),
        body: body.to_vec(),
        idempotent: options.idempotent,
    };
    ask(rpc, &request, deadline).await.map(Bytes::from)
}

/// `lookup_in` from a node that is not a gateway: a gateway of its own cluster reads its
/// global directory for it.
pub(super) async fn lookup(
    rpc: &RpcHandle,
    cluster: &str,
    service: &str,
    deadline: Duration,
) -> Result<Option<ExportedService>, CrossClusterError> {
    let request = RelayRequest::Lookup {
        cluster: cluster.to_owned(),
        service: service.to_owned(),
    };
    let body = ask(rpc, &request, deadline).await?;
    postcard::from_bytes(&body).map_err(|e| CrossClusterError::Codec(format!("look-up: {e}")))
}

/// Hands `request` to one of the cluster's gateways with the ordinary RPC.
async fn ask(
    rpc: &RpcHandle,
    request: &RelayRequest,
    deadline: Duration,
) -> Result<Vec<u8>, CrossClusterError> {
    let payload = wire::encode(request).map_err(|e| CrossClusterError::Codec(e.to_string()))?;
    let options = CallOptions::default();
    let reply = match rpc
        .call_bytes(RELAY_SERVICE, payload.into(), deadline, &options)
        .await
    {
        Ok(reply) => reply,
        Err(RpcError::NoInstances { .. }) => return Err(CrossClusterError::NoGateway),
        Err(e) => return Err(CrossClusterError::Local(e)),
    };
    match wire::decode::<RelayReply>(&reply) {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(RelayError::Federation(e))) => Err(CrossClusterError::Federation(e)),
        Ok(Err(RelayError::Remote(e))) => Err(CrossClusterError::Remote(e)),
        Ok(Err(RelayError::Gateway(e))) => Err(CrossClusterError::Relayed(e)),
        Err(e) => Err(CrossClusterError::Codec(format!("relay reply: {e}"))),
    }
}
