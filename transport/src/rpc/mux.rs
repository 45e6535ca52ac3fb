//! Small requests multiplexed on a few long-lived bidirectional streams per connection.
//!
//! The caller's side ([`MuxSlot`]) puts each call on the stream with the fewest calls waiting,
//! opening a stream when it is first used (or, if it cannot open at once while another is open,
//! using the least-loaded open one); each stream ([`MuxClient`]) gives its calls ids and
//! keeps a table of the calls waiting for an answer. The
//! responder's side ([`serve`]) reads requests off the stream and hands them to the application
//! with a [`MuxResponder`] that answers by id; when the application takes requests in this task
//! ([`Endpoint::serve_requests`](crate::Endpoint::serve_requests)), the answers given while one
//! read's requests are taken leave in one write after them. Both sides write through an
//! [`Outbox`], so many calls share a packet and no task is woken per write.
//!
//! A caller that gives up (its deadline passed, or its future was dropped) sends a cancel frame;
//! the responder's [`cancelled`](MuxResponder::cancelled) future then resolves. An answer that
//! arrives for a call nobody waits for any more is counted as a late reply and dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use quinn::{Connection, RecvStream, SendStream, VarInt};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tracing::{debug, warn};

use foundation_core::identity::NodeId;
use foundation_core::Channel;

use super::codec::{BadMuxFrame, MuxFrame, MUX_OVERHEAD, MUX_REQUEST_MAX};
use super::outbox::{Outbox, Writes};
use super::{remaining_ms, IncomingRequest, Responder, ResponderInner};
use crate::channel::priority;
use crate::endpoint::Shared;
use crate::error::{RequestError, SendError};
use crate::frame::{FrameDecoder, StreamHeader};
use crate::inbox::RequestHandler;
use crate::metrics::{Direction, DropReason, RpcEvent, TransportMetrics};
use crate::stream_io::ReadError;
use crate::wire::code;

/// Largest chunk taken from the stream at once.
const READ_CHUNK_MAX: usize = 64 << 10;
/// Most request bytes read while a read's answers are held for one write.
const HELD_READ_MAX: usize = 4 * READ_CHUNK_MAX;
/// Payloads smaller than this are copied out of the read buffer, so a kept payload does not pin
/// the whole chunk it came in.
const COPY_BELOW: usize = 4096;
/// Most answer bytes a responder keeps queued for one stream before it stops reading requests
/// from it: past this the caller is not taking its answers (QUIC flow control holds them), and
/// every request read would queue one more (a refusal at least) without end.
pub(crate) const ANSWERS_QUEUED_MAX: usize = 1 << 20;
/// Longest a responder waits, not reading, for a caller to take its answers before it ends the
/// stream: paused streams hold the connection's receive window, which two nodes calling each
/// other under load could otherwise use up both ways for good.
pub const ANSWERS_WAIT_MAX: Duration = Duration::from_secs(10);

/// Counts one more call in `count` if that stays within `limit`. Adding first and taking it
/// back when over let a concurrent caller see a count one too high and refuse a call there was
/// room for.
fn count_within(count: &AtomicUsize, limit: usize) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .is_ok()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// The caller's side.

/// The multiplexed streams of one connection, each opened on first use and reopened if it
/// fails. Calls are spread over several streams so that no one task carries every call of the
/// connection: each stream has its own reader and writer task on both sides, and a worker
/// thread preempted while it runs one of them holds up only that stream's calls while the
/// other worker takes the rest (with one stream, every call waited on that one thread).
#[derive(Debug)]
pub(crate) struct MuxSlot {
    lanes: Box<[Lane]>,
    /// Calls waiting for an answer over every lane: the connection's in-flight limit.
    in_flight: AtomicUsize,
}

/// One of a connection's multiplexed streams.
#[derive(Debug, Default)]
struct Lane {
    current: Mutex<Option<Arc<MuxClient>>>,
    opening: tokio::sync::Mutex<()>,
    /// Calls on this lane waiting for an answer.
    load: AtomicUsize,
}

