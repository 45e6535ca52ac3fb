//! Snapshots of the replicated keyspaces that are not ephemeral (config, variables, replicated
//! caches, ...): `GET /snapshot` answers the file's bytes, `POST /snapshot` merges a file's
//! keyspaces into the node's (a CRDT merge: nothing newer is lost), and replication spreads the
//! result. The file format and the merge are the core's (`foundation_core::replication::snapshot`).
//!
//! Bounds: one snapshot is taken at a time (another gets 503); a restore's body may be up to
//! [`SNAPSHOT_BYTES_MAX`] (413 above it), may take [`RESTORE_BODY_TIMEOUT`] to arrive, and is
//! read one at a time across the server. Decoding and encoding run off the driver task.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use super::request::{ask, Request};
use crate::http::{BodyLimit, DownloadAnswer, HttpServerBuilder, WriteRequest};
use foundation_core::replication::{RestoreError, RestoredKeyspace, Snapshot, SNAPSHOT_BYTES_MAX};

/// Longest a restore's body may take to arrive: 256 MiB at about 2 MiB/s.
pub const RESTORE_BODY_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a snapshot could not be taken or restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFailed {
    /// The snapshot was refused (or merged but not durable, see [`RestoreError::NotDurable`]).
    #[error(transparent)]
    Refused(#[from] RestoreError),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
}

/// Every replicated keyspace that is not ephemeral, as the node holds it now.
pub(crate) async fn take(requests: &mpsc::Sender<Request>) -> Result<Snapshot, SnapshotFailed> {
    ask(requests, Request::Snapshot)
        .await
        .map_err(|_| SnapshotFailed::Stopped)
}

/// Merges `snapshot` into the node's keyspaces; answers once the merge is durable here.
pub(crate) async fn restore(
    requests: &mpsc::Sender<Request>,
    snapshot: Snapshot,
) -> Result<Vec<RestoredKeyspace>, SnapshotFailed> {
    ask(requests, |done| Request::Restore(Box::new(snapshot), done))
        .await
        .map_err(|_| SnapshotFailed::Stopped)?
        .map_err(SnapshotFailed::Refused)
}

/// Adds `GET` and `POST /snapshot` to `server`.
pub(crate) fn routes(
    server: HttpServerBuilder,
    requests: mpsc::Sender<Request>,
    identity: super::identity::Identity,
) -> HttpServerBuilder {
    let taking = Arc::new(Semaphore::new(1));
    let body = BodyLimit {
        max_bytes: SNAPSHOT_BYTES_MAX,
        read_timeout: Some(RESTORE_BODY_TIMEOUT),
    };
    let save_requests = requests.clone();
    server
        .download("/snapshot", move || {
            save(save_requests.clone(), taking.clone())
        })
        .write_with("/snapshot", &[Method::POST], body, move |request| {
            Box::pin(restore_route(requests.clone(), identity.clone(), request))
        })
}

/// `GET /snapshot`: the snapshot file's bytes.
fn save(requests: mpsc::Sender<Request>, taking: Arc<Semaphore>) -> DownloadAnswer {
    Box::pin(async move {
        let Ok(_one) = taking.try_acquire_owned() else {
            return Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "a snapshot is already being taken on this node; retry",
            ));
        };
        let snapshot = take(&requests)
            .await
            .map_err(|e| refuse(StatusCode::SERVICE_UNAVAILABLE, e))?;
        let encoded = tokio::task::spawn_blocking(move || snapshot.encode()).await;
        match encoded {
            Ok(Ok(bytes)) => Ok(Bytes::from(bytes)),
            Ok(Err(error)) => Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, error)),
            Err(error) => Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, error)),
        }
    })
}

/// `POST /snapshot`: the body is a snapshot file; its keyspaces are merged here.
async fn restore_route(
    requests: mpsc::Sender<Request>,
    identity: super::identity::Identity,
    request: WriteRequest,
) -> (StatusCode, Value) {
    if !request.rest.is_empty() {
        return refuse(
            StatusCode::NOT_FOUND,
            "not found; did you mean POST /snapshot?",
        );
    }
    let body = request.body;
    let decoded = tokio::task::spawn_blocking(move || Snapshot::decode(&body)).await;
    let snapshot = match decoded {
        Ok(Ok(snapshot)) => snapshot,
        Ok(Err(error)) => return refuse(StatusCode::BAD_REQUEST, error),
        Err(error) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, error),
    };
    let (from, taken_ms) = (snapshot.node.to_string(), snapshot.taken_ms);
    match restore(&requests, snapshot).await {
        Ok(restored) => (
            StatusCode::OK,
            json!({
                "restored": restored,
                "snapshot": { "node": from, "taken_ms": taken_ms },
                "node": identity.json(),
            }),
        ),
        Err(error @ SnapshotFailed::Refused(RestoreError::NotDurable { .. })) => {
            refuse(StatusCode::INSUFFICIENT_STORAGE, error)
        }
        Err(error @ SnapshotFailed::Refused(_)) => refuse(StatusCode::UNPROCESSABLE_ENTITY, error),
        Err(error) => refuse(StatusCode::SERVICE_UNAVAILABLE, error),
    }
}

fn refuse(status: StatusCode, why: impl std::fmt::Display) -> (StatusCode, Value) {
    (status, json!({ "error": why.to_string() }))
}
