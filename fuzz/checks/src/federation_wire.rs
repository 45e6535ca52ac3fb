//! Arbitrary bytes as what a gateway of another cluster sends over a federation link (a
//! request: probe, push, call, bridged messages, transit and via calls) or answers, and as what
//! a node of this cluster hands its gateway through the relay service and reads back. A probe's
//! or push's directory goes into a live federation machine, as the gateway's server does.
//!
//! Properties: nothing panics; whatever decodes encodes back to bytes that decode to the same
//! value, with postcard alone and with the versioned frames of gateways and relays
//! ([`wire::decode`]); a directory is taken in exactly when it validates, leaves the machine's
//! directory valid, and taking it in again changes nothing (the directory is a CRDT).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::round_trip;
use foundation_core::federation::wire::{
    self, FederationReply, FederationRequest, RelayReply, RelayRequest,
};
use foundation_core::federation::{
    covers, ExportedService, Federation, FederationConfig, GlobalDirectory, HeardInterest,
    InterestTimers, LinkConfig, Routing, WanTimers,
};
use foundation_core::services::topic::Pattern;
use foundation_core::time::Instant;
use foundation_core::{ClusterName, NodeId};

/// Checks the properties above on one input; panics if one fails.
pub fn check(data: &[u8]) {
    round_trip::<FederationRequest>(data);
    round_trip::<FederationReply>(data);
    round_trip::<RelayRequest>(data);
    round_trip::<RelayReply>(data);
    round_trip::<Option<ExportedService>>(data);
    versioned_round_trip::<FederationRequest>(data);
    versioned_round_trip::<FederationReply>(data);
    versioned_round_trip::<RelayRequest>(data);
    versioned_round_trip::<RelayReply>(data);
    if let Ok(request) = postcard::from_bytes::<FederationRequest>(data) {
        serve(&request);
    }
    if let Ok(FederationReply::Probe { directory }) = postcard::from_bytes(data) {
        take_in(&directory);
    }
}

/// If `data` reads as a gateway's frame of a `T`, this release writes it back as a frame that
/// reads as the same value.
fn versioned_round_trip<T>(data: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = wire::decode::<T>(data) {
        let frame = wire::encode(&value).expect("a decoded frame encodes");
        assert_eq!(
            wire::decode::<T>(&frame),
            Ok(value),
            "decode(encode(v)) != v"
        );
    }
}

/// What the gateway's server asks its machine for each request from the hub `peer()`.
fn serve(request: &FederationRequest) {
    let mut machine = gateway();
    match request {
        FederationRequest::Probe { directory } | FederationRequest::Push { directory } => {
            take_in(directory)
        }
        FederationRequest::Call { service, .. } => {
            let _ = machine.admit(&peer(), None, service);
        }
        FederationRequest::Via { origin, call } => {
            let _ = machine.admit(&peer(), Some(origin), &call.service);
        }
        FederationRequest::Transit { target, call } => {
            let _ = machine.transit(&peer(), target, &call.service);
        }
        FederationRequest::Bridge(_) => {}
        FederationRequest::Interest(patterns) => hear(patterns),
    }
}

/// An interest taken in holds exactly the topics its patterns match; one refused holds none
/// (everything crosses).
fn hear(patterns: &[String]) {
    let timers = InterestTimers::from_wan(&WanTimers::default());
    let mut heard = HeardInterest::new(timers);
    let now = Instant::ZERO;
    match heard.heard(now, &peer(), patterns) {
        Ok(()) => {
            let held = heard
                .current(now, &peer())
                .expect("an interest taken in holds");
            assert!(held.patterns().len() <= patterns.len());
            for pattern in patterns {
                let pattern = Pattern::parse(pattern).expect("an interest taken in parses");
                assert!(
                    held.patterns().iter().any(|h| covers(h, &pattern)),
                    "{pattern:?} was sent but nothing held covers it"
                );
            }
        }
        Err(_) => assert!(heard.current(now, &peer()).is_none()),
    }
}

fn take_in(directory: &GlobalDirectory) {
    let mut machine = gateway();
    let now = Instant::ZERO;
    let Ok(answer) = machine.incoming_probe(now, &peer(), directory) else {
        assert!(directory.validate().is_err(), "a valid directory refused");
        return;
    };
    let taken = machine.directory().clone();
    taken
        .validate()
        .expect("the directory taken in stays valid");
    answer.validate().expect("the answer is valid");
    machine
        .incoming_push(now, &peer(), directory)
        .expect("a directory taken in once is taken in again");
    assert_eq!(machine.directory(), &taken, "taking it in twice changed it");
}

fn name(text: &str) -> ClusterName {
    ClusterName::new(text).expect("a cluster name")
}

/// The linked cluster every input comes from: a hub of `gateway()`'s.
fn peer() -> ClusterName {
    name("hub")
}

/// Gateway of cluster `home`, linked to `hub` (its hub) and `edge`, carrying calls between them.
pub fn gateway() -> Federation {
    let links = ["hub", "edge"]
        .map(|cluster| LinkConfig {
            cluster: name(cluster),
            gateways: vec![([127, 0, 0, 1], 9).into()],
        })
        .to_vec();
    let config = FederationConfig {
        local: name("home"),
        me: NodeId::from_u128(1),
        links,
        timers: WanTimers {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            down_after: 2,
        },
    };
    let routing = Routing {
        hubs: BTreeSet::from([peer()]),
        transit: BTreeSet::from([peer(), name("edge")]),
        ..Routing::default()
    };
    Federation::with_routing(config, routing, Instant::ZERO).expect("a valid gateway")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The hub's entry is taken in, so the check reaches the merge and not only `validate`.
    #[test]
    fn a_probe_from_the_hub_reaches_the_directory() {
        let mut directory = GlobalDirectory::default();
        let services = BTreeMap::from([("orders".to_owned(), ExportedService { healthy: 1 })]);
        directory.write_local(&peer(), NodeId::from_u128(9), services);
        let request = FederationRequest::Probe {
            directory: directory.clone(),
        };
        check(&postcard::to_stdvec(&request).unwrap());
        let mut machine = gateway();
        machine
            .incoming_probe(Instant::ZERO, &peer(), &directory)
            .unwrap();
        assert!(machine.directory().cluster(&peer()).is_some());
    }
}
