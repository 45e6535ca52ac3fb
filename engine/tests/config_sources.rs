//! Configuration from profile defaults, a TOML file, environment variables and the builder:
//! precedence, defaults, and errors that say exactly what is wrong and where.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use foundation_engine::config::{
    ConfigError, DiscoveryChoice, NodeConfig, PortSetting, Profile, Security, StorageMode,
    SyncPolicy, DEFAULT_BULK_PORT, DEFAULT_SEALED_PORT,
};
use foundation_engine::membership::MembershipConfig;
use foundation_engine::replication::ReplicationConfig;
use foundation_engine::runtime::NodeSettings;
use foundation_transport::security::RemoteRoot;
use foundation_transport::{ClusterName, Trust};

const SECRET: &str = "a-production-secret-of-32-bytes!";

/// Writes `text` to a fresh `config.toml` for `test` and returns its path.
fn config_file(test: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("foundation-config-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn build_env(pairs: &[(&str, &str)]) -> Result<NodeConfig, ConfigError> {
    NodeConfig::builder().env(env(pairs)).build()
}

fn error_of(result: Result<NodeConfig, ConfigError>) -> String {
    match result {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(error) => error.to_string(),
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("address")
}

#[test]
fn development_defaults_need_no_configuration() {
    let config = build_env(&[]).expect("zero config");
    assert_eq!(config.profile, Profile::Development);
    assert_eq!(config.cluster.as_str(), "foundation");
    assert_eq!(config.node_id, None);
    assert_eq!(config.bind, addr("127.0.0.1:0"));
    assert_eq!(config.http, Some(addr("127.0.0.1:0")));
    assert_eq!(config.security, Security::DevelopmentSecret);
    assert_eq!(config.discovery, vec![DiscoveryChoice::Auto]);
    assert_eq!(config.membership, MembershipConfig::development());
    assert_eq!(config.metadata.version, env!("CARGO_PKG_VERSION"));
}

#[test]
fn development_warns_loudly_about_its_secret() {
    let config = build_env(&[]).expect("zero config");
    let warnings = config.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("development secret"),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].contains("FOUNDATION_SECRET"), "{}", warnings[0]);
    match config.security.trust(&config.cluster).expect("trust") {
        Trust::Secret(secret) => assert!(secret.is_development()),
        Trust::Files(_) => panic!("expected the development secret"),
    }
}

#[test]
fn production_defaults_with_a_secret_and_seeds() {
    let config = build_env(&[
        ("FOUNDATION_PROFILE", "prod"),
        ("FOUNDATION_SECRET", SECRET),
        ("FOUNDATION_SEEDS", "10.0.0.1:7400, seed.example:7400"),
        ("FOUNDATION_DATA_DIR", "/var/lib/foundation-test-unused"),
    ])
    .expect("valid production config");
    assert_eq!(config.storage, StorageMode::Disk);
    assert_eq!(config.sync, SyncPolicy::Always);
    assert_eq!(config.profile, Profile::Production);
    assert_eq!(config.bind, addr("0.0.0.0:7400"));
    assert_eq!(config.http, Some(addr("127.0.0.1:7401")));
    assert_eq!(config.membership, MembershipConfig::production());
    let seeds = vec!["10.0.0.1:7400".to_owned(), "seed.example:7400".to_owned()];
    assert_eq!(config.discovery, vec![DiscoveryChoice::Static { seeds }]);
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    match config.security.trust(&config.cluster).expect("trust") {
        Trust::Secret(secret) => assert!(!secret.is_development()),
        Trust::Files(_) => panic!("expected a secret"),
    }
}

#[test]
fn production_refuses_to_start_without_a_secret_or_certificates() {
    let message = error_of(build_env(&[
        ("FOUNDATION_PROFILE", "production"),
        ("FOUNDATION_SEEDS", "10.0.0.1:7400"),
    ]));
    assert!(message.contains("FOUNDATION_SECRET"), "{message}");
    assert!(message.contains("[security] secret"), "{message}");
    assert!(message.contains("FOUNDATION_CA"), "{message}");
}

#[test]
fn production_refuses_an_explicit_development_secret() {
    let path = config_file("explicit-dev", "[security]\ndevelopment_secret = true\n");
    let result = NodeConfig::builder()
        .file(&path)
        .profile(Profile::Production)
        .seeds(["10.0.0.1:7400"])
        .build();
    let message = error_of(result);
    assert!(
        message.contains("config.toml line 1: security:"),
        "{message}"
    );
    assert!(message.contains("FOUNDATION_SECRET"), "{message}");
}

#[test]
fn production_refuses_to_start_without_discovery_unless_in_kubernetes() {
    let production = [
        ("FOUNDATION_PROFILE", "production"),
        ("FOUNDATION_SECRET", SECRET),
        ("FOUNDATION_STORAGE", "memory"),
    ];
    let message = error_of(build_env(&production));
    assert!(message.starts_with("discovery:"), "{message}");
    assert!(message.contains("FOUNDATION_SEEDS"), "{message}");
    let mut kubernetes = production.to_vec();
    kubernetes.push(("KUBERNETES_SERVICE_HOST", "10.96.0.1"));
    assert_eq!(
        build_env(&kubernetes)
            .expect("auto in kubernetes")
            .discovery,
        vec![DiscoveryChoice::Auto]
    );
}

#[test]
fn precedence_is_defaults_then_file_then_env_then_builder() {
    let path = config_file(
        "precedence",
        "cluster = \"from-file\"\nbind = \"127.0.0.1:7000\"\nadvertise = \"127.0.0.1:7001\"\n\
         http = \"127.0.0.1:7002\"\n[metadata]\nname = \"file-name\"\ntags = { zone = \"a\", rack = \"1\" }\n",
    );
    let env = env(&[
        ("FOUNDATION_CLUSTER", "from-env"),
        ("FOUNDATION_BIND", "127.0.0.1:8000"),
        ("FOUNDATION_TAGS", "zone=b,role=api"),
    ]);
    let config = NodeConfig::builder()
        .file(&path)
        .env(env.clone())
        .cluster("from-builder")
        .tag("role", "worker")
        .build()
        .expect("valid");
    assert_eq!(config.cluster.as_str(), "from-builder");
    assert_eq!(config.bind, addr("127.0.0.1:8000"), "env beats file");
    assert_eq!(
        config.advertise,
        Some(addr("127.0.0.1:7001")),
        "file beats default"
    );
    assert_eq!(config.http, Some(addr("127.0.0.1:7002")));
    assert_eq!(config.metadata.name.as_deref(), Some("file-name"));
    let tags: Vec<(&str, &str)> = config
        .metadata
        .tags
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(tags, [("rack", "1"), ("role", "worker"), ("zone", "b")]);

    let without_builder = NodeConfig::builder()
        .file(&path)
        .env(env)
        .build()
        .expect("valid");
    assert_eq!(without_builder.cluster.as_str(), "from-env");
}

