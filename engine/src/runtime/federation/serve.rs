//! The gateway's task: sends the probes and pushes the machine asks for, answers the linked
//! gateways' requests (as a hub, passes calls on), and keeps this cluster's exports in step
//! with the service directory.

use std::time::Duration;

use bytes::Bytes;
use foundation_core::federation::wire::{
    self, FederationReply, FederationRequest, ForwardedCall, RemoteCallError,
};
use foundation_core::federation::FederationError;
use foundation_core::federation::{exported, GlobalDirectory, ProbeToSend, PushToSend};
use foundation_transport::gateway::GatewayRequest;
use tokio::sync::mpsc;

use super::metrics::FederationMetrics;
use super::{CrossClusterError, FederationHandle};
use crate::runtime::services::{with_trace, CallOptions, RpcError, RpcHandle};

/// What the gateway's task works with.
pub(super) struct Task {
    pub handle: FederationHandle,
    pub exports: Vec<String>,
    pub rpc: RpcHandle,
    pub metrics: FederationMetrics,
}

impl Task {
    /// Runs until the gateway is stopped.
    pub async fn run(self, mut requests: mpsc::Receiver<GatewayRequest>) {
        let relay = super::relay::register(&self.handle, &self.rpc).await;
        self.serve(&mut requests).await;
        self.metrics.stopped(&self.handle.links());
        if let Some(relay) = relay {
            let _ = relay.deregister().await;
        }
    }

