//! This node's own service instances, read and changed where they are held: the core's owned
//! ephemeral entries. The runtime keeps no copy of a record; it asks here.

use super::record::{entry_name, Health, InstanceRecord};
use crate::ephemeral::SERVICES_KEYSPACE;
use crate::node::{Core, WriteError};
use crate::time::Instant;

impl Core {
    /// The record of instance `local` of `service` this node registered, if it still does.
    pub fn instance_record(&self, service: &str, local: u64) -> Option<InstanceRecord> {
        let bytes = self.owned_ephemeral(SERVICES_KEYSPACE, &entry_name(service, local))?;
        InstanceRecord::decode(bytes)
    }

    /// Sets the health of instance `local` of `service`, if this node still registers it and
    /// the health differs; returns whether anything was written.
    pub fn set_instance_health(
        &mut self,
        now: Instant,
        service: &str,
        local: u64,
        health: Health,
    ) -> Result<bool, WriteError> {
        self.touch();
        let Some(mut record) = self.instance_record(service, local) else {
            return Ok(false);
        };
        if record.health == health {
            return Ok(false);
        }
        record.health = health;
        let name = entry_name(service, local);
        self.set_ephemeral(now, SERVICES_KEYSPACE, &name, Some(record.encode()))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_changes_the_one_owned_record_and_the_keyspace_follows() {
        let mut core = crate::node::lone_core();
        let name = entry_name("billing", 3);
        let record = InstanceRecord {
            version: "1.0".into(),
            ..InstanceRecord::default()
        };
        core.set_ephemeral(
            Instant::ZERO,
            SERVICES_KEYSPACE,
            &name,
            Some(record.encode()),
        )
        .expect("written");
        let now = Instant::ZERO;
        assert_eq!(
            core.set_instance_health(now, "billing", 3, Health::Healthy),
            Ok(false)
        );
        assert_eq!(
            core.set_instance_health(now, "billing", 3, Health::Draining),
            Ok(true)
        );
        let held = core
            .instance_record("billing", 3)
            .expect("still registered");
        assert_eq!(held.health, Health::Draining);
        assert_eq!(held.version, "1.0", "the rest of the record is kept");
        let visible = crate::services::Directory::build(&core).instances("billing");
        assert_eq!(visible.len(), 1);
        assert_eq!(visible[0].record, held);
        // Not registered (any more): nothing is written.
        assert_eq!(
            core.set_instance_health(now, "billing", 4, Health::Draining),
            Ok(false)
        );
        core.set_ephemeral(now, SERVICES_KEYSPACE, &name, None)
            .expect("removed");
        assert_eq!(
            core.set_instance_health(now, "billing", 3, Health::Healthy),
            Ok(false)
        );
        assert!(core.instance_record("billing", 3).is_none());
    }
}
