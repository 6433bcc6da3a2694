//! The WebSocket connection driver: what a connection becomes after its `101 Switching
//! Protocols`. It feeds the socket's bytes to the sans-I/O engine
//! ([`crate::proto::ws::WsConnection`]), hands whole messages to the endpoint's handler, and
//! writes the engine's control frames and the handler's data frames.
//!
//! Two loops share the connection on its core, joined in one task: the **reader** reads,
//! decodes and runs the handler; the **writer** waits until there is something to send (or the
//! heartbeat is due) and sends everything pending in one vectored write per turn, control frames
//! first. Data frames wait in the connection's [`Outbox`], whose byte budget (`--ws-max-message`
//! times [`OUTBOX_MESSAGES_BUDGET`]) bounds memory: a client that does not read is closed with
//! 1008 "slow consumer" instead of growing a queue, and its socket is shut down within
//! [`SLOW_CONSUMER_CLOSE_WITHIN_MS`] even when a write is stuck on it.
//!
//! **Heartbeat and idle timeout.** The writer sends a ping every `--ws-ping-interval`. Every
//! read (data, pong or anything else) pushes the connection's deadline to `--ws-idle-timeout`
//! from now; a client that sends nothing, not even the pongs that browsers answer
//! automatically, reaches it, and `rt` shuts the socket down. After either side's close frame
//! the deadline shrinks to [`CLOSE_WAIT_MS`], for the peer to answer and hang up.
//!
//! Endpoints: `/api/ws`, the chat: authenticated by the upgrade request's `sid` cookie after
//! the handshake (close 1008 when the session is missing, unknown or expired, as the reference
//! does), then `hello`, then events both ways through the core's [`Hub`]. `/api/ws-echo` (only
//! with `--ws-echo`, for the Autobahn conformance suite) echoes every message.
//!
//! Not here: permessage-deflate or any extension, subprotocols.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use super::Core;
use super::chat::{Frames, Hub, Recipient};
use super::history::{self, Authors};
use super::metrics::CoreMetrics;
use crate::chat::events::{
    ClientEvent, EventError, HelloRoom, decode_client_event, encode_error, encode_hello,
    encode_room_history,
};
use crate::chat::outbox::{
    OUTBOX_WRITE_BYTES_MAX, Outbox, SLOW_CONSUMER_CLOSE_CODE, SLOW_CONSUMER_CLOSE_WITHIN_MS,
    SLOW_CONSUMER_REASON,
};
use crate::chat::subscribers::ConnId;
use crate::proto::ws::{
    CloseCode, Event, State, WS_SERVER_FRAME_HEADER_BYTES_MAX, WsConnection, encode_binary,
    encode_text, encode_text_frame,
};
use crate::rt::Conn;
use crate::store::{HISTORY_PAGE_MESSAGES_MAX, MessageId, StoreError, User};

/// An outbox holds at most this many maximum-size messages' worth of bytes.
pub const OUTBOX_MESSAGES_BUDGET: usize = 16;
/// After a close frame is sent or received, how long the peer has to finish and hang up.
pub const CLOSE_WAIT_MS: u64 = 1000;
/// Read buffer growth step.
pub const WS_READ_CHUNK_BYTES: usize = 16 * 1024;
/// The read buffer of a connection whose last read was small and left nothing buffered: an
/// idle chat connection waits on this much memory, not on [`WS_READ_CHUNK_BYTES`].
pub const WS_IDLE_READ_BYTES: usize = 256;
/// Small reads in a row before a grown read buffer is given back (so a connection whose
/// messages straddle [`WS_IDLE_READ_BYTES`] does not shrink and grow on every read).
pub const WS_SMALL_READS_BEFORE_SHRINK: u8 = 4;

/// What the upgraded connection serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Echo every message back (the Autobahn suite's test server).
    Echo,
    /// The chat (`/api/ws`), with the upgrade request's `sid` cookie.
    Chat { sid: Option<String> },
}

