//! The service registry as an application uses it: register instances (a handler inside this
//! node, or an outside endpoint), look them up locally, watch them change.
//!
//! ```no_run
//! # use foundation_engine::runtime::{Node, services::{ServiceOptions, HandlerError, typed}};
//! # async fn demo(node: Node) -> Result<(), Box<dyn std::error::Error>> {
//! let services = node.services();
//! let billing = services
//!     .register("billing", typed(|cents: u64| async move { Ok::<_, HandlerError>(cents * 2) }),
//!               ServiceOptions::default().version("1.4.0").tag("zone", "eu-1"))
//!     .await?;
//! for instance in services.lookup("billing").iter() {
//!     println!("{} on {} ({:?})", instance.id, instance.addr, instance.record.health);
//! }
//! billing.deregister().await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{mpsc, watch};

use super::handler::Handler;
use super::health::{spawn_check, HealthCheck};
use crate::runtime::request::{set_ephemeral, set_health, Request};
use foundation_core::ephemeral::SERVICES_KEYSPACE;
use foundation_core::node::WriteError;
use foundation_core::services::record::{check_service_name, entry_name};
use foundation_core::services::{
    BadServiceName, Directory, Health, Instance, InstanceRecord, Target,
};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The service name is not acceptable.
    #[error(transparent)]
    BadName(#[from] BadServiceName),
    /// The write was refused (a size limit); nothing changed.
    #[error(transparent)]
    Refused(#[from] WriteError),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
}

/// How an instance describes itself, and how its health is checked.
#[derive(Clone, Debug, Default)]
pub struct ServiceOptions {
    record: InstanceRecord,
    check: Option<HealthCheck>,
}

impl ServiceOptions {
    /// The instance's software version.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.record.version = version.into();
        self
    }

    /// Adds the label `key=value`.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.record.tags.insert(key.into(), value.into());
        self
    }

    /// Adds a capability callers can look instances up by.
    pub fn capability(mut self, capability: impl Into<String>) -> Self {
        self.record.capabilities.insert(capability.into());
        self
    }

    /// The instance's share of traffic relative to others (default 1; 0 takes none).
    pub fn weight(mut self, weight: u32) -> Self {
        self.record.weight = weight;
        self
    }

    /// Runs `check` periodically; the instance's health follows it.
    pub fn check(mut self, check: HealthCheck) -> Self {
        self.check = Some(check);
        self
    }
}

/// State the registry, RPC and pub/sub handles share.
pub(crate) struct Shared {
    pub requests: mpsc::Sender<Request>,
    pub directory: watch::Receiver<Arc<Directory>>,
    /// Handlers of this node's instances, by service and local instance number.
    pub handlers: RwLock<BTreeMap<(String, u64), Arc<dyn Handler>>>,
    /// This node's registrations: the service and health check of each. The record itself is
    /// held once, by the core (its owned ephemeral entry), and changed there.
    pub registrations: Mutex<BTreeMap<u64, LocalInstance>>,
    pub next_id: AtomicU64,
    /// This node's federation gateway, while one runs.
    pub federation: Mutex<Option<crate::runtime::federation::FederationHandle>>,
}

pub(crate) struct LocalInstance {
    service: String,
    check: Option<tokio::task::JoinHandle<()>>,
}

impl Shared {
    pub fn new(
        requests: mpsc::Sender<Request>,
        directory: watch::Receiver<Arc<Directory>>,
    ) -> Self {
        Self {
            requests,
            directory,
            handlers: RwLock::default(),
            registrations: Mutex::default(),
            federation: Mutex::default(),
            next_id: AtomicU64::new(1),
        }
    }

    /// Whether an instance of `service` runs on this node (has its handler here).
    pub fn serves(&self, service: &str) -> bool {
        let first = (service.to_owned(), 0);
        let handlers = self
            .handlers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = handlers.range(&first..).next();
        next.is_some_and(|((name, _), _)| name == service)
    }

    /// This node's running federation gateway, if any.
    pub fn gateway(&self) -> Option<crate::runtime::federation::FederationHandle> {
        lock(&self.federation).clone()
    }

    /// Writes (or, with `None`, removes) instance `id`'s entry.
    async fn publish(
        &self,
        service: &str,
        id: u64,
        record: Option<&InstanceRecord>,
    ) -> Result<(), ServiceError> {
        let value = record.map(InstanceRecord::encode);
        let name = entry_name(service, id);
        set_ephemeral(&self.requests, SERVICES_KEYSPACE, name, value)
            .await
            .map_err(|_| ServiceError::Stopped)?
            .map_err(ServiceError::from)
    }

