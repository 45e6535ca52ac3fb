//! The node's HTTP endpoints: `/metrics`, `/health`, `/members`, `/config` and
//! `/config/{key}` (plus writes to `/config/{key}`), `/services`, `/variables` (see
//! `vars/http.rs`), `/placement` (see `placement/http.rs`), and `POST /leave`, served
//! from the state the driver publishes (writes go through the config handle, like the
//! application's; a leave is the same request as [`Node::leave`](super::Node::leave)'s).

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot, watch};

use super::request::Request;
use super::services::ServicesHandle;
use super::ConfigHandle;
use crate::http::{Health, HttpError, HttpHandle, HttpServer};
use foundation_core::membership::{MemberState, MemberView};
use foundation_core::services::Directory;
use hyper::StatusCode;

/// What the endpoints read and act through: the node's published state and its handles.
pub(crate) struct Api {
    pub registry: Arc<Registry>,
    /// The member table.
    pub view: watch::Receiver<Vec<MemberView>>,
    pub config: ConfigHandle,
    pub services: ServicesHandle,
    pub vars: super::vars::VarsHandle,
    pub placement: super::placement::PlacementHandle,
    pub agents: super::agents::AgentsHandle,
    /// This node, as `/members` and `/health` name it.
    pub identity: serde_json::Value,
    pub requests: mpsc::Sender<Request>,
}

/// Starts the server on `addr` for a node served through `api`.
pub(crate) fn serve(addr: SocketAddr, api: Api) -> Result<HttpHandle, HttpError> {
    let Api {
        registry,
        view,
        config,
        services,
        vars,
        placement,
        agents,
        identity,
        requests,
    } = api;
    let health_view = view.clone();
    let health_identity = identity.clone();
    let leave_identity = identity.clone();
    let server = HttpServer::builder(addr);
    let server = super::placement::routes(server, placement);
    super::vars::routes(server, vars)
        .metrics(registry)
        .health(move || health(&health_view.borrow(), &health_identity))
        .json("/members", move || members(&view.borrow(), &identity))
        .json("/config", {
            let config = config.clone();
            move || serde_json::Value::Object(config.snapshot().into_iter().collect())
        })
        .json_under("/config/", {
            let config = config.clone();
            move |key| config_value(&config, key)
        })
        .write("/config/", move |request| {
            Box::pin(super::cluster_config::http_write(config.clone(), request))
        })
        .write("/leave", move |request| {
            Box::pin(leave(requests.clone(), leave_identity.clone(), request))
        })
        .json("/services", move || services_json(&services.directory()))
        .json("/agents", move || agents_json(&agents.directory()))
        .start()
}

/// `GET /config/{key}`: the key's value as JSON, 404 when the key is not set.
fn config_value(config: &ConfigHandle, key: &str) -> (StatusCode, serde_json::Value) {
    match config.get::<serde_json::Value>(key) {
        Ok(Some(value)) => (StatusCode::OK, value),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": format!("no key {key:?}"), "key": key }),
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({ "error": error.to_string(), "key": key }),
        ),
    }
}

/// `POST /leave`: leaves the cluster gracefully, as [`Node::leave`](super::Node::leave) does,
/// and answers once the node has left (peers record it as left). The HTTP server itself stays
/// up until the application notices ([`Node::stopped`](super::Node::stopped)) and finishes.
async fn leave(
    requests: mpsc::Sender<Request>,
    identity: serde_json::Value,
    request: crate::http::WriteRequest,
) -> (StatusCode, serde_json::Value) {
    if !request.rest.is_empty() {
        return (
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": "not found; did you mean POST /leave?" }),
        );
    }
    if request.method != hyper::Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            serde_json::json!({ "error": "use POST /leave" }),
        );
    }
    tracing::warn!("leaving the cluster: asked over HTTP (POST /leave)");
    let (done, stopped) = oneshot::channel();
    if requests.send(Request::Stop(done)).await.is_err() || stopped.await.is_err() {
        return (
            StatusCode::CONFLICT,
            serde_json::json!({ "error": "the node has already stopped", "node": identity }),
        );
    }
    (
        StatusCode::OK,
        serde_json::json!({ "left": true, "node": identity }),
    )
}

/// Healthy while part of a cluster: at least one other member alive.
fn health(view: &[MemberView], identity: &serde_json::Value) -> Health {
    let alive = view
        .iter()
        .filter(|m| m.state == MemberState::Alive)
        .count();
    let health = if alive > 0 {
        Health::healthy("in cluster")
    } else {
        Health::unhealthy("no live peers")
    };
    health
        .detail("alive_peers", alive)
        .detail("node", identity.clone())
}

fn members(view: &[MemberView], identity: &serde_json::Value) -> serde_json::Value {
    // Serialising the view cannot fail (ids are text, no maps with non-string keys); if it
    // ever did, the route answers null rather than taking the connection down.
    let members = serde_json::to_value(view).unwrap_or(serde_json::Value::Null);
    serde_json::json!({ "self": identity, "members": members })
}

/// Every agent visible from this node, in name order.
fn agents_json(directory: &foundation_core::agents::AgentDirectory) -> serde_json::Value {
    let agents: Vec<serde_json::Value> = directory
        .all()
        .iter()
        .map(|agent| {
            serde_json::json!({
                "name": agent.name,
                "node": agent.node.id.to_string(),
                "addr": agent.node.addr.to_string(),
                "generation": agent.generation,
                "state": format!("{:?}", agent.record.state).to_lowercase(),
                "capabilities": agent.record.capabilities,
                "local": agent.local,
            })
        })
        .collect();
    serde_json::json!({ "agents": agents })
}

/// Every visible instance, grouped by service.
fn services_json(directory: &Directory) -> serde_json::Value {
    let services: serde_json::Map<String, serde_json::Value> = directory
        .service_names()
        .map(|name| {
            let instances: Vec<serde_json::Value> = directory
                .instances(name)
                .iter()
                .map(|i| {
                    serde_json::json!({
                        "id": i.id.to_string(),
                        "node": i.id.node.to_string(),
                        "addr": i.addr.to_string(),
                        "local": i.local,
                        "record": i.record,
                    })
                })
                .collect();
            (name.to_owned(), serde_json::Value::Array(instances))
        })
        .collect();
    serde_json::json!({ "services": services })
}
