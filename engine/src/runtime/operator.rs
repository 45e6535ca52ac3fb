//! What an operator does to a running node over HTTP, beyond reading it: remove a failed member
//! (`POST /force-leave/{id}`), publish (`POST /publish/{topic}`), subscribe (`GET
//! /subscribe/{pattern}`, a stream), call a service (`POST /call/{service}?timeout_ms=N`),
//! register and deregister an outside endpoint (`PUT`/`DELETE /services/{name}`), and watch
//! events (`GET /monitor`, a stream). Streams are newline-delimited JSON in a chunked response.
//! Writes come only from loopback (the server's rule); everything goes through the same handles
//! an embedding application uses.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::request::Request;
use super::services::{
    CallOptions, PubSubHandle, Registration, RpcError, RpcHandle, ServiceOptions, ServicesHandle,
    Subscription,
};
use super::ConfigHandle;
use crate::http::{HttpServerBuilder, LineSender, StreamAnswer, StreamRequest, WriteRequest};
use foundation_core::membership::{ForceLeaveError, MembershipEvent};
use foundation_core::services::{Directory, Instance, Target};
use foundation_core::{ForceLeft, NodeId};

/// An RPC's deadline when the caller names none.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest deadline accepted: a call is an operator's probe, not a batch job. The same
/// as the longest a peer's call runs by default.
const MAX_CALL_TIMEOUT: Duration = foundation_core::services::admission::MAX_CALL_DEADLINE;

/// The handles the operator's routes act through.
pub(crate) struct OperatorApi {
    pub requests: mpsc::Sender<Request>,
    pub services: ServicesHandle,
    pub rpc: RpcHandle,
    pub pubsub: PubSubHandle,
    pub config: ConfigHandle,
    pub events: broadcast::Sender<MembershipEvent>,
    pub directory: watch::Receiver<Arc<Directory>>,
    /// This node, for the first line of a monitor stream.
    pub identity: super::identity::Identity,
}

/// Outside endpoints registered over HTTP, by service and local id: the node keeps them
/// registered until `DELETE /services/{name}` or until it stops.
type Registrations = Arc<Mutex<BTreeMap<(String, u64), Registration>>>;

/// A JSON error answer.
fn refuse(status: StatusCode, message: impl std::fmt::Display) -> (StatusCode, Value) {
    (status, json!({ "error": message.to_string() }))
}

/// Adds the operator's routes to `server`.
pub(crate) fn routes(server: HttpServerBuilder, api: OperatorApi) -> HttpServerBuilder {
    let OperatorApi {
        requests,
        services,
        rpc,
        pubsub,
        config,
        events,
        directory,
        identity,
    } = api;
    let registrations = Registrations::default();
    let subscriber = pubsub.clone();
    server
        .write("/force-leave/", &[Method::POST], move |r| {
            Box::pin(force_leave_route(requests.clone(), r))
        })
        .write("/publish/", &[Method::POST], move |r| {
            Box::pin(publish(pubsub.clone(), r))
        })
        .write("/call/", &[Method::POST], move |r| {
            Box::pin(call(rpc.clone(), r))
        })
        .write("/services/", &[Method::PUT, Method::DELETE], move |r| {
            Box::pin(register(services.clone(), registrations.clone(), r))
        })
        .stream("/subscribe/", move |r| subscribe(subscriber.clone(), r))
        .stream("/monitor", move |r| {
            let watched = Watched {
                events: events.subscribe(),
                config: config.clone(),
                directory: directory.clone(),
                identity: identity.clone(),
            };
            monitor(watched, r)
        })
}

/// Asks the driver to remove a member; `Err` when the node has stopped.
pub(crate) async fn force_leave(
    requests: &mpsc::Sender<Request>,
    node: NodeId,
) -> Result<Result<ForceLeft, ForceLeaveError>, super::request::Stopped> {
    let (done, answer) = oneshot::channel();
    let request = Request::ForceLeave(node, done);
    requests
        .send(request)
        .await
        .map_err(|_| super::request::Stopped)?;
    answer.await.map_err(|_| super::request::Stopped)
}