impl MuxSlot {
    /// A slot spreading calls over at most `streams` streams (at least one).
    pub(crate) fn new(streams: usize) -> MuxSlot {
        MuxSlot {
            lanes: (0..streams.max(1)).map(|_| Lane::default()).collect(),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// A place for one more call within `limit`, on the lane with the fewest calls in flight
    /// (the first on a tie: calls made one at a time all use one stream, and the others are
    /// opened only when calls overlap).
    fn enter(&self, limit: usize) -> Option<Ticket<'_>> {
        if !count_within(&self.in_flight, limit) {
            return None;
        }
        let lane = self
            .lanes
            .iter()
            .min_by_key(|lane| lane.load.load(Ordering::Acquire))
            .unwrap_or(&self.lanes[0]);
        lane.load.fetch_add(1, Ordering::AcqRel);
        Some(Ticket { slot: self, lane })
    }

    /// Calls waiting for an answer over this connection's multiplexed streams.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Opens the first lane's stream unless some lane has one. A large request calls this
    /// before it takes a stream of its own: the peer allows as many streams as its own
    /// `max_concurrent_requests` sizes, so a peer set lower than this node lets our large
    /// requests fill every stream, and a first small call would then wait for one of them to
    /// end; with a multiplexed stream already open it queues there instead.
    pub(crate) async fn keep_one_open(
        &self,
        shared: &Shared,
        conn: &Connection,
    ) -> Result<(), RequestError> {
        if self.least_loaded_live().is_some() {
            return Ok(());
        }
        self.lanes[0].client(shared, conn).await.map(drop)
    }

    fn least_loaded_live(&self) -> Option<(&Lane, Arc<MuxClient>)> {
        self.lanes
            .iter()
            .filter_map(|lane| Some((lane, lane.live()?)))
            .min_by_key(|(lane, _)| lane.load.load(Ordering::Acquire))
    }
}

/// A call's place on a lane, given back when the call ends however it ends.
struct Ticket<'a> {
    slot: &'a MuxSlot,
    lane: &'a Lane,
}