#[test]
fn the_profile_is_settled_first_and_picks_the_defaults() {
    let text = "profile = \"production\"\ndata_dir = \"/var/lib/foundation-test-unused\"\n\
                [security]\nsecret = \"a-production-secret-of-32-bytes!\"\n\
                [[discovery]]\nkind = \"static\"\nseeds = [\"10.0.0.1:7400\"]\n";
    let path = config_file("profile-first", text);
    let from_file = NodeConfig::builder().file(&path).build().expect("valid");
    assert_eq!(from_file.profile, Profile::Production);
    assert_eq!(from_file.membership, MembershipConfig::production());
    assert_eq!(from_file.bind, addr("0.0.0.0:7400"));

    let env_wins = NodeConfig::builder()
        .file(&path)
        .env(env(&[("FOUNDATION_PROFILE", "development")]))
        .build()
        .expect("valid");
    assert_eq!(env_wins.profile, Profile::Development);
    assert_eq!(env_wins.membership, MembershipConfig::development());

    let builder_wins = NodeConfig::builder()
        .file(&path)
        .env(env(&[("FOUNDATION_PROFILE", "development")]))
        .profile(Profile::Production)
        .build()
        .expect("valid");
    assert_eq!(builder_wins.profile, Profile::Production);
}

#[test]
fn membership_fields_override_the_preset_one_by_one() {
    let path = config_file(
        "membership",
        "[membership]\nprobe_period = \"2s\"\nindirect_probes = 5\n",
    );
    let config = NodeConfig::builder().file(&path).build().expect("valid");
    assert_eq!(config.membership.probe_period, Duration::from_secs(2));
    assert_eq!(config.membership.indirect_probes, 5);
    assert_eq!(
        config.membership.probe_rtt,
        MembershipConfig::development().probe_rtt
    );
}

#[test]
fn a_validation_error_names_file_line_and_field() {
    let text =
        "# a node\ncluster = \"orders\"\n\n[transport]\nkeep_alive = \"1s\"\n\n[membership]\n\
                probe_period = \"1s\"\nprobe_rtt = \"2s\"\n";
    let path = config_file("validation-line", text);
    let message = error_of(NodeConfig::builder().file(&path).build());
    assert!(
        message.ends_with("config.toml line 9: membership.probe_rtt: must be non-zero and shorter than probe_period"),
        "{message}"
    );
    // A zero period is the field at fault, not the default probe_rtt measured against it.
    let path = config_file("zero-period", "[membership]\nprobe_period = \"0s\"\n");
    let message = error_of(NodeConfig::builder().file(&path).build());
    assert!(
        message.ends_with("config.toml line 2: membership.probe_period: must be non-zero"),
        "{message}"
    );
}

#[test]
fn bad_toml_reports_the_line() {
    let path = config_file("syntax", "cluster = \"orders\"\n\nbind = \n");
    let message = error_of(NodeConfig::builder().file(&path).build());
    assert!(message.contains("config.toml line 3"), "{message}");
}

#[test]
fn unknown_keys_are_refused_with_their_line() {
    let path = config_file(
        "unknown",
        "cluster = \"orders\"\n[membership]\nprobe_perod = \"1s\"\n",
    );
    let message = error_of(NodeConfig::builder().file(&path).build());
    assert!(message.contains("config.toml line 3"), "{message}");
    assert!(message.contains("probe_perod"), "{message}");
}

#[test]
fn bad_durations_name_the_key_and_line() {
    let path = config_file(
        "duration",
        "[membership]\nprobe_period = \"1s\"\nprobe_rtt = \"5 parsecs\"\n",
    );
    let message = error_of(NodeConfig::builder().file(&path).build());
    assert!(message.contains("config.toml line 3"), "{message}");
    assert!(message.contains("membership.probe_rtt"), "{message}");
    assert!(message.contains("\"5 parsecs\""), "{message}");
}

#[test]
fn a_wrong_type_is_refused_with_its_line() {
    let path = config_file(
        "type",
        "cluster = \"orders\"\n[membership]\nindirect_probes = \"three\"\n",
    );
    let message = error_of(NodeConfig::builder().file(&path).build());
    assert!(message.contains("config.toml line 3"), "{message}");
    assert!(message.contains("membership.indirect_probes"), "{message}");
}

#[test]
fn a_missing_file_is_named() {
    let message = error_of(
        NodeConfig::builder()
            .file("/nonexistent/foundation.toml")
            .build(),
    );
    assert!(
        message.contains("/nonexistent/foundation.toml"),
        "{message}"
    );
}

#[test]
fn bad_environment_values_name_the_variable() {
    let cases = [
        ("FOUNDATION_BIND", "nowhere"),
        ("FOUNDATION_ADVERTISE", "10.0.0.1"),
        ("FOUNDATION_HTTP", "maybe"),
        ("FOUNDATION_PROFILE", "staging"),
        ("FOUNDATION_CLUSTER", "Not_A_Label"),
        ("FOUNDATION_NODE_ID", "xyz"),
        ("FOUNDATION_SEEDS", "10.0.0.1"),
        ("FOUNDATION_SEEDS", "0.0.0.0:7400"),
        ("FOUNDATION_SEEDS", "10.0.0.1:7400,224.0.0.1:7400"),
        ("FOUNDATION_DISCOVERY", "static,carrier-pigeon"),
        ("FOUNDATION_TAGS", "zone=a,oops"),
        ("FOUNDATION_HTTP_ADVERTISE", "10.0.0.1"),
        ("FOUNDATION_DNS_SERVER", "ns.example:53"),
    ];
    for (var, value) in cases {
        let message = error_of(build_env(&[(var, value)]));
        assert!(
            message.starts_with(&format!("{var}: ")),
            "{var}={value}: {message}"
        );
        assert!(
            message.contains(value.split(',').next_back().unwrap_or(value)),
            "{var}={value}: {message}"
        );
    }
}

