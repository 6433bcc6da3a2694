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
//! **Two kinds of connection.** WebSocket connections (`ws.rs`) are in every room; line-port
//! connections (`line.rs`) are in their current room only. The owner encodes each stored batch
//! once per kind ([`Frames`]: the `serverMessages` frame, and the `[room] user: text` lines
//! when the line port is on), and each recipient takes the one it speaks.
//!
//! **Asking other cores.** `/who` (who is in a room now, on every core) and guest names (unique
//! on every core; each name has an owner core by hash that keeps who holds it) are questions
//! over the mesh: [`CrossCore::Ask`] out, [`CrossCore::Answer`] back, waited for at most
//! [`ASK_TIMEOUT_MS`].
//!
//! Not here: the WebSocket and line protocols (`ws.rs`, `line.rs` drive them), rooms created
//! at run time.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::chat::events::{EventError, ShownMessage, encode_server_messages};
use crate::chat::outbox::OUTBOX_BYTES_MAX_DEFAULT;
use crate::chat::rooms::Rooms;
use crate::chat::sequencer::{Origin, Post, Sequencer};
use crate::chat::subscribers::{ConnId, Frame, Subscribers};
use crate::proto::ws::encode_text_frame;
use crate::rt::{self, MeshEndpoint};
use crate::server::metrics::CoreMetrics;
use crate::store::redis::RedisConfig;
use crate::store::redis_reader::StreamReader;
use crate::store::{GUEST_USER_ID, MessageId, Store, StoreError, StoredMessage, User, UserId};

/// A stored batch as each kind of connection takes it.
#[derive(Debug, Clone)]
pub struct Frames {
    /// The `serverMessages` WebSocket frame.
    pub ws: Bytes,
    /// The line port's `[room] user: text` lines; empty when the line port is off.
    pub lines: Bytes,
}

impl Frame for Frames {
    fn held_bytes(&self) -> usize {
        self.ws.len() + self.lines.len()
    }
}

/// A question one core asks another ([`CrossCore::Ask`]).
pub enum Query {
    /// The names of this core's connections in a room.
    Who { room: usize },
    /// Take guest name `key` (lower case) for `holder` if nobody holds it.
    ClaimNick {
        key: String,
        holder: (usize, ConnId),
    },
}

/// The answer to a [`Query`].
pub enum Answer {
    Names(Vec<String>),
    Claimed(bool),
}

/// What cores tell each other.
pub enum CrossCore {
    /// To a room's owner: store and broadcast this post.
    Post {
        room: usize,
        post: Post,
    },
    /// From a room's owner to every other core: a stored batch's frames.
    Broadcast {
        room: usize,
        last_id: MessageId,
        frames: Frames,
    },
    /// From a room's owner to the post's core: the post was not stored.
    Refused {
        conn: ConnId,
        error: EventError,
    },
    /// A question; answered with `Answer { ask, .. }` to core `from`.
    Ask {
        from: usize,
        ask: u64,
        query: Query,
    },
    Answer {
        ask: u64,
        answer: Answer,
    },
    /// To a guest name's owner core: `holder` gave the name up.
    ReleaseNick {
        key: String,
        holder: (usize, ConnId),
    },
}

/// What the hub needs of a local connection: a place to put what it is sent.
pub trait Recipient {
    /// Queues a stored batch (the form its protocol speaks); false when the connection is gone
    /// or was cut as a slow consumer.
    fn deliver(&self, frames: &Frames) -> bool;
    /// Queues an error about something the connection did; false as for `deliver`.
    fn error(&self, error: &EventError) -> bool;
    /// The hub cut the connection (it could not keep up while its hello was pending).
    fn cut(&self);
    /// The server is shutting down: say goodbye and close.
    fn going_away(&self);
}

/// A local connection: where its deliveries go, and who it is (for posts and `/who`).
struct Entry {
    recipient: Rc<dyn Recipient>,
    user: User,
}

