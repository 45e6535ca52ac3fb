//! What the status page shows beyond the tables: traffic per channel (the transport's own
//! counters) and every keyspace with its size and whether the other members hold the same
//! state.
//!
//! Convergence is judged by a digest of each keyspace's live data (keys and values, in key
//! order), which is equal on two nodes exactly when they hold the same data — what the
//! simulator's `replicas-converge` compares; tombstones and each node's own GC horizon are left
//! out, since they legitimately differ. A digest reads the whole keyspace, so it is taken only
//! on demand: by the driver's housekeeping (once a second) while this node's status page is
//! open or another member asks `GET /keyspaces`, and never for a keyspace larger than
//! [`DIGEST_BYTES_MAX`]. The other members' digests come from their `GET /keyspaces`, asked
//! once a second only while someone has the status page open ([`PeerDigests`]), so an
//! unwatched cluster computes and asks nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foundation_core::membership::{MemberState, MemberView};
use foundation_core::{Channel, Core, NodeId};
use foundation_transport::TransportMetrics;
use serde_json::{json, Value};
use tokio::sync::watch;

/// How long after the last look at the status page the other members are still asked.
const WATCHED_FOR: Duration = Duration::from_secs(10);
/// How often they are asked.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// How long one member has to answer.
const ANSWER_WITHIN: Duration = Duration::from_millis(800);
/// Members asked per round (in node id order); the others show as not checked.
const PEERS_ASKED_MAX: usize = 64;

/// Keyspaces larger than this are not digested (hashing them once a second would hold up the
/// driver); their convergence shows as unknown.
pub(crate) const DIGEST_BYTES_MAX: usize = 16 << 20;

/// Whether something asked recently (the status page was looked at, a member asked for our
/// digests).
#[derive(Clone, Debug, Default)]
pub(crate) struct Demand(Arc<Mutex<Option<Instant>>>);

impl Demand {
    /// Asked now.
    pub fn ask(&self) {
        *self.lock() = Some(Instant::now());
    }

    /// Asked within [`WATCHED_FOR`].
    pub fn recent(&self) -> bool {
        self.lock().is_some_and(|at| at.elapsed() < WATCHED_FOR)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // A poisoned lock only means a panic elsewhere mid-update; the instant is still usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One keyspace as this node holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyspaceSummary {
    pub name: String,
    /// Live keys.
    pub keys: usize,
    /// Bytes of live keys and values.
    pub bytes: usize,
    /// The state digest, as 16 hex digits (an empty keyspace's is 0), when it was taken.
    pub digest: Option<String>,
}

/// Every keyspace the core holds, in name order; with their digests when `digests`.
pub(crate) fn summaries(core: &Core, digests: bool) -> Vec<KeyspaceSummary> {
    let replication = core.replication();
    replication
        .keyspace_names()
        .filter_map(|name| {
            let keyspace = replication.keyspace(name)?;
            let digest = (digests && keyspace.bytes() <= DIGEST_BYTES_MAX)
                .then(|| hex(live_digest(keyspace.iter())));
            Some(KeyspaceSummary {
                name: name.to_owned(),
                keys: keyspace.len(),
                bytes: keyspace.bytes(),
                digest,
            })
        })
        .collect()
}

/// FNV-1a over each key and value with their lengths (so that no two different listings hash
/// the same bytes); an empty keyspace's digest is 0.
fn live_digest<'a>(entries: impl Iterator<Item = (&'a str, &'a [u8])>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut any = false;
    let mut feed = |bytes: &[u8]| {
        for &b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            hash = (hash ^ u64::from(b)).wrapping_mul(PRIME);
        }
    };
    for (key, value) in entries {
        any = true;
        feed(key.as_bytes());
        feed(value);
    }
    if any {
        hash
    } else {
        0
    }
}

fn hex(digest: u64) -> String {
    format!("{digest:016x}")
}

/// `GET /keyspaces`: this node's keyspaces with sizes and digests.
pub(crate) fn keyspaces_json(own: &[KeyspaceSummary], identity: &Value) -> Value {
    let rows: Vec<Value> = own
        .iter()
        .map(|k| json!({ "name": k.name, "keys": k.keys, "bytes": k.bytes, "digest": k.digest }))
        .collect();
    json!({ "node": identity, "keyspaces": rows })
}