    /// Lets go of what the application handed in, once the node has stopped: handlers and
    /// health checks often hold a clone of the node, which holds this registry, so kept
    /// they would keep the node (and its endpoint and socket) alive for good. Also stops the
    /// federation gateway, which holds this node's RPC.
    pub fn release(&self) {
        let handlers = std::mem::take(
            &mut *self
                .handlers
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let registrations = std::mem::take(&mut *lock(&self.registrations));
        let gateway = lock(&self.federation).take();
        // Dropped outside the locks: a handler's drop runs the application's code.
        drop(handlers);
        for check in registrations.into_values().filter_map(|local| local.check) {
            check.abort();
        }
        if let Some(gateway) = gateway {
            gateway.stop();
        }
    }

    /// Changes instance `id`'s health, if it is still registered and the health differs.
    pub async fn set_health(&self, id: u64, health: Health) -> Result<(), ServiceError> {
        let service = match lock(&self.registrations).get(&id) {
            Some(local) => local.service.clone(),
            None => return Ok(()),
        };
        set_health(&self.requests, service, id, health)
            .await
            .map_err(|_| ServiceError::Stopped)?
            .map_err(ServiceError::from)
    }
}

/// Locks a mutex, carrying on with the data if a holder panicked (the maps stay consistent:
/// every update is a single insert or remove).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The service registry as seen from one node. Cheap to clone.
#[derive(Clone)]
pub struct ServicesHandle {
    pub(crate) shared: Arc<Shared>,
    /// This node's RPC, through which `lookup_in` asks a gateway of the cluster.
    pub(crate) rpc: super::RpcHandle,
}

impl ServicesHandle {
    /// Registers an instance of `service` served by `handler` in this node; every node can
    /// look it up and call it once the write reaches it (one replication push).
    pub async fn register(
        &self,
        service: &str,
        handler: impl Handler,
        options: ServiceOptions,
    ) -> Result<Registration, ServiceError> {
        check_service_name(service)?;
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        self.shared
            .handlers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((service.to_owned(), id), Arc::new(handler));
        let registration = self.add(service, id, options).await;
        if registration.is_err() {
            self.forget_handler(service, id);
        }
        registration
    }

    /// Registers an instance of `service` that lives outside Foundation at `address` (a URL,
    /// `host:port`): discoverable by lookup, not called by RPC.
    pub async fn register_endpoint(
        &self,
        service: &str,
        address: impl Into<String>,
        mut options: ServiceOptions,
    ) -> Result<Registration, ServiceError> {
        check_service_name(service)?;
        options.record.target = Target::Endpoint(address.into());
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        self.add(service, id, options).await
    }

    async fn add(
        &self,
        service: &str,
        id: u64,
        options: ServiceOptions,
    ) -> Result<Registration, ServiceError> {
        self.shared
            .publish(service, id, Some(&options.record))
            .await?;
        let check = options.check.map(|check| {
            let shared = Arc::downgrade(&self.shared);
            spawn_check(check, move |health| {
                let shared = shared.clone();
                async move {
                    // The registry gone, or the node stopped: nobody is listening any more.
                    match shared.upgrade() {
                        Some(shared) => shared.set_health(id, health).await.is_ok(),
                        None => false,
                    }
                }
            })
        });
        lock(&self.shared.registrations).insert(
            id,
            LocalInstance {
                service: service.to_owned(),
                check,
            },
        );
        Ok(Registration {
            service: service.to_owned(),
            id,
            shared: self.shared.clone(),
        })
    }

    fn forget_handler(&self, service: &str, id: u64) {
        self.shared
            .handlers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(service.to_owned(), id));
    }

    /// Every visible instance of `service`, healthy or not. Local: no network on this path.
    pub fn lookup(&self, service: &str) -> Arc<[Instance]> {
        self.shared.directory.borrow().instances(service)
    }

    /// The instances of `service` that take traffic.
    pub fn healthy(&self, service: &str) -> Vec<Instance> {
        self.lookup(service)
            .iter()
            .filter(|i| i.record.routable())
            .cloned()
            .collect()
    }

    /// Instances of any service that declared `capability`.
    pub fn with_capability(&self, capability: &str) -> Vec<Instance> {
        self.shared.directory.borrow().with_capability(capability)
    }

    /// Instances of any service tagged `key=value`.
    pub fn with_tag(&self, key: &str, value: &str) -> Vec<Instance> {
        self.shared.directory.borrow().with_tag(key, value)
    }

    /// The whole directory as this node sees it now.
    pub fn directory(&self) -> Arc<Directory> {
        self.shared.directory.borrow().clone()
    }

    /// Changes to `service`'s instances, from now on.
    pub fn watch(&self, service: impl Into<String>) -> ServiceWatch {
        let service = service.into();
        let mut directory = self.shared.directory.clone();
        let last = directory.borrow_and_update().instances(&service);
        ServiceWatch {
            directory,
            service,
            last,
        }
    }
}

/// A registered instance of this node. Dropping it keeps the instance registered (it lives as
/// long as the node); [`deregister`](Registration::deregister) removes it.
pub struct Registration {
    service: String,
    id: u64,
    shared: Arc<Shared>,
}

impl Registration {
    /// The service.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// This node's number for the instance.
    pub fn local_id(&self) -> u64 {
        self.id
    }

    /// Sets the instance's health; unhealthy and draining instances get no new calls.
    pub async fn set_health(&self, health: Health) -> Result<(), ServiceError> {
        self.shared.set_health(self.id, health).await
    }

    /// Removes the instance everywhere.
    pub async fn deregister(self) -> Result<(), ServiceError> {
        if let Some(local) = lock(&self.shared.registrations).remove(&self.id) {
            if let Some(check) = local.check {
                check.abort();
            }
        }
        self.shared
            .handlers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(self.service.clone(), self.id));
        self.shared.publish(&self.service, self.id, None).await
    }
}

/// A stream of one service's instance lists; see [`ServicesHandle::watch`].
pub struct ServiceWatch {
    directory: watch::Receiver<Arc<Directory>>,
    service: String,
    last: Arc<[Instance]>,
}

impl ServiceWatch {
    /// The service's instances once they differ from the last seen; `None` once the node has
    /// stopped.
    pub async fn next(&mut self) -> Option<Arc<[Instance]>> {
        loop {
            self.directory.changed().await.ok()?;
            let now = self.directory.borrow_and_update().instances(&self.service);
            if now != self.last {
                self.last = now.clone();
                return Some(now);
            }
        }
    }
}