/// The WebSocket settings, from the command line.
#[derive(Debug, Clone)]
pub struct WsSettings {
    pub message_bytes_max: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub allowed_origins: crate::proto::ws::AllowedOrigins,
    pub echo: bool,
    /// Longest chat message, in characters (`--max-message-chars`).
    pub message_chars_max: usize,
}

struct Shared {
    ws: RefCell<WsConnection>,
    outbox: RefCell<Outbox>,
    wake: Notify,
    /// The reader has stopped (end of stream, error, or the engine is closed).
    reader_done: Cell<bool>,
    /// When the connection dies if nothing more arrives.
    idle_deadline: Cell<Instant>,
    /// A write is in flight (its send deadline is in force).
    writing: Cell<bool>,
    /// Set when the connection was cut as a slow consumer: it ends by then, at the latest,
    /// whatever else moves its deadline.
    cut_by: Cell<Option<Instant>>,
    /// Wakes the writer out of a write stuck on a full socket when the connection is cut.
    cut_wake: Notify,
    /// Every core's metrics and this core's index (for the slow-consumer counter).
    metrics: (Arc<[CoreMetrics]>, usize),
}

impl Recipient for Shared {
    fn deliver(&self, frames: &Frames) -> bool {
        let open = queue(self, frames.ws.clone());
        self.wake.notify_one();
        open
    }

    fn error(&self, error: &EventError) -> bool {
        let text = String::from_utf8(encode_error(error)).expect("JSON is UTF-8");
        let open = queue(self, Bytes::from(encode_text_frame(&text)));
        self.wake.notify_one();
        open
    }

    fn cut(&self) {
        // Cut while its hello was pending.
        cut_slow_consumer(self);
        self.wake.notify_one();
    }

    fn going_away(&self) {
        self.ws
            .borrow_mut()
            .close(CloseCode::Away, "server shutting down");
        self.wake.notify_one();
    }
}

/// A chat connection's identity on its core (its user is kept by the hub).
struct Member {
    conn: ConnId,
}

/// Serves an upgraded connection until it ends. `input` holds bytes that arrived after the
/// upgrade request's head.
pub(super) async fn serve(core: &Core, conn: &Conn, input: Vec<u8>, endpoint: Endpoint) {
    let settings = core.ws_settings();
    let shared = Rc::new(Shared {
        ws: RefCell::new(WsConnection::new(settings.message_bytes_max)),
        outbox: RefCell::new(Outbox::new(
            settings
                .message_bytes_max
                .saturating_mul(OUTBOX_MESSAGES_BUDGET)
                .max(OUTBOX_WRITE_BYTES_MAX),
        )),
        wake: Notify::new(),
        reader_done: Cell::new(false),
        idle_deadline: Cell::new(Instant::now() + settings.idle_timeout),
        writing: Cell::new(false),
        cut_by: Cell::new(None),
        cut_wake: Notify::new(),
        metrics: (core.all_metrics.clone(), core.info.index),
    });
    conn.set_idle(false);
    conn.set_deadline(Some(shared.idle_deadline.get()));
    let member = match &endpoint {
        Endpoint::Echo => None,
        // Boxed (as a history request is): its state is large and needed only for a moment, and
        // an unboxed one would be part of every connection's task for its whole life.
        Endpoint::Chat { sid } => Box::pin(chat_open(core, &shared, sid.as_deref())).await,
    };
    tokio::join!(
        read_loop(core, conn, &shared, input, member.as_ref()),
        write_loop(core, conn, &shared)
    );
    if let Some(member) = member {
        core.hub().leave(member.conn);
    }
}

