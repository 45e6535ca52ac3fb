//! What a cluster exports, read from a gateway's services directory.

use std::collections::BTreeMap;

use super::directory::ExportedService;
use crate::services::Directory;

/// The export list, filtered by what runs healthy in the cluster: a named service with no
/// routable instance is not exported (yet). The engine's gateway and the simulator's both
/// take their exports from here.
pub fn exported(directory: &Directory, exports: &[String]) -> BTreeMap<String, ExportedService> {
    exports
        .iter()
        .filter_map(|name| {
            let healthy = directory
                .instances(name)
                .iter()
                .filter(|i| i.record.routable())
                .count();
            let healthy = u32::try_from(healthy).unwrap_or(u32::MAX);
            (healthy > 0).then(|| (name.clone(), ExportedService { healthy }))
        })
        .collect()
}
