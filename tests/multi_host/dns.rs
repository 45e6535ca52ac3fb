//! The test's own authoritative DNS server: one name, the hosts' addresses as A or AAAA
//! records, served over UDP from inside the test network (never on the host's interfaces).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA};
use hickory_resolver::proto::rr::{RData, Record, RecordType};

use super::netns;

/// A running server; stops when dropped.
pub struct DnsServer {
    stop: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl DnsServer {
    /// Serves `name` → `ips` at `bind` inside namespace `netns_name`; other names get NXDOMAIN.
    pub fn start(netns_name: &str, bind: SocketAddr, name: &str, ips: Vec<IpAddr>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let name = name.trim_end_matches('.').to_ascii_lowercase() + ".";
        let (flag, count) = (stop.clone(), queries.clone());
        let thread = netns::run_in(netns_name, move || {
            let socket = match UdpSocket::bind(bind) {
                Ok(socket) => socket,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("bind {bind}: {e}")));
                    return;
                }
            };
            let _ = socket.set_read_timeout(Some(Duration::from_millis(50)));
            let _ = ready_tx.send(Ok(()));
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                let Ok((len, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                count.fetch_add(1, Ordering::Relaxed);
                if let Some(reply) = answer(&name, &ips, &buf[..len]) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        let started = ready
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| Err("the DNS server thread did not start".into()));
        if let Err(why) = started {
            panic!("DNS server: {why}");
        }
        Self {
            stop,
            queries,
            thread: Some(thread),
        }
    }

    /// Queries received so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The reply to `query`: the A or AAAA records of `name` (an empty answer for other types),
/// NXDOMAIN for any other name; `None` for what is not a DNS query.
fn answer(name: &str, ips: &[IpAddr], query: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    let question = query.queries.first()?.clone();
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.message_type = MessageType::Response;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.authoritative = true;
    if question.name().to_ascii().to_ascii_lowercase() == name {
        let records = ips
            .iter()
            .filter_map(|ip| match (ip, question.query_type()) {
                (IpAddr::V4(v4), RecordType::A) => Some(RData::A(A(*v4))),
                (IpAddr::V6(v6), RecordType::AAAA) => Some(RData::AAAA(AAAA(*v6))),
                _ => None,
            });
        for data in records {
            reply.add_answer(Record::from_rdata(question.name().clone(), 0, data));
        }
    } else {
        reply.metadata.response_code = ResponseCode::NXDomain;
    }
    reply.add_query(question);
    reply.to_vec().ok()
}
