//! What the endpoint delivers to the layers above: messages per channel, requests, transfers
//! and peer events, each on its own bounded queue so one slow consumer never stalls another.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::budget::{ByteBudget, Charge};
use crate::bulk::IncomingTransfer;
use crate::config::TransportConfig;
use crate::frame::{decode_message, FrameError};
use crate::metrics::{InboxBound, TransportMetrics};
use crate::rpc::IncomingRequest;
use foundation_core::identity::{NodeAddr, NodeId};
use foundation_core::Channel;

/// A message received on the membership, coordination, replication or events channel.
///
/// One taken from a streamed channel's inbox holds its share of that channel's byte budget
/// ([`TransportConfig::inbox_bytes`]) until it is dropped: consume it and drop it, keeping the
/// payload (or a slice of it) if need be, which holds no budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The channel it arrived on.
    pub channel: Channel,
    /// The payload, as sent.
    pub payload: Bytes,
    charge: Charge,
}

impl Message {
    /// A message from `from` on `channel` holding no budget (the transport charges the ones it
    /// queues).
    pub fn new(from: NodeId, channel: Channel, payload: Bytes) -> Self {
        Self {
            from,
            channel,
            payload,
            charge: Charge::default(),
        }
    }

    /// Decodes the payload as a typed message.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, FrameError> {
        decode_message(&self.payload)
    }
}

/// A change in our connectivity to a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// A first connection to the peer is up.
    Connected {
        /// The peer, at its advertised address.
        peer: NodeAddr,
    },
    /// The last connection to the peer closed.
    Disconnected {
        /// The peer.
        peer: NodeId,
        /// Its address when it disconnected.
        addr: SocketAddr,
        /// Why, as QUIC reported it.
        reason: String,
    },
    /// The peer's host answered a membership datagram with ICMP port unreachable: nothing
    /// listens on its membership port (its process crashed, or a forged error says so).
    PortClosed {
        /// The peer the datagram was sealed to.
        peer: NodeId,
        /// Where it was sent.
        addr: SocketAddr,
    },
}

/// The receiving side of an endpoint. Each field is an independent bounded queue; a queue the
/// application drops is treated as "not accepting" and the peer is told so.
///
/// The coordination, replication and events queues are bounded in bytes as well as in
/// messages ([`TransportConfig::inbox_bytes`]): a received [`Message`] holds its share of the
/// budget until the application drops it, so a consumer that holds on to messages slows its
/// channel down as one that does not read does (the payloads it keeps hold nothing).
#[derive(Debug)]
pub struct Inbox {
    /// Membership datagrams.
    pub membership: mpsc::Receiver<Message>,
    /// Coordination messages.
    pub coordination: mpsc::Receiver<Message>,
    /// Replication messages.
    pub replication: mpsc::Receiver<Message>,
    /// Pub/sub event messages.
    pub events: mpsc::Receiver<Message>,
    /// Requests awaiting a response.
    pub requests: mpsc::Receiver<IncomingRequest>,
    /// Bulk transfers, readable as they arrive.
    pub transfers: mpsc::Receiver<IncomingTransfer>,
    /// Peers connecting and disconnecting.
    pub peers: mpsc::Receiver<PeerEvent>,
}

/// Takes requests in the task that reads them (see [`Endpoint::serve_requests`]).
///
/// [`Endpoint::serve_requests`]: crate::Endpoint::serve_requests
pub type RequestHandler = Arc<dyn Fn(IncomingRequest) + Send + Sync>;

/// The endpoint's ends of the inbox queues.
pub(crate) struct InboxSenders {
    pub membership: mpsc::Sender<Message>,
    pub streamed: [StreamedInbox; 3],
    pub requests: mpsc::Sender<IncomingRequest>,
    pub transfers: mpsc::Sender<IncomingTransfer>,
    pub peers: mpsc::Sender<PeerEvent>,
}

/// The inbox queues' senders and the request handler, held until the endpoint closes.
///
/// Closing drops them: the application's readers see their queues end, and a handler that
/// holds the application (commonly through a clone of the node, which holds this endpoint)
/// is let go — held here for the endpoint's whole life, it would keep the endpoint, its
/// socket and the readers' tasks alive in a cycle. Readers of long-lived streams take the
/// senders once per stream, not per message, and end with their connections at the close.
#[derive(Default)]
pub(crate) struct Inboxes {
    senders: RwLock<Option<Arc<InboxSenders>>>,
    /// Once set, requests go to it instead of the `requests` queue.
    handler: RwLock<Option<RequestHandler>>,
}

impl std::fmt::Debug for Inboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inboxes")
            .field("open", &self.senders().is_some())
            .field("request_handler", &self.handler().is_some())
            .finish()
    }
}

