//! ICMP "port unreachable" on the sealed socket: which peer's membership port is closed.
//!
//! A host whose process crashed answers datagrams to the port it had bound with ICMP port
//! unreachable; a stalled process keeps its socket, so its host stays silent. Linux queues such
//! errors on the sending socket once `IP_RECVERR` (`IPV6_RECVERR`) is on, with the original
//! destination and the host that sent the error. Only errors sent by the destination's own
//! address count: one from a router on the way says nothing about the process. A firewall on
//! the destination host that rejects the port, or a forger, can still send one, so the peer's
//! datagrams go back to QUIC (`closed_ports`) and membership takes the report as evidence to
//! check, never as a verdict (`foundation_core::membership` `closed_port`). Elsewhere than
//! Linux nothing is read and probing alone finds crashes.

use std::net::SocketAddr;
use tokio::io::Interest;

/// What the socket's reader waits for: datagrams, and on Linux queued ICMP errors.
#[cfg(target_os = "linux")]
pub(super) const INTEREST: Interest = Interest::READABLE.add(Interest::ERROR);
#[cfg(not(target_os = "linux"))]
pub(super) const INTEREST: Interest = Interest::READABLE;

/// Asks the kernel to queue ICMP errors for datagrams this socket sent.
#[cfg(target_os = "linux")]
pub(super) fn enable(socket: &std::net::UdpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    match socket.local_addr()? {
        SocketAddr::V4(_) => turn_on(fd, libc::SOL_IP, libc::IP_RECVERR),
        SocketAddr::V6(_) => {
            // A dual-stack socket reports errors of IPv4 peers under the IPv4 option: best
            // effort, as a v6-only socket may refuse it.
            let _ = turn_on(fd, libc::SOL_IP, libc::IP_RECVERR);
            turn_on(fd, libc::SOL_IPV6, libc::IPV6_RECVERR)
        }
    }
}

#[cfg(target_os = "linux")]
fn turn_on(fd: std::os::fd::RawFd, level: libc::c_int, name: libc::c_int) -> std::io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor, an option of int size, and a pointer to that int.
    let status = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    match status {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn enable(_socket: &std::net::UdpSocket) -> std::io::Result<()> {
    Ok(())
}

/// One entry of the socket's error queue: the destination whose port is closed, if the entry
/// says so. `Err(WouldBlock)` once the queue is empty.
#[cfg(target_os = "linux")]
pub(super) fn next_closed(fd: std::os::fd::RawFd) -> std::io::Result<Option<SocketAddr>> {
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut control = [0u64; 16];
    let mut payload = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: as above.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    message.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `message` refers to a live buffer of the stated length.
    let read = unsafe { libc::recvmsg(fd, &mut message, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
    if read < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let Some(destination) = socket_addr(&name) else {
        return Ok(None);
    };
    // SAFETY: `message` was filled by recvmsg; the macros walk its control buffer in bounds.
    let mut header = unsafe { libc::CMSG_FIRSTHDR(&message) };
    while !header.is_null() {
        // SAFETY: a header CMSG_FIRSTHDR/CMSG_NXTHDR returned lies within the control buffer.
        let found = unsafe { port_unreachable_from(&*header, destination) };
        if found {
            return Ok(Some(destination));
        }
        // SAFETY: as above.
        header = unsafe { libc::CMSG_NXTHDR(&message, header) };
    }
    Ok(None)
}

/// Whether this control message is ICMP port unreachable sent by `destination`'s own host.
///
/// # Safety
/// `header` must be a control message header from a filled `msghdr`, its data within bounds.
#[cfg(target_os = "linux")]
// `cmsg_len` is a usize with glibc but not with every libc.
#[allow(clippy::unnecessary_cast)]
unsafe fn port_unreachable_from(header: &libc::cmsghdr, destination: SocketAddr) -> bool {
    let error_of_ours = matches!(
        (header.cmsg_level, header.cmsg_type),
        (libc::SOL_IP, libc::IP_RECVERR) | (libc::SOL_IPV6, libc::IPV6_RECVERR)
    );
    let least = libc::CMSG_LEN(std::mem::size_of::<libc::sock_extended_err>() as u32) as usize;
    if !error_of_ours || (header.cmsg_len as usize) < least {
        return false;
    }
    let data = libc::CMSG_DATA(header);
    let error: libc::sock_extended_err = std::ptr::read_unaligned(data.cast());
    let port_unreachable = match error.ee_origin {
        libc::SO_EE_ORIGIN_ICMP => error.ee_type == 3 && error.ee_code == 3,
        libc::SO_EE_ORIGIN_ICMP6 => error.ee_type == 1 && error.ee_code == 4,
        _ => false,
    };
    if !port_unreachable {
        return false;
    }
    // The host that sent the error follows the error itself (SO_EE_OFFENDER), when it fits.
    let offender_at = std::mem::size_of::<libc::sock_extended_err>();
    let room = header.cmsg_len as usize - least;
    let family_size = std::mem::size_of::<libc::sa_family_t>();
    if room < family_size {
        return false;
    }
    let mut offender: libc::sockaddr_storage = std::mem::zeroed();
    let size = room.min(std::mem::size_of::<libc::sockaddr_storage>());
    std::ptr::copy_nonoverlapping(
        data.add(offender_at),
        (&mut offender as *mut libc::sockaddr_storage).cast::<u8>(),
        size,
    );
    socket_addr(&offender).is_some_and(|from| from.ip() == destination.ip())
}

#[cfg(target_os = "linux")]
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let v4: &libc::sockaddr_in = unsafe { &*(storage as *const _ as *const _) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(v4.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let v6: &libc::sockaddr_in6 = unsafe { &*(storage as *const _ as *const _) };
            let ip = std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::new(ip.into(), u16::from_be(v6.sin6_port)))
        }
        _ => None,
    }
}
