//! Calls from the nodes of a cluster that are not gateways: each gateway registers
//! [`RELAY_SERVICE`] in its own cluster, and `call_in` on another node calls it with the
//! ordinary RPC (its deadline, retries, breakers and trace), so the cluster's gateways share
//! and fail over that traffic like any service's instances.

use bytes::Bytes;
use foundation_core::federation::wire::{RelayError, RelayReply, RelayRequest, RELAY_SERVICE};
use std::time::Duration;

use super::{CrossClusterError, FederationHandle};
use crate::runtime::services::{
    Call, CallOptions, Handler, HandlerError, Registration, RpcError, RpcHandle, ServiceOptions,
    ServicesHandle,
};

/// Registers this gateway's relay in its cluster.
pub(super) async fn register(handle: &FederationHandle, rpc: &RpcHandle) -> Option<Registration> {
    let services = ServicesHandle {
        shared: rpc.shared.clone(),
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
            let request: RelayRequest = call.decode()?;
            let remaining = call
                .deadline
                .saturating_duration_since(tokio::time::Instant::now());
            let body = Bytes::from(request.body);
            let forwarded = handle
                .forward(
                    &request.cluster,
                    &request.service,
                    body,
                    remaining,
                    call.trace,
                )
                .await;
            let reply: RelayReply = forwarded.map(|b| b.to_vec()).map_err(relay_error);
            postcard::to_stdvec(&reply)
                .map(Bytes::from)
                .map_err(|e| HandlerError::new(format!("relay reply does not encode: {e}")))
        }
    }
}

fn relay_error(error: CrossClusterError) -> RelayError {
    match error {
        CrossClusterError::Federation(e) => RelayError::Federation(e),
        CrossClusterError::Remote(e) => RelayError::Remote(e),
        other => RelayError::Gateway(other.to_string()),
    }
}

/// `call_in` from a node that is not a gateway: through a gateway of its own cluster.
pub(super) async fn call(
    rpc: &RpcHandle,
    cluster: &str,
    service: &str,
    body: Bytes,
    deadline: Duration,
) -> Result<Bytes, CrossClusterError> {
    let request = RelayRequest {
        cluster: cluster.to_owned(),
        service: service.to_owned(),
        body: body.to_vec(),
    };
    let payload =
        postcard::to_stdvec(&request).map_err(|e| CrossClusterError::Codec(e.to_string()))?;
    let options = CallOptions::default();
    let reply = match rpc
        .call_bytes(RELAY_SERVICE, payload.into(), deadline, &options)
        .await
    {
        Ok(reply) => reply,
        Err(RpcError::NoInstances { .. }) => return Err(CrossClusterError::NoGateway),
        Err(e) => return Err(CrossClusterError::Local(e)),
    };
    match postcard::from_bytes::<RelayReply>(&reply) {
        Ok(Ok(body)) => Ok(body.into()),
        Ok(Err(RelayError::Federation(e))) => Err(CrossClusterError::Federation(e)),
        Ok(Err(RelayError::Remote(e))) => Err(CrossClusterError::Remote(e)),
        Ok(Err(RelayError::Gateway(e))) => Err(CrossClusterError::Relayed(e)),
        Err(e) => Err(CrossClusterError::Codec(format!("relay reply: {e}"))),
    }
}
