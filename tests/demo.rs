//! The README's first command, `foundation demo`, as a user runs it: a real process whose five
//! nodes meet through a discovery directory of their own on 127.0.0.1. It must end well and show
//! every act: the formed cluster, services, pub/sub, config, the auctions between agents before
//! and after two nodes go, the leave and the crash.

use std::process::Command;

#[test]
fn the_demo_runs_every_act_and_ends_well() {
    let output = Command::new(env!("CARGO_BIN_EXE_foundation"))
        .arg("demo")
        .env_remove("FOUNDATION_CONFIG")
        .output()
        .expect("the foundation binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for act in [
        "every node sees the other four alive",
        "rpc: \"hello demo",
        "received on another node",
        "a config change set on one node is read on another",
        "auction 1: 5 of 5 bidders answered, bidder-5 wins at 47",
        "every node records it as left",
        "every survivor marks it failed",
        "auction 2: 3 of 3 bidders answered, bidder-3 wins at 27",
        "holder Choice(\"bidder-3\"), price Int(27)",
        "done: the survivors left gracefully",
    ] {
        assert!(stdout.contains(act), "no {act:?} in:\n{stdout}\n{stderr}");
    }
}
