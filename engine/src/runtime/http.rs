//! The node's HTTP endpoints: `/metrics`, `/health`, `/members`, `/keyspaces` (sizes and
//! digests, see `status.rs`), `/config` and
//! `/config/{key}` (plus writes to `/config/{key}`), `/services`, `/agents`,
//! `/agents/sessions` (the coordination sessions this node coordinated), `/variables` (see
//! `vars/http.rs`), `/placement` (see `placement/http.rs`), `GET` and `POST /snapshot` (see
//! `snapshot.rs`), `POST /leave`, and the operator's actions
//! (`operator.rs`), served
//! from the state the driver publishes (writes go through the config handle, like the
//! application's; a leave is the same request as [`Node::leave`](super::Node::leave)'s).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};

use super::identity::Identity;
use super::request::Request;
use super::services::ServicesHandle;
use super::status::{self, Demand, KeyspaceSummary, PeerDigests};
use super::ConfigHandle;
use crate::http::{Access, Health, HttpError, HttpHandle, HttpServer};
use foundation_core::membership::{MemberState, MemberView};
use foundation_core::services::Directory;
use foundation_core::NodeId;
use foundation_transport::TransportMetrics;
use hyper::{Method, StatusCode};

/// What the endpoints read and act through: the node's published state and its handles.
pub(crate) struct Api {
    pub registry: Arc<Registry>,
    /// The member table.
    pub view: watch::Receiver<Vec<MemberView>>,
    pub config: ConfigHandle,
    pub services: ServicesHandle,
    pub vars: super::vars::VarsHandle,
    pub placement: super::placement::PlacementHandle,
    /// The caches declared here.
    pub caches: super::caches::CachesHandle,
    pub agents: super::agents::AgentsHandle,
    /// This node, as `/members` and `/health` name it.
    pub identity: Identity,
    pub requests: mpsc::Sender<Request>,
    /// What the operator's actions go through (`operator.rs`).
    pub operator: super::operator::OperatorApi,
    /// Members SWIM suspects now.
    pub suspects: watch::Receiver<BTreeSet<NodeId>>,
    /// Who may use the API.
    pub access: Access,
    /// The transport's counters, for traffic per channel.
    pub transport: Arc<TransportMetrics>,
    /// Each keyspace's size and digest, and where to ask for the digests.
    pub keyspaces: (watch::Receiver<Vec<KeyspaceSummary>>, Demand),
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
        caches,
        agents,
        identity,
        requests,
        operator,
        suspects,
        access,
        transport,
        keyspaces: (keyspaces, digests_wanted),
    } = api;
    let peers = PeerDigests::default();
    peers.spawn_poller(view.clone());
    let health_view = view.clone();
    let health_identity = identity.clone();
    let leave_identity = identity.clone();
    let leave_agents = agents.clone();
    let status = StatusSources {
        view: view.clone(),
        suspects: suspects.clone(),
        identity: identity.clone(),
        services: services.clone(),
        vars: vars.clone(),
        agents: agents.clone(),
        transport,
        keyspaces: keyspaces.clone(),
        digests_wanted: digests_wanted.clone(),
        peers,
        placement: placement.clone(),
    };
    let keyspaces_identity = identity.clone();
    let server = HttpServer::builder(addr).access(access);
    let server = super::operator::routes(server, operator);
    let server = super::placement::routes(server, placement);
    let server = super::caches::routes(server, caches);
    let server = super::federation::http::routes(server, services.clone());
    let server = super::snapshot::routes(server, requests.clone(), identity.clone());
    super::vars::routes(server, vars)
        .metrics(registry)
        .health(move || health(&health_view.borrow(), &health_identity.json()))
        .status(move || status.json())
        .json("/members", move || {
            members(&view.borrow(), &suspects.borrow(), &identity.json())
        })
        .json("/config", {
            let config = config.clone();
            move || serde_json::Value::Object(config.snapshot().into_iter().collect())
        })
        .json_under("/config/", {
            let config = config.clone();
            move |key| config_value(&config, key)
        })
        .write("/config/", &[Method::PUT, Method::DELETE], move |request| {
            Box::pin(super::cluster_config::http_write(config.clone(), request))
        })
        .write("/leave", &[Method::POST], move |request| {
            Box::pin(leave(
                leave_agents.clone(),
                requests.clone(),
                leave_identity.clone(),
                request,
            ))
        })
        .json("/keyspaces", move || {
            digests_wanted.ask();
            status::keyspaces_json(&keyspaces.borrow(), &keyspaces_identity.json())
        })
        .json("/services", move || services_json(&services.directory()))
        .json("/agents/sessions", {
            let agents = agents.clone();
            move || serde_json::json!({ "sessions": agents.sessions() })
        })
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
    agents: super::agents::AgentsHandle,
    requests: mpsc::Sender<Request>,
    identity: Identity,
    request: crate::http::WriteRequest,
) -> (StatusCode, serde_json::Value) {
    if !request.rest.is_empty() {
        return (
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": "not found; did you mean POST /leave?" }),
        );
    }
    tracing::warn!("leaving the cluster: asked over HTTP (POST /leave)");
    // Its own task: a client that goes away (or gives up while slow agents stop) drops this
    // handler, and the leave must not stop half-way, agents gone and the node still a member.
    let leaving = tokio::spawn(async move { super::leave_gracefully(&agents, &requests).await });
    if !leaving.await.unwrap_or(false) {
        return (
            StatusCode::CONFLICT,
            serde_json::json!({ "error": "the node has already stopped", "node": identity.json() }),
        );
    }
    (
        StatusCode::OK,
        serde_json::json!({ "left": true, "node": identity.json() }),
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

fn members(
    view: &[MemberView],
    suspects: &BTreeSet<NodeId>,
    identity: &serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({ "self": identity, "members": member_rows(view, suspects) })
}

/// Each member as JSON, with whether SWIM suspects it.
fn member_rows(view: &[MemberView], suspects: &BTreeSet<NodeId>) -> Vec<serde_json::Value> {
    view.iter()
        .map(|member| {
            // Serialising a view cannot fail (ids are text, no maps with non-string keys); if
            // it ever did, the row is null rather than the connection taken down.
            let mut row = serde_json::to_value(member).unwrap_or(serde_json::Value::Null);
            if let Some(fields) = row.as_object_mut() {
                fields.insert("suspect".into(), suspects.contains(&member.id).into());
            }
            row
        })
        .collect()
}

/// What the status page draws, read afresh on each request.
struct StatusSources {
    view: watch::Receiver<Vec<MemberView>>,
    suspects: watch::Receiver<BTreeSet<NodeId>>,
    identity: Identity,
    services: ServicesHandle,
    vars: super::vars::VarsHandle,
    agents: super::agents::AgentsHandle,
    transport: Arc<TransportMetrics>,
    keyspaces: watch::Receiver<Vec<KeyspaceSummary>>,
    digests_wanted: Demand,
    peers: PeerDigests,
    placement: super::placement::PlacementHandle,
}

impl StatusSources {
    /// The node, its health, every member with this node first, traffic per channel,
    /// keyspaces with their convergence, services, variables, agents, sessions, placement.
    fn json(&self) -> serde_json::Value {
        // Someone is looking: take digests here and ask the other members for theirs.
        self.digests_wanted.ask();
        self.peers.watched.ask();
        let view = self.view.borrow().clone();
        let me = self.identity.json();
        let mut rows = vec![self.own_row(&me)];
        rows.extend(member_rows(&view, &self.suspects.borrow()));
        let health = serde_json::to_value(health(&view, &me)).unwrap_or_default();
        serde_json::json!({
            "node": me,
            "health": health,
            "members": rows,
            "traffic": status::traffic_json(&self.transport),
            "keyspaces": self.peers.convergence(&self.keyspaces.borrow(), &view),
            "services": services_json(&self.services.directory())["services"],
            "variables": super::vars::all_json(&self.vars),
            "agents": agents_json(&self.agents.directory())["agents"],
            "sessions": self.agents.sessions(),
            "placement": serde_json::to_value(&*self.placement.all()).unwrap_or_default(),
        })
    }

    /// This node as a member row: alive, by definition, while it serves the page.
    fn own_row(&self, me: &serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "id": me["id"], "addr": me["addr"], "generation": me["generation"],
            "state": "alive", "suspect": false, "self": true,
            "metadata": self.identity.metadata_json(),
        })
    }
}

/// Every agent visible from this node, in name order.
fn agents_json(directory: &foundation_core::agents::AgentDirectory) -> serde_json::Value {
    let agents: Vec<serde_json::Value> = directory
        .all()
        .map(|agent| {
            serde_json::json!({
                "name": agent.name,
                "node": agent.node.id.to_string(),
                "addr": agent.node.addr.to_string(),
                "generation": agent.generation,
                "state": format!("{:?}", agent.record.state).to_lowercase(),
                "health": agent.record.health.name(),
                "health_reason": agent.record.health.reason(),
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