/// Authenticates a chat connection by its session and sends its `hello`; on failure queues the
/// close (1008 for a missing or dead session, 1011 when the store cannot answer).
async fn chat_open(core: &Core, shared: &Rc<Shared>, sid: Option<&str>) -> Option<Member> {
    let hub = core.hub();
    let store = hub.store();
    let _turn = hub.hello_turn().await;
    let user = match sid.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(sid) => match store.session_user(sid).await {
            Ok(Some(id)) => store.user_by_id(id).await,
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        },
    };
    let user = match user {
        Ok(Some(user)) => user,
        Ok(None) => {
            shared
                .ws
                .borrow_mut()
                .close(CloseCode::Policy, "authentication failed");
            return None;
        }
        Err(e) => {
            tracing::warn!("chat connection: {e}");
            shared
                .ws
                .borrow_mut()
                .close(CloseCode::Error, "storage unavailable");
            return None;
        }
    };
    let recipient: Rc<dyn Recipient> = shared.clone();
    let conn = hub.join(recipient, user.clone());
    match build_hello(hub, &user).await {
        Ok((frame, newest)) => {
            queue(shared, frame);
            hub.hello_sent(conn, &newest);
            Some(Member { conn })
        }
        Err(e) => {
            tracing::warn!("chat hello: {e}");
            hub.leave(conn);
            shared
                .ws
                .borrow_mut()
                .close(CloseCode::Error, "storage unavailable");
            None
        }
    }
}

/// The `hello` frame, and each room's newest id in it.
async fn build_hello(
    hub: &Hub,
    me: &User,
) -> Result<(Bytes, Vec<(usize, Option<MessageId>)>), StoreError> {
    let store = hub.store();
    let mut pages = Vec::with_capacity(hub.rooms().len());
    for room in hub.rooms().all() {
        pages.push(history::page(store, &room.id, None, HISTORY_PAGE_MESSAGES_MAX).await?);
    }
    let authors = Authors::of(store, pages.iter().flat_map(|(p, _)| p.iter())).await?;
    let rooms: Vec<HelloRoom<'_>> = hub
        .rooms()
        .all()
        .iter()
        .zip(&pages)
        .map(|(room, (page, has_more))| HelloRoom {
            id: &room.id,
            name: &room.name,
            has_more: *has_more,
            messages: authors.shown(page),
        })
        .collect();
    let json = encode_hello(me, &rooms);
    let newest = pages
        .iter()
        .enumerate()
        .map(|(i, (page, _))| (i, page.first().map(|m| m.id)))
        .collect();
    let text = String::from_utf8(json).expect("JSON is UTF-8");
    Ok((Bytes::from(encode_text_frame(&text)), newest))
}

/// One client message on a chat connection.
async fn chat_event(core: &Core, shared: &Shared, member: &Member, event: Event) {
    let hub = core.hub();
    let text = match event {
        Event::Text(text) => text,
        Event::Binary(_) => {
            shared
                .ws
                .borrow_mut()
                .close(CloseCode::Unsupported, "chat events are text frames");
            return;
        }
        Event::Close { .. } => return,
    };
    let settings = core.ws_settings();
    match decode_client_event(&text, hub.rooms(), settings.message_chars_max) {
        Err(error) => hub.tell(member.conn, &error),
        Ok(ClientEvent::Messages { room, contents }) => {
            hub.post(member.conn, room, contents);
        }
        // Boxed: the only arm that awaits, with the largest state; posting stays allocation-free.
        Ok(ClientEvent::History { room, before }) => {
            Box::pin(room_history(hub, shared, member, room, before)).await
        }
    }
}

/// Answers `requestRoomHistory`: the page older than `before`, or an error event
/// `HISTORY_UNAVAILABLE` (distinct from a post's `STORE_UNAVAILABLE`, so a client knows its
/// history request, not a message, failed).
async fn room_history(hub: &Hub, shared: &Shared, member: &Member, room: usize, before: MessageId) {
    let room_id = &hub.rooms().all()[room].id;
    let store = hub.store();
    let answer = async {
        let (page, has_more) =
            history::page(store, room_id, Some(before), HISTORY_PAGE_MESSAGES_MAX).await?;
        let authors = Authors::of(store, page.iter()).await?;
        Ok::<_, StoreError>(encode_room_history(
            room_id,
            &authors.shown(&page),
            has_more,
        ))
    };
    match answer.await {
        Ok(json) => {
            let text = String::from_utf8(json).expect("JSON is UTF-8");
            queue(shared, Bytes::from(encode_text_frame(&text)));
            shared.wake.notify_one();
        }
        Err(e) => {
            tracing::warn!("room history: {e}");
            hub.tell(member.conn, &EventError::history_unavailable());
        }
    }
}

