//! Transport configuration: every field with its default, its unit and the reason for it.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use foundation_core::{Channel, ChannelLimits, MEMBERSHIP_DATAGRAM_MAX};

/// Most multiplexed RPC streams a caller may spread its calls over
/// ([`TransportConfig::rpc_streams`]); every node lets a peer open this many, whatever its own
/// setting, so callers configured differently are all served.
pub const RPC_STREAMS_MAX: u8 = 16;

/// Requests above the multiplexed stream's size limit in flight at once per connection, each way.
const OWN_STREAM_REQUESTS: u32 = 64;

/// How the endpoint behaves. Build with [`TransportConfig::default`] and override fields;
/// [`validate`](Self::validate) runs when the endpoint starts.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// UDP address to bind. Default `127.0.0.1:0` (loopback, any port): nothing listens on a
    /// public interface unless asked to.
    pub bind: SocketAddr,
    /// Address peers should use to reach us. Default: the bound address, or when that is
    /// unspecified (`0.0.0.0`, `::`) the default route's interface address on the bound port
    /// (see [`crate::advertise`]); the unspecified address is never advertised.
    pub advertise: Option<SocketAddr>,
    /// Peers this node reaches first (static seeds, the name server discovery asks). Without
    /// `advertise`, a node bound to an unspecified address advertises the interface its traffic
    /// to the first of them leaves by, before the default route's. Default none.
    pub advertise_toward: Vec<SocketAddr>,
    /// QUIC keep-alive interval: how long a connection may send nothing before it sends a ping.
    /// Default 10 s, inside the 30 s after which NATs commonly forget a UDP binding. A short
    /// interval is paid on every connection of a full mesh (a ping and its acknowledgement per
    /// peer and interval: at 1 s it was four fifths of a 10-node cluster's idle bytes on the
    /// wire); liveness is membership's job, which probes on its own. Must be shorter than
    /// `idle_timeout`.
    pub keep_alive: Duration,
    /// A connection with no traffic (not even keep-alives) for this long is considered dead.
    /// Default 30 s (quinn's own). A node embedding the engine closes the connection of a member
    /// as soon as membership declares it failed, and a process restarted at the same address
    /// and with the same node id ends its peers' stale connections at their next packet
    /// (stateless reset, [`crate::security`]); this timeout only reaps the rest.
    pub idle_timeout: Duration,
    /// Longest a TLS handshake plus hello may take. Default 5 s.
    pub handshake_timeout: Duration,
    /// First reconnect delay after a failed dial; doubles up to `reconnect_max`. Default 50 ms.
    pub reconnect_min: Duration,
    /// Longest reconnect delay. Default 5 s.
    pub reconnect_max: Duration,
    /// Largest frame per channel, in bytes (for bulk: largest transfer).
    pub limits: ChannelLimits,
    /// Messages queued per peer and streamed channel before senders wait or fail. Default 8192.
    pub stream_queue: usize,
    /// Datagrams queued per peer while no connection is up; the oldest is dropped when full.
    /// Default 256.
    pub datagram_queue: usize,
    /// Received messages buffered per channel before readers stop reading (which pushes back on
    /// the sender through QUIC flow control). Default 65 536.
    pub inbox_capacity: usize,
    /// Payload bytes each streamed channel's inbox (coordination, replication, events) may
    /// hold before its readers stop reading, as `inbox_capacity` does in messages. A payload
    /// counts until the application drops its last handle on it. Default 64 MiB: sixteen of
    /// the largest replication frames. Must be at least every streamed channel's frame limit
    /// (a frame larger than the budget could never be taken).
    pub inbox_bytes: usize,
    /// How long a peer's record (its queues, tasks and sealed keys) is kept once it has no
    /// connection and has been neither sent to nor heard from; the application can forget one
    /// at once with [`Endpoint::forget`](crate::Endpoint::forget). Default 10 min: far longer
    /// than membership takes to declare a member failed and stop probing it. A forgotten peer
    /// is dialled afresh on the next send. Must be non-zero.
    pub forget_peers_after: Duration,
    /// Requests in flight per connection, each way: the calls a multiplexed RPC stream carries
    /// at once (a caller past it gets
    /// [`RequestError::InFlightLimit`](crate::RequestError::InFlightLimit), a responder refuses
    /// the excess with `wire::code::TOO_MANY_IN_FLIGHT`). Requests too large for that stream
    /// get a stream of their own, at most 64 at once (or this limit if lower); a caller past
    /// that, or past what the peer's own setting takes, waits for a stream to end. Small calls
    /// do not wait behind them: a large call first opens a multiplexed stream if none is open.
    /// Default 1024.
    pub max_concurrent_requests: u32,
    /// Multiplexed streams per connection that a caller spreads its small requests over,
    /// 1–16; each is opened once calls overlap enough to use it. Default 4. Each stream has its
    /// own reader and writer task on both sides, so a worker thread descheduled while it runs
    /// one of them delays that stream's calls only; the responder takes as many streams as
    /// the caller opens.
    pub rpc_streams: u8,
    /// Concurrent incoming bulk transfers per connection. Default 16.
    pub max_concurrent_transfers: u32,
    /// Receive and send buffer requested for the UDP socket, in bytes. Default 4 MiB. The
    /// kernel's default (≈ 208 KiB on Linux) overflows under bursts of small messages when the
    /// process is busy, and every datagram lost there costs QUIC a loss recovery and a smaller
    /// congestion window. Linux caps the request at `net.core.rmem_max` / `wmem_max`.
    pub udp_buffer: usize,
    /// Queueing delay a bulk transfer may add to the path. Default 250 µs.
    ///
    /// With `Some`, each node sends its bulk transfers to a peer on a connection of their own,
    /// dialled on first use and closed after `idle_timeout` unused, whose congestion controller
    /// is delay-based ([`crate::congestion::LedbatConfig`]): it keeps the queue its transfers
    /// build in socket buffers and in the receiver below this target, so urgent messages on the
    /// regular connection are not stuck behind megabytes of bulk data (issue 16); on a path
    /// whose base round trip is long, a quarter of it is allowed instead when that is more,
    /// so WAN jitter alone does not starve bulk. With `None`,
    /// bulk transfers share the regular connection and its loss-based controller, which fills
    /// every buffer on the path before it slows down.
    pub bulk_queue_target: Option<Duration>,
    /// The queueing delay bulk transfers may add while this node is sending coordination
    /// messages (one sent within the last 10 ms). Default 25 µs: background traffic yields
    /// to urgent traffic and takes the path back once it stops, so a transfer alone keeps its
    /// rate. `None`: `bulk_queue_target` always. Ignored when `bulk_queue_target` is `None`.
    pub bulk_yield_target: Option<Duration>,
    /// Whether bulk connections get a UDP socket, a QUIC endpoint and a thread of their own.
    /// Default `true`. Sharing the regular endpoint, a transfer's packets wait in the same
    /// socket buffer as urgent ones and its packet processing runs on the application's tokio
    /// workers, ahead of urgent tasks; apart, urgent packets never queue behind bulk ones and
    /// the kernel's scheduler, not tokio's run queue, decides between them. The bulk socket
    /// binds `bind`'s IP on a port the kernel picks, announced in the hello (a firewall must
    /// let it through, or set this to `false`); a peer that announces none is sent transfers
    /// on its regular port. Ignored when `bulk_queue_target` is `None`.
    pub bulk_endpoint: bool,
    /// The UDP port of the bulk endpoint; 0 (the default) lets the kernel pick one. A fixed
    /// port is what a firewall can be told to open. Must differ from `bind`'s port.
    pub bulk_port: u16,
    /// How much lower the bulk thread's scheduling priority is than the rest of the process
    /// (Linux nice increment, 0–19). Default 0.
    pub bulk_thread_nice: i32,
    /// Largest UDP payload the bulk endpoint's connections probe for (path MTU discovery's
    /// upper bound), in bytes, 1200–65527. Default 16384. Every datagram costs a packet's
    /// processing — encryption, a system call's share, acknowledgement — so larger ones carry
    /// bulk with less CPU per byte where the path allows them: loopback (64 KiB MTU) and
    /// jumbo-frame networks. On a 1500-byte network the probes above it are lost and the
    /// connection stays at the 1452 bytes it would use anyway. Used only with `bulk_endpoint`.
    pub bulk_max_udp_payload: u16,
    /// Incoming handshakes in progress at once. Default 256. An incoming handshake holds about
    /// 100 KB until it completes or `handshake_timeout` passes, and anyone who can send UDP
    /// can start one: once half this many are in progress, a sender whose address has not been
    /// validated is first asked to prove it with a QUIC Retry (no state kept for it); past the
    /// limit, new handshakes are refused. Both are counted in
    /// `foundation_transport_incoming_turned_away_total`.
    pub max_pending_handshakes: usize,
    /// Whether membership datagrams travel outside QUIC, sealed on a UDP socket of their own
    /// with keys exported from each connection's TLS session (see [`crate::sealed`]). Default
    /// `true`. A peer announces the socket's port in its hello; with a peer that announces
    /// none, or before the first connection to it, membership takes QUIC datagrams. With it
    /// on, connections send no QUIC keep-alives (`keep_alive` is not used): membership's own
    /// probes prove liveness, and a connection used for nothing else closes after
    /// `idle_timeout` and is dialled again on demand. A firewall must let the port through.
    pub sealed_membership: bool,
    /// The UDP port of the sealed membership socket; 0 (the default) lets the kernel pick one.
    /// Must differ from `bind`'s port and `bulk_port`.
    pub sealed_port: u16,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            advertise: None,
            advertise_toward: Vec::new(),
            keep_alive: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(5),
            limits: ChannelLimits::default(),
            stream_queue: 8192,
            datagram_queue: 256,
            inbox_capacity: 65_536,
            inbox_bytes: 64 << 20,
            forget_peers_after: Duration::from_secs(600),
            max_concurrent_requests: 1024,
            rpc_streams: 4,
            max_concurrent_transfers: 16,
            udp_buffer: 4 << 20,
            bulk_queue_target: Some(Duration::from_micros(250)),
            bulk_yield_target: Some(Duration::from_micros(25)),
            bulk_endpoint: true,
            bulk_port: 0,
            bulk_thread_nice: 0,
            bulk_max_udp_payload: 16 << 10,
            max_pending_handshakes: 256,
            sealed_membership: true,
            sealed_port: 0,
        }
    }
}

