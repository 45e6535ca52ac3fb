//! `auto`: the choice follows the environment, and the reason says so.

use std::path::PathBuf;

use foundation_engine::discovery::{
    build, choose_auto, DiscoveryMetrics, DiscoverySpec, Environment,
};

fn kubernetes() -> Environment {
    Environment {
        kubernetes_service_host: Some("10.96.0.1".into()),
        pod_namespace: Some("shop".into()),
        ..Environment::default()
    }
}

#[test]
fn kubernetes_means_dns_on_the_default_headless_service() {
    let choice = choose_auto(&kubernetes());
    match &choice.specs[..] {
        [DiscoverySpec::Dns {
            name,
            port: 0,
            srv: false,
            ..
        }] => {
            assert_eq!(name, "foundation.shop.svc.cluster.local")
        }
        other => panic!("expected dns, got {other:?}"),
    }
    assert!(
        choice.reason.contains("dns") && choice.reason.contains("Kubernetes"),
        "{}",
        choice.reason
    );
    println!("{}", choice.reason);
}

#[test]
fn kubernetes_uses_the_configured_dns_name_and_port() {
    let env = Environment {
        dns_name: Some("peers.shop.svc.cluster.local".into()),
        dns_port: Some("7400".into()),
        ..kubernetes()
    };
    let choice = choose_auto(&env);
    match &choice.specs[..] {
        [DiscoverySpec::Dns {
            name, port: 7400, ..
        }] => assert_eq!(name, "peers.shop.svc.cluster.local"),
        other => panic!("expected dns, got {other:?}"),
    }
    assert!(
        choice.reason.contains("FOUNDATION_DNS_NAME"),
        "{}",
        choice.reason
    );
}

/// Seeds someone set win over a Kubernetes environment detected, as they do in the node's
/// configuration (`FOUNDATION_SEEDS` takes `auto`'s place there); `auto` chose `dns` before.
#[test]
fn configured_seeds_win_over_kubernetes() {
    let env = Environment {
        seeds: vec!["10.0.0.9:7000".into()],
        ..kubernetes()
    };
    let choice = choose_auto(&env);
    assert_eq!(
        choice.specs,
        [DiscoverySpec::Static {
            seeds: env.seeds.clone()
        }]
    );
}

#[test]
fn seeds_mean_static() {
    let env = Environment {
        seeds: vec!["10.0.0.9:7000".into(), "seed.example:7000".into()],
        ..Environment::default()
    };
    let choice = choose_auto(&env);
    assert_eq!(
        choice.specs,
        vec![DiscoverySpec::Static {
            seeds: env.seeds.clone()
        }]
    );
    assert!(
        choice.reason.contains("static") && choice.reason.contains("2 seed"),
        "{}",
        choice.reason
    );
    println!("{}", choice.reason);
}

#[test]
fn nothing_means_local_and_mdns() {
    let choice = choose_auto(&Environment::default());
    assert_eq!(
        choice.specs,
        vec![DiscoverySpec::Local { dir: None }, DiscoverySpec::Mdns]
    );
    assert!(choice.reason.contains("local + mdns"), "{}", choice.reason);
    assert!(
        choice.reason.contains("no Kubernetes") && choice.reason.contains("no seeds"),
        "{}",
        choice.reason
    );
    println!("{}", choice.reason);
}

#[test]
fn auto_builds_the_chosen_strategies() {
    let metrics = DiscoveryMetrics::default();
    let env = Environment {
        xdg_runtime_dir: Some(PathBuf::from("/nonexistent-runtime")),
        ..Environment::default()
    };
    let names: Vec<&str> = build(&DiscoverySpec::Auto, &env, &metrics)
        .expect("build")
        .iter()
        .map(|d| d.name())
        .collect();
    assert_eq!(names, vec!["local", "mdns"]);

    let names: Vec<&str> = build(&DiscoverySpec::Auto, &kubernetes(), &metrics)
        .expect("build")
        .iter()
        .map(|d| d.name())
        .collect();
    assert_eq!(names, vec!["dns"]);
}

#[test]
fn specs_round_trip_through_toml_shaped_serde() {
    let spec = DiscoverySpec::Dns {
        name: "peers.test".into(),
        port: 7000,
        srv: true,
        interval: std::time::Duration::from_secs(3),
        server: Some("10.0.0.2:5353".parse().unwrap()),
    };
    let json = serde_json::to_string(&spec).expect("serialize");
    assert!(json.contains(r#""kind":"dns""#), "{json}");
    let back: DiscoverySpec = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, spec);
    let mdns: DiscoverySpec = serde_json::from_str(r#"{"kind":"mdns"}"#).expect("mdns");
    assert_eq!(mdns, DiscoverySpec::Mdns);
    let local: DiscoverySpec = serde_json::from_str(r#"{"kind":"local"}"#).expect("local");
    assert_eq!(local, DiscoverySpec::Local { dir: None });
}