fn set_idle_deadline(conn: &Conn, shared: &Shared, deadline: Instant) {
    let deadline = shared
        .cut_by
        .get()
        .map_or(deadline, |cut| cut.min(deadline));
    shared.idle_deadline.set(deadline);
    if !shared.writing.get() {
        conn.set_deadline(Some(deadline));
    }
}

/// A close frame went one way or the other: the peer has [`CLOSE_WAIT_MS`] to finish.
fn close_soon(conn: &Conn, shared: &Shared) {
    let close_by = Instant::now() + Duration::from_millis(CLOSE_WAIT_MS);
    if close_by < shared.idle_deadline.get() {
        set_idle_deadline(conn, shared, close_by);
    }
}

async fn read_loop(
    core: &Core,
    conn: &Conn,
    shared: &Shared,
    mut input: Vec<u8>,
    member: Option<&Member>,
) {
    let settings = core.ws_settings();
    let metrics = core.metrics();
    // Reads in a row that brought less than WS_IDLE_READ_BYTES (the upgrade counts as many).
    let mut small_reads = WS_SMALL_READS_BEFORE_SHRINK;
    loop {
        // Decode everything buffered; the engine stops at its event limit, so loop until it
        // uses nothing.
        loop {
            // On an error the engine has queued the close frame with the error's code.
            let used = shared
                .ws
                .borrow_mut()
                .handle_input(&input)
                .unwrap_or_default();
            input.drain(..used);
            let mut handled = false;
            loop {
                let event = shared.ws.borrow_mut().poll_event();
                let Some(event) = event else { break };
                handled = true;
                match member {
                    Some(member) => chat_event(core, shared, member, event).await,
                    None => echo(shared, event),
                }
            }
            if used == 0 && !handled {
                break;
            }
        }
        shared.wake.notify_one();
        let state = shared.ws.borrow().state();
        if matches!(state, State::Closed | State::Failed) {
            close_soon(conn, shared);
            discard_when_finished(state, &mut input);
            // Input that never pauses (a flood after the error) would keep this loop from
            // yielding: let the writer send the close now, and stop reading at the close wait
            // even if the socket always has more.
            tokio::task::yield_now().await;
            if Instant::now() >= shared.idle_deadline.get() {
                break;
            }
        }
        if input.is_empty()
            && small_reads >= WS_SMALL_READS_BEFORE_SHRINK
            && input.capacity() > WS_IDLE_READ_BYTES
        {
            input = Vec::with_capacity(WS_IDLE_READ_BYTES);
        } else if input.len() == input.capacity() {
            input.reserve(WS_READ_CHUNK_BYTES);
        }
        let (result, buf) = conn.read(input).await;
        input = buf;
        match result {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                small_reads = if n < WS_IDLE_READ_BYTES {
                    small_reads.saturating_add(1)
                } else {
                    0
                };
                CoreMetrics::add(&metrics.bytes_in, n as u64);
                if shared.ws.borrow().state() == State::Open {
                    set_idle_deadline(conn, shared, Instant::now() + settings.idle_timeout);
                }
            }
        }
    }
    shared.reader_done.set(true);
    shared.wake.notify_one();
}

