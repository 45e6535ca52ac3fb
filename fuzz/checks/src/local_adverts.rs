//! Arbitrary bytes as a local-discovery advertisement file: another process of this user
//! wrote `<base>/<cluster>/<id>.json`, and `running_nodes` (what `foundation` commands read to
//! find a node) lists the directory. The file is named after the input's `id` when that is a
//! plain file name, so a valid advertisement is reachable; pid 1 always exists on Linux, so
//! seeds that name it pass the liveness check.
//!
//! Properties: nothing panics and the listing succeeds; reading changes nothing in the
//! directory; a file taken up is one node whose id is written as the file's name and the
//! file's `id` (the canonical 32 hex digits, so one node has one file), and whose address,
//! HTTP address, pid and start time are the file's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use foundation_core::ClusterName;
use foundation_engine::discovery::{running_nodes, RunningNode};
use serde_json::Value;

/// The cluster every input advertises in (an advertisement of another is not taken up).
const CLUSTER: &str = "fuzz";

/// The file's name when the input names no usable one.
const FALLBACK_STEM: &str = "00000000000000000000000000000001";

/// Checks the properties above on one input; panics if one fails.
pub fn check(data: &[u8]) {
    let base = base_dir();
    let dir = base.join(CLUSTER);
    if std::fs::create_dir_all(&dir).is_err() {
        return; // no scratch space: nothing to check
    }
    let json: Option<Value> = serde_json::from_slice(data).ok();
    let stem = json
        .as_ref()
        .and_then(|v| v["id"].as_str())
        .filter(|id| plain_name(id))
        .unwrap_or(FALLBACK_STEM);
    let path = dir.join(format!("{stem}.json"));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let cluster = ClusterName::new(CLUSTER).expect("a cluster name");
    let listed = running_nodes(&base, &cluster);
    let after = std::fs::read(&path);
    let _ = std::fs::remove_file(&path);
    let nodes = listed.expect("a readable directory lists");
    assert_eq!(
        after.ok().as_deref(),
        Some(data),
        "reading changed the file"
    );
    match nodes.as_slice() {
        [] => {}
        [node] => taken_up(node, stem, json.as_ref().expect("a file taken up is JSON")),
        more => panic!("one file gave {} nodes", more.len()),
    }
}

fn taken_up(node: &RunningNode, stem: &str, json: &Value) {
    let id = node.id.to_string();
    assert_eq!(id, stem, "a node taken up from a file named otherwise");
    assert_eq!(
        json["id"].as_str(),
        Some(id.as_str()),
        "the id is not the file's"
    );
    assert_eq!(
        Some(node.addr),
        address(&json["addr"]),
        "the address is not the file's"
    );
    let http = json.get("http").filter(|h| !h.is_null());
    assert_eq!(
        node.http,
        http.and_then(address),
        "the HTTP address is not the file's"
    );
    assert_eq!(Some(u64::from(node.pid)), json["pid"].as_u64());
    assert_eq!(Some(node.started), json["started"].as_u64());
}

fn address(value: &Value) -> Option<SocketAddr> {
    value.as_str()?.parse().ok()
}

/// Whether `id` can be a file name in the directory without leaving it or hiding itself.
fn plain_name(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'_')
}

/// A base directory of this process and thread alone: the test suite runs checks on several
/// threads at once, and a file another thread wrote would be listed with this one's.
fn base_dir() -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id());
    let name = format!(
        "foundation-fuzz-adverts-{}-{}",
        std::process::id(),
        thread.trim_start_matches("ThreadId")
    );
    Path::new(&std::env::temp_dir()).join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert(id: &str) -> Vec<u8> {
        format!(
            r#"{{"cluster":"fuzz","id":"{id}","addr":"127.0.0.1:7000","pid":1,"started":5,"http":"127.0.0.1:8080"}}"#
        )
        .into_bytes()
    }

    /// A valid file is taken up, so the check reaches more than the refusals.
    #[test]
    fn a_valid_advertisement_is_taken_up() {
        check(&advert(FALLBACK_STEM));
        let base = base_dir();
        let dir = base.join(CLUSTER);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{FALLBACK_STEM}.json"));
        std::fs::write(&path, advert(FALLBACK_STEM)).unwrap();
        let nodes = running_nodes(&base, &ClusterName::new(CLUSTER).unwrap()).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].http, Some("127.0.0.1:8080".parse().unwrap()));
    }
}