impl Ticket<'_> {
    /// The stream for this call: its lane's, opened first if need be. While another lane has a
    /// stream, opening must not wait: the peer may have no room for another stream (large
    /// requests on streams of their own can take it all), and the call would wait out its
    /// deadline beside a stream that could carry it; it goes on the least-loaded open stream
    /// instead, and a later call tries the opening again.
    async fn client(
        &mut self,
        shared: &Shared,
        conn: &Connection,
    ) -> Result<Arc<MuxClient>, RequestError> {
        if let Some(client) = self.lane.live() {
            return Ok(client);
        }
        let Some((lane, client)) = self.slot.least_loaded_live() else {
            return self.lane.client(shared, conn).await;
        };
        if let Some(opened) = self.lane.open_now(shared, conn) {
            return opened;
        }
        lane.load.fetch_add(1, Ordering::AcqRel);
        self.lane.load.fetch_sub(1, Ordering::AcqRel);
        self.lane = lane;
        Ok(client)
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.lane.load.fetch_sub(1, Ordering::AcqRel);
        self.slot.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Lane {
    /// The lane's open stream, opening one if there is none.
    async fn client(
        &self,
        shared: &Shared,
        conn: &Connection,
    ) -> Result<Arc<MuxClient>, RequestError> {
        if let Some(client) = self.live() {
            return Ok(client);
        }
        let _opening = self.opening.lock().await;
        if let Some(client) = self.live() {
            return Ok(client);
        }
        let streams = conn.open_bi().await;
        self.install(shared, streams)
    }

    /// The lane's new stream if one opens without waiting; `None` if it would wait, or another
    /// call is opening it.
    fn open_now(
        &self,
        shared: &Shared,
        conn: &Connection,
    ) -> Option<Result<Arc<MuxClient>, RequestError>> {
        let _opening = self.opening.try_lock().ok()?;
        if let Some(client) = self.live() {
            return Some(Ok(client));
        }
        let streams = ready_now(conn.open_bi())?;
        Some(self.install(shared, streams))
    }

    fn install(
        &self,
        shared: &Shared,
        streams: Result<(SendStream, RecvStream), quinn::ConnectionError>,
    ) -> Result<Arc<MuxClient>, RequestError> {
        let (send, recv) = streams.map_err(|e| RequestError::Unreachable(e.to_string()))?;
        let client = MuxClient::start(shared, send, recv);
        *lock(&self.current) = Some(client.clone());
        Ok(client)
    }

    fn live(&self) -> Option<Arc<MuxClient>> {
        lock(&self.current)
            .as_ref()
            .filter(|c| !c.outbox.is_closed())
            .cloned()
    }
}

type Answer = oneshot::Sender<Result<Bytes, RequestError>>;

/// The caller's end of a multiplexed stream.
#[derive(Debug)]
pub(crate) struct MuxClient {
    outbox: Arc<Outbox>,
    /// More bytes queued than every call in flight could queue (see [`requests_queued_max`]).
    queued_max: usize,
    calls: Mutex<Calls>,
    metrics: Arc<TransportMetrics>,
}

/// The most request bytes a caller's calls in flight can queue on one stream. A call that ends
/// (its deadline, or its future dropped) frees its place in flight but not its request, which
/// stays queued until the stream takes it; so past this much, the queue holds the requests of
/// calls that already ended, and the responder has stopped reading.
fn requests_queued_max(in_flight: u32) -> usize {
    let frame = crate::frame::FRAME_PREFIX_LEN + MUX_OVERHEAD + MUX_REQUEST_MAX;
    in_flight as usize * frame
}

#[derive(Debug, Default)]
struct Calls {
    waiting: HashMap<u64, Answer>,
    next_id: u64,
    /// Set when the stream failed: every later call gets this error.
    failed: Option<RequestError>,
}

impl MuxClient {
    fn start(shared: &Shared, send: SendStream, recv: RecvStream) -> Arc<MuxClient> {
        let _ = send.set_priority(priority(Channel::Rpc));
        // The header leaves with the first request.
        let outbox = Outbox::start(send, &StreamHeader::RPC_MUX.encode(), Writes::Coalesced);
        let client = Arc::new(MuxClient {
            outbox,
            queued_max: requests_queued_max(shared.config.max_concurrent_requests),
            calls: Mutex::new(Calls::default()),
            metrics: shared.metrics.clone(),
        });
        tokio::spawn(read_answers(
            client.clone(),
            recv,
            shared.config.limits.rpc + MUX_OVERHEAD,
        ));
        client
    }

    /// Sends one request and waits for its answer. Dropping the future cancels the call.
    async fn call(
        self: &Arc<Self>,
        payload: &[u8],
        deadline: Instant,
    ) -> Result<Bytes, RequestError> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut calls = lock(&self.calls);
            if let Some(failed) = &calls.failed {
                return Err(failed.clone());
            }
            if self.outbox.backed_up(self.queued_max) {
                self.metrics.rpc_event(RpcEvent::RequestsBackedUp);
                let error = "the peer has stopped reading its rpc stream: request not sent";
                return Err(RequestError::Unreachable(error.into()));
            }
            calls.next_id = calls.next_id.wrapping_add(1);
            let id = calls.next_id;
            calls.waiting.insert(id, tx);
            id
        };
        let mut pending = Pending {
            client: self,
            id,
            done: false,
        };
        let request = MuxFrame::Request {
            id,
            deadline_ms: remaining_ms(deadline),
            payload: Bytes::copy_from_slice(payload),
        };
        if !self.outbox.push(&request) {
            pending.done = true;
            lock(&self.calls).waiting.remove(&id);
            return Err(RequestError::Unreachable("rpc stream closed".into()));
        }
        self.metrics
            .traffic(Channel::Rpc, Direction::Sent, 1, payload.len() as u64);
        let answer = rx.await;
        pending.done = true;
        let response = answer
            .unwrap_or_else(|_| Err(RequestError::Unreachable("rpc stream closed".into())))?;
        self.metrics
            .traffic(Channel::Rpc, Direction::Received, 1, response.len() as u64);
        Ok(response)
    }

    /// Ends every waiting call with `error`, and refuses later ones with it.
    fn fail(&self, error: RequestError) {
        self.outbox.close();
        let waiting = {
            let mut calls = lock(&self.calls);
            calls.failed.get_or_insert(error.clone());
            std::mem::take(&mut calls.waiting)
        };
        for (_, answer) in waiting {
            let _ = answer.send(Err(error.clone()));
        }
    }

    fn answer(&self, id: u64, result: Result<Bytes, RequestError>) {
        let waiting = lock(&self.calls).waiting.remove(&id);
        match waiting {
            Some(answer) => {
                // The caller may be dropping its future right now; then the answer is late.
                if answer.send(result).is_err() {
                    self.metrics.rpc_event(RpcEvent::LateReply);
                }
            }
            None => self.metrics.rpc_event(RpcEvent::LateReply),
        }
    }
}

