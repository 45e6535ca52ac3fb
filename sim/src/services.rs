//! The application on each node slot, as far as the service registry sees it: which service
//! instances it registers.
//!
//! Registrations belong to the slot's application, not to one life of its node: the
//! application registers them as soon as it is asked to (if its node is up) and again every
//! time its node starts, as an application registers its services at startup. A deregistration
//! removes them for good. Every registration is an ephemeral entry of the services keyspace, set through
//! a queued [`AppRequest::Ephemeral`] like any other request of the application, so it is traced and reproducible.

use std::collections::BTreeMap;

use foundation_core::ephemeral::SERVICES_KEYSPACE;
use foundation_core::services::record::{entry_name, InstanceRecord};

use crate::world::{AppRequest, World};

/// One instance the application on a slot has registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    /// The service.
    pub service: String,
    /// The instance's number on its node (unique per slot, never reused).
    pub local: u64,
    /// What it registers.
    pub record: InstanceRecord,
}

/// Every slot's registrations.
#[derive(Clone, Debug, Default)]
pub struct Registrations {
    /// By slot, then local instance number.
    slots: BTreeMap<usize, BTreeMap<u64, Registered>>,
    /// The last local instance number handed out, by slot.
    last_local: BTreeMap<usize, u64>,
    /// The local numbers the latest registration or deregistration on each slot touched.
    touched: BTreeMap<usize, Vec<u64>>,
}

impl Registrations {
    /// The instances registered on `slot`, by local number.
    pub fn of(&self, slot: usize) -> impl Iterator<Item = &Registered> {
        self.slots.get(&slot).into_iter().flat_map(|m| m.values())
    }

    /// The local numbers the latest registration or deregistration on `slot` added or removed.
    pub fn touched(&self, slot: usize) -> &[u64] {
        self.touched.get(&slot).map_or(&[], Vec::as_slice)
    }

    /// Whether anything is registered anywhere.
    pub fn is_empty(&self) -> bool {
        self.slots.values().all(BTreeMap::is_empty)
    }
}

/// The record the simulator registers for instance `local` of `service` on `slot`.
pub fn record_for(slot: usize, service: &str, local: u64) -> InstanceRecord {
    InstanceRecord {
        version: format!("sim-{local}"),
        tags: [
            ("slot".to_owned(), format!("n{slot}")),
            ("service".to_owned(), service.to_owned()),
        ]
        .into(),
        ..InstanceRecord::default()
    }
}

impl World {
    /// What the application on each slot registers.
    pub fn registrations(&self) -> &Registrations {
        &self.registrations
    }

    /// The application on `slot` registers `count` more instances of `service`; they are
    /// written at once if the node is up. Returns their local numbers.
    pub(crate) fn register(&mut self, slot: usize, service: &str, count: u64) -> Vec<u64> {
        let mut added = Vec::new();
        for _ in 0..count {
            let last = self.registrations.last_local.entry(slot).or_insert(0);
            *last += 1;
            let local = *last;
            let record = record_for(slot, service, local);
            self.registrations.slots.entry(slot).or_default().insert(
                local,
                Registered {
                    service: service.to_owned(),
                    local,
                    record: record.clone(),
                },
            );
            if self.node(slot).is_up() {
                self.set_entry(slot, service, local, Some(record.encode()));
            }
            added.push(local);
        }
        self.registrations.touched.insert(slot, added.clone());
        added
    }

    /// The application on `slot` deregisters every instance of `service`. Returns their local
    /// numbers.
    pub(crate) fn deregister(&mut self, slot: usize, service: &str) -> Vec<u64> {
        self.registrations.touched.remove(&slot);
        let Some(mine) = self.registrations.slots.get_mut(&slot) else {
            return Vec::new();
        };
        let gone: Vec<u64> = mine
            .values()
            .filter(|r| r.service == service)
            .map(|r| r.local)
            .collect();
        for local in &gone {
            mine.remove(local);
        }
        if self.node(slot).is_up() {
            for &local in &gone {
                self.set_entry(slot, service, local, None);
            }
        }
        self.registrations.touched.insert(slot, gone.clone());
        gone
    }

    /// The node in `slot` just started: its application registers everything again.
    pub(crate) fn register_at_start(&mut self, slot: usize) {
        let all: Vec<Registered> = self.registrations.of(slot).cloned().collect();
        for r in all {
            self.set_entry(slot, &r.service, r.local, Some(r.record.encode()));
        }
    }

    fn set_entry(&mut self, slot: usize, service: &str, local: u64, value: Option<Vec<u8>>) {
        let request = AppRequest::Ephemeral {
            keyspace: SERVICES_KEYSPACE.to_owned(),
            name: entry_name(service, local),
            value,
        };
        self.request_after(slot, 0, request);
    }
}
