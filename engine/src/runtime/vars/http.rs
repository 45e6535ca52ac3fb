//! `GET /variables`, `GET /variables/{name}` (with its last changes, statistics and, for a
//! counter, this node's rights), `GET /watch/variables/{name}` (a stream of newline-delimited
//! JSON: the current value, then every change with the value before it and its writer),
//! `GET /watch/variables?prefix=P` (the same for every variable whose name starts with `P`,
//! those declared later included; each line names its variable),
//! `PUT /variables/{name}` (declare: `cas` by default, with this
//! node and every member alive as the acceptors; `"policy": "lww"`, `"coordinated"` or
//! `"counter"`) and `POST /variables/{name}` (a compare-and-set, an `lww` write, or a
//! counter's draw or refill, by the variable's policy; `{"move_to": "alive"}` moves a `cas` or
//! `coordinated` variable to the lives alive now, `{"move_to": ["api-1", "4f2a09c1"]}` to
//! those of the alive members named); writes from this machine only, like every
//! write of the API.

use std::collections::BTreeSet;
use std::time::Duration;

use foundation_agents::cas::CasOutcome;
use foundation_agents::variable::VarType;
use foundation_core::vars::{Change, Life, VarsError};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::json::{type_from_json, type_to_json, value_from_json, value_to_json};
use super::{VarState, VarWatch, VarsCallError, VarsHandle, WatchError};
use crate::http::{
    percent_decode, HttpServerBuilder, LineSender, StreamAnswer, StreamRequest, WriteRequest,
};
use foundation_agents::variable::Policy;
use foundation_core::vars::VarSpec;

/// How long a compare-and-set over HTTP may wait for its majority unless the body says.
const DEFAULT_TIMEOUT_MS: u64 = 2_000;
/// The longest it may be told to wait.
const TIMEOUT_MS_MAX: u64 = 60_000;

/// Adds the variables' routes to `server`.
pub(crate) fn routes(server: HttpServerBuilder, vars: VarsHandle) -> HttpServerBuilder {
    let (listing, one, watched) = (vars.clone(), vars.clone(), vars.clone());
    server
        .stream("/watch/variables", move |request| {
            watch(watched.clone(), request)
        })
        .json("/variables", move || all_json(&listing))
        .json_under("/variables/", move |name| match one.all().get(name) {
            Some(state) => (StatusCode::OK, state_json(state)),
            None => not_found(name),
        })
        .write(
            "/variables/",
            &[Method::PUT, Method::POST],
            move |request| {
                let vars = vars.clone();
                Box::pin(async move {
                    // PUT declares, POST writes; the server lets no other method through.
                    if request.method == Method::PUT {
                        declare(vars, request).await
                    } else {
                        write(vars, request).await
                    }
                })
            },
        )
}

/// Every variable this node holds, by name (`GET /variables`, and the status page).
pub(crate) fn all_json(vars: &VarsHandle) -> Value {
    let all = vars.all();
    Value::Object(
        all.iter()
            .map(|(n, v)| (n.clone(), state_json(v)))
            .collect(),
    )
}

/// `GET /watch/variables/{name}` or `GET /watch/variables?prefix=P`: the current values, then
/// each change as this node sees it.
fn watch(vars: VarsHandle, request: StreamRequest) -> StreamAnswer {
    Box::pin(async move {
        let watch = match request.rest.strip_prefix('/') {
            Some(name) => {
                let watch = vars.watch_variable(name);
                if watch.current().is_empty() {
                    return Err(not_found(name));
                }
                watch
            }
            None if request.rest.is_empty() => vars.watch_prefix(&prefix_of(&request.query)?),
            None => return Err(not_found(&request.rest)),
        };
        let (lines, chunks) = LineSender::channel();
        tokio::spawn(forward_changes(watch, lines));
        Ok(chunks)
    })
}

