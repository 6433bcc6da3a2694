//! One core's chat hub: its local chat connections, the rooms it owns, and its end of the
//! cross-core mesh. It drives the pure state machines of [`crate::chat`] with the store and
//! the runtime.
//!
//! The flow of a message (ARCHITECTURE.md): the connection's core decodes `clientMessages`,
//! stamps it, and hands the [`Post`] to the room's owner core (itself, or over the mesh). The
//! owner's [`Sequencer`] batches the room's posts, one batch in flight to the store per room;
//! when the store returns the ids, the owner encodes the `serverMessages` frame once and sends
//! the same bytes to its own subscribers and, over the mesh, to every other core, which hands
//! them to its subscribers. Rings are FIFO per sender and the owner sends a room's batches in id
//! order, so every subscriber on every core sees a room's messages in the store's order. A
//! failed or refused post gets its sender an error event; nothing unstored is ever broadcast.
//!
//! A connection joins every room as *pending* before its `hello` is built, so a broadcast that
//! races the `hello`'s history reads is held, then either dropped (the `hello` showed it) or
//! sent right after the `hello` ([`Subscribers`]).
//!
//! Backpressure: a full ring to another core makes the sender wait for a yield and retry (the
//! owner never drops a stored batch); a full room queue refuses the post with an error event.
//!
//! Not here: the WebSocket protocol (`ws.rs` drives it), rooms created at run time.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::chat::events::{EventError, encode_error, encode_server_messages};
use crate::chat::outbox::OUTBOX_BYTES_MAX_DEFAULT;
use crate::chat::rooms::Rooms;
use crate::chat::sequencer::{Origin, Post, Sequencer};
use crate::chat::subscribers::{ConnId, Subscribers};
use crate::proto::ws::encode_text_frame;
use crate::rt::{self, MeshEndpoint};
use crate::store::{MessageId, Store, User};

/// What cores tell each other.
pub enum CrossCore {
    /// To a room's owner: store and broadcast this post.
    Post { room: usize, post: Post },
    /// From a room's owner to every other core: a stored batch's frame.
    Broadcast {
        room: usize,
        last_id: MessageId,
        frame: Bytes,
    },
    /// From a room's owner to the post's core: the post was not stored.
    Refused { conn: ConnId, error: EventError },
}

/// What the hub needs of a local connection: a place to put frames.
pub trait Recipient {
    /// Queues a text frame; false when the connection is gone or was cut as a slow consumer.
    fn deliver(&self, frame: Bytes) -> bool;
    /// The server is shutting down: start the close handshake (1001).
    fn going_away(&self);
}

pub struct Hub {
    rooms: Arc<Rooms>,
    core: usize,
    cores: usize,
    store: Store,
    mesh: RefCell<MeshEndpoint<CrossCore>>,
    subscribers: RefCell<Subscribers>,
    sequencer: RefCell<Sequencer>,
    conns: RefCell<HashMap<ConnId, Rc<dyn Recipient>>>,
    /// Per connection, each room's newest message its `hello` showed: a broadcast at or below
    /// it was already shown (it was stored before the `hello`'s read, but its frame reached
    /// this core after the `hello` was queued) and is skipped. Broadcasts of a room arrive in
    /// id order, so a room's mark is dropped once a newer batch passes it.
    shown: RefCell<HashMap<ConnId, Vec<Option<MessageId>>>>,
    next_conn: Cell<u64>,
    /// The sequencer may have a batch to start.
    batches: Notify,
    /// Admission for connections being authenticated and sent their `hello` (each costs a
    /// dozen store calls): at most [`hello_turns`] at once per core, the rest wait their turn,
    /// so a reconnect storm queues instead of overflowing the store's queue. (A client that
    /// gave up while waiting still costs its turn: the idle deadline is what ends it.)
    hellos: tokio::sync::Semaphore,
}

/// Connections of one core authenticating and building their `hello` at the same time.
pub const HELLOS_IN_FLIGHT_MAX: usize = 32;

/// A core's hello turns: [`HELLOS_IN_FLIGHT_MAX`], fewer when so many cores share the embedded
/// store's queue that their hellos together could fill it (a hello has one request in it at a
/// time; half the queue is left for everything else).
fn hello_turns(cores: usize) -> usize {
    (crate::store::embedded::EMBEDDED_QUEUE_REQUESTS_MAX / 2 / cores.max(1))
        .clamp(1, HELLOS_IN_FLIGHT_MAX)
}