/// Drops the unread input of a connection whose engine has closed or failed: the engine will
/// never use it, and keeping it would let a client that floods after its close or its error
/// (a million tiny fragments behind the one over the limit) grow the read buffer at the
/// speed of the network until [`CLOSE_WAIT_MS`] ends the connection. RFC 6455 §7.1.7: "An
/// endpoint MUST NOT continue to attempt to process data (including a responding Close frame)
/// from the remote endpoint after being instructed to _Fail the WebSocket Connection_."
fn discard_when_finished(state: State, input: &mut Vec<u8>) {
    if matches!(state, State::Closed | State::Failed) {
        input.clear();
    }
}

/// The echo endpoint, for one client message. (A chat connection that failed to open also
/// lands here with its close queued; the engine then gives no more messages.)
fn echo(shared: &Shared, event: Event) {
    match event {
        Event::Close { .. } => {}
        Event::Text(text) => {
            let mut frame = Vec::with_capacity(text.len() + WS_SERVER_FRAME_HEADER_BYTES_MAX);
            encode_text(&text, &mut frame);
            queue(shared, Bytes::from(frame));
        }
        Event::Binary(data) => {
            let mut frame = Vec::with_capacity(data.len() + WS_SERVER_FRAME_HEADER_BYTES_MAX);
            encode_binary(&data, &mut frame);
            queue(shared, Bytes::from(frame));
        }
    }
}

/// Queues a data frame, or closes the connection as a slow consumer when its outbox is full;
/// false when the connection takes no more data.
fn queue(shared: &Shared, frame: Bytes) -> bool {
    if !shared.ws.borrow().is_open() {
        return false;
    }
    if shared.outbox.borrow_mut().push(frame).is_err() {
        cut_slow_consumer(shared);
        return false;
    }
    true
}

/// Closes the connection with 1008 "slow consumer" and gives it
/// [`SLOW_CONSUMER_CLOSE_WITHIN_MS`] to end: the writer, even if stuck in a write the client
/// does not read, moves the socket's deadline there, and no later read or close frame moves it
/// back.
fn cut_slow_consumer(shared: &Shared) {
    shared.ws.borrow_mut().close(
        CloseCode::from(SLOW_CONSUMER_CLOSE_CODE),
        SLOW_CONSUMER_REASON,
    );
    if shared.cut_by.get().is_none() {
        let (metrics, core) = &shared.metrics;
        CoreMetrics::add(&metrics[*core].ws_slow_consumers, 1);
        let cut_by = Instant::now() + Duration::from_millis(SLOW_CONSUMER_CLOSE_WITHIN_MS);
        shared.cut_by.set(Some(cut_by));
        shared
            .idle_deadline
            .set(shared.idle_deadline.get().min(cut_by));
        shared.cut_wake.notify_one();
    }
}