/// A call waiting for its answer; dropped before the answer (a deadline, or the caller's future
/// dropped), it tells the responder the caller gave up.
struct Pending<'a> {
    client: &'a Arc<MuxClient>,
    id: u64,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let was_waiting = lock(&self.client.calls).waiting.remove(&self.id).is_some();
        if was_waiting && self.client.outbox.push(&MuxFrame::Cancel { id: self.id }) {
            self.client.metrics.rpc_event(RpcEvent::CancelSent);
        }
    }
}

/// Reads answers off the stream and hands each to its call, until the stream ends.
async fn read_answers(client: Arc<MuxClient>, mut recv: RecvStream, max: usize) {
    let mut decoder = FrameDecoder::new(max);
    let error = loop {
        let chunk = match recv.read_chunk(READ_CHUNK_MAX, true).await {
            Ok(Some(chunk)) => chunk.bytes,
            Ok(None) => break RequestError::Unreachable("rpc stream finished by the peer".into()),
            Err(quinn::ReadError::Reset(code)) => break RequestError::Refused(code.into_inner()),
            Err(error) => break RequestError::Unreachable(error.to_string()),
        };
        decoder.extend(&chunk);
        let failed = loop {
            match decoder.next_frame() {
                Ok(Some(body)) => take_answer(&client, body),
                Ok(None) => break None,
                Err(error) => break Some(error),
            }
        };
        if let Some(error) = failed {
            warn!(%error, "rpc stream from peer lost its framing; its calls fail");
            client
                .metrics
                .rejected(Some(Channel::Rpc), DropReason::Oversized);
            let _ = recv.stop(VarInt::from_u32(code::TOO_LARGE));
            break RequestError::Malformed(error);
        }
    };
    client.fail(error);
}

fn take_answer(client: &MuxClient, body: Bytes) {
    match MuxFrame::decode(body) {
        Ok(MuxFrame::Response { id, payload }) => client.answer(id, Ok(small_copy(payload))),
        Ok(MuxFrame::NoResponse { id }) => client.answer(id, Err(RequestError::NoResponse)),
        Ok(MuxFrame::Refused { id, code }) => {
            client.answer(id, Err(RequestError::Refused(code.into())))
        }
        Ok(other) => {
            debug!(id = other.id(), "responder sent a caller's frame; ignored");
            client.metrics.rpc_event(RpcEvent::Malformed);
        }
        Err(BadMuxFrame { id, error }) => {
            debug!(?id, %error, "malformed rpc answer");
            client.metrics.rpc_event(RpcEvent::Malformed);
            if let Some(id) = id {
                client.answer(id, Err(RequestError::Malformed(error)));
            }
        }
    }
}

fn small_copy(payload: Bytes) -> Bytes {
    if payload.len() < COPY_BELOW {
        Bytes::copy_from_slice(&payload)
    } else {
        payload
    }
}

/// Sends a request of at most [`MUX_REQUEST_MAX`] bytes on one of the connection's
/// multiplexed streams.
pub(crate) async fn call(
    shared: &Shared,
    slot: &MuxSlot,
    conn: &Connection,
    payload: &[u8],
    deadline: Instant,
) -> Result<Bytes, RequestError> {
    let limit = shared.config.max_concurrent_requests as usize;
    let Some(mut ticket) = slot.enter(limit) else {
        shared.metrics.rpc_event(RpcEvent::InFlightLimit);
        return Err(RequestError::InFlightLimit { limit });
    };
    let client = ticket.client(shared, conn).await?;
    client.call(payload, deadline).await
}

// ---------------------------------------------------------------------------------------------
// The responder's side.

/// One multiplexed stream's calls in flight at the responder.
#[derive(Debug)]
pub(crate) struct MuxServer {
    outbox: Arc<Outbox>,
    calls: Mutex<HashMap<u64, Arc<Cancel>>>,
    /// Calls in flight over every multiplexed stream of the connection: the limit is the
    /// connection's, however many streams the caller spreads its calls over.
    in_flight: Arc<AtomicUsize>,
    max_response: usize,
    metrics: Arc<TransportMetrics>,
}