impl Inboxes {
    fn open(senders: InboxSenders) -> Self {
        Self {
            senders: RwLock::new(Some(Arc::new(senders))),
            handler: RwLock::default(),
        }
    }

    /// The queues' senders; `None` once the endpoint has closed.
    pub fn senders(&self) -> Option<Arc<InboxSenders>> {
        read(&self.senders).clone()
    }

    /// The request handler, if one is set and the endpoint has not closed.
    pub fn handler(&self) -> Option<RequestHandler> {
        read(&self.handler).clone()
    }

    /// Sets the request handler; `false` if one is set already or the endpoint has closed.
    pub fn serve(&self, handler: RequestHandler) -> bool {
        // The slot is held while openness is read: `close` empties the senders before the
        // slot, so a handler set here is either refused or taken by that close.
        let mut slot = write(&self.handler);
        let open = read(&self.senders).is_some();
        if !open || slot.is_some() {
            return false;
        }
        *slot = Some(handler);
        true
    }

    /// Drops the senders and the handler (see the type's documentation).
    pub fn close(&self) {
        let senders = write(&self.senders).take();
        let handler = write(&self.handler).take();
        // Dropped outside the locks: a handler's drop may run the application's code.
        drop((senders, handler));
    }
}

fn read<T>(lock: &RwLock<Option<T>>) -> std::sync::RwLockReadGuard<'_, Option<T>> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<Option<T>>) -> std::sync::RwLockWriteGuard<'_, Option<T>> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl InboxSenders {
    /// The queue of a streamed channel, `None` for channels that are not streamed.
    pub fn streamed(&self, channel: Channel) -> Option<&StreamedInbox> {
        streamed_index(channel).map(|i| &self.streamed[i])
    }
}

/// A streamed channel's queue, bounded in messages, and its byte budget.
pub(crate) struct StreamedInbox {
    queue: mpsc::Sender<Message>,
    bytes: ByteBudget,
}

/// The application dropped the channel's queue.
pub(crate) struct InboxClosed;

impl StreamedInbox {
    /// Queues `message` once there is room for it, in bytes and in messages, counting each
    /// wait for room. Waiting is the backpressure: the caller reads no more of its stream.
    pub async fn deliver(
        &self,
        mut message: Message,
        metrics: &TransportMetrics,
    ) -> Result<(), InboxClosed> {
        let len = message.payload.len();
        message.charge = match self.bytes.try_charge(len) {
            Some(charge) => charge,
            None => {
                metrics.inbox_waited(message.channel, InboxBound::Bytes);
                tokio::select! {
                    charge = self.bytes.charge(len) => charge,
                    // Budget held by a consumer that is gone may never come back.
                    _ = self.queue.closed() => return Err(InboxClosed),
                }
            }
        };
        let room = match self.queue.try_reserve() {
            Ok(room) => room,
            Err(mpsc::error::TrySendError::Closed(())) => return Err(InboxClosed),
            Err(mpsc::error::TrySendError::Full(())) => {
                metrics.inbox_waited(message.channel, InboxBound::Messages);
                self.queue.reserve().await.map_err(|_| InboxClosed)?
            }
        };
        room.send(message);
        Ok(())
    }
}

/// Position of a streamed channel in per-streamed-channel arrays.
pub(crate) fn streamed_index(channel: Channel) -> Option<usize> {
    Channel::STREAMED.iter().position(|c| *c == channel)
}

pub(crate) fn inbox(config: &TransportConfig) -> (Inboxes, Inbox) {
    let cap = config.inbox_capacity;
    let streamed = |_| {
        let (queue, receiver) = mpsc::channel(cap);
        let bytes = ByteBudget::new(config.inbox_bytes);
        (StreamedInbox { queue, bytes }, receiver)
    };
    let (membership_tx, membership) = mpsc::channel(cap);
    let [(coordination_tx, coordination), (replication_tx, replication), (events_tx, events)] =
        [(); 3].map(streamed);
    let (requests_tx, requests) = mpsc::channel(cap);
    let (transfers_tx, transfers) = mpsc::channel(config.max_concurrent_transfers as usize);
    let (peers_tx, peers) = mpsc::channel(cap);
    let senders = InboxSenders {
        membership: membership_tx,
        streamed: [coordination_tx, replication_tx, events_tx],
        requests: requests_tx,
        transfers: transfers_tx,
        peers: peers_tx,
    };
    let inbox = Inbox {
        membership,
        coordination,
        replication,
        events,
        requests,
        transfers,
        peers,
    };
    (Inboxes::open(senders), inbox)
}