async fn write_loop(core: &Core, conn: &Conn, shared: &Shared) {
    let settings = core.ws_settings();
    let metrics = core.metrics();
    let mut next_ping = Instant::now() + settings.ping_interval;
    let mut close_sent = false;
    loop {
        let mut control = Vec::new();
        shared.ws.borrow_mut().poll_transmit(&mut control);
        let open = shared.ws.borrow().is_open();
        let frames = {
            let mut outbox = shared.outbox.borrow_mut();
            if !open {
                // After a close frame no data may follow (RFC 6455 §5.5.1).
                while !outbox.is_empty() {
                    let dropped = outbox.take_batch(usize::MAX);
                    outbox.completed(dropped.iter().map(Bytes::len).sum());
                }
                Vec::new()
            } else if outbox.is_empty() {
                Vec::new()
            } else {
                outbox.take_batch(OUTBOX_WRITE_BYTES_MAX)
            }
        };
        if control.is_empty() && frames.is_empty() {
            if close_sent && !open && shared.ws.borrow().state() != State::Closing {
                // Both closes exchanged (or the connection failed after ours): hang up.
                conn.shutdown_write();
                return;
            }
            if shared.reader_done.get() {
                return;
            }
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep_until(next_ping.into()) => {
                    next_ping = Instant::now() + settings.ping_interval;
                    shared.ws.borrow_mut().send_ping(b"");
                }
            }
            continue;
        }
        if !open && !control.is_empty() {
            close_sent = true;
        }
        let data_bytes: usize = frames.iter().map(Bytes::len).sum();
        let data_frames = frames.len() as u64;
        let len = control.len() + data_bytes;
        let mut bufs = Vec::with_capacity(frames.len() + 1);
        if !control.is_empty() {
            bufs.push(Bytes::from(control));
        }
        bufs.extend(frames);
        shared.writing.set(true);
        conn.set_deadline(Some(
            (Instant::now() + core.settings().send_timeout).min(shared.idle_deadline.get()),
        ));
        let write = conn.write_all_vectored(bufs);
        tokio::pin!(write);
        let result = loop {
            tokio::select! {
                result = &mut write => break result,
                // Cut while this write waits on a client that does not read: end it by the
                // cut's deadline rather than the send timeout's.
                _ = shared.cut_wake.notified() => conn.set_deadline(Some(shared.idle_deadline.get())),
            }
        };
        shared.writing.set(false);
        conn.set_deadline(Some(shared.idle_deadline.get()));
        shared.outbox.borrow_mut().completed(data_bytes);
        if result.is_err() {
            return;
        }
        CoreMetrics::add(&metrics.bytes_out, len as u64);
        CoreMetrics::add(&metrics.ws_writes, 1);
        CoreMetrics::add(&metrics.ws_frames_out, data_frames);
        if close_sent {
            close_soon(conn, shared);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ws::{Control, Data, OpCode, encode_masked};

    /// What the read loop does with one read: the engine takes what it can, then the rest is
    /// kept for the next read unless the engine is finished.
    fn read_once(ws: &mut WsConnection, input: &mut Vec<u8>, bytes: &[u8]) {
        input.extend_from_slice(bytes);
        let used = ws.handle_input(input).unwrap_or_default();
        input.drain(..used);
        while ws.poll_event().is_some() {}
        discard_when_finished(ws.state(), input);
    }

    #[test]
    fn a_flood_after_a_failure_is_not_kept() {
        let mut ws = WsConnection::new(16);
        let mut input = Vec::new();
        // A frame that fails the connection (a new message inside a fragmented one), then a
        // flood of tiny fragments like tests/abuse.rs's, for as long as the socket takes them.
        let mut tiny = Vec::new();
        encode_masked(
            false,
            OpCode::Data(Data::Continue),
            [1, 2, 3, 4],
            b"",
            &mut tiny,
        );
        let mut start = Vec::new();
        encode_masked(
            false,
            OpCode::Data(Data::Text),
            [1, 2, 3, 4],
            b"t",
            &mut start,
        );
        read_once(&mut ws, &mut input, &start.repeat(2));
        assert_eq!(
            ws.state(),
            State::Failed,
            "a new message inside a fragmented one"
        );
        assert!(input.is_empty());
        for _ in 0..1000 {
            read_once(&mut ws, &mut input, &tiny.repeat(100));
            assert!(input.is_empty(), "{} bytes kept", input.len());
        }
    }

    #[test]
    fn bytes_after_the_close_are_not_kept_and_before_it_are() {
        let mut ws = WsConnection::new(1024);
        let mut input = Vec::new();
        let mut text = Vec::new();
        encode_masked(
            true,
            OpCode::Data(Data::Text),
            [1, 2, 3, 4],
            b"hello",
            &mut text,
        );
        // Half a frame waits for its rest while the connection is open.
        read_once(&mut ws, &mut input, &text[..4]);
        assert_eq!(input, text[..4]);
        let mut close = Vec::new();
        encode_masked(
            true,
            OpCode::Control(Control::Close),
            [1, 2, 3, 4],
            &[0x03, 0xe8],
            &mut close,
        );
        read_once(&mut ws, &mut input, &[&text[4..], &close, &text].concat());
        assert_eq!(ws.state(), State::Closed);
        assert!(
            input.is_empty(),
            "{} bytes kept after the close",
            input.len()
        );
    }
}