/// Fired when the caller gives up on a call, or its stream ends.
#[derive(Debug, Default)]
pub(crate) struct Cancel {
    fired: AtomicBool,
    notify: Notify,
}

impl Cancel {
    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_fired() {
                return;
            }
            notified.await;
        }
    }
}

/// Answers one call of a multiplexed stream, by id.
pub(crate) struct MuxResponder {
    server: Arc<MuxServer>,
    id: u64,
    cancel: Arc<Cancel>,
    answered: bool,
}

impl std::fmt::Debug for MuxResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxResponder")
            .field("id", &self.id)
            .field("cancelled", &self.cancel.is_fired())
            .finish()
    }
}

impl MuxResponder {
    pub(crate) fn respond(mut self, response: Bytes) -> Result<(), SendError> {
        let max = self.server.max_response;
        if response.len() > max {
            return Err(SendError::TooLarge {
                len: response.len(),
                max,
            });
        }
        self.answered = true;
        self.server.end(self.id);
        if self.cancel.is_fired() {
            // The caller is gone; an answer would only be dropped as late.
            return Ok(());
        }
        let len = response.len() as u64;
        let frame = MuxFrame::Response {
            id: self.id,
            payload: response,
        };
        if !self.server.outbox.push(&frame) {
            return Err(SendError::ConnectionLost("rpc stream closed".into()));
        }
        self.server
            .metrics
            .traffic(Channel::Rpc, Direction::Sent, 1, len);
        Ok(())
    }

    /// Refuses the call without running it.
    pub(crate) fn refuse(mut self, code: u32) {
        self.answered = true;
        self.server.end(self.id);
        self.server
            .outbox
            .push(&MuxFrame::Refused { id: self.id, code });
    }

    pub(crate) async fn cancelled(&self) {
        self.cancel.wait().await
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancel.is_fired()
    }
}

impl Drop for MuxResponder {
    fn drop(&mut self) {
        if !self.answered {
            self.server.end(self.id);
            self.server
                .outbox
                .push(&MuxFrame::NoResponse { id: self.id });
        }
    }
}

impl MuxServer {
    fn end(&self, id: u64) {
        if lock(&self.calls).remove(&id).is_some() {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Fires every call's cancellation: the stream they came on is gone.
    fn cancel_all(&self) {
        let calls = std::mem::take(&mut *lock(&self.calls));
        self.in_flight.fetch_sub(calls.len(), Ordering::AcqRel);
        for cancel in calls.values() {
            cancel.fire();
        }
    }
}

/// Serves a multiplexed RPC stream a peer opened (its header already read), until it ends;
/// `in_flight` counts the calls of every such stream of the connection.
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    from: NodeId,
    send: SendStream,
    recv: &mut RecvStream,
    in_flight: Arc<AtomicUsize>,
) -> Result<(), ReadError> {
    let _ = send.set_priority(priority(Channel::Rpc));
    let outbox = Outbox::start(send, &[], Writes::ByPusher);
    let server = Arc::new(MuxServer {
        outbox: outbox.clone(),
        calls: Mutex::new(HashMap::new()),
        in_flight,
        max_response: shared.config.limits.rpc,
        metrics: shared.metrics.clone(),
    });
    let result = read_requests(shared, from, &server, recv).await;
    server.cancel_all();
    outbox.close();
    result
}

async fn read_requests(
    shared: &Shared,
    from: NodeId,
    server: &Arc<MuxServer>,
    recv: &mut RecvStream,
) -> Result<(), ReadError> {
    let max_request = shared.config.limits.rpc.min(MUX_REQUEST_MAX);
    let mut decoder = FrameDecoder::new(max_request + MUX_OVERHEAD);
    let mut handler = None;
    loop {
        if server.outbox.backed_up(ANSWERS_QUEUED_MAX) {
            server.metrics.rpc_event(RpcEvent::AnswersBackedUp);
            let room = server.outbox.room(ANSWERS_QUEUED_MAX);
            if tokio::time::timeout(ANSWERS_WAIT_MAX, room).await.is_err() {
                // The caller is stuck or hostile, or held by its connection's window, which
                // streams paused both ways can use up (two nodes calling each other under
                // load would wait for ever): ending the stream gives back the window its
                // unread requests hold and drops the answers; the caller's calls on it fail,
                // and its next call opens another stream.
                server.metrics.rpc_event(RpcEvent::AnswersAbandoned);
                server.outbox.reset(code::UNAVAILABLE);
                let _ = recv.stop(VarInt::from_u32(code::UNAVAILABLE));
                return Ok(());
            }
        }
        let mut read = recv.read_chunk(READ_CHUNK_MAX, true).await;
        // Answers given while this wake's requests are taken (handlers that finish without
        // waiting answer here) leave in one write after the last of them, or after
        // `HELD_READ_MAX` bytes: callers that never pause must not hold every answer back.
        let _batch = server.outbox.hold();
        let mut held = 0;
        loop {
            let chunk = match read {
                Ok(Some(chunk)) => chunk.bytes,
                Ok(None) => return Ok(decoder.finish()?),
                Err(quinn::ReadError::ConnectionLost(_) | quinn::ReadError::Reset(_)) => {
                    return Ok(())
                }
                Err(error) => return Err(ReadError::Stream(error.to_string())),
            };
            held += chunk.len();
            decoder.extend(&chunk);
            while let Some(body) = decoder.next_frame()? {
                take_request(shared, from, server, &mut handler, body);
            }
            if held >= HELD_READ_MAX {
                break;
            }
            match ready_now(recv.read_chunk(READ_CHUNK_MAX, true)) {
                Some(next) => read = next,
                None => break,
            }
        }
    }
}

/// The future's output if it is ready without waiting.
fn ready_now<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut cx) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

