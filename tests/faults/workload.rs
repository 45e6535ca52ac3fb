//! The clients: one per host, inside that host's namespace (as an application beside its node),
//! writing config through the node's HTTP API — alternately plain writes and writes that wait
//! for a majority — and recording how each ended.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::history::{Outcome, Write, Writes};
use crate::netlab::lan::Lan;
use crate::netlab::netns;

/// Keys each client cycles through, so each key is written many times.
const KEYS: u64 = 16;
/// A pause between two writes of one client: five clients write ~150 times a second in all,
/// leaving the two cores room for the nodes.
const PACE: Duration = Duration::from_millis(25);
/// How long a majority write may wait (`?majority_ms=`), and the client for any answer.
const MAJORITY_MS: u64 = 2000;
const ANSWER_WITHIN: Duration = Duration::from_secs(4);

pub struct Workload {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Result<(), String>>>,
}

impl Workload {
    /// Starts a client on every host of `lan`, recording into `writes`.
    pub fn start(lan: &Lan, writes: &Writes) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let node: SocketAddr = lan.local_http().parse().expect("an address");
        let clients = (0..lan.hosts)
            .map(|host| {
                let (stop, writes) = (stop.clone(), writes.clone());
                netns::run_in(&lan.host(host), move || client(host, node, &stop, &writes))
            })
            .collect();
        Self { stop, clients }
    }

    /// Stops every client after its write in flight.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for client in self.clients {
            let _ = client.join();
        }
    }
}

fn client(host: usize, node: SocketAddr, stop: &AtomicBool, writes: &Writes) {
    let mut value = 0;
    while !stop.load(Ordering::SeqCst) {
        value += 1;
        let key = format!("c{host}.k{}", value % KEYS);
        let majority = value % 2 == 0;
        let outcome = put(node, &key, value, majority);
        let write = Write {
            key,
            value,
            majority,
            outcome,
            ended: Instant::now(),
        };
        writes.lock().unwrap_or_else(|e| e.into_inner()).push(write);
        std::thread::sleep(PACE);
    }
}

fn put(node: SocketAddr, key: &str, value: u64, majority: bool) -> Outcome {
    let mut path = format!("/config/{key}");
    if majority {
        path.push_str(&format!("?majority_ms={MAJORITY_MS}"));
    }
    let body = value.to_string();
    match netns::request(node, "PUT", &path, Some(&body), ANSWER_WITHIN) {
        Some((200..=299, _)) => Outcome::Acknowledged,
        Some((status, _)) => Outcome::Refused(status),
        None => Outcome::NoAnswer,
    }
}
