//! A peer that announces large requests and sends a few bytes of each: the node holds what
//! arrived, not what was announced.
//!
//! Alone in its own test binary: it counts this process's allocations.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use common::raw::RawPeer;
use common::*;
use foundation_transport::frame::StreamHeader;
use foundation_transport::Channel;

/// Allocations at least this large are counted.
const LARGE: usize = 1 << 20;

/// Bytes asked for in allocations of at least [`LARGE`] bytes, since the process started.
static LARGE_BYTES: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting large allocations.
struct Counting;

impl Counting {
    fn count(size: usize) {
        if size >= LARGE {
            LARGE_BYTES.fetch_add(size as u64, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call goes to the system allocator unchanged; counting touches only an atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::count(new_size);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Requests on streams of their own, each announcing the rpc limit (4 MiB) and sending 1 KiB
/// before finishing its stream: the node refuses each as truncated, having allocated for the
/// kilobyte it received (it allocated the announced 4 MiB up front: 128 MiB for these 32).
/// The peer's stream ends before the announced length, so the node's reader is done with each
/// when it drops its end.
#[tokio::test]
async fn a_request_announcing_the_limit_holds_only_the_bytes_that_came() {
    const STREAMS: usize = 32;
    const SENT: usize = 1024;
    let member = node("orders").await;
    let announced = foundation_transport::ChannelLimits::DEFAULT.rpc as u32;
    let raw = RawPeer::connect(&member).await;
    let before = LARGE_BYTES.load(Ordering::Relaxed);

    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let (mut send, recv) = raw.conn.open_bi().await.unwrap();
        let mut out = BytesMut::from(&StreamHeader::for_channel(Channel::Rpc).encode()[..]);
        out.put_u32(5_000); // the deadline, in milliseconds
        out.put_u32(announced);
        out.put_bytes(7, SENT);
        send.write_all(&out).await.unwrap();
        send.finish().unwrap();
        streams.push((send, recv));
    }
    for (_send, mut recv) in streams {
        // The node drops its end of the stream once it has given up on the request.
        let ended = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(64)).await;
        assert!(ended.is_ok(), "the node gives up on a truncated request");
    }

    let large = LARGE_BYTES.load(Ordering::Relaxed) - before;
    let received = (STREAMS * SENT) as u64;
    assert!(
        large < 8 << 20,
        "{large} bytes allocated in large blocks for {received} bytes received"
    );
}