fn take_request(
    shared: &Shared,
    from: NodeId,
    server: &Arc<MuxServer>,
    handler: &mut Option<RequestHandler>,
    body: Bytes,
) {
    let refuse = |id, code| {
        server.outbox.push(&MuxFrame::Refused { id, code });
    };
    let (id, deadline_ms, payload) = match MuxFrame::decode(body) {
        Ok(MuxFrame::Request {
            id,
            deadline_ms,
            payload,
        }) => (id, deadline_ms, payload),
        Ok(MuxFrame::Cancel { id }) => {
            server.metrics.rpc_event(RpcEvent::CancelReceived);
            if let Some(cancel) = lock(&server.calls).get(&id) {
                cancel.fire();
            }
            return;
        }
        Ok(other) => {
            debug!(peer = %from.short(), id = other.id(), "caller sent a responder's frame; ignored");
            server.metrics.rpc_event(RpcEvent::Malformed);
            server
                .metrics
                .rejected(Some(Channel::Rpc), DropReason::Malformed);
            return;
        }
        Err(BadMuxFrame { id, error }) => {
            warn!(peer = %from.short(), %error, "refusing a malformed rpc frame");
            server.metrics.rpc_event(RpcEvent::Malformed);
            server
                .metrics
                .rejected(Some(Channel::Rpc), DropReason::Malformed);
            if let Some(id) = id {
                refuse(id, code::MALFORMED);
            }
            return;
        }
    };
    let cancel = Arc::new(Cancel::default());
    {
        let mut calls = lock(&server.calls);
        if calls.contains_key(&id) {
            drop(calls);
            warn!(peer = %from.short(), id, "refusing a request whose id is already in flight");
            server.metrics.rpc_event(RpcEvent::Malformed);
            server
                .metrics
                .rejected(Some(Channel::Rpc), DropReason::Malformed);
            return refuse(id, code::MALFORMED);
        }
        let limit = shared.config.max_concurrent_requests as usize;
        if !count_within(&server.in_flight, limit) {
            drop(calls);
            server.metrics.rpc_event(RpcEvent::InFlightLimit);
            return refuse(id, code::TOO_MANY_IN_FLIGHT);
        }
        calls.insert(id, cancel.clone());
    }
    shared
        .metrics
        .traffic(Channel::Rpc, Direction::Received, 1, payload.len() as u64);
    let responder = Responder {
        inner: ResponderInner::Mux(MuxResponder {
            server: server.clone(),
            id,
            cancel,
            answered: false,
        }),
    };
    let request = IncomingRequest {
        from,
        payload: small_copy(payload),
        deadline: Instant::now() + Duration::from_millis(deadline_ms.into()),
        responder,
    };
    super::deliver(shared, handler, request);
}