/// The `prefix` parameter of a prefix watch (empty when absent: every variable).
fn prefix_of(query: &str) -> Result<String, (StatusCode, Value)> {
    let mut prefix = String::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "prefix" {
            let error = format!("unknown query parameter {key:?}; only prefix is known");
            return Err((StatusCode::BAD_REQUEST, json!({ "error": error })));
        }
        prefix = percent_decode(value).ok_or_else(|| {
            let error = "malformed percent-encoding in prefix";
            (StatusCode::BAD_REQUEST, json!({ "error": error }))
        })?;
    }
    Ok(prefix)
}

/// Sends the watched variables' current values, then every change of them, until the client
/// goes away.
async fn forward_changes(mut watch: VarWatch, lines: LineSender) {
    let current: Vec<Value> = watch
        .current()
        .iter()
        .map(|(name, (version, value))| json!({ "kind": "current", "name": name, "version": version, "value": value_to_json(value) }))
        .collect();
    for line in &current {
        if !lines.send(line).await {
            return;
        }
    }
    loop {
        let change = tokio::select! {
            change = watch.next() => change,
            _ = lines.closed() => return,
        };
        let line = match change {
            Ok(c) => {
                let old = c.old.as_ref().map(value_to_json);
                json!({ "kind": "changed", "name": c.name, "version": c.version, "old": old, "value": value_to_json(&c.value), "writer": life_json(&c.writer) })
            }
            // Changes went by faster than this client read them: say so, go on from here.
            Err(WatchError::Lagged(skipped)) => {
                json!({ "kind": "lagged", "skipped_events": skipped })
            }
            Err(WatchError::Stopped) => return,
        };
        if !lines.send(&line).await {
            return;
        }
    }
}

fn state_json(state: &VarState) -> Value {
    let s = &state.statistics;
    let acceptors = state
        .acceptors
        .as_ref()
        .map_or(&state.spec.acceptors, |(_, set)| set);
    json!({
        "version": state.version,
        "value": value_to_json(&state.value),
        "type": type_to_json(&state.spec.ty),
        "policy": format!("{:?}", state.spec.policy).to_lowercase(),
        // Who decides now (a change of acceptors moves them from those declared), and from
        // which version.
        "acceptors": acceptors.iter().map(life_json).collect::<Vec<_>>(),
        "acceptors_from": state.acceptors.as_ref().map(|(from, _)| from),
        "history": state.history.iter().map(change_json).collect::<Vec<_>>(),
        "statistics": {
            "changes": s.changes,
            "refused": s.refused,
            "drawn": s.drawn,
            "refilled": s.refilled,
            "insufficient": s.insufficient,
            "handed": s.handed,
        },
        "rights": state.rights,
    })
}

fn change_json(change: &Change) -> Value {
    json!({
        "version": change.version,
        "value": value_to_json(&change.value),
        "writer": life_json(&change.writer),
        // The node's clock: milliseconds since it started.
        "at_ms": change.at.elapsed().as_millis() as u64,
    })
}

fn life_json(life: &Life) -> Value {
    json!({ "node": life.node.to_string(), "generation": life.generation })
}

fn not_found(name: &str) -> (StatusCode, Value) {
    let error = format!("no variable {name:?} on this node");
    (StatusCode::NOT_FOUND, json!({ "error": error }))
}

fn bad_request(error: impl std::fmt::Display) -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        json!({ "error": error.to_string() }),
    )
}

/// A counter's type: its units.
const UNITS: VarType = VarType::Int {
    min: 0,
    max: i64::MAX,
};

