//! What the host gives a node: file descriptors, UDP buffers, free ports, a writable data
//! directory. Readings come from `/proc` as text, parsed by pure functions.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;

use super::Finding;

/// Open files a busy node may need: connections, streams, HTTP clients, the store.
const FILES_WANTED: u64 = 4096;

/// Socket buffer size below which QUIC throughput suffers (quinn's advice: several MiB).
const UDP_BUFFER_WANTED: u64 = 2 << 20;

/// The soft "Max open files" limit from `/proc/self/limits` text.
pub fn open_files_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

pub fn file_descriptors() -> Finding {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    match open_files_limit(&limits) {
        Some(n) if n >= FILES_WANTED => Finding::ok("open files", format!("limit {n}")),
        Some(n) => Finding::warn(
            "open files",
            format!("limit {n}, below {FILES_WANTED}"),
            "raise it: LimitNOFILE=65536 in the systemd unit, or ulimit -n 65536",
        ),
        None => Finding::warn(
            "open files",
            "the limit could not be read from /proc/self/limits".into(),
            "check `ulimit -n` by hand",
        ),
    }
}

pub fn udp_buffers() -> Vec<Finding> {
    ["rmem_max", "wmem_max"]
        .into_iter()
        .map(|name| {
            let path = format!("/proc/sys/net/core/{name}");
            let value = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok());
            let what = format!("UDP {name}");
            match value {
                Some(v) if v >= UDP_BUFFER_WANTED => Finding::ok(&what, format!("{v} bytes")),
                Some(v) => Finding::warn(
                    &what,
                    format!("{v} bytes: bulk transfers will be slower than they could be"),
                    &format!("sysctl -w net.core.{name}=7500000 (and in /etc/sysctl.d/)"),
                ),
                None => Finding::warn(
                    &what,
                    format!("{path} unreadable"),
                    "not Linux, or no /proc: check by hand",
                ),
            }
        })
        .collect()
}

/// Whether UDP port `addr` (`what`: "QUIC", "bulk", "sealed") can be bound; `variable` names the
/// setting that moves it.
pub fn udp_port_free(what: &str, addr: SocketAddr, variable: &str) -> Finding {
    let free = UdpSocket::bind(addr).map(drop);
    port_finding(
        &format!("{what} port {addr}"),
        addr,
        free,
        "ss -ulpn",
        variable,
    )
}

pub fn tcp_port_free(addr: SocketAddr) -> Finding {
    let free = TcpListener::bind(addr).map(drop);
    port_finding(
        &format!("HTTP port {addr}"),
        addr,
        free,
        "ss -tlpn",
        "FOUNDATION_HTTP",
    )
}

fn port_finding(
    what: &str,
    addr: SocketAddr,
    free: std::io::Result<()>,
    tool: &str,
    variable: &str,
) -> Finding {
    if addr.port() == 0 {
        return Finding::ok(what, "any free port is taken at start".into());
    }
    match free {
        Ok(()) => Finding::ok(what, "free".into()),
        Err(error) => Finding::fail(
            what,
            format!("cannot bind: {error}"),
            &format!("stop what holds it (`{tool}`), or choose another {variable}"),
        ),
    }
}

/// The data directory exists (or can be created) and takes a file.
pub fn data_dir_writable(dir: &Path) -> Finding {
    let what = format!("data directory {}", dir.display());
    let probe = dir.join(".foundation-check");
    let written = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&probe, b"check"));
    let _ = std::fs::remove_file(&probe);
    match written {
        Ok(()) => Finding::ok(&what, "writable".into()),
        Err(error) => Finding::fail(
            &what,
            format!("not writable: {error}"),
            "create it and give the node's user write access (StateDirectory= under systemd)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_open_files_limit_is_read() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(open_files_limit(limits), Some(1024));
        assert_eq!(
            open_files_limit("Max open files unlimited unlimited files"),
            Some(u64::MAX)
        );
        assert_eq!(open_files_limit("nothing here"), None);
    }

    #[test]
    fn a_taken_port_fails_and_a_free_one_passes() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        assert_eq!(tcp_port_free(addr).level, super::super::Level::Fail);
        drop(taken);
        assert_eq!(tcp_port_free(addr).level, super::super::Level::Ok);
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            udp_port_free("QUIC", udp.local_addr().unwrap(), "FOUNDATION_BIND").level,
            super::super::Level::Fail
        );
    }
}