/// `POST /force-leave/{id}`: `removed` names a member of the table, `removed_agreed` one that
/// only the agreed membership still counted (no address or state is known of it any more).
async fn force_leave_route(
    requests: mpsc::Sender<Request>,
    request: WriteRequest,
) -> (StatusCode, Value) {
    let Ok(node) = request.rest.parse::<NodeId>() else {
        let why = format!(
            "{:?} is not a node id (32 hex digits, as `foundation members` shows)",
            request.rest
        );
        return refuse(StatusCode::BAD_REQUEST, why);
    };
    match force_leave(&requests, node).await {
        Ok(Ok(ForceLeft::Member(member))) => (StatusCode::OK, json!({ "removed": member })),
        Ok(Ok(ForceLeft::Agreed { id, generation })) => {
            let agreed = json!({ "id": id.to_string(), "generation": generation });
            (StatusCode::OK, json!({ "removed_agreed": agreed }))
        }
        Ok(Err(error @ ForceLeaveError::Unknown(_))) => refuse(StatusCode::NOT_FOUND, error),
        Ok(Err(error)) => refuse(StatusCode::CONFLICT, error),
        Err(_) => refuse(StatusCode::CONFLICT, "the node has stopped"),
    }
}

/// `POST /publish/{topic}`: the body is the message, as is.
async fn publish(pubsub: PubSubHandle, request: WriteRequest) -> (StatusCode, Value) {
    let bytes = request.body.len();
    match pubsub.publish(&request.rest, request.body).await {
        Ok(()) => (
            StatusCode::OK,
            json!({ "topic": request.rest, "bytes": bytes }),
        ),
        Err(error) => refuse(StatusCode::BAD_REQUEST, error),
    }
}

/// `POST /call/{service}?timeout_ms=N`: the body is the request, as is; the answer carries the
/// response as text when it is UTF-8, else as hex.
async fn call(rpc: RpcHandle, request: WriteRequest) -> (StatusCode, Value) {
    let timeout = match call_timeout(&request.query) {
        Ok(timeout) => timeout,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, why),
    };
    let started = std::time::Instant::now();
    let options = CallOptions::default();
    match rpc
        .call_bytes(&request.rest, request.body, timeout, &options)
        .await
    {
        Ok(response) => {
            let mut answer = payload_json(&response);
            answer["service"] = json!(request.rest);
            answer["elapsed_ms"] = json!(started.elapsed().as_secs_f64() * 1e3);
            (StatusCode::OK, answer)
        }
        Err(error) => refuse(rpc_status(&error), error),
    }
}

/// The deadline a `?timeout_ms=N` query asks for.
fn call_timeout(query: &str) -> Result<Duration, String> {
    let Some(value) = query_value(query, "timeout_ms") else {
        return Ok(DEFAULT_CALL_TIMEOUT);
    };
    let ms: u64 = value
        .parse()
        .map_err(|_| format!("timeout_ms={value:?} is not a number of milliseconds"))?;
    let timeout = Duration::from_millis(ms);
    if timeout.is_zero() || timeout > MAX_CALL_TIMEOUT {
        return Err(format!(
            "timeout_ms must be between 1 and {}",
            MAX_CALL_TIMEOUT.as_millis()
        ));
    }
    Ok(timeout)
}

/// The value of `key` in a query string (`a=1&b=2`), as sent.
fn query_value<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(k, v)| (k == key).then_some(v))
}

/// The HTTP status that says what kind of failure an RPC had.
fn rpc_status(error: &RpcError) -> StatusCode {
    match error {
        RpcError::NoInstances { .. } => StatusCode::NOT_FOUND,
        RpcError::CircuitOpen { .. } | RpcError::Unavailable { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        RpcError::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
        RpcError::Handler { .. } => StatusCode::BAD_GATEWAY,
        RpcError::Codec(_) => StatusCode::BAD_REQUEST,
    }
}

/// Bytes as JSON: `{"data": text}` when they are UTF-8, `{"data_hex": ...}` otherwise.
fn payload_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => json!({ "data": text }),
        Err(_) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            json!({ "data_hex": hex })
        }
    }
}

/// What `PUT /services/{name}` takes.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointSpec {
    addr: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

/// `PUT /services/{name}` registers an outside endpoint; `DELETE /services/{name}[?id=N]`
/// removes those registered this way.
async fn register(
    services: ServicesHandle,
    registrations: Registrations,
    request: WriteRequest,
) -> (StatusCode, Value) {
    // The server lets only PUT and DELETE through.
    if request.method == Method::PUT {
        register_endpoint(services, registrations, request).await
    } else {
        deregister(registrations, request).await
    }
}