/// `PUT /variables/{name}` with `{"type": {"int": [0, 100]}, "initial": 0}`: a `cas`
/// variable whose acceptors are this node and every member alive now. With `"policy":
/// "coordinated"` the same acceptors; `"lww"` has none; `"counter"` needs no type, and its
/// initial units are shared among this node and every member alive now.
async fn declare(vars: VarsHandle, request: WriteRequest) -> (StatusCode, Value) {
    let body: Value = match serde_json::from_slice(&request.body) {
        Ok(body) => body,
        Err(e) => return bad_request(format!("the body is not JSON: {e}")),
    };
    let policy = match body.get("policy").map(Value::as_str) {
        None | Some(Some("cas")) => Policy::Cas,
        Some(Some("lww")) => Policy::Lww,
        Some(Some("coordinated")) => Policy::Coordinated,
        Some(Some("counter")) => Policy::Counter,
        Some(_) => {
            return bad_request(
                "\"policy\" is one of \"cas\", \"lww\", \"coordinated\", \"counter\"",
            )
        }
    };
    let ty = match (policy, body.get("type")) {
        (Policy::Counter, _) => Ok(UNITS),
        (_, ty) => type_from_json(ty.unwrap_or(&Value::Null)),
    };
    let ty = match ty {
        Ok(ty) => ty,
        Err(e) => return bad_request(format!("\"type\": {e}")),
    };
    let initial = match value_from_json(&ty, body.get("initial").unwrap_or(&Value::Null)) {
        Ok(value) => value,
        Err(e) => return bad_request(format!("\"initial\": {e}")),
    };
    let acceptors = match policy {
        Policy::Lww => Default::default(),
        _ => vars.alive_lives(),
    };
    let spec = VarSpec {
        ty,
        policy,
        initial,
        acceptors,
    };
    match vars.declare(&request.rest, spec).await {
        Ok(()) => match vars.all().get(&request.rest) {
            Some(state) => (StatusCode::OK, state_json(state)),
            None => not_found(&request.rest),
        },
        Err(VarsCallError::Refused(refused)) => refusal_json(refused),
        Err(VarsCallError::Stopped) => stopped(),
    }
}

fn stopped() -> (StatusCode, Value) {
    let error = "the node stopped";
    (StatusCode::SERVICE_UNAVAILABLE, json!({ "error": error }))
}

/// `POST /variables/{name}`, by the variable's policy.
async fn write(vars: VarsHandle, request: WriteRequest) -> (StatusCode, Value) {
    let name = request.rest;
    let Some(state) = vars.all().get(&name).cloned() else {
        return not_found(&name);
    };
    let body: Value = match serde_json::from_slice(&request.body) {
        Ok(body) => body,
        Err(e) => return bad_request(format!("the body is not JSON: {e}")),
    };
    // A move of any policy goes to the variables machine, whose refusal of a counter or an
    // `lww` variable says why; read as a write, it would be refused for a missing value.
    if body.get("move_to").is_some() {
        return move_to(vars, name, body).await;
    }
    match state.spec.policy {
        Policy::Lww => set(vars, &name, &state, &body).await,
        Policy::Counter => draw_or_refill(vars, &name, &body).await,
        Policy::Cas | Policy::Coordinated => compare_and_set(vars, name, state, body).await,
    }
}

/// `{"move_to": "alive", "timeout_ms": 2000}`: moves the variable to this node's life and
/// every member alive now (a restarted node is a new life), decided by a majority of its
/// current acceptors; `{"move_to": ["api-1", "4f2a09c1", …]}` to the lives of the members
/// alive now that the list names (by name, id or the start of an id).
async fn move_to(vars: VarsHandle, name: String, body: Value) -> (StatusCode, Value) {
    let lives = match acceptors_named(&vars, &body["move_to"]) {
        Ok(lives) => lives,
        Err(why) => return bad_request(format!("\"move_to\": {why}")),
    };
    let timeout = match timeout_of(&body) {
        Ok(timeout) => timeout,
        Err(refused) => return refused,
    };
    match vars.change_acceptors(&name, lives, timeout).await {
        Ok(outcome) => outcome_json(outcome),
        Err(VarsCallError::Refused(refused)) => refusal_json(refused),
        Err(VarsCallError::Stopped) => stopped(),
    }
}

