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
//! 1008 "slow consumer" instead of growing a queue.
//!
//! **Heartbeat and idle timeout.** The writer sends a ping every `--ws-ping-interval`. Every
//! read (data, pong or anything else) pushes the connection's deadline to `--ws-idle-timeout`
//! from now; a client that sends nothing, not even the pongs that browsers answer
//! automatically, reaches it, and `rt` shuts the socket down. After either side's close frame
//! the deadline shrinks to [`CLOSE_WAIT_MS`], for the peer to answer and hang up.
//!
//! Endpoints: `/api/ws-echo` (only with `--ws-echo`, for the Autobahn conformance suite)
//! echoes every message. The chat endpoint comes with the chat fan-out.
//!
//! Not here: permessage-deflate or any extension, subprotocols.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use super::Core;
use super::metrics::CoreMetrics;
use crate::chat::outbox::{
    OUTBOX_WRITE_BYTES_MAX, Outbox, SLOW_CONSUMER_CLOSE_CODE, SLOW_CONSUMER_REASON,
};
use crate::proto::ws::{CloseCode, Event, State, WsConnection, encode_binary, encode_text};
use crate::rt::Conn;

/// An outbox holds at most this many maximum-size messages' worth of bytes.
pub const OUTBOX_MESSAGES_BUDGET: usize = 16;
/// After a close frame is sent or received, how long the peer has to finish and hang up.
pub const CLOSE_WAIT_MS: u64 = 1000;
/// Read buffer growth step.
pub const WS_READ_CHUNK_BYTES: usize = 16 * 1024;

/// What the upgraded connection serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Echo every message back (the Autobahn suite's test server).
    Echo,
}

/// The WebSocket settings, from the command line.
#[derive(Debug, Clone)]
pub struct WsSettings {
    pub message_bytes_max: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub allowed_origins: crate::proto::ws::AllowedOrigins,
    pub echo: bool,
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
}

/// Serves an upgraded connection until it ends. `input` holds bytes that arrived after the
/// upgrade request's head.
pub(super) async fn serve(core: &Core, conn: &Conn, input: Vec<u8>, endpoint: Endpoint) {
    let settings = core.ws_settings();
    let shared = Shared {
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
    };
    conn.set_idle(false);
    conn.set_deadline(Some(shared.idle_deadline.get()));
    tokio::join!(
        read_loop(core, conn, &shared, input, endpoint),
        write_loop(core, conn, &shared)
    );
}

fn set_idle_deadline(conn: &Conn, shared: &Shared, deadline: Instant) {
    shared.idle_deadline.set(deadline);
    if !shared.writing.get() {
        conn.set_deadline(Some(deadline));
    }
}

async fn read_loop(
    core: &Core,
    conn: &Conn,
    shared: &Shared,
    mut input: Vec<u8>,
    endpoint: Endpoint,
) {
    let settings = core.ws_settings();
    let metrics = core.metrics();
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
                handle(shared, endpoint, event);
            }
            if used == 0 && !handled {
                break;
            }
        }
        shared.wake.notify_one();
        let state = shared.ws.borrow().state();
        if matches!(state, State::Closed | State::Failed) {
            let close_by = Instant::now() + Duration::from_millis(CLOSE_WAIT_MS);
            if close_by < shared.idle_deadline.get() {
                set_idle_deadline(conn, shared, close_by);
            }
        }
        if input.len() == input.capacity() {
            input.reserve(WS_READ_CHUNK_BYTES);
        }
        let (result, buf) = conn.read(input).await;
        input = buf;
        match result {
            Ok(0) | Err(_) => break,
            Ok(n) => {
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

/// Runs the endpoint for one client message.
fn handle(shared: &Shared, endpoint: Endpoint, event: Event) {
    match (endpoint, event) {
        (_, Event::Close { .. }) => {}
        (Endpoint::Echo, Event::Text(text)) => {
            let mut frame = Vec::with_capacity(text.len() + 10);
            encode_text(&text, &mut frame);
            queue(shared, Bytes::from(frame));
        }
        (Endpoint::Echo, Event::Binary(data)) => {
            let mut frame = Vec::with_capacity(data.len() + 10);
            encode_binary(&data, &mut frame);
            queue(shared, Bytes::from(frame));
        }
    }
}

/// Queues a data frame, or closes the connection as a slow consumer when its outbox is full.
fn queue(shared: &Shared, frame: Bytes) {
    if !shared.ws.borrow().is_open() {
        return;
    }
    if shared.outbox.borrow_mut().push(frame).is_err() {
        shared.ws.borrow_mut().close(
            CloseCode::from(SLOW_CONSUMER_CLOSE_CODE),
            SLOW_CONSUMER_REASON,
        );
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
        let result = conn.write_all_vectored(bufs).await;
        shared.writing.set(false);
        conn.set_deadline(Some(shared.idle_deadline.get()));
        shared.outbox.borrow_mut().completed(data_bytes);
        if result.is_err() {
            return;
        }
        CoreMetrics::add(&metrics.bytes_out, len as u64);
        if close_sent {
            let close_by = Instant::now() + Duration::from_millis(CLOSE_WAIT_MS);
            if close_by < shared.idle_deadline.get() {
                set_idle_deadline(conn, shared, close_by);
            }
        }
    }
}
