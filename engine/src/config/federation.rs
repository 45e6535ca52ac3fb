//! `[federation]` in the TOML file: this node as a gateway of its cluster.
//!
//! ```toml
//! [federation]
//! bind = "0.0.0.0:7404"      # not 7400-7403: the node's own ports in production
//! exports = ["billing"]
//! probe_interval = "5s"     # optional WAN timers
//! probe_timeout = "3s"
//! down_after = 3
//! transit = ["eu-west", "us-east"]   # optional: as a hub, carry calls between these links
//! push_spacing = "50ms"             # optional: least time between pushes of export changes
//! max_call_deadline = "5m"          # optional: longest a linked cluster's call runs here
//!
//! [[federation.links]]
//! cluster = "eu-west"
//! gateways = ["10.1.0.5:7404", "10.1.0.6:7404"]
//! secret = "eu-west's cluster secret"   # or: ca = "/etc/foundation/eu-west-ca.pem"
//! hub = false                           # optional: true to reach other clusters through it
//!
//! [[federation.bridges]]                # pub/sub bridged with a linked cluster
//! cluster = "eu-west"
//! export = ["orders.>"]    # published here, sent to eu-west (if eu-west imports them)
//! import = ["prices.*"]    # published in eu-west, delivered here (if eu-west exports them)
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::duration::TextDuration;
use crate::runtime::federation::{FederationSettings, LinkSettings};
use foundation_core::federation::{BridgeConfig, Routing, TopicBridges, WanTimers};
use foundation_transport::security::RemoteRoot;
use foundation_transport::{ClusterName, ClusterSecret};

/// `[federation]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileFederation {
    bind: String,
    #[serde(default)]
    exports: Vec<String>,
    probe_interval: Option<TextDuration>,
    probe_timeout: Option<TextDuration>,
    down_after: Option<u32>,
    #[serde(default)]
    transit: Vec<String>,
    push_spacing: Option<TextDuration>,
    max_call_deadline: Option<TextDuration>,
    #[serde(default)]
    links: Vec<FileLink>,
    #[serde(default)]
    bridges: Vec<FileBridge>,
}

/// One `[[federation.bridges]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBridge {
    cluster: String,
    #[serde(default)]
    export: Vec<String>,
    #[serde(default)]
    import: Vec<String>,
}

/// One `[[federation.links]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLink {
    cluster: String,
    gateways: Vec<String>,
    secret: Option<String>,
    ca: Option<PathBuf>,
    #[serde(default)]
    hub: bool,
}

impl FileFederation {
    /// The gateway settings, or what is wrong with them.
    pub(super) fn settings(&self) -> Result<FederationSettings, String> {
        let bind = address(&self.bind, "bind")?;
        let defaults = WanTimers::default();
        let timers = WanTimers {
            probe_interval: self
                .probe_interval
                .as_ref()
                .map_or(defaults.probe_interval, |d| d.0),
            probe_timeout: self
                .probe_timeout
                .as_ref()
                .map_or(defaults.probe_timeout, |d| d.0),
            down_after: self.down_after.unwrap_or(defaults.down_after),
        };
        timers.validate()?;
        let links: Vec<LinkSettings> = self
            .links
            .iter()
            .map(FileLink::settings)
            .collect::<Result<Vec<_>, _>>()?;
        let hubs = self.links.iter().zip(&links).filter(|(file, _)| file.hub);
        let transit = self.transit.iter().map(|c| ClusterName::new(c.as_str()));
        let routing = Routing {
            hubs: hubs.map(|(_, link)| link.cluster.clone()).collect(),
            transit: transit
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?,
            push_spacing: self
                .push_spacing
                .as_ref()
                .map_or(Routing::default().push_spacing, |d| Some(d.0)),
        };
        let bridges: Vec<BridgeConfig> = self
            .bridges
            .iter()
            .map(|b| BridgeConfig {
                cluster: b.cluster.clone(),
                export: b.export.clone(),
                import: b.import.clone(),
            })
            .collect();
        let linked = links.iter().map(|l| l.cluster.clone()).collect();
        TopicBridges::new(&linked, &bridges).map_err(|e| e.to_string())?;
        let defaults = FederationSettings::new(bind);
        let max_call_deadline = self
            .max_call_deadline
            .as_ref()
            .map_or(defaults.max_call_deadline, |d| d.0);
        if max_call_deadline.is_zero() {
            return Err("max_call_deadline must be above zero".into());
        }
        Ok(FederationSettings {
            links,
            bridges,
            exports: self.exports.clone(),
            timers,
            routing,
            max_call_deadline,
            ..defaults
        })
    }
}

impl FileLink {
    fn settings(&self) -> Result<LinkSettings, String> {
        let cluster = ClusterName::new(self.cluster.as_str()).map_err(|e| e.to_string())?;
        let gateways = self
            .gateways
            .iter()
            .map(|g| address(g, "gateways"))
            .collect::<Result<Vec<_>, _>>()?;
        if gateways.is_empty() {
            return Err(format!("the link to {cluster} names no gateway"));
        }
        let root = match (&self.secret, &self.ca) {
            (Some(secret), None) => {
                RemoteRoot::Secret(ClusterSecret::new(secret.as_str()).map_err(|e| e.to_string())?)
            }
            (None, Some(ca)) => RemoteRoot::CaFile(ca.clone()),
            _ => {
                return Err(format!(
                    "the link to {cluster} needs exactly one of secret or ca"
                ))
            }
        };
        Ok(LinkSettings {
            cluster,
            gateways,
            root,
        })
    }
}

fn address(text: &str, field: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|e| format!("{field}: {text:?} is not an ip:port address ({e})"))
}