/// The lives a `"move_to"` names: `"alive"`, or a list of alive members.
fn acceptors_named(vars: &VarsHandle, to: &Value) -> Result<BTreeSet<Life>, String> {
    const TAKES: &str = "takes \"alive\" (this node and every member alive now) or a list of members alive now, by name or id";
    if to.as_str() == Some("alive") {
        return Ok(vars.alive_lives());
    }
    let Some(members) = to.as_array() else {
        return Err(TAKES.to_owned());
    };
    let members: Option<Vec<String>> = members
        .iter()
        .map(|m| m.as_str().map(str::to_owned))
        .collect();
    match members {
        Some(members) if !members.is_empty() => vars.lives_named(&members),
        _ => Err(TAKES.to_owned()),
    }
}

/// A majority-decided write's `"timeout_ms"`, [`DEFAULT_TIMEOUT_MS`] when absent.
fn timeout_of(body: &Value) -> Result<Duration, (StatusCode, Value)> {
    match body.get("timeout_ms").map(Value::as_u64) {
        None => Ok(Duration::from_millis(DEFAULT_TIMEOUT_MS)),
        Some(Some(ms)) if (1..=TIMEOUT_MS_MAX).contains(&ms) => Ok(Duration::from_millis(ms)),
        Some(_) => Err(bad_request(format!(
            "\"timeout_ms\" must be 1 to {TIMEOUT_MS_MAX}"
        ))),
    }
}

/// An `lww` write: `{"value": …}`.
async fn set(vars: VarsHandle, name: &str, state: &VarState, body: &Value) -> (StatusCode, Value) {
    let value = match value_from_json(&state.spec.ty, body.get("value").unwrap_or(&Value::Null)) {
        Ok(value) => value,
        Err(e) => return bad_request(format!("\"value\": {e}")),
    };
    done(&vars, name, vars.set(name, value).await)
}

/// A counter's `{"draw": N}` or `{"refill": N}`.
async fn draw_or_refill(vars: VarsHandle, name: &str, body: &Value) -> (StatusCode, Value) {
    let draw = body.get("draw").map(Value::as_u64);
    let refill = body.get("refill").map(Value::as_u64);
    let result = match (draw, refill) {
        (Some(Some(amount)), None) => vars.draw(name, amount).await,
        (None, Some(Some(amount))) => vars.refill(name, amount).await,
        _ => return bad_request("a counter takes {\"draw\": UNITS} or {\"refill\": UNITS}"),
    };
    done(&vars, name, result)
}

/// The variable as it is now, or why the write was refused.
fn done(vars: &VarsHandle, name: &str, result: Result<(), VarsCallError>) -> (StatusCode, Value) {
    match result {
        Ok(()) => match vars.all().get(name) {
            Some(state) => (StatusCode::OK, state_json(state)),
            None => not_found(name),
        },
        Err(VarsCallError::Refused(refused)) => refusal_json(refused),
        Err(VarsCallError::Stopped) => stopped(),
    }
}

/// `{"expected": 3, "value": …, "timeout_ms": 2000}`.
async fn compare_and_set(
    vars: VarsHandle,
    name: String,
    state: VarState,
    body: Value,
) -> (StatusCode, Value) {
    let Some(expected) = body.get("expected").and_then(Value::as_u64) else {
        return bad_request("\"expected\" (the version to replace) is missing or not a number");
    };
    let timeout = match timeout_of(&body) {
        Ok(timeout) => timeout,
        Err(refused) => return refused,
    };
    let json_value = body.get("value").unwrap_or(&Value::Null);
    let value = match value_from_json(&state.spec.ty, json_value) {
        Ok(value) => value,
        Err(e) => return bad_request(format!("\"value\": {e}")),
    };
    match vars.compare_and_set(&name, expected, value, timeout).await {
        Ok(outcome) => outcome_json(outcome),
        Err(VarsCallError::Refused(refused)) => refusal_json(refused),
        Err(VarsCallError::Stopped) => stopped(),
    }
}

