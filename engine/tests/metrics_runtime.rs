//! A node's `/metrics` as scrapers read it: every family listed with HELP and TYPE before any
//! traffic (so dashboards and alerts can be built on a fresh node), in both text formats, and
//! clean by `promtool check metrics` where promtool is installed.

use foundation_engine::http::{CLASSIC_CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE};
use foundation_engine::runtime::{Node, NodeSettings};

mod common;

use common::promtool::promtool_accepts;
use common::raw_http::{get, send_raw};

/// Families that only get samples once something happens (a call, a drop, a restart).
const LABELLED: &[&str] = &[
    "foundation_rpc_calls_total",
    "foundation_rpc_call_duration_seconds",
    "foundation_rpc_retries_total",
    "foundation_rpc_served_total",
    "foundation_rpc_breaker_transitions_total",
    "foundation_pubsub_dropped_total",
    "foundation_vars_refused_total",
    "foundation_membership_members",
    "foundation_agent_messages_total",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_is_listed_before_use_in_both_formats() {
    let node = Node::start(NodeSettings {
        http: Some("127.0.0.1:0".parse().unwrap()),
        ..common::settings("metrics", "metrics-test-secret-0123456789", vec![])
    })
    .await
    .unwrap();
    let http = node.http_addr().expect("serving HTTP");
    let classic = get(http, "/metrics").await;
    assert!(
        classic
            .head
            .contains(&format!("content-type: {CLASSIC_CONTENT_TYPE}")),
        "{}",
        classic.head
    );
    for family in LABELLED {
        assert!(
            classic.body.contains(&format!("# HELP {family} "))
                && classic.body.contains(&format!("# TYPE {family} ")),
            "{family} is not listed:\n{}",
            classic.body
        );
    }
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: {http}\r\nAccept: application/openmetrics-text\r\nConnection: close\r\n\r\n"
    );
    let open = send_raw(http, request.as_bytes()).await;
    assert!(open
        .head
        .contains(&format!("content-type: {OPENMETRICS_CONTENT_TYPE}")));
    assert!(open.body.contains("# TYPE foundation_rpc_calls counter"));
    promtool_accepts(&classic.body);
    node.abort().await;
}