impl Hub {
    /// Creates the hub and spawns its tasks on the current core (the mesh pump and the
    /// sequencer's driver).
    pub fn start(rooms: Arc<Rooms>, store: Store, mesh: MeshEndpoint<CrossCore>) -> Rc<Hub> {
        let (core, cores) = (mesh.core(), mesh.cores());
        let hub = Rc::new(Hub {
            subscribers: RefCell::new(Subscribers::new(rooms.len(), OUTBOX_BYTES_MAX_DEFAULT)),
            sequencer: RefCell::new(Sequencer::new(rooms.len(), core, cores)),
            rooms,
            core,
            cores,
            store,
            mesh: RefCell::new(mesh),
            conns: RefCell::new(HashMap::new()),
            shown: RefCell::new(HashMap::new()),
            next_conn: Cell::new(0),
            batches: Notify::new(),
            hellos: tokio::sync::Semaphore::new(hello_turns(cores)),
        });
        rt::spawn(hub.clone().pump());
        rt::spawn(hub.clone().drive_sequencer());
        hub
    }

    pub fn rooms(&self) -> &Rooms {
        &self.rooms
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Waits for a turn to authenticate a connection and build its `hello`; the turn ends
    /// when the permit is dropped.
    pub async fn hello_turn(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.hellos
            .acquire()
            .await
            .expect("the hello semaphore is never closed")
    }

    /// Registers a connection, pending its `hello` in every room.
    pub fn join(&self, recipient: Rc<dyn Recipient>) -> ConnId {
        let id = ConnId(self.next_conn.get());
        self.next_conn.set(id.0 + 1);
        let all: Vec<usize> = (0..self.rooms.len()).collect();
        self.subscribers.borrow_mut().join(id, &all);
        self.conns.borrow_mut().insert(id, recipient);
        id
    }

    /// The `hello` is queued: release what was held for `conn` and the `hello` did not show.
    pub fn hello_sent(&self, conn: ConnId, newest: &[(usize, Option<MessageId>)]) {
        let mut marks = vec![None; self.rooms.len()];
        for &(room, id) in newest {
            marks[room] = id;
        }
        if marks.iter().any(Option::is_some) {
            self.shown.borrow_mut().insert(conn, marks);
        }
        let held = self.subscribers.borrow_mut().hello_sent(conn, newest);
        if let Ok(frames) = held {
            for frame in frames {
                self.deliver_to(conn, frame);
            }
        }
    }

    pub fn leave(&self, conn: ConnId) {
        self.subscribers.borrow_mut().leave(conn);
        self.conns.borrow_mut().remove(&conn);
        self.shown.borrow_mut().remove(&conn);
    }

    /// The core is draining: every chat connection starts its close handshake (1001), so
    /// clients reconnect elsewhere instead of holding the shutdown until its timeout.
    pub fn going_away(&self) {
        let recipients: Vec<Rc<dyn Recipient>> = self.conns.borrow().values().cloned().collect();
        for r in recipients {
            r.going_away();
        }
    }

    /// Whether `conn`'s `hello` already showed the batch ending at `last_id` of `room`.
    fn already_shown(&self, conn: ConnId, room: usize, last_id: MessageId) -> bool {
        let mut shown = self.shown.borrow_mut();
        let Some(marks) = shown.get_mut(&conn) else {
            return false;
        };
        match marks[room] {
            Some(mark) if last_id <= mark => true,
            Some(_) => {
                marks[room] = None;
                if marks.iter().all(Option::is_none) {
                    shown.remove(&conn);
                }
                false
            }
            None => false,
        }
    }

    /// Posts `contents` from `user` on `conn` to room `room`; the acknowledgement is the
    /// broadcast, a failure an error event.
    pub fn post(&self, conn: ConnId, user: User, room: usize, contents: Vec<String>) {
        let post = Post {
            origin: Origin {
                core: self.core,
                conn,
            },
            user,
            contents,
            timestamp_ms: now_ms(),
        };
        let owner = Rooms::owner(room, self.cores);
        if owner == self.core {
            self.accept_post(room, post);
        } else {
            let mut mesh = self.mesh.borrow_mut();
            match mesh.try_send(owner, CrossCore::Post { room, post }) {
                Ok(()) => mesh.flush(),
                Err(_) => {
                    drop(mesh);
                    self.tell(conn, &busy());
                }
            }
        }
    }

    fn accept_post(&self, room: usize, post: Post) {
        let origin = post.origin;
        if self.sequencer.borrow_mut().push(room, post).is_err() {
            self.refuse(origin, busy());
        } else {
            self.batches.notify_one();
        }
    }

    fn refuse(&self, origin: Origin, error: EventError) {
        if origin.core == self.core {
            self.tell(origin.conn, &error);
        } else {
            let mut mesh = self.mesh.borrow_mut();
            if mesh
                .try_send(
                    origin.core,
                    CrossCore::Refused {
                        conn: origin.conn,
                        error,
                    },
                )
                .is_ok()
            {
                mesh.flush();
            }
        }
    }

    /// Sends an error event to a local connection.
    pub fn tell(&self, conn: ConnId, error: &EventError) {
        let text = String::from_utf8(encode_error(error)).expect("JSON is UTF-8");
        self.deliver_to(conn, Bytes::from(encode_text_frame(&text)));
    }

    fn deliver_to(&self, conn: ConnId, frame: Bytes) {
        let recipient = self.conns.borrow().get(&conn).cloned();
        if let Some(r) = recipient
            && !r.deliver(frame)
        {
            self.leave(conn);
        }
    }

    /// Hands a stored batch's frame to this core's subscribers of `room`.
    fn fan_out_locally(&self, room: usize, last_id: MessageId, frame: &Bytes) {
        let (ready, cut) = {
            let mut subscribers = self.subscribers.borrow_mut();
            let fanout = subscribers.broadcast(room, last_id, frame);
            (fanout.ready.to_vec(), fanout.cut)
        };
        // Watermarks exist only for connections whose hello was recent: skip the per-recipient
        // lookup entirely when there are none (nearly always).
        let marks = !self.shown.borrow().is_empty();
        for conn in ready {
            if !(marks && self.already_shown(conn, room, last_id)) {
                self.deliver_to(conn, frame.clone());
            }
        }
        for conn in cut {
            // Cut while pending: its recipient learns through a refused delivery.
            let recipient = self.conns.borrow_mut().remove(&conn);
            if let Some(r) = recipient {
                r.deliver(Bytes::new());
            }
        }
    }

    /// Takes what other cores sent, until the core stops.
    async fn pump(self: Rc<Self>) {
        loop {
            // Polled through a short borrow each time: the mesh is also used by other tasks.
            let ready = std::future::poll_fn(|cx| self.mesh.borrow().poll_ready(cx)).await;
            if ready.is_err() {
                return;
            }
            let mut items = Vec::new();
            self.mesh.borrow_mut().drain(|_, item| items.push(item));
            for item in items {
                match item {
                    CrossCore::Post { room, post } => self.accept_post(room, post),
                    CrossCore::Broadcast {
                        room,
                        last_id,
                        frame,
                    } => self.fan_out_locally(room, last_id, &frame),
                    CrossCore::Refused { conn, error } => self.tell(conn, &error),
                }
            }
        }
    }

    /// Starts every batch the sequencer has ready, each as its own task (one per room at most).
    async fn drive_sequencer(self: Rc<Self>) {
        loop {
            loop {
                let batch = self.sequencer.borrow_mut().poll_batch();
                let Some(batch) = batch else { break };
                rt::spawn(self.clone().store_batch(batch.room, batch.messages));
            }
            self.batches.notified().await;
        }
    }

    async fn store_batch(self: Rc<Self>, room: usize, messages: Vec<crate::store::NewMessage>) {
        let room_id = self.rooms.all()[room].id.clone();
        let stored = self.store.append_messages(&room_id, messages).await;
        let outcome = match stored {
            Ok(ids) => self.sequencer.borrow_mut().persisted(room, ids).map_err(|m| {
                tracing::error!(room = %room_id, "store answered ids out of order: {}", m.detail);
                m.origins
            }),
            Err(e) => {
                tracing::warn!(room = %room_id, "storing messages failed: {e}");
                Err(self.sequencer.borrow_mut().failed(room))
            }
        };
        match outcome {
            Ok(stored) => {
                let last_id = stored.last_id();
                let json = encode_server_messages(&room_id, &stored.shown());
                let text = String::from_utf8(json).expect("JSON is UTF-8");
                let frame = Bytes::from(encode_text_frame(&text));
                self.broadcast(room, last_id, frame).await;
            }
            Err(origins) => {
                let error = EventError {
                    id: "STORE_UNAVAILABLE",
                    message: "the message could not be stored; try again".into(),
                };
                for origin in origins {
                    self.refuse(origin, error.clone());
                }
            }
        }
        self.batches.notify_one();
    }

    /// Sends a stored batch to every core, this one first. A full ring is waited out: a stored
    /// message is never dropped.
    async fn broadcast(&self, room: usize, last_id: MessageId, frame: Bytes) {
        self.fan_out_locally(room, last_id, &frame);
        for to in (0..self.cores).filter(|&c| c != self.core) {
            let mut item = CrossCore::Broadcast {
                room,
                last_id,
                frame: frame.clone(),
            };
            loop {
                let sent = self.mesh.borrow_mut().try_send(to, item);
                match sent {
                    Ok(()) => break,
                    Err(full) => {
                        if self.mesh.borrow().peer_gone(to) {
                            break;
                        }
                        item = full.0;
                        self.mesh.borrow_mut().flush();
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
        self.mesh.borrow_mut().flush();
    }
}

fn busy() -> EventError {
    EventError {
        id: "SERVER_BUSY",
        message: "too many messages are waiting; try again".into(),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod hello_turn_tests {
    use super::*;

    #[test]
    fn hello_turns_shrink_as_cores_share_the_store_queue() {
        assert_eq!(hello_turns(1), HELLOS_IN_FLIGHT_MAX);
        assert_eq!(hello_turns(16), HELLOS_IN_FLIGHT_MAX);
        assert_eq!(hello_turns(64), 8);
        assert_eq!(hello_turns(4096), 1);
    }
}
