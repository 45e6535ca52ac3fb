//! Running a little of the test inside one of its network namespaces: a thread enters the
//! namespace (`setns` moves only the calling thread), and sockets it opens stay there.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Runs `work` on a fresh thread inside the network namespace `name` (`ip netns add name`).
pub fn run_in<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<Result<T, String>> {
    let path = format!("/var/run/netns/{name}");
    std::thread::spawn(move || {
        enter(&path)?;
        Ok(work())
    })
}

/// Moves the calling thread into the network namespace at `path`.
pub fn enter(path: &str) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("open {path}: {e}"))?;
    // SAFETY: setns on a valid, open namespace file descriptor; it changes only this thread's
    // network namespace.
    let done = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if done != 0 {
        return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// `GET path` from `addr` as seen from namespace `name`: the body of a 200 answer.
pub fn http_get(name: &str, addr: SocketAddr, path: &str) -> Option<String> {
    let path = path.to_owned();
    run_in(name, move || get(addr, &path)).join().ok()?.ok()?
}

fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let (status, body) = request(addr, "GET", path, None, Duration::from_secs(3))?;
    (status == 200).then_some(body)
}

/// An HTTP/1.1 request from the calling thread's namespace, with the test's token (a write
/// to a node bound to every address needs it): the status and the body, or `None` when the
/// node does not answer within `timeout`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\nConnection: close\r\n\r\n{body}",
        token = super::HTTP_TOKEN,
        length = body.len(),
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Some((status, dechunk(body)));
    }
    Some((status, body.to_owned()))
}

/// The payload of a chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