/// Bytes and messages per channel, both ways, counted since the node started.
pub(crate) fn traffic_json(metrics: &TransportMetrics) -> Value {
    let rows: Vec<Value> = Channel::ALL
        .iter()
        .map(|&channel| {
            let mut row = serde_json::to_value(metrics.channel_totals(channel)).unwrap_or_default();
            if let Some(fields) = row.as_object_mut() {
                fields.insert("channel".into(), channel.name().into());
            }
            row
        })
        .collect();
    Value::Array(rows)
}

/// What one member said about its keyspaces: name → digest (`None`: not taken); `None` when
/// it did not answer.
type Report = Option<BTreeMap<String, Option<String>>>;

/// The other members' keyspace digests, as last fetched.
#[derive(Clone, Debug, Default)]
pub(crate) struct PeerDigests {
    /// The status page was looked at.
    pub watched: Demand,
    reports: Arc<Mutex<BTreeMap<NodeId, Report>>>,
}

impl PeerDigests {
    fn reports(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, Report>> {
        // A poisoned lock only means a panic elsewhere mid-update; the data is still usable.
        self.reports.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the alive members for their digests once a second while the page is watched;
    /// ends when the node stops (its member view closes).
    pub fn spawn_poller(&self, mut view: watch::Receiver<Vec<MemberView>>) {
        let digests = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(POLL_EVERY).await;
                if view.has_changed().is_err() {
                    return;
                }
                if !digests.watched.recent() {
                    continue;
                }
                let asked = http_peers(&view.borrow_and_update());
                let reports = ask_all(asked).await;
                *digests.reports() = reports;
            }
        });
    }

    /// Each keyspace (held here or reported by a member) with its size here and how many
    /// alive members hold the same state.
    pub fn convergence(&self, own: &[KeyspaceSummary], view: &[MemberView]) -> Value {
        let alive: Vec<NodeId> = view
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .map(|m| m.id)
            .collect();
        let reports = self.reports().clone();
        let mut names: BTreeSet<&str> = own.iter().map(|k| k.name.as_str()).collect();
        for report in reports.values().flatten() {
            names.extend(report.keys().map(String::as_str));
        }
        let rows: Vec<Value> = names
            .into_iter()
            .map(|name| keyspace_row(name, own, &alive, &reports))
            .collect();
        Value::Array(rows)
    }
}

/// One keyspace's row: its size here, and the alive members that agree, differ or could not
/// be compared (no answer, no digest). `converged` is true when all agree, false when one
/// differs, null otherwise.
fn keyspace_row(
    name: &str,
    own: &[KeyspaceSummary],
    alive: &[NodeId],
    reports: &BTreeMap<NodeId, Report>,
) -> Value {
    let here = own.iter().find(|k| k.name == name);
    let empty = hex(0);
    // A keyspace not held is an empty one.
    let digest = here.map_or(Some(empty.as_str()), |k| k.digest.as_deref());
    let (mut agree, mut differ, mut unknown) = (0, 0, 0);
    for id in alive {
        let theirs = match reports.get(id) {
            Some(Some(report)) => report
                .get(name)
                .map_or(Some(empty.as_str()), Option::as_deref),
            _ => None,
        };
        match (digest, theirs) {
            (Some(ours), Some(theirs)) if ours == theirs => agree += 1,
            (Some(_), Some(_)) => differ += 1,
            _ => unknown += 1,
        }
    }
    let converged = match (differ, unknown) {
        (0, 0) => Value::Bool(true),
        (0, _) => Value::Null,
        _ => Value::Bool(false),
    };
    json!({
        "name": name,
        "keys": here.map_or(0, |k| k.keys),
        "bytes": here.map_or(0, |k| k.bytes),
        "digest": digest,
        "peers": alive.len(),
        "agree": agree,
        "differ": differ,
        "unknown": unknown,
        "converged": converged,
    })
}

/// The alive members that advertise an HTTP address, at most [`PEERS_ASKED_MAX`].
fn http_peers(view: &[MemberView]) -> Vec<(NodeId, SocketAddr)> {
    view.iter()
        .filter(|m| m.state == MemberState::Alive)
        .filter_map(|m| Some((m.id, m.metadata.as_ref()?.http?)))
        .take(PEERS_ASKED_MAX)
        .collect()
}

/// Asks every member in `asked` for its keyspaces at once.
async fn ask_all(asked: Vec<(NodeId, SocketAddr)>) -> BTreeMap<NodeId, Report> {
    let mut tasks = tokio::task::JoinSet::new();
    for (id, addr) in asked {
        tasks.spawn(async move { (id, ask(id, addr).await) });
    }
    let mut reports = BTreeMap::new();
    while let Some(Ok((id, report))) = tasks.join_next().await {
        reports.insert(id, report);
    }
    reports
}