/// How long one `XREAD BLOCK` of the bus waits before asking again.
pub const BUS_BLOCK_MS: u64 = 5_000;
/// Entries one bus read takes per room at most.
pub const BUS_READ_ENTRIES_MAX: usize = 512;
/// The first pause after the bus failed (doubling up to [`BUS_RETRY_MAX_MS`]).
pub const BUS_RETRY_MIN_MS: u64 = 50;
pub const BUS_RETRY_MAX_MS: u64 = 2_000;
/// Authors kept by a core for the bus's messages.
pub const AUTHORS_CACHED_MAX: usize = 100_000;

/// How long a question to other cores waits for their answers.
pub const ASK_TIMEOUT_MS: u64 = 1000;

/// A question in flight: the answers so far, and how many are still due.
struct Asked {
    answers: RefCell<Vec<Answer>>,
    due: Cell<usize>,
    done: Notify,
}

pub struct Hub {
    rooms: Arc<Rooms>,
    core: usize,
    cores: usize,
    store: Store,
    mesh: RefCell<MeshEndpoint<CrossCore>>,
    subscribers: RefCell<Subscribers<Frames>>,
    sequencer: RefCell<Sequencer>,
    conns: RefCell<HashMap<ConnId, Entry>>,
    /// Every core's metrics; this core's `chat_connections` is `conns`' size.
    metrics: Arc<[CoreMetrics]>,
    /// Whether stored batches are also encoded as the line port's lines.
    lines: bool,
    /// Guest names this core owns (by hash), lower case, and who holds each.
    nicks: RefCell<HashMap<String, (usize, ConnId)>>,
    asks: RefCell<HashMap<u64, Rc<Asked>>>,
    next_ask: Cell<u64>,
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
    /// The hub itself, for tasks spawned from `&self`.
    me: std::rc::Weak<Hub>,
    /// Authors of messages read from the bus, by id (names never change); at most
    /// [`AUTHORS_CACHED_MAX`], emptied when full.
    authors: RefCell<HashMap<UserId, User>>,
    /// Posts may be stored: there is no bus, or its reader has read where to start.
    bus_ready: Cell<bool>,
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
    /// sequencer's driver). `lines`: the line port is on, so batches are encoded for it too.
    pub fn start(
        rooms: Arc<Rooms>,
        store: Store,
        mesh: MeshEndpoint<CrossCore>,
        lines: bool,
        metrics: Arc<[CoreMetrics]>,
    ) -> Rc<Hub> {
        let (core, cores) = (mesh.core(), mesh.cores());
        let hub = Rc::new_cyclic(|me| Hub {
            me: me.clone(),
            authors: RefCell::new(HashMap::new()),
            bus_ready: Cell::new(store.bus().is_none()),
            subscribers: RefCell::new(Subscribers::new(rooms.len(), OUTBOX_BYTES_MAX_DEFAULT)),
            sequencer: RefCell::new(Sequencer::new(rooms.len(), core, cores)),
            rooms,
            core,
            cores,
            store,
            mesh: RefCell::new(mesh),
            conns: RefCell::new(HashMap::new()),
            lines,
            nicks: RefCell::new(HashMap::new()),
            asks: RefCell::new(HashMap::new()),
            next_ask: Cell::new(0),
            shown: RefCell::new(HashMap::new()),
            next_conn: Cell::new(0),
            batches: Notify::new(),
            hellos: tokio::sync::Semaphore::new(hello_turns(cores)),
            metrics,
        });
        rt::spawn(hub.clone().pump());
        rt::spawn(hub.clone().drive_sequencer());
        if let Some(config) = hub.store.bus().cloned() {
            rt::spawn(hub.clone().read_bus(config));
        }
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

    /// Registers a WebSocket connection of `user`, pending its `hello` in every room.
    pub fn join(&self, recipient: Rc<dyn Recipient>, user: User) -> ConnId {
        let id = self.register(recipient, user);
        let all: Vec<usize> = (0..self.rooms.len()).collect();
        self.subscribers.borrow_mut().join(id, &all);
        id
    }

    /// Registers a connection of `user` in no room yet (see [`Hub::subscribe`]).
    pub fn register(&self, recipient: Rc<dyn Recipient>, user: User) -> ConnId {
        let id = ConnId(self.next_conn.get());
        self.next_conn.set(id.0 + 1);
        self.conns
            .borrow_mut()
            .insert(id, Entry { recipient, user });
        self.count_connections();
        id
    }

    /// Publishes the number of registered connections (the `chat_connections` gauge).
    fn count_connections(&self) {
        let n = self.conns.borrow().len() as u64;
        self.metrics[self.core]
            .chat_connections
            .store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Makes `rooms` the rooms of registered connection `conn` (instead of those it was in),
    /// pending until [`Hub::hello_sent`] says what it was shown of them.
    pub fn subscribe(&self, conn: ConnId, rooms: &[usize]) {
        let mut subscribers = self.subscribers.borrow_mut();
        subscribers.leave(conn);
        self.shown.borrow_mut().remove(&conn);
        subscribers.join(conn, rooms);
    }

    /// The user `conn` posts as now (a guest's name changes with `/nick`).
    pub fn set_user(&self, conn: ConnId, user: User) {
        if let Some(entry) = self.conns.borrow_mut().get_mut(&conn) {
            entry.user = user;
        }
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
        if let Ok(held) = held {
            for frames in held {
                self.deliver_to(conn, &frames);
            }
        }
    }

    pub fn leave(&self, conn: ConnId) {
        self.subscribers.borrow_mut().leave(conn);
        self.conns.borrow_mut().remove(&conn);
        self.count_connections();
        self.shown.borrow_mut().remove(&conn);
    }

    /// The core is draining: every chat connection starts its close handshake (1001), so
    /// clients reconnect elsewhere instead of holding the shutdown until its timeout.
    pub fn going_away(&self) {
        let recipients: Vec<Rc<dyn Recipient>> = self
            .conns
            .borrow()
            .values()
            .map(|e| e.recipient.clone())
            .collect();
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

    /// Posts `contents` from `conn`'s user to room `room`; the acknowledgement is the
    /// broadcast, a failure an error.
    pub fn post(&self, conn: ConnId, room: usize, contents: Vec<String>) {
        let Some(user) = self.conns.borrow().get(&conn).map(|e| e.user.clone()) else {
            return;
        };
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

    /// Sends an error to a local connection.
    pub fn tell(&self, conn: ConnId, error: &EventError) {
        let recipient = self.recipient(conn);
        if let Some(r) = recipient
            && !r.error(error)
        {
            self.leave(conn);
        }
    }

    fn recipient(&self, conn: ConnId) -> Option<Rc<dyn Recipient>> {
        self.conns.borrow().get(&conn).map(|e| e.recipient.clone())
    }

    fn deliver_to(&self, conn: ConnId, frames: &Frames) {
        let recipient = self.recipient(conn);
        if let Some(r) = recipient
            && !r.deliver(frames)
        {
            self.leave(conn);
        }
    }

    /// Hands a stored batch's frames to this core's subscribers of `room`.
    fn fan_out_locally(&self, room: usize, last_id: MessageId, frames: &Frames) {
        let (ready, cut) = {
            let mut subscribers = self.subscribers.borrow_mut();
            let fanout = subscribers.broadcast(room, last_id, frames);
            (fanout.ready.to_vec(), fanout.cut)
        };
        // Watermarks exist only for connections whose hello was recent: skip the per-recipient
        // lookup entirely when there are none (nearly always).
        let marks = !self.shown.borrow().is_empty();
        for conn in ready {
            if !(marks && self.already_shown(conn, room, last_id)) {
                self.deliver_to(conn, frames);
            }
        }
        for conn in cut {
            let entry = self.conns.borrow_mut().remove(&conn);
            self.count_connections();
            self.shown.borrow_mut().remove(&conn);
            if let Some(e) = entry {
                e.recipient.cut();
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
                        frames,
                    } => self.fan_out_locally(room, last_id, &frames),
                    CrossCore::Refused { conn, error } => self.tell(conn, &error),
                    CrossCore::Ask { from, ask, query } => {
                        let answer = self.answer(query);
                        rt::spawn(
                            self.clone()
                                .send_to(from, CrossCore::Answer { ask, answer }),
                        );
                    }
                    CrossCore::Answer { ask, answer } => self.answered(ask, answer),
                    CrossCore::ReleaseNick { key, holder } => self.release_local(&key, holder),
                }
            }
        }
    }

    /// Starts every batch the sequencer has ready, each as its own task (one per room at most).
    async fn drive_sequencer(self: Rc<Self>) {
        // With the bus, nothing is stored before the bus reader knows where its rooms' streams
        // end: a message stored before that read would be taken for history and never
        // delivered (its sender would never see it acknowledged).
        while !self.bus_ready.get() {
            self.batches.notified().await;
        }
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
            Ok(stored) if self.store.bus().is_some() => {
                // Delivered when the room's bus reader reads it back, in the stream's order
                // with every other instance's messages; its authors are remembered for that.
                for post in &stored.posts {
                    self.remember(&post.user);
                }
            }
            Ok(stored) => {
                let last_id = stored.last_id();
                let frames = self.encode(&room_id, &stored.shown());
                self.broadcast(room, last_id, frames).await;
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
    async fn broadcast(&self, room: usize, last_id: MessageId, frames: Frames) {
        self.fan_out_locally(room, last_id, &frames);
        for to in (0..self.cores).filter(|&c| c != self.core) {
            let item = CrossCore::Broadcast {
                room,
                last_id,
                frames: frames.clone(),
            };
            self.send_waiting(to, item).await;
        }
        self.mesh.borrow_mut().flush();
    }

    /// Sends `item` to core `to`, waiting out a full ring (unless that core is gone); the
    /// caller flushes.
    async fn send_waiting(&self, to: usize, mut item: CrossCore) {
        loop {
            let sent = self.mesh.borrow_mut().try_send(to, item);
            match sent {
                Ok(()) => return,
                Err(full) => {
                    if self.mesh.borrow().peer_gone(to) {
                        return;
                    }
                    item = full.0;
                    self.mesh.borrow_mut().flush();
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    /// Sends one item and flushes (a task of its own when sent from the pump).
    async fn send_to(self: Rc<Self>, to: usize, item: CrossCore) {
        self.send_waiting(to, item).await;
        self.mesh.borrow_mut().flush();
    }

    /// The names of this core's connections in `room`, pending or not (the WebSocket's are in
    /// every room; the line port's in their current one).
    fn local_names(&self, room: usize) -> Vec<String> {
        let subscribers = self.subscribers.borrow();
        let conns = self.conns.borrow();
        subscribers
            .recipients(room)
            .iter()
            .chain(subscribers.pending(room))
            .filter_map(|c| conns.get(c).map(|e| e.user.username.clone()))
            .collect()
    }

    /// Remembers a user's name for the bus's messages.
    fn remember(&self, user: &User) {
        if user.id == GUEST_USER_ID {
            return;
        }
        let mut authors = self.authors.borrow_mut();
        if authors.len() >= AUTHORS_CACHED_MAX && !authors.contains_key(&user.id) {
            authors.clear();
        }
        authors.insert(user.id, user.clone());
    }

    /// The author of each entry: guests by their stored name, accounts from the cache or, for
    /// those not in it, one store query.
    async fn authors_of(&self, entries: &[StoredMessage]) -> Result<Vec<User>, StoreError> {
        let mut missing: Vec<UserId> = {
            let authors = self.authors.borrow();
            entries
                .iter()
                .filter(|m| m.guest.is_none() && m.user_id != GUEST_USER_ID)
                .map(|m| m.user_id)
                .filter(|id| !authors.contains_key(id))
                .collect()
        };
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let found = self.store.users_by_ids(&missing).await?;
            for user in &found {
                self.remember(user);
            }
            for id in missing {
                if !found.iter().any(|u| u.id == id) {
                    // A deleted account shows as "", as in history.
                    self.remember(&User {
                        id,
                        username: String::new(),
                    });
                }
            }
        }
        let authors = self.authors.borrow();
        Ok(entries
            .iter()
            .map(|m| match &m.guest {
                Some(name) => crate::chat::line::guest_user(name),
                None => authors.get(&m.user_id).cloned().unwrap_or(User {
                    id: m.user_id,
                    username: String::new(),
                }),
            })
            .collect())
    }

    /// Delivers, in stream order, every message of the rooms this core owns, whichever
    /// instance stored it: one dedicated connection reading the room streams with
    /// `XREAD BLOCK`, each from the last id it delivered, so a reconnect resumes exactly where
    /// it stopped (nothing lost, nothing twice). It starts after each room's newest message at
    /// start-up (older ones are history, which `hello` shows). Each message is its own frame:
    /// a frame's messages must all be on one side of any `hello`'s newest id (see
    /// `Subscribers`), and messages read together may come from different instances' batches.
    async fn read_bus(self: Rc<Self>, config: RedisConfig) {
        let owned: Vec<usize> = (0..self.rooms.len())
            .filter(|&r| Rooms::owner(r, self.cores) == self.core)
            .collect();
        if owned.is_empty() {
            self.bus_ready.set(true);
            return;
        }
        let mut backoff = BUS_RETRY_MIN_MS;
        fn failed(backoff: &mut u64, what: &str, e: &StoreError) -> Duration {
            tracing::warn!("bus: {what}: {e}; retrying in {backoff} ms");
            let pause = Duration::from_millis(*backoff);
            *backoff = (*backoff * 2).min(BUS_RETRY_MAX_MS);
            pause
        }
        let mut last = Vec::with_capacity(owned.len());
        for &room in &owned {
            loop {
                let id = &self.rooms.all()[room].id;
                match self.store.newest_messages(id, 1).await {
                    Ok(page) => {
                        last.push(page.first().map_or(MessageId { ms: 0, seq: 0 }, |m| m.id));
                        break;
                    }
                    Err(e) => {
                        tokio::time::sleep(failed(&mut backoff, "reading where to start", &e)).await
                    }
                }
            }
        }
        self.bus_ready.set(true);
        self.batches.notify_one();
        let mut reader = StreamReader::new(&config);
        loop {
            let streams: Vec<(&str, MessageId)> = owned
                .iter()
                .zip(&last)
                .map(|(&room, &id)| (self.rooms.all()[room].id.as_str(), id))
                .collect();
            let read = reader
                .read(
                    &streams,
                    Duration::from_millis(BUS_BLOCK_MS),
                    BUS_READ_ENTRIES_MAX,
                )
                .await;
            let batches = match read {
                Ok(batches) => batches,
                Err(e) => {
                    // The reader itself waits out its backoff before reconnecting.
                    tracing::warn!("bus: reading the room streams: {e}");
                    continue;
                }
            };
            drop(streams);
            for read in batches {
                let (i, entries) = (read.index, read.messages);
                let room = owned[i];
                let authors = match self.authors_of(&entries).await {
                    Ok(authors) => authors,
                    Err(e) => {
                        // Not delivered yet: read again from the same id after the pause.
                        tokio::time::sleep(failed(&mut backoff, "looking up authors", &e)).await;
                        break;
                    }
                };
                backoff = BUS_RETRY_MIN_MS;
                let room_id = &self.rooms.all()[room].id;
                for (m, user) in entries.iter().zip(&authors) {
                    if m.id <= last[i] {
                        continue;
                    }
                    let shown = [ShownMessage {
                        id: m.id,
                        content: &m.content,
                        user,
                        timestamp_ms: m.timestamp_ms,
                    }];
                    let frames = self.encode(room_id, &shown);
                    last[i] = m.id;
                    self.broadcast(room, m.id, frames).await;
                }
                // Entries that were not messages (skipped by the reader) are passed too.
                last[i] = last[i].max(read.last_id);
            }
        }
    }

    /// A batch's frames for every kind of connection.
    fn encode(&self, room_id: &str, shown: &[ShownMessage<'_>]) -> Frames {
        let json = encode_server_messages(room_id, shown);
        let text = String::from_utf8(json).expect("JSON is UTF-8");
        Frames {
            ws: Bytes::from(encode_text_frame(&text)),
            lines: if self.lines {
                Bytes::from(crate::chat::line::messages(room_id, shown))
            } else {
                Bytes::new()
            },
        }
    }

    /// Who is connected to `room` now on every core: each name once, sorted.
    pub async fn who(&self, room: usize) -> Vec<String> {
        let mut names = self.local_names(room);
        for answer in self.ask_others(|| Query::Who { room }).await {
            if let Answer::Names(more) = answer {
                names.extend(more);
            }
        }
        names.sort_unstable_by(|a, b| a.to_lowercase().cmp(&b.to_lowercase()).then(a.cmp(b)));
        names.dedup();
        names
    }

    /// The core that keeps who holds guest name `key`.
    fn nick_owner(&self, key: &str) -> usize {
        // FNV-1a: stable across cores and runs, no seed.
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        (hash % self.cores as u64) as usize
    }

    /// Takes guest name `key` (lower case) for local connection `conn`: true when it was free
    /// (or already `conn`'s). False too when its owner core does not answer in time.
    pub async fn claim_nick(&self, key: &str, conn: ConnId) -> bool {
        let holder = (self.core, conn);
        let owner = self.nick_owner(key);
        if owner == self.core {
            return self.claim_local(key, holder);
        }
        let answers = self
            .ask(&[owner], |_| Query::ClaimNick {
                key: key.to_string(),
                holder,
            })
            .await;
        match answers.first() {
            Some(Answer::Claimed(claimed)) => *claimed,
            _ => {
                // No answer in time: the claim may still land later; give it back so the name
                // is not held by nobody's connection.
                self.release_nick(key, conn);
                false
            }
        }
    }

    /// Gives up guest name `key` held by local connection `conn`.
    pub fn release_nick(&self, key: &str, conn: ConnId) {
        let holder = (self.core, conn);
        let owner = self.nick_owner(key);
        if owner == self.core {
            self.release_local(key, holder);
        } else {
            let item = CrossCore::ReleaseNick {
                key: key.to_string(),
                holder,
            };
            rt::spawn(self.self_rc().send_to(owner, item));
        }
    }

    fn claim_local(&self, key: &str, holder: (usize, ConnId)) -> bool {
        let mut nicks = self.nicks.borrow_mut();
        match nicks.get(key) {
            Some(&h) => h == holder,
            None => {
                nicks.insert(key.to_string(), holder);
                true
            }
        }
    }

    fn release_local(&self, key: &str, holder: (usize, ConnId)) {
        let mut nicks = self.nicks.borrow_mut();
        if nicks.get(key) == Some(&holder) {
            nicks.remove(key);
        }
    }

    fn answer(&self, query: Query) -> Answer {
        match query {
            Query::Who { room } => Answer::Names(self.local_names(room)),
            Query::ClaimNick { key, holder } => Answer::Claimed(self.claim_local(&key, holder)),
        }
    }

    fn answered(&self, ask: u64, answer: Answer) {
        let asked = self.asks.borrow().get(&ask).cloned();
        if let Some(asked) = asked {
            asked.answers.borrow_mut().push(answer);
            asked.due.set(asked.due.get().saturating_sub(1));
            if asked.due.get() == 0 {
                asked.done.notify_one();
            }
        }
    }

    /// Asks every other core; the answers that came within [`ASK_TIMEOUT_MS`].
    async fn ask_others(&self, query: impl Fn() -> Query) -> Vec<Answer> {
        let others: Vec<usize> = (0..self.cores).filter(|&c| c != self.core).collect();
        self.ask(&others, |_| query()).await
    }

    /// Asks each core of `cores`; the answers that came within [`ASK_TIMEOUT_MS`].
    async fn ask(&self, cores: &[usize], query: impl Fn(usize) -> Query) -> Vec<Answer> {
        if cores.is_empty() {
            return Vec::new();
        }
        let ask = self.next_ask.get();
        self.next_ask.set(ask + 1);
        let asked = Rc::new(Asked {
            answers: RefCell::new(Vec::new()),
            due: Cell::new(cores.len()),
            done: Notify::new(),
        });
        self.asks.borrow_mut().insert(ask, asked.clone());
        for &to in cores {
            let item = CrossCore::Ask {
                from: self.core,
                ask,
                query: query(to),
            };
            self.send_waiting(to, item).await;
        }
        self.mesh.borrow_mut().flush();
        let wait =
            tokio::time::timeout(Duration::from_millis(ASK_TIMEOUT_MS), asked.done.notified());
        if asked.due.get() > 0 && wait.await.is_err() {
            tracing::warn!(ask, due = asked.due.get(), "cores did not answer in time");
        }
        self.asks.borrow_mut().remove(&ask);
        asked.answers.take()
    }

    fn self_rc(&self) -> Rc<Hub> {
        self.me
            .upgrade()
            .expect("the hub lives as long as its core")
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