    async fn serve(&self, requests: &mut mpsc::Receiver<GatewayRequest>) {
        let handle = &self.handle;
        let mut stop = handle.inner.stop.subscribe();
        let mut directory = self.rpc.shared.directory.clone();
        loop {
            let services = directory.borrow_and_update().clone();
            handle
                .inner
                .machine()
                .set_exports(exported(&services, &self.exports));
            send_probes(handle);
            send_pushes(handle);
            super::bridge::tell_interest(handle, &services);
            self.refresh_metrics();
            let wake = {
                let machine = handle.inner.machine();
                let interest = handle.inner.bridge.next_interest();
                [machine.next_deadline(), machine.next_push(), interest]
                    .into_iter()
                    .flatten()
                    .min()
            };
            let sleep = match wake {
                Some(at) => at.saturating_since(handle.inner.now()),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                changed = directory.changed() => if changed.is_err() { return },
                _ = handle.inner.bridge.interest_answered.notified() => {}
                request = requests.recv() => match request {
                    Some(request) => answer(handle, &self.rpc, request),
                    None => return,
                },
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
        }
    }

    fn refresh_metrics(&self) {
        let endpoint = &self.handle.inner.endpoint;
        self.metrics.refresh(
            &self.handle.links(),
            |link| endpoint.bytes(&link.cluster),
            endpoint.refused(),
        );
    }
}

fn send_probes(handle: &FederationHandle) {
    let now = handle.inner.now();
    let probes = handle.inner.machine().poll(now);
    for probe in probes {
        tokio::spawn(probe_one(handle.clone(), probe));
    }
}

fn send_pushes(handle: &FederationHandle) {
    let now = handle.inner.now();
    let pushes = handle.inner.machine().pushes(now);
    for push in pushes {
        tokio::spawn(push_one(handle.clone(), push));
    }
}

/// One push; a lost one is repaired by the next probe, so a failure is only logged.
async fn push_one(handle: FederationHandle, push: PushToSend) {
    let request = FederationRequest::Push {
        directory: push.directory,
    };
    let timeout = handle.inner.machine().timers().probe_timeout;
    let Ok(payload) = wire::encode(&request) else {
        return;
    };
    let sent = handle
        .inner
        .endpoint
        .request(&push.cluster, push.gateway, payload.into(), timeout);
    if let Err(error) = sent.await {
        tracing::debug!(cluster = %push.cluster, %error, "federation push failed");
    }
}

async fn probe_one(handle: FederationHandle, probe: ProbeToSend) {
    let request = FederationRequest::Probe {
        directory: probe.directory,
    };
    let timeout = handle.inner.machine().timers().probe_timeout;
    let answer = match wire::encode(&request) {
        Ok(payload) => handle
            .inner
            .endpoint
            .request(&probe.cluster, probe.gateway, payload.into(), timeout)
            .await
            .map_err(|e| e.to_string())
            .and_then(|reply| remote_directory(&reply)),
        Err(e) => Err(e.to_string()),
    };
    let now = handle.inner.now();
    let mut machine = handle.inner.machine();
    let outcome = match answer {
        Ok(directory) => machine
            .probe_answered(now, &probe.cluster, probe.id, &directory)
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    if let Err(error) = outcome {
        tracing::debug!(cluster = %probe.cluster, %error, "federation probe failed");
        machine.probe_failed(&probe.cluster, probe.id);
    }
    for change in machine.take_changes() {
        tracing::info!(cluster = %change.cluster, from = ?change.from, to = ?change.to, "federation link changed");
    }
}

fn remote_directory(reply: &[u8]) -> Result<GlobalDirectory, String> {
    match wire::decode(reply) {
        Ok(FederationReply::Probe { directory }) => Ok(directory),
        Ok(FederationReply::Refused(why)) => Err(format!("refused: {why}")),
        Ok(_) => Err("not a probe reply".into()),
        Err(e) => Err(format!("reply: {e}")),
    }
}

/// Answers one request from a linked gateway; calls run in their own task.
fn answer(handle: &FederationHandle, rpc: &RpcHandle, request: GatewayRequest) {
    let decoded = wire::decode::<FederationRequest>(&request.payload);
    let reply = match decoded {
        Err(e) => FederationReply::Refused(format!("request: {e}")),
        Ok(FederationRequest::Probe { directory }) => {
            let now = handle.inner.now();
            let mut machine = handle.inner.machine();
            match machine.incoming_probe(now, &request.from, &directory) {
                Ok(directory) => FederationReply::Probe { directory },
                Err(e) => FederationReply::Refused(e.to_string()),
            }
        }
        Ok(FederationRequest::Push { directory }) => {
            let now = handle.inner.now();
            let mut machine = handle.inner.machine();
            match machine.incoming_push(now, &request.from, &directory) {
                Ok(()) => FederationReply::Pushed,
                Err(e) => FederationReply::Refused(e.to_string()),
            }
        }
        Ok(FederationRequest::Call {
            service,
            body,
            deadline_micros,
            trace,
            idempotent,
        }) => {
            let call = ForwardedCall {
                service,
                body,
                deadline_micros,
                trace,
                idempotent,
            };
            return serve_call(handle, rpc, request, None, call);
        }
        Ok(FederationRequest::Via { origin, call }) => {
            return serve_call(handle, rpc, request, Some(origin), call);
        }
        Ok(FederationRequest::Transit { target, call }) => {
            let handle = handle.clone();
            tokio::spawn(async move {
                let passed = handle.pass_on(&request.from, &target, call).await;
                let reply = passed.map(|b| b.to_vec()).map_err(transit_error);
                respond(request, FederationReply::Call(reply));
            });
            return;
        }
        Ok(FederationRequest::Bridge(messages)) => {
            match handle.inner.bridge.incoming(&request.from, messages) {
                Ok(receipt) => FederationReply::Bridged(receipt),
                Err(oversized) => FederationReply::Refused(oversized.to_string()),
            }
        }
        Ok(FederationRequest::Interest(patterns)) => {
            let now = handle.inner.now();
            match handle
                .inner
                .bridge
                .heard_interest(now, &request.from, &patterns)
            {
                Ok(()) => FederationReply::Pushed,
                Err(e) => FederationReply::Refused(e.to_string()),
            }
        }
    };
    respond(request, reply);
}

/// Serves a call for this cluster's `call.service`, from a gateway of `request.from` (or, with
/// `origin`, passed on by it as a hub), if the machine admits it: nothing unexported is
/// callable from outside, whatever the caller believes.
fn serve_call(
    handle: &FederationHandle,
    rpc: &RpcHandle,
    request: GatewayRequest,
    origin: Option<String>,
    call: ForwardedCall,
) {
    let requested = Duration::from_micros(call.deadline_micros);
    let (admitted, deadline) = {
        let mut machine = handle.inner.machine();
        let admitted = machine.admit(&request.from, origin.as_deref(), &call.service);
        (admitted, machine.call_deadline(requested))
    };
    let started_in = match admitted {
        Ok(started_in) => started_in,
        Err(FederationError::NotExported { .. }) => {
            return respond(
                request,
                FederationReply::Call(Err(RemoteCallError::NotExported)),
            )
        }
        Err(e) => {
            return respond(
                request,
                FederationReply::Call(Err(RemoteCallError::Federation(e))),
            )
        }
    };
    tracing::debug!(from = %request.from, %started_in, service = %call.service, "federated call");
    let rpc = rpc.clone();
    tokio::spawn(async move {
        let options = CallOptions {
            idempotent: call.idempotent,
            ..CallOptions::default()
        };
        let body = Bytes::from(call.body);
        let served = rpc.call_bytes_from(Some(started_in), &call.service, body, deadline, &options);
        let result = with_trace(call.trace, served).await;
        respond(
            request,
            FederationReply::Call(result.map(|b| b.to_vec()).map_err(remote_error)),
        );
    });
}

/// What a hub answers when it could not pass a call on.
fn transit_error(error: CrossClusterError) -> RemoteCallError {
    match error {
        CrossClusterError::Federation(e) => RemoteCallError::Federation(e),
        CrossClusterError::Remote(e) => e,
        other => RemoteCallError::Failed(format!("at the hub: {other}")),
    }
}

fn respond(request: GatewayRequest, reply: FederationReply) {
    match wire::encode(&reply) {
        Ok(bytes) => request.respond(bytes.into()),
        Err(error) => tracing::warn!(%error, "federation reply does not encode"),
    }
}

fn remote_error(error: RpcError) -> RemoteCallError {
    match error {
        RpcError::DeadlineExceeded { .. } => RemoteCallError::DeadlineExceeded,
        other => RemoteCallError::Failed(other.to_string()),
    }
}