async fn register_endpoint(
    services: ServicesHandle,
    registrations: Registrations,
    request: WriteRequest,
) -> (StatusCode, Value) {
    let spec: EndpointSpec = match serde_json::from_slice(&request.body) {
        Ok(spec) => spec,
        Err(error) => {
            let why = format!(
                "expected {{\"addr\": \"URL or host:port\", \"version\"?, \"tags\"?}}: {error}"
            );
            return refuse(StatusCode::BAD_REQUEST, why);
        }
    };
    if spec.addr.trim().is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "addr must not be empty");
    }
    let mut options = ServiceOptions::default();
    if let Some(version) = spec.version {
        options = options.version(version);
    }
    for (key, value) in spec.tags {
        options = options.tag(key, value);
    }
    match services
        .register_endpoint(&request.rest, spec.addr, options)
        .await
    {
        Ok(registration) => {
            let id = registration.local_id();
            let key = (request.rest.clone(), id);
            lock(&registrations).insert(key, registration);
            (StatusCode::OK, json!({ "service": request.rest, "id": id }))
        }
        Err(error) => refuse(StatusCode::BAD_REQUEST, error),
    }
}

async fn deregister(registrations: Registrations, request: WriteRequest) -> (StatusCode, Value) {
    let only = match query_value(&request.query, "id").map(str::parse::<u64>) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => return refuse(StatusCode::BAD_REQUEST, "id must be a number"),
    };
    let taken: Vec<Registration> = {
        let mut held = lock(&registrations);
        let keys: Vec<(String, u64)> = held
            .keys()
            .filter(|(name, id)| *name == request.rest && only.is_none_or(|o| o == *id))
            .cloned()
            .collect();
        keys.iter().filter_map(|k| held.remove(k)).collect()
    };
    if taken.is_empty() {
        let why = format!(
            "no endpoint of {:?} was registered through this node's HTTP API{}",
            request.rest,
            only.map(|id| format!(" with id {id}")).unwrap_or_default()
        );
        return refuse(StatusCode::NOT_FOUND, why);
    }
    let mut removed = Vec::new();
    for registration in taken {
        let id = registration.local_id();
        if let Err(error) = registration.deregister().await {
            return refuse(StatusCode::CONFLICT, error);
        }
        removed.push(id);
    }
    (
        StatusCode::OK,
        json!({ "service": request.rest, "deregistered": removed }),
    )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The map stays consistent across a panic elsewhere: every change is one insert or remove.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `GET /subscribe/{pattern}`: a line `{"kind": "subscribed"}`, then one per message.
fn subscribe(pubsub: PubSubHandle, request: StreamRequest) -> StreamAnswer {
    Box::pin(async move {
        let subscription = pubsub
            .subscribe(&request.rest)
            .await
            .map_err(|e| refuse(StatusCode::BAD_REQUEST, e))?;
        let (lines, chunks) = LineSender::channel();
        tokio::spawn(forward_messages(subscription, lines));
        Ok(chunks)
    })
}

async fn forward_messages(mut subscription: Subscription, lines: LineSender) {
    let hello = json!({ "kind": "subscribed", "pattern": subscription.pattern() });
    if !lines.send(&hello).await {
        return;
    }
    loop {
        let message = tokio::select! {
            message = subscription.recv() => message,
            _ = lines.closed() => return,
        };
        let Some(message) = message else { return };
        let mut line = payload_json(&message.payload);
        line["kind"] = json!("message");
        line["topic"] = json!(&*message.topic);
        line["publisher"] = json!(message.publisher.to_string());
        if !lines.send(&line).await {
            return;
        }
    }
}

/// What `GET /monitor` follows.
struct Watched {
    events: broadcast::Receiver<MembershipEvent>,
    config: ConfigHandle,
    directory: watch::Receiver<Arc<Directory>>,
    identity: super::identity::Identity,
}

/// `GET /monitor`: a line `{"kind": "monitoring"}`, then one per membership change, config
/// change and service instance that appears or goes.
fn monitor(watched: Watched, request: StreamRequest) -> StreamAnswer {
    Box::pin(async move {
        if !request.rest.is_empty() {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                "not found; did you mean GET /monitor?",
            ));
        }
        let (lines, chunks) = LineSender::channel();
        tokio::spawn(forward_events(watched, lines));
        Ok(chunks)
    })
}