#[test]
fn a_short_secret_is_named_but_never_shown() {
    let message = error_of(build_env(&[("FOUNDATION_SECRET", "hunter2")]));
    assert!(
        message.starts_with("FOUNDATION_SECRET: security.secret"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn certificate_variables_come_as_a_set() {
    let message = error_of(build_env(&[("FOUNDATION_CA", "/etc/foundation/ca.pem")]));
    assert!(message.contains("FOUNDATION_CERT"), "{message}");
    assert!(message.contains("FOUNDATION_KEY"), "{message}");
    let missing = error_of(build_env(&[
        ("FOUNDATION_CA", "/nonexistent/ca.pem"),
        ("FOUNDATION_CERT", "/nonexistent/cert.pem"),
        ("FOUNDATION_KEY", "/nonexistent/key.pem"),
    ]));
    assert!(
        missing.contains("/nonexistent/ca.pem is not a readable file"),
        "{missing}"
    );
}

#[test]
fn http_can_be_switched_off() {
    assert_eq!(
        build_env(&[("FOUNDATION_HTTP", "off")])
            .expect("valid")
            .http,
        None
    );
    let path = config_file("http-off", "http = \"off\"\n");
    assert_eq!(
        NodeConfig::builder()
            .file(&path)
            .build()
            .expect("valid")
            .http,
        None
    );
}

#[test]
fn strategies_by_name_take_seeds_and_dns_names_from_their_variables() {
    let config = build_env(&[
        ("FOUNDATION_DISCOVERY", "static, mdns, dns"),
        ("FOUNDATION_BIND", "127.0.0.1:7400"),
        ("FOUNDATION_SEEDS", "10.0.0.1:7400"),
        (
            "FOUNDATION_DNS_NAME",
            "foundation.default.svc.cluster.local",
        ),
    ])
    .expect("valid");
    assert_eq!(
        config.discovery,
        vec![
            DiscoveryChoice::Static {
                seeds: vec!["10.0.0.1:7400".into()]
            },
            DiscoveryChoice::Mdns,
            DiscoveryChoice::dns("foundation.default.svc.cluster.local"),
        ]
    );
    let message = error_of(build_env(&[("FOUNDATION_DISCOVERY", "static")]));
    assert!(message.contains("FOUNDATION_SEEDS"), "{message}");
}

/// A `dns` strategy without a port dials peers at this node's own port: with the development
/// profile's bind port 0 that port is random, and the node silently found no one.
#[test]
fn a_dns_strategy_without_a_port_needs_a_fixed_port_of_its_own() {
    let named = ("FOUNDATION_DNS_NAME", "peers.test");
    let message = error_of(build_env(&[named]));
    assert!(
        message.contains("discovery.port") && message.contains("FOUNDATION_DNS_PORT"),
        "{message}"
    );
    build_env(&[named, ("FOUNDATION_DNS_PORT", "7400")]).expect("the peers' port given");
    build_env(&[named, ("FOUNDATION_BIND", "127.0.0.1:7400")]).expect("a fixed port of its own");
    let srv = "[[discovery]]\nkind = \"dns\"\nname = \"peers.test\"\nsrv = true\n";
    NodeConfig::builder()
        .env(env(&[]))
        .file(config_file("dns-srv-port-0", srv))
        .build()
        .expect("SRV records carry the port");
}

#[test]
fn discovery_entries_in_toml() {
    let text = "[[discovery]]\nkind = \"dns\"\nname = \"peers.local\"\nport = 7500\nsrv = true\ninterval = \"10s\"\n\
                [[discovery]]\nkind = \"local\"\n";
    let config = NodeConfig::builder()
        .file(config_file("discovery", text))
        .build()
        .expect("valid");
    assert_eq!(
        config.discovery,
        vec![
            DiscoveryChoice::Dns {
                name: "peers.local".into(),
                port: 7500,
                srv: true,
                interval: Duration::from_secs(10),
                server: None,
            },
            DiscoveryChoice::Local { dir: None },
        ]
    );
    let wrong = "[[discovery]]\nkind = \"mdns\"\nseeds = [\"10.0.0.1:7400\"]\n";
    let message = error_of(
        NodeConfig::builder()
            .file(config_file("discovery-wrong", wrong))
            .build(),
    );
    assert!(
        message.contains("config.toml line 1: discovery.seeds: does not apply"),
        "{message}"
    );
}

#[test]
fn builder_values_are_validated_and_named() {
    let message = error_of(
        NodeConfig::builder()
            .keep_alive(Duration::from_secs(10))
            .idle_timeout(Duration::from_secs(5))
            .build(),
    );
    assert!(
        message.starts_with("builder: transport.keep_alive:"),
        "{message}"
    );
    let message = error_of(NodeConfig::builder().cluster("Bad Name").build());
    assert!(message.starts_with("builder: cluster:"), "{message}");
}

#[test]
fn the_transport_config_carries_the_node_settings() {
    let config = NodeConfig::builder()
        .bind(addr("127.0.0.1:9000"))
        .advertise(addr("127.0.0.1:9001"))
        .keep_alive(Duration::from_millis(500))
        .build()
        .expect("valid");
    let transport = config.transport_config();
    assert_eq!(transport.bind, addr("127.0.0.1:9000"));
    assert_eq!(transport.advertise, Some(addr("127.0.0.1:9001")));
    assert_eq!(transport.keep_alive, Duration::from_millis(500));
    assert_eq!(transport.validate(), Ok(()));
}

#[test]
fn foundation_config_names_the_file() {
    let path = config_file("env-file", "cluster = \"via-env-file\"\n");
    let config =
        build_env(&[("FOUNDATION_CONFIG", path.to_str().expect("utf-8 path"))]).expect("valid");
    assert_eq!(config.cluster.as_str(), "via-env-file");
}

/// A production environment complete but for storage.
const PRODUCTION: [(&str, &str); 3] = [
    ("FOUNDATION_PROFILE", "production"),
    ("FOUNDATION_SECRET", SECRET),
    ("FOUNDATION_SEEDS", "10.0.0.1:7400"),
];

fn production_with(extra: &[(&str, &str)]) -> Result<NodeConfig, ConfigError> {
    let mut vars = PRODUCTION.to_vec();
    vars.extend_from_slice(extra);
    build_env(&vars)
}

#[test]
fn production_refuses_to_keep_state_in_memory_by_default() {
    let message = error_of(production_with(&[]));
    assert!(message.starts_with("data_dir:"), "{message}");
    for needed in ["FOUNDATION_DATA_DIR", "--data-dir", "storage = \"memory\""] {
        assert!(message.contains(needed), "names {needed}: {message}");
    }
}

#[test]
fn production_accepts_an_explicit_choice_of_memory_with_a_warning() {
    let config = production_with(&[("FOUNDATION_STORAGE", "memory")]).expect("valid");
    assert_eq!(config.storage, StorageMode::Memory);
    assert_eq!(config.data_dir, None);
    let warnings = config.warnings();
    assert!(
        warnings.iter().any(|w| w.contains("data_dir")),
        "{warnings:?}"
    );
}

#[test]
fn development_stays_in_memory_unless_a_data_dir_is_given() {
    let config = build_env(&[]).expect("zero config");
    assert_eq!(
        (config.storage, config.data_dir),
        (StorageMode::Memory, None)
    );
    let with_dir = NodeConfig::builder()
        .data_dir("/tmp/foundation-dev-data")
        .build()
        .expect("valid");
    assert_eq!(with_dir.storage, StorageMode::Disk);
    assert_eq!(
        with_dir.data_dir.as_deref(),
        Some(std::path::Path::new("/tmp/foundation-dev-data"))
    );
    let memory_anyway = NodeConfig::builder()
        .data_dir("/tmp/foundation-dev-data")
        .storage(StorageMode::Memory)
        .build()
        .expect("valid");
    assert_eq!(memory_anyway.storage, StorageMode::Memory);
}

#[test]
fn disk_storage_without_a_data_dir_is_refused() {
    let message = error_of(build_env(&[("FOUNDATION_STORAGE", "disk")]));
    assert!(
        message.starts_with("FOUNDATION_STORAGE: storage:"),
        "{message}"
    );
    assert!(message.contains("FOUNDATION_DATA_DIR"), "{message}");
}

#[test]
fn a_data_dir_that_is_a_file_is_refused() {
    let file = config_file("data-dir-file", "");
    let message = error_of(NodeConfig::builder().data_dir(&file).build());
    assert!(message.contains("not a directory"), "{message}");
    assert!(message.contains("data_dir"), "{message}");
}

#[test]
fn storage_settings_in_toml_with_env_and_builder_above() {
    let path = config_file(
        "storage",
        "data_dir = \"/tmp/foundation-file-data\"\nsync = \"interval\"\nsync_interval = \"20ms\"\n",
    );
    let from_file = NodeConfig::builder().file(&path).build().expect("valid");
    assert_eq!(from_file.storage, StorageMode::Disk);
    assert_eq!(
        from_file.sync,
        SyncPolicy::Interval(Duration::from_millis(20))
    );

    let env_wins = NodeConfig::builder()
        .file(&path)
        .env(env(&[("FOUNDATION_SYNC", "never")]))
        .build()
        .expect("valid");
    assert_eq!(env_wins.sync, SyncPolicy::Never);

    let builder_wins = NodeConfig::builder()
        .file(&path)
        .env(env(&[("FOUNDATION_SYNC", "never")]))
        .sync(SyncPolicy::Always)
        .data_dir("/tmp/foundation-builder-data")
        .build()
        .expect("valid");
    assert_eq!(builder_wins.sync, SyncPolicy::Always);
    assert_eq!(
        builder_wins.data_dir.as_deref(),
        Some(std::path::Path::new("/tmp/foundation-builder-data"))
    );
}

#[test]
fn bad_storage_settings_name_the_key_or_variable() {
    let path = config_file(
        "bad-sync",
        "cluster = \"x\"\nsync = \"always\"\nsync_interval = \"20ms\"\n",
    );
    let message = error_of(NodeConfig::builder().file(&path).build());
    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("sync_interval applies only"), "{message}");

    let message = error_of(build_env(&[("FOUNDATION_STORAGE", "tape")]));
    assert!(message.starts_with("FOUNDATION_STORAGE:"), "{message}");
    assert!(message.contains("\"memory\" or \"disk\""), "{message}");

    let message = error_of(build_env(&[("FOUNDATION_SYNC_INTERVAL", "0s")]));
    assert!(message.contains("sync_interval"), "{message}");
    assert!(message.contains("above zero"), "{message}");

    let path = config_file("bad-storage", "storage = \"floppy\"\n");
    let message = error_of(NodeConfig::builder().file(&path).build());
    assert!(message.contains("line 1"), "{message}");
    assert!(message.contains("storage"), "{message}");
}

#[test]
fn an_empty_secret_is_an_error_not_the_development_secret() {
    for var in ["FOUNDATION_SECRET", "FOUNDATION_HTTP_TOKEN"] {
        let message = error_of(build_env(&[(var, "  ")]));
        assert!(message.starts_with(&format!("{var}: ")), "{message}");
        assert!(message.contains("empty"), "{message}");
    }
}

#[test]
fn http_access_comes_from_the_environment() {
    let message = error_of(build_env(&[("FOUNDATION_HTTP_TOKEN", "short1")]));
    assert!(message.starts_with("FOUNDATION_HTTP_TOKEN: "), "{message}");
    assert!(
        !message.contains("short1"),
        "the token is never shown: {message}"
    );
    let config = build_env(&[
        ("FOUNDATION_HTTP_TOKEN", "0123456789abcdef0123"),
        (
            "FOUNDATION_HTTP_ORIGINS",
            "https://ops.example, https://grafana.example",
        ),
        ("FOUNDATION_HTTP_HOSTS", "node-1.internal"),
    ])
    .expect("valid");
    let access = &config.http_access;
    assert_eq!(access.token.as_deref(), Some("0123456789abcdef0123"));
    assert_eq!(
        access.allowed_origins,
        ["https://ops.example", "https://grafana.example"]
    );
    assert_eq!(access.allowed_hosts, ["node-1.internal"]);
}

#[test]
fn the_bulk_port_is_auto_on_a_laptop_fixed_in_production_and_settable_everywhere() {
    let transport = build_env(&[]).expect("zero config").transport_config();
    assert!(transport.bulk_endpoint);
    assert_eq!(transport.bulk_port, 0, "development lets the kernel pick");
    let production = production_with(&[("FOUNDATION_STORAGE", "memory")]).expect("valid");
    assert_eq!(
        production.transport.bulk_port,
        PortSetting::Fixed(DEFAULT_BULK_PORT)
    );
    assert_eq!(production.transport_config().bulk_port, 7402);

    let off = build_env(&[("FOUNDATION_BULK_PORT", "off")]).expect("valid");
    assert!(!off.transport_config().bulk_endpoint);
    let path = config_file("bulk-port", "[transport]\nbulk_port = 7500\n");
    let from_file = NodeConfig::builder().file(&path).build().expect("valid");
    assert_eq!(from_file.transport_config().bulk_port, 7500);
    let path = config_file("bulk-port-auto", "[transport]\nbulk_port = \"auto\"\n");
    let from_file = NodeConfig::builder().file(&path).build().expect("valid");
    assert_eq!(from_file.transport.bulk_port, PortSetting::Auto);
    let built = NodeConfig::builder()
        .bulk_port(PortSetting::Fixed(7600))
        .build()
        .expect("valid");
    assert_eq!(built.transport_config().bulk_port, 7600);
}

/// A port setting refused from the environment (`env`: variable and value) names the variable
/// and the accepted spellings; refused from a file (`file`: key and value), its line.
fn a_bad_port_is_named(env: (&str, &str), file: (&str, &str)) {
    let message = error_of(build_env(&[env]));
    assert!(message.contains(env.0), "{message}");
    assert!(message.contains("\"auto\", \"off\""), "{message}");
    let text = format!("[transport]\n{} = {}\n", file.0, file.1);
    let path = config_file(&format!("{}-range", file.0), &text);
    let message = error_of(NodeConfig::builder().file(&path).build());
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn a_bad_bulk_port_is_named_with_where_it_came_from() {
    a_bad_port_is_named(("FOUNDATION_BULK_PORT", "0"), ("bulk_port", "70000"));
    let clash = build_env(&[
        ("FOUNDATION_BIND", "127.0.0.1:7500"),
        ("FOUNDATION_BULK_PORT", "7500"),
    ]);
    let message = error_of(clash);
    assert!(
        message.contains("transport.bulk_port: must differ from the port of bind"),
        "{message}"
    );
    assert!(message.contains("FOUNDATION_BULK_PORT"), "{message}");
}

#[test]
fn the_sealed_port_is_auto_on_a_laptop_fixed_in_production_and_settable_everywhere() {
    let transport = build_env(&[]).expect("zero config").transport_config();
    assert!(transport.sealed_membership);
    assert_eq!(transport.sealed_port, 0, "development lets the kernel pick");
    let production = production_with(&[("FOUNDATION_STORAGE", "memory")]).expect("valid");
    assert_eq!(
        production.transport.sealed_port,
        PortSetting::Fixed(DEFAULT_SEALED_PORT)
    );
    assert_eq!(production.transport_config().sealed_port, 7403);
    assert!(production.transport_config().validate().is_ok());

    let off = build_env(&[("FOUNDATION_SEALED_PORT", "off")]).expect("valid");
    assert!(!off.transport_config().sealed_membership);
    let path = config_file("sealed-port", "[transport]\nsealed_port = 7500\n");
    let from_file = NodeConfig::builder().file(&path).build().expect("valid");
    assert_eq!(from_file.transport_config().sealed_port, 7500);
    let built = NodeConfig::builder()
        .sealed_port(PortSetting::Fixed(7600))
        .build()
        .expect("valid");
    assert_eq!(built.transport_config().sealed_port, 7600);
}

#[test]
fn sealed_membership_false_is_the_older_spelling_of_sealed_port_off() {
    let path = config_file("sealed-off", "[transport]\nsealed_membership = false\n");
    let from_file = NodeConfig::builder().file(&path).build().expect("valid");
    assert_eq!(from_file.transport.sealed_port, PortSetting::Off);
    assert!(!from_file.transport_config().sealed_membership);
    let text = "[transport]\nsealed_membership = true\nsealed_port = 7500\n";
    let agreeing = config_file("sealed-agree", text);
    let from_file = NodeConfig::builder()
        .file(&agreeing)
        .build()
        .expect("valid");
    assert_eq!(from_file.transport.sealed_port, PortSetting::Fixed(7500));
    // The environment outranks the file, whichever key the file used.
    let env_wins = NodeConfig::builder()
        .file(&path)
        .env(env(&[("FOUNDATION_SEALED_PORT", "auto")]))
        .build()
        .expect("valid");
    assert_eq!(env_wins.transport.sealed_port, PortSetting::Auto);
}

#[test]
fn contradicting_sealed_keys_and_bad_sealed_ports_are_refused_with_where_they_came_from() {
    for text in [
        "[transport]\nsealed_port = \"off\"\nsealed_membership = true\n",
        "[transport]\nsealed_port = 7500\nsealed_membership = false\n",
    ] {
        let path = config_file("sealed-contradiction", text);
        let message = error_of(NodeConfig::builder().file(&path).build());
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("transport.sealed_membership"), "{message}");
        assert!(message.contains("contradicts sealed_port"), "{message}");
    }
    a_bad_port_is_named(("FOUNDATION_SEALED_PORT", "on"), ("sealed_port", "0"));
    let clash = build_env(&[
        ("FOUNDATION_BULK_PORT", "7500"),
        ("FOUNDATION_SEALED_PORT", "7500"),
    ]);
    let message = error_of(clash);
    assert!(
        message.contains("FOUNDATION_SEALED_PORT: transport.sealed_port: must differ"),
        "{message}"
    );
}

#[test]
fn a_gateway_on_one_of_the_nodes_own_ports_is_refused() {
    let text = "[transport]\nsealed_port = 7500\n[federation]\nbind = \"0.0.0.0:7500\"\n";
    let path = config_file("federation-on-sealed", text);
    let message = error_of(NodeConfig::builder().file(&path).build());
    assert!(message.contains("federation.bind"), "{message}");
    assert!(message.contains("transport.sealed_port"), "{message}");
}

#[test]
fn http_advertise_comes_from_the_file_the_environment_or_the_builder() {
    assert_eq!(build_env(&[]).expect("valid").http_advertise, None);
    let path = config_file("http-advertise", "http_advertise = \"10.0.0.5:7401\"\n");
    let from_file = NodeConfig::builder().file(&path).build().expect("valid");
    assert_eq!(from_file.http_advertise, Some(addr("10.0.0.5:7401")));
    let from_env = NodeConfig::builder()
        .file(&path)
        .env(env(&[("FOUNDATION_HTTP_ADVERTISE", "[fd00::5]:8080")]))
        .build()
        .expect("valid");
    assert_eq!(from_env.http_advertise, Some(addr("[fd00::5]:8080")));
    let from_builder = NodeConfig::builder()
        .file(&path)
        .http_advertise(addr("192.0.2.1:80"))
        .build()
        .expect("valid");
    assert_eq!(from_builder.http_advertise, Some(addr("192.0.2.1:80")));
}

#[test]
fn an_unspecified_http_advertise_is_refused_with_its_key() {
    let message = error_of(build_env(&[("FOUNDATION_HTTP_ADVERTISE", "0.0.0.0:7401")]));
    assert!(message.contains("http_advertise"), "{message}");
    assert!(message.contains("FOUNDATION_HTTP_ADVERTISE"), "{message}");
    let path = config_file(
        "http-advertise-wildcard",
        "http_advertise = \"[::]:7401\"\n",
    );
    let message = error_of(NodeConfig::builder().file(&path).build());
    assert!(message.contains("line 1: http_advertise"), "{message}");
    let path = config_file("http-advertise-text", "http_advertise = \"my-host\"\n");
    let message = error_of(NodeConfig::builder().file(&path).build());
    assert!(message.contains("line 1: http_advertise"), "{message}");
}

#[test]
fn a_dns_server_comes_from_the_discovery_entry_or_the_environment() {
    let text = "bind = \"127.0.0.1:7400\"\n[[discovery]]\nkind = \"dns\"\nname = \"peers.test\"\nserver = \"10.0.0.2\"\n";
    let config = NodeConfig::builder()
        .file(config_file("dns-server", text))
        .build()
        .expect("valid");
    let server_of = |config: &NodeConfig| match &config.discovery[..] {
        [DiscoveryChoice::Dns { server, .. }] => *server,
        other => panic!("expected one dns strategy, got {other:?}"),
    };
    assert_eq!(server_of(&config), Some(addr("10.0.0.2:53")));
    let config = NodeConfig::builder()
        .file(config_file("dns-server", text))
        .env(env(&[("FOUNDATION_DNS_SERVER", "[fd00::2]:5353")]))
        .build()
        .expect("valid");
    assert_eq!(server_of(&config), Some(addr("[fd00::2]:5353")));
    let config = build_env(&[
        ("FOUNDATION_DISCOVERY", "dns"),
        ("FOUNDATION_BIND", "127.0.0.1:7400"),
        ("FOUNDATION_DNS_NAME", "peers.test"),
        ("FOUNDATION_DNS_SERVER", "fd00::2"),
    ])
    .expect("valid");
    assert_eq!(server_of(&config), Some(addr("[fd00::2]:53")));
    // Without a server: the system's resolver.
    let config = build_env(&[
        ("FOUNDATION_DISCOVERY", "dns"),
        ("FOUNDATION_BIND", "127.0.0.1:7400"),
        ("FOUNDATION_DNS_NAME", "peers.test"),
    ])
    .expect("valid");
    assert_eq!(server_of(&config), None);
}

/// `FOUNDATION_DNS_PORT` reaches the `dns` strategy that `FOUNDATION_DNS_NAME` makes: it was
/// read only by `auto` in Kubernetes, which a set name replaces, so it went unheard.
#[test]
fn the_dns_port_variable_reaches_the_dns_strategy() {
    let port_of = |config: &NodeConfig| match &config.discovery[..] {
        [DiscoveryChoice::Dns { port, .. }] => *port,
        other => panic!("expected one dns strategy, got {other:?}"),
    };
    let named = ("FOUNDATION_DNS_NAME", "peers.test");
    let config = build_env(&[named, ("FOUNDATION_DNS_PORT", "7500")]).expect("valid");
    assert_eq!(port_of(&config), 7500);
    let config = build_env(&[named, ("FOUNDATION_BIND", "127.0.0.1:7400")]).expect("valid");
    assert_eq!(port_of(&config), 0, "unset: the node's own port");
    let text = "[[discovery]]\nkind = \"dns\"\nname = \"peers.test\"\nport = 7600\n";
    let config = NodeConfig::builder()
        .file(config_file("dns-port", text))
        .env(env(&[("FOUNDATION_DNS_PORT", "7500")]))
        .build()
        .expect("valid");
    assert_eq!(
        port_of(&config),
        7500,
        "the environment ranks above the file"
    );
    let message = error_of(build_env(&[named, ("FOUNDATION_DNS_PORT", "http")]));
    assert!(message.starts_with("FOUNDATION_DNS_PORT: "), "{message}");
    // Where no dns strategy takes it (Kubernetes sets it for a Service of that name), a value
    // that is no port stops nothing.
    let seeded = ("FOUNDATION_SEEDS", "10.0.0.1:7400");
    build_env(&[seeded, ("FOUNDATION_DNS_PORT", "tcp://10.96.0.9:7400")]).expect("valid");
}

#[test]
fn a_bad_dns_server_is_a_config_error_naming_the_key() {
    for bad in ["ns1.example", "10.0.0.2:99999", "0.0.0.0", "10.0.0.2:0", ""] {
        let text =
            format!("[[discovery]]\nkind = \"dns\"\nname = \"peers.test\"\nserver = \"{bad}\"\n");
        let message = error_of(
            NodeConfig::builder()
                .file(config_file("dns-server-bad", &text))
                .build(),
        );
        assert!(message.contains("discovery.server"), "{bad:?}: {message}");
        assert!(message.contains(&format!("{bad:?}")), "{bad:?}: {message}");
    }
    let text =
        "[[discovery]]\nkind = \"static\"\nseeds = [\"10.0.0.1:7400\"]\nserver = \"10.0.0.2\"\n";
    let message = error_of(
        NodeConfig::builder()
            .file(config_file("dns-server-static", text))
            .build(),
    );
    assert!(message.contains("discovery.server"), "{message}");
    let message = error_of(build_env(&[("FOUNDATION_DNS_SERVER", "0.0.0.0:53")]));
    assert!(message.starts_with("FOUNDATION_DNS_SERVER: "), "{message}");
}

#[test]
fn federation_links_and_exports_come_from_the_file() {
    let path = config_file(
        "federation",
        r#"
cluster = "us-east"
[federation]
bind = "127.0.0.1:7403"
exports = ["billing"]
probe_interval = "2s"
down_after = 5
transit = ["eu-west", "ap-south"]
push_spacing = "80ms"
max_call_deadline = "30s"

[[federation.links]]
cluster = "eu-west"
gateways = ["10.1.0.5:7403", "10.1.0.6:7403"]
secret = "eu-west's cluster secret"
hub = true

[[federation.links]]
cluster = "ap-south"
gateways = ["10.2.0.5:7403"]
ca = "/etc/foundation/ap-south-ca.pem"

[[federation.bridges]]
cluster = "eu-west"
export = ["orders.>"]
import = ["prices.*", "fx.eur"]
"#,
    );
    let config = NodeConfig::builder().file(&path).build().unwrap();
    let federation = config.federation.expect("federation set");
    assert_eq!(
        federation.bind,
        "127.0.0.1:7403".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(federation.exports, vec!["billing".to_string()]);
    assert_eq!(federation.timers.probe_interval, Duration::from_secs(2));
    assert_eq!(
        federation.timers.probe_timeout,
        Duration::from_secs(3),
        "default"
    );
    assert_eq!(federation.timers.down_after, 5);
    let clusters: Vec<_> = federation
        .links
        .iter()
        .map(|l| l.cluster.as_str())
        .collect();
    assert_eq!(clusters, ["eu-west", "ap-south"]);
    assert_eq!(federation.links[0].gateways.len(), 2);
    assert!(matches!(federation.links[0].root, RemoteRoot::Secret(_)));
    let routing = &federation.routing;
    let names = |r: &std::collections::BTreeSet<ClusterName>| {
        r.iter().map(|c| c.as_str().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(
        names(&routing.hubs),
        ["eu-west"],
        "only the link marked hub"
    );
    assert_eq!(names(&routing.transit), ["ap-south", "eu-west"]);
    assert_eq!(routing.push_spacing, Some(Duration::from_millis(80)));
    assert_eq!(federation.max_call_deadline, Duration::from_secs(30));
    assert!(
        matches!(&federation.links[1].root, RemoteRoot::CaFile(p) if p.ends_with("ap-south-ca.pem"))
    );
    let bridge = &federation.bridges[0];
    assert_eq!(bridge.cluster, "eu-west");
    assert_eq!(bridge.export, ["orders.>"]);
    assert_eq!(bridge.import, ["prices.*", "fx.eur"]);
}

#[test]
fn bad_federation_sections_are_refused_naming_the_file() {
    let cases = [
        ("both-roots", "[[federation.links]]\ncluster = \"b\"\ngateways = [\"127.0.0.1:1\"]\nsecret = \"sixteen bytes at least\"\nca = \"x.pem\"\n", "exactly one of secret or ca"),
        ("no-gateway", "[[federation.links]]\ncluster = \"b\"\ngateways = []\nsecret = \"sixteen bytes at least\"\n", "names no gateway"),
        ("bad-cluster", "[[federation.links]]\ncluster = \"Bad Name\"\ngateways = [\"127.0.0.1:1\"]\nsecret = \"sixteen bytes at least\"\n", "invalid cluster name"),
        ("bad-address", "[[federation.links]]\ncluster = \"b\"\ngateways = [\"somewhere\"]\nsecret = \"sixteen bytes at least\"\n", "not an ip:port"),
        ("weak-secret", "[[federation.links]]\ncluster = \"b\"\ngateways = [\"127.0.0.1:1\"]\nsecret = \"short\"\n", "too short"),
        ("bridge-unlinked", "[[federation.links]]\ncluster = \"b\"\ngateways = [\"127.0.0.1:1\"]\nsecret = \"sixteen bytes at least\"\n[[federation.bridges]]\ncluster = \"c\"\nexport = [\"a.>\"]\n", "cluster \"c\", which is not linked"),
        ("zero-deadline", "max_call_deadline = \"0s\"\n", "max_call_deadline must be above zero"),
        ("bridge-pattern", "[[federation.links]]\ncluster = \"b\"\ngateways = [\"127.0.0.1:1\"]\nsecret = \"sixteen bytes at least\"\n[[federation.bridges]]\ncluster = \"b\"\nimport = [\"a.>.c\"]\n", "import pattern \"a.>.c\""),
    ];
    for (name, links, expected) in cases {
        let text = format!("[federation]\nbind = \"127.0.0.1:0\"\n{links}");
        let path = config_file(name, &text);
        let error = error_of(NodeConfig::builder().file(&path).build());
        assert!(error.contains(expected), "{name}: {error}");
        assert!(error.contains("federation"), "{name}: {error}");
        assert!(error.contains("config.toml"), "{name}: {error}");
    }
    let path = config_file(
        "unknown-key",
        "[federation]\nbind = \"127.0.0.1:0\"\nport = 1\n",
    );
    let error = error_of(NodeConfig::builder().file(&path).build());
    assert!(error.contains("port"), "{error}");
}

#[tokio::test]
async fn a_configured_gateway_starts_with_the_node() {
    let path = config_file(
        "federation-start",
        "cluster = \"a\"\n[federation]\nbind = \"127.0.0.1:0\"\n[[federation.links]]\ncluster = \"b\"\ngateways = [\"127.0.0.1:9\"]\nsecret = \"sixteen bytes at least\"\n",
    );
    let config = NodeConfig::builder()
        .file(&path)
        .http(None)
        .build()
        .unwrap();
    let node = foundation_engine::runtime::Node::start_configured(&config)
        .await
        .unwrap();
    let gateway = node.federation().expect("the gateway runs");
    assert!(gateway.addr().is_some());
    assert_eq!(gateway.links()[0].cluster.as_str(), "b");
    node.stop_gateway();
    node.abort().await;
}

#[test]
fn vars_re_seating_is_on_by_default_and_set_off_or_to_another_grace_in_toml_or_env() {
    let default = NodeConfig::builder().build().expect("valid");
    let grace = |c: &NodeConfig| c.vars_reseat.map(|r| r.grace);
    assert_eq!(grace(&default), Some(Duration::from_secs(10)));
    let path = config_file("reseat", "vars_reseat_after = \"off\"\n");
    let off = NodeConfig::builder().file(&path).build().expect("valid");
    assert_eq!(off.vars_reseat, None);
    let env_wins = NodeConfig::builder()
        .file(&path)
        .env(env(&[("FOUNDATION_VARS_RESEAT_AFTER", "30s")]))
        .build()
        .expect("valid");
    assert_eq!(grace(&env_wins), Some(Duration::from_secs(30)));
    let bad = config_file(
        "bad-reseat",
        "cluster = \"x\"\nvars_reseat_after = \"soon\"\n",
    );
    let message = error_of(NodeConfig::builder().file(&bad).build());
    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("vars_reseat_after"), "{message}");
    let message = error_of(build_env(&[("FOUNDATION_VARS_RESEAT_AFTER", "10")]));
    assert!(
        message.starts_with("FOUNDATION_VARS_RESEAT_AFTER:"),
        "{message}"
    );
}

/// Every key a `[replication]` table may set, each away from its default.
const REPLICATION_TABLE: &str = "[replication]
fanout = 5
push_all_max = 10
anti_entropy_interval = \"2s\"
op_log_max = 300
value_size_max = 32768
key_size_max = 512
keyspace_keys_max = 20000
keyspace_bytes_max = 3000000
keyspaces_max = 100
max_drift_ms = 5000
tombstone_ttl = \"30m\"
departed_after = \"1h\"
bulk_threshold = 100000
";

#[test]
fn every_replication_key_in_the_file_reaches_the_node_settings() {
    let default = NodeConfig::builder().build().expect("valid");
    assert_eq!(default.replication, ReplicationConfig::default());
    let path = config_file("replication-all", REPLICATION_TABLE);
    let config = NodeConfig::builder()
        .file(&path)
        .discovery([])
        .http(None)
        .build()
        .expect("valid");
    let settings = NodeSettings::from_config(&config).expect("settings");
    let expected = ReplicationConfig {
        fanout: 5,
        push_all_max: 10,
        anti_entropy_interval: Duration::from_secs(2),
        op_log_max: 300,
        value_size_max: 32768,
        key_size_max: 512,
        keyspace_keys_max: 20_000,
        keyspace_bytes_max: 3_000_000,
        keyspaces_max: 100,
        max_drift_ms: 5000,
        wall_ms_at_zero: 0,
        tombstone_ttl: Duration::from_secs(30 * 60),
        departed_after: Duration::from_secs(60 * 60),
        bulk_threshold: 100_000,
    };
    assert_eq!(settings.replication, expected);
}

#[test]
fn replication_keys_override_the_defaults_one_by_one_and_the_builder_replaces_them() {
    let path = config_file(
        "replication-one",
        "[replication]\nkeyspace_keys_max = 50000\n",
    );
    let config = NodeConfig::builder().file(&path).build().expect("valid");
    let expected = ReplicationConfig {
        keyspace_keys_max: 50_000,
        ..ReplicationConfig::default()
    };
    assert_eq!(config.replication, expected);
    let chosen = ReplicationConfig {
        fanout: 7,
        ..ReplicationConfig::default()
    };
    let builder_wins = NodeConfig::builder()
        .file(&path)
        .replication(chosen.clone())
        .build()
        .expect("valid");
    assert_eq!(builder_wins.replication, chosen);
}

#[test]
fn bad_replication_settings_name_the_key_and_the_line() {
    // (file text after a first line, what the message must say)
    let cases = [
        (
            "[replication]\ntombstone_ttl = \"soon\"\n",
            "config.toml line 3: replication.tombstone_ttl: invalid duration",
        ),
        (
            "[replication]\nkeyspace_keys_max = \"many\"\n",
            "config.toml line 3: replication.keyspace_keys_max:",
        ),
        (
            "[replication]\nkeyspace_keys_max = -1\n",
            "config.toml line 3: replication.keyspace_keys_max:",
        ),
        (
            "[replication]\nkeyspace_key_max = 3\n",
            "config.toml line 3: replication.keyspace_key_max: unknown field `keyspace_key_max`",
        ),
        (
            "[replication]\nkeyspace_keys_max = 0\n",
            "config.toml line 3: replication.keyspace_keys_max: must be at least 1",
        ),
        (
            "[replication]\nvalue_size_max = 9223372036854775807\nkey_size_max = 9223372036854775807\n",
            "config.toml line 3: replication.value_size_max: an op of the largest key and value",
        ),
        (
            "[replication]\nanti_entropy_interval = \"5s\"\ntombstone_ttl = \"1s\"\n",
            "config.toml line 4: replication.tombstone_ttl: must be at least anti_entropy_interval",
        ),
        // The rule names a key the file left at its default: the line of the other is given.
        (
            "[replication]\nanti_entropy_interval = \"20m\"\n",
            "config.toml line 3: replication.tombstone_ttl: must be at least anti_entropy_interval",
        ),
        (
            "[replication]\nkeyspace_bytes_max = 300000000\n",
            "config.toml line 3: replication.keyspace_bytes_max: a full keyspace",
        ),
    ];
    for (i, (text, expected)) in cases.into_iter().enumerate() {
        let path = config_file(
            &format!("replication-bad-{i}"),
            &format!("cluster = \"x\"\n{text}"),
        );
        let message = error_of(NodeConfig::builder().file(&path).build());
        assert!(message.contains(expected), "{text:?}: {message}");
    }
}

#[test]
fn the_keyspace_limits_come_from_the_environment_above_the_file() {
    let path = config_file(
        "replication-env",
        "[replication]\nkeyspace_keys_max = 20000\nfanout = 4\n",
    );
    let config = NodeConfig::builder()
        .file(&path)
        .env(env(&[
            ("FOUNDATION_REPLICATION_KEYSPACE_KEYS_MAX", "30000"),
            ("FOUNDATION_REPLICATION_KEYSPACE_BYTES_MAX", "4194304"),
        ]))
        .build()
        .expect("valid");
    assert_eq!(config.replication.keyspace_keys_max, 30_000);
    assert_eq!(config.replication.keyspace_bytes_max, 4 << 20);
    assert_eq!(config.replication.fanout, 4);
    let message = error_of(build_env(&[(
        "FOUNDATION_REPLICATION_KEYSPACE_KEYS_MAX",
        "lots",
    )]));
    assert_eq!(
        message,
        "FOUNDATION_REPLICATION_KEYSPACE_KEYS_MAX: \"lots\" is not a whole number"
    );
    let message = error_of(build_env(&[(
        "FOUNDATION_REPLICATION_KEYSPACE_BYTES_MAX",
        "0",
    )]));
    assert_eq!(
        message,
        "FOUNDATION_REPLICATION_KEYSPACE_BYTES_MAX: replication.value_size_max: must be at most keyspace_bytes_max"
    );
}

/// A node started from a file with `keyspace_keys_max = 3` refuses the fourth agent: the agent
/// directory is one replicated keyspace, and the file's limit is the one the node enforces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_from_a_file_enforces_its_replication_limits() {
    use foundation_engine::runtime::agents::{
        answer, Agent, AgentSpec, AgentsError, Context, HandlerError, Message,
    };

    struct Echo;
    impl Agent for Echo {
        async fn handle(
            &mut self,
            _: &Context,
            message: Message,
        ) -> Result<bytes::Bytes, HandlerError> {
            answer(&message.decode::<u64>()?)
        }
    }
    let path = config_file(
        "replication-start",
        "[replication]\nkeyspace_keys_max = 3\n",
    );
    let config = NodeConfig::builder()
        .file(&path)
        .discovery([])
        .http(None)
        .build()
        .unwrap();
    let node = foundation_engine::runtime::Node::start_configured(&config)
        .await
        .unwrap();
    let agents = node.agents();
    for name in ["a", "b", "c"] {
        agents.spawn(AgentSpec::new(name, || Echo)).await.unwrap();
    }
    let fourth = agents.spawn(AgentSpec::new("d", || Echo)).await;
    let Err(AgentsError::Refused(error)) = fourth else {
        panic!("the fourth agent was not refused: {fourth:?}");
    };
    assert_eq!(
        error.to_string(),
        "keyspace \"agents\" is full: 3 keys (keyspace_keys_max)"
    );
    node.abort().await;
}