/// A configuration field with an invalid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid transport config: {field} {problem}")]
pub struct ConfigError {
    /// The field.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl TransportConfig {
    /// Requests too large for the multiplexed streams, each on a stream of its own, in flight at
    /// once per connection: the most a caller sends, and the most a responder takes.
    pub(crate) fn own_stream_requests(&self) -> u32 {
        self.max_concurrent_requests.min(OWN_STREAM_REQUESTS)
    }

    /// What is wrong with `inbox_bytes`, if anything.
    fn inbox_bytes_problem(&self) -> Option<String> {
        let largest = Channel::STREAMED
            .map(|c| self.limits.of(c))
            .into_iter()
            .max()?;
        if self.inbox_bytes < largest {
            return Some(format!(
                "must be at least the largest streamed channel's frame limit ({largest} bytes)"
            ));
        }
        let most = tokio::sync::Semaphore::MAX_PERMITS;
        (self.inbox_bytes > most).then(|| format!("must be at most {most} bytes"))
    }

    /// Checks the relationships between fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field, problem: &str| {
            Err(ConfigError {
                field,
                problem: problem.to_owned(),
            })
        };
        if self.keep_alive.is_zero() || self.keep_alive >= self.idle_timeout {
            return fail(
                "keep_alive",
                "must be non-zero and shorter than idle_timeout",
            );
        }
        if self.idle_timeout > Duration::from_secs(600) {
            return fail("idle_timeout", "must be at most 600 s");
        }
        if self.handshake_timeout.is_zero() {
            return fail("handshake_timeout", "must be non-zero");
        }
        if self.forget_peers_after.is_zero() {
            return fail("forget_peers_after", "must be non-zero");
        }
        for (field, target) in [
            ("bulk_queue_target", self.bulk_queue_target),
            ("bulk_yield_target", self.bulk_yield_target),
        ] {
            if target.is_some_and(|t| t.is_zero() || t > Duration::from_secs(1)) {
                return fail(field, "must be between 1 µs and 1 s when set");
            }
        }
        if self.bulk_port != 0 && self.bulk_port == self.bind.port() {
            return fail("bulk_port", "must differ from the port of bind");
        }
        if self.sealed_port != 0
            && (self.sealed_port == self.bind.port() || self.sealed_port == self.bulk_port)
        {
            return fail(
                "sealed_port",
                "must differ from the ports of bind and bulk_port",
            );
        }
        if !(0..=19).contains(&self.bulk_thread_nice) {
            return fail("bulk_thread_nice", "must be between 0 and 19");
        }
        if !(1200..=65_527).contains(&self.bulk_max_udp_payload) {
            return fail("bulk_max_udp_payload", "must be between 1200 and 65527");
        }
        if self.reconnect_min.is_zero() || self.reconnect_min > self.reconnect_max {
            return fail(
                "reconnect_min",
                "must be non-zero and at most reconnect_max",
            );
        }
        if self.limits.membership < 2 || self.limits.membership > MEMBERSHIP_DATAGRAM_MAX {
            return fail("limits.membership", "must be between 2 and 1200 bytes");
        }
        for channel in Channel::ALL {
            if self.limits.of(channel) == 0 || self.limits.of(channel) > u32::MAX as usize {
                return fail(
                    "limits",
                    "every channel limit must be between 1 byte and 4 GiB",
                );
            }
        }
        if let Some(problem) = self.inbox_bytes_problem() {
            return fail("inbox_bytes", &problem);
        }
        if !(1..=RPC_STREAMS_MAX).contains(&self.rpc_streams) {
            return fail(
                "rpc_streams",
                &format!("must be between 1 and {RPC_STREAMS_MAX}"),
            );
        }
        for (field, value) in [
            ("stream_queue", self.stream_queue),
            ("datagram_queue", self.datagram_queue),
            ("inbox_capacity", self.inbox_capacity),
            (
                "max_concurrent_requests",
                self.max_concurrent_requests as usize,
            ),
            (
                "max_concurrent_transfers",
                self.max_concurrent_transfers as usize,
            ),
            ("max_pending_handshakes", self.max_pending_handshakes),
        ] {
            if value == 0 {
                return fail(field, "must be at least 1");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid() {
        assert_eq!(TransportConfig::default().validate(), Ok(()));
    }

    #[test]
    fn errors_name_the_field() {
        let mut config = TransportConfig {
            keep_alive: Duration::from_secs(30),
            ..Default::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "keep_alive");
        config = TransportConfig::default();
        config.limits.membership = 1500;
        assert_eq!(config.validate().unwrap_err().field, "limits.membership");
        config = TransportConfig {
            stream_queue: 0,
            ..Default::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "stream_queue");
        config = TransportConfig {
            bulk_max_udp_payload: 1199,
            ..Default::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "bulk_max_udp_payload");
        config = TransportConfig {
            inbox_bytes: (4 << 20) - 1,
            ..Default::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "inbox_bytes");
        config = TransportConfig {
            forget_peers_after: Duration::ZERO,
            ..Default::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "forget_peers_after");
        for rpc_streams in [0, 17] {
            config = TransportConfig {
                rpc_streams,
                ..Default::default()
            };
            assert_eq!(config.validate().unwrap_err().field, "rpc_streams");
        }
    }
}