/// Member `id`'s keyspaces, asked at `addr`; `None` (unreachable) when it does not answer,
/// or when whoever answers there is not `id` (an address advertised wrongly, or reused).
async fn ask(id: NodeId, addr: SocketAddr) -> Report {
    let answer = crate::http::get_json(addr, "/keyspaces", ANSWER_WITHIN)
        .await
        .ok()?;
    report_of(id, addr, &answer)
}

/// The digests in `answer`, if it comes from node `id`.
fn report_of(id: NodeId, addr: SocketAddr, answer: &Value) -> Report {
    let answered_by = answer["node"]["id"].as_str();
    if answered_by != Some(id.to_string().as_str()) {
        tracing::debug!(
            member = %id,
            %addr,
            answered_by = answered_by.unwrap_or("nobody"),
            "status: the member's advertised HTTP address is another node's; not compared"
        );
        return None;
    }
    let rows = answer["keyspaces"].as_array()?;
    Some(
        rows.iter()
            .filter_map(|k| {
                let digest = k["digest"].as_str().map(str::to_owned);
                Some((k["name"].as_str()?.to_owned(), digest))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(name: &str, digest: u64) -> KeyspaceSummary {
        KeyspaceSummary {
            name: name.into(),
            keys: 2,
            bytes: 10,
            digest: Some(hex(digest)),
        }
    }

    #[test]
    fn an_answer_counts_only_from_the_member_that_was_asked() {
        let [asked, other] = [NodeId::random(), NodeId::random()];
        let addr: SocketAddr = "10.0.0.2:7401".parse().unwrap();
        let own = [own("config", 7)];
        let from = |id: NodeId| keyspaces_json(&own, &json!({ "id": id.to_string() }));
        let report = report_of(asked, addr, &from(asked)).expect("the member itself answered");
        assert_eq!(report.get("config"), Some(&Some(hex(7))));
        assert_eq!(report_of(asked, addr, &from(other)), None);
        assert_eq!(report_of(asked, addr, &json!({ "keyspaces": [] })), None);
    }

    #[test]
    fn the_live_digest_depends_on_every_key_and_value_and_how_they_split() {
        let digest = |pairs: &[(&'static str, &'static [u8])]| live_digest(pairs.iter().copied());
        assert_eq!(digest(&[]), 0);
        let one = digest(&[("a", b"1")]);
        assert_eq!(one, digest(&[("a", b"1")]));
        assert_ne!(one, digest(&[("a", b"2")]));
        assert_ne!(one, digest(&[("b", b"1")]));
        assert_ne!(digest(&[("ab", b"")]), digest(&[("a", b"b")]));
    }

    #[test]
    fn a_keyspace_converged_only_when_every_alive_member_reports_the_same_digest() {
        let [a, b] = [NodeId::random(), NodeId::random()];
        let mine = [own("config", 7)];
        let report = |digest: u64| Some(BTreeMap::from([("config".to_owned(), Some(hex(digest)))]));
        let mut reports = BTreeMap::from([(a, report(7))]);
        let row = keyspace_row("config", &mine, &[a, b], &reports);
        assert_eq!(
            (row["agree"].clone(), row["unknown"].clone()),
            (json!(1), json!(1))
        );
        assert_eq!(row["converged"], Value::Null);
        reports.insert(b, report(7));
        assert_eq!(
            keyspace_row("config", &mine, &[a, b], &reports)["converged"],
            true
        );
        reports.insert(b, report(8));
        let row = keyspace_row("config", &mine, &[a, b], &reports);
        assert_eq!(
            (row["differ"].clone(), row["converged"].clone()),
            (json!(1), json!(false))
        );
        // A keyspace a member does not hold is an empty one: equal to an empty one here.
        reports.insert(b, Some(BTreeMap::new()));
        let row = keyspace_row("other", &mine, &[a, b], &reports);
        assert_eq!(
            (row["agree"].clone(), row["converged"].clone()),
            (json!(2), json!(true))
        );
        // No digest taken here (too large, or not asked yet): nothing can be compared.
        let untaken = [KeyspaceSummary {
            digest: None,
            ..own("config", 7)
        }];
        let row = keyspace_row("config", &untaken, &[a, b], &reports);
        assert_eq!(
            (row["unknown"].clone(), row["converged"].clone()),
            (json!(2), Value::Null)
        );
    }
}