async fn forward_events(mut watched: Watched, lines: LineSender) {
    let mut config = watched.config.watch("");
    let mut instances = instance_set(&watched.directory.borrow_and_update());
    let hello = json!({ "kind": "monitoring", "node": watched.identity.json() });
    if !lines.send(&hello).await {
        return;
    }
    loop {
        let batch: Vec<Value> = tokio::select! {
            event = watched.events.recv() => match event {
                Ok(event) => vec![member_line(&event)],
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    vec![json!({ "kind": "lagged", "missed": missed })]
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            change = config.next() => match change {
                Some(c) => vec![json!({ "kind": "config", "key": c.key, "old": c.old, "new": c.new })],
                None => return,
            },
            changed = watched.directory.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = instance_set(&watched.directory.borrow_and_update());
                let lines = service_lines(&instances, &now);
                instances = now;
                lines
            }
            _ = lines.closed() => return,
        };
        for line in batch {
            if !lines.send(&line).await {
                return;
            }
        }
    }
}

/// A membership event as a monitor line.
fn member_line(event: &MembershipEvent) -> Value {
    let (name, member) = match event {
        MembershipEvent::Up(m) => ("up", Some(m)),
        MembershipEvent::Updated(m) => ("updated", Some(m)),
        MembershipEvent::Failed(m) => ("failed", Some(m)),
        MembershipEvent::Left(m) => ("left", Some(m)),
        MembershipEvent::Removed(m) => ("removed", Some(m)),
        MembershipEvent::Joined => ("joined", None),
        MembershipEvent::Isolated => ("isolated", None),
    };
    json!({ "kind": "member", "event": name, "member": member })
}

/// Every visible instance as (service, instance id, address).
fn instance_set(directory: &Directory) -> BTreeSet<(String, String, String)> {
    directory
        .service_names()
        .flat_map(|name| {
            directory
                .instances(name)
                .iter()
                .map(|i| (name.to_owned(), i.id.to_string(), instance_addr(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Where an instance is reached: an outside endpoint's own address, else its node's.
fn instance_addr(instance: &Instance) -> String {
    match &instance.record.target {
        Target::Endpoint(addr) => addr.clone(),
        Target::Handler => instance.addr.to_string(),
    }
}

/// Lines for the instances that appeared and went between two sets.
fn service_lines(
    before: &BTreeSet<(String, String, String)>,
    after: &BTreeSet<(String, String, String)>,
) -> Vec<Value> {
    let line = |event: &str, (service, id, addr): &(String, String, String)| json!({ "kind": "service", "event": event, "service": service, "instance": id, "addr": addr });
    let gone = before.difference(after).map(|i| line("down", i));
    let new = after.difference(before).map(|i| line("up", i));
    gone.chain(new).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_timeouts_are_parsed_and_bounded() {
        assert_eq!(call_timeout(""), Ok(DEFAULT_CALL_TIMEOUT));
        assert_eq!(
            call_timeout("x=1&timeout_ms=250"),
            Ok(Duration::from_millis(250))
        );
        assert!(call_timeout("timeout_ms=soon").is_err());
        assert!(call_timeout("timeout_ms=0").is_err());
        assert!(call_timeout("timeout_ms=999999999").is_err());
    }

    #[test]
    fn payloads_are_text_when_they_can_be() {
        assert_eq!(payload_json(b"hi"), json!({ "data": "hi" }));
        assert_eq!(payload_json(&[0xff, 0x01]), json!({ "data_hex": "ff01" }));
    }

    #[test]
    fn service_changes_name_what_appeared_and_went() {
        let a = ("s".to_owned(), "n.1/1".to_owned(), "x:1".to_owned());
        let b = ("s".to_owned(), "n.1/2".to_owned(), "x:2".to_owned());
        let before = BTreeSet::from([a.clone()]);
        let after = BTreeSet::from([b.clone()]);
        let lines = service_lines(&before, &after);
        assert_eq!(lines[0]["event"], "down");
        assert_eq!(lines[0]["instance"], "n.1/1");
        assert_eq!(lines[1]["event"], "up");
        assert!(service_lines(&after, &after).is_empty());
    }
}
