//! Ledgers (coordinated records that take sessions' outcomes) in the sessions tests.

use std::time::Duration;

use foundation_agents::variable::VarValue;
use foundation_engine::runtime::Node;
use foundation_engine::vars::VarSpec;

use super::eventually;

/// Declares `name` with `spec` on `nodes[0]` and waits until every node has it.
pub async fn declare_everywhere(nodes: &[Node], name: &str, spec: VarSpec) {
    nodes[0].vars().declare(name, spec).await.unwrap();
    for node in nodes {
        eventually(
            Duration::from_secs(20),
            "the ledger is declared everywhere",
            || node.vars().get(name).is_some(),
        )
        .await;
    }
}

/// Field `name` of ledger `ledger` as `node` holds it now.
pub fn field(node: &Node, ledger: &str, name: &str) -> Option<VarValue> {
    match node.vars().get(ledger)?.1 {
        VarValue::Record(fields) => fields.get(name).cloned(),
        _ => None,
    }
}