fn outcome_json(outcome: CasOutcome<Life>) -> (StatusCode, Value) {
    match outcome {
        CasOutcome::Won { version } => (StatusCode::OK, json!({ "won": true, "version": version })),
        CasOutcome::Lost { version, winner } => (
            StatusCode::CONFLICT,
            json!({ "won": false, "version": version, "winner": life_json(&winner) }),
        ),
        CasOutcome::VersionMismatch { current } => (
            StatusCode::CONFLICT,
            json!({ "won": false, "error": "version mismatch", "current": current }),
        ),
        // Undecided, not lost: an acceptor may hold the write, and the next writer of the
        // version would then decide it.
        CasOutcome::NoMajority => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "won": null, "error": "no majority of the acceptors answered in time; the write may still land: read the variable to see" }),
        ),
        CasOutcome::Busy => (
            StatusCode::CONFLICT,
            json!({ "won": false, "error": "a write of this node on the variable is under way" }),
        ),
        CasOutcome::Superseded { current } => (
            StatusCode::CONFLICT,
            json!({ "won": null, "error": "the variable moved past this write before its outcome was learnt; read it", "current": current }),
        ),
    }
}

fn refusal_json(refused: VarsError) -> (StatusCode, Value) {
    let status = refusal_status(&refused);
    let current = match refused {
        VarsError::VersionMismatch { current } => Some(current),
        _ => None,
    };
    (
        status,
        json!({ "won": false, "error": refused.to_string(), "current": current }),
    )
}

/// Every refusal by name, so a new one gets a status chosen for it: a client's mistake is
/// 400 (a move this machine refuses too: to the same or an empty set, or of a counter's
/// holders), the cluster's state 409 (the same request may pass later), a limit of this node
/// or of the replicated keyspaces 507.
fn refusal_status(refused: &VarsError) -> StatusCode {
    match refused {
        VarsError::Unknown(_) => StatusCode::NOT_FOUND,
        VarsError::VersionMismatch { .. }
        | VarsError::Busy
        | VarsError::Conflict(_)
        | VarsError::Insufficient { .. }
        | VarsError::Allowance { .. }
        | VarsError::NotAlive { .. }
        | VarsError::SessionDecided { .. }
        | VarsError::SessionStale { .. } => StatusCode::CONFLICT,
        VarsError::Full | VarsError::NotReplicated(_) => StatusCode::INSUFFICIENT_STORAGE,
        VarsError::Reconfiguration { .. }
        | VarsError::BadName(_)
        | VarsError::BadSpec(_)
        | VarsError::Invalid(_)
        | VarsError::WrongPolicy { .. }
        | VarsError::Counter(_)
        | VarsError::Outcome(_) => StatusCode::BAD_REQUEST,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that ended without a majority may still be decided (an acceptor may hold it,
    /// and the next writer of that version must then decide it: `foundation_core`'s
    /// `a_write_that_ended_without_a_majority_can_still_be_the_one_decided`), so it is not
    /// reported lost; a lost write is.
    #[test]
    fn a_write_without_a_majority_is_reported_undecided_not_lost() {
        let (status, body) = outcome_json(CasOutcome::NoMajority);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["won"], Value::Null, "{body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("no majority"), "{error}");
        let lost = CasOutcome::Lost {
            version: 1,
            winner: Life {
                node: foundation_core::NodeId::from_u128(1),
                generation: 1,
            },
        };
        assert_eq!(outcome_json(lost).1["won"], false);
    }

    #[test]
    fn refusals_are_told_apart_by_status() {
        let not_alive = VarsError::NotAlive {
            name: "slots".into(),
            named: 3,
            known: 1,
            needed: 2,
        };
        let cases = [
            (VarsError::Unknown("x".into()), 404),
            (VarsError::BadSpec("no type".into()), 400),
            (VarsError::Busy, 409),
            (not_alive, 409),
            (VarsError::Full, 507),
            (VarsError::NotReplicated("keyspace full".into()), 507),
        ];
        for (refused, status) in cases {
            let shown = refused.to_string();
            let (got, body) = refusal_json(refused);
            assert_eq!(got.as_u16(), status, "{shown}");
            assert_eq!(body["error"], shown);
        }
    }
}
