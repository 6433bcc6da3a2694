//! A chat-room server on tokio and tokio-tungstenite: the benchmark peer that stands for "what a
//! Rust developer would write instead" of ringchat. It speaks the minimal room protocol of
//! `bench/peers/README.md`: `GET /healthz` answers "ok", `/ws?rooms=<room>,<room>,...` upgrades
//! to a WebSocket that is a member of each listed room, and a text message `<room>\n<payload>`
//! from a member of `<room>` is broadcast, whole, to everyone in that room, the sender included.
//!
//! It is written the idiomatic way: the multi-threaded runtime with one worker per core, a
//! `tokio::sync::broadcast` channel per room, and per connection a reader that publishes to the
//! room a message names and a spawned writer task that forwards its rooms' messages to the socket
//! (the rooms' receivers merged into one stream with `select_all`). It does not do auth,
//! persistence, history, TLS, compression or HTTP keep-alive.

use std::collections::HashMap;
use std::error::Error;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{SelectAll, SplitSink, select_all};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::broadcast;
use tokio::time::timeout;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Messages a room's channel holds for its slowest member. A member that falls further behind
/// has lost messages (`RecvError::Lagged`); it is disconnected with close 1008 and counted.
const ROOM_CHANNEL_MESSAGES_MAX: usize = 1024;
/// The largest message (and frame) a client may send; a larger one drops the connection.
const WS_MESSAGE_BYTES_MAX: usize = 64 << 10;
/// Room names are 1 to this many characters of `[A-Za-z0-9_.-]` (but not `.` or `..`).
const ROOM_NAME_BYTES_MAX: usize = 64;
/// A connection's room list names 1 to this many rooms (duplicates included).
const ROOMS_PER_CONNECTION_MAX: usize = 64;
/// The request line must arrive within this many bytes (peeked before routing); the longest
/// valid one, 64 rooms of 64 characters, is about 4.2 KB.
const REQUEST_LINE_BYTES_MAX: usize = 8 << 10;
/// A plain HTTP request head (`/healthz`, a 404) is read up to this many bytes.
const HEAD_BYTES_MAX: usize = 8 << 10;
/// From accept to an open WebSocket (or an answered plain request).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const PORT_DEFAULT: u16 = 9001;

/// Connections closed with 1008 because a room's channel overtook them; printed at exit.
static LAGGED_DISCONNECTS: AtomicU64 = AtomicU64::new(0);
/// Text messages dropped because they named no room the sender is in (no `\n`, an invalid room,
/// a room not joined); printed at exit.
static IGNORED_MESSAGES: AtomicU64 = AtomicU64::new(0);

/// One room a connection is in: its name, its channel to publish to, and this member's receiver.
type Membership = (
    String,
    broadcast::Sender<Message>,
    broadcast::Receiver<Message>,
);

/// Every room that has at least one member, each with its broadcast channel. The lock is held
/// only to join or leave, never while a message is sent: `broadcast::Sender` is shared per room.
#[derive(Default)]
struct Rooms {
    senders: Mutex<HashMap<String, broadcast::Sender<Message>>>,
}

impl Rooms {
    /// Subscribes to each room under the lock, so a concurrent `leave` never removes a room just
    /// joined.
    fn join(&self, rooms: &[&str]) -> Vec<Membership> {
        let mut senders = self
            .senders
            .lock()
            .expect("no code panics while holding the lock");
        rooms
            .iter()
            .map(|&room| {
                let sender = senders
                    .entry(room.to_owned())
                    .or_insert_with(|| broadcast::channel(ROOM_CHANNEL_MESSAGES_MAX).0)
                    .clone();
                let receiver = sender.subscribe();
                (room.to_owned(), sender, receiver)
            })
            .collect()
    }

    /// Call after the member's receivers are dropped: forgets each room once nobody listens.
    fn leave<'a>(&self, rooms: impl IntoIterator<Item = &'a String>) {
        let mut senders = self
            .senders
            .lock()
            .expect("no code panics while holding the lock");
        for room in rooms {
            if senders.get(room).is_some_and(|s| s.receiver_count() == 0) {
                senders.remove(room);
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let port = port()?;
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("peer-tokio-tungstenite listening on 127.0.0.1:{port}");
    let rooms = Arc::new(Rooms::default());
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Node's http server, Bun (uWebSockets) and most tokio servers disable Nagle.
                    stream.set_nodelay(true)?;
                    tokio::spawn(handle(stream, Arc::clone(&rooms)));
                }
                Err(error) => {
                    // Out of descriptors, say: wait rather than spin on the listener.
                    eprintln!("accept: {error}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    eprintln!(
        "peer-tokio-tungstenite exiting; lagged_disconnects={} ignored_messages={}",
        LAGGED_DISCONNECTS.load(Ordering::Relaxed),
        IGNORED_MESSAGES.load(Ordering::Relaxed)
    );
    Ok(())
}

/// The first CLI argument, else `PORT`, else 9001.
fn port() -> Result<u16, Box<dyn Error>> {
    match std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PORT").ok())
    {
        Some(text) => Ok(text
            .parse()
            .map_err(|e| format!("bad port {text:?}: {e}"))?),
        None => Ok(PORT_DEFAULT),
    }
}

enum Route {
    Health,
    Chat,
    NotFound,
}

async fn handle(stream: TcpStream, rooms: Arc<Rooms>) {
    // Errors are the client's (a reset, a bad frame, an oversized message): drop it quietly, as
    // a benchmark peer must not spend its time logging.
    let _ = serve(stream, &rooms).await;
}

async fn serve(mut stream: TcpStream, rooms: &Rooms) -> Result<(), Box<dyn Error + Send + Sync>> {
    let route = timeout(HANDSHAKE_TIMEOUT, route(&stream)).await??;
    match route {
        Route::Health => Ok(timeout(HANDSHAKE_TIMEOUT, reply(&mut stream, "200 OK", "ok")).await??),
        Route::NotFound => Ok(timeout(
            HANDSHAKE_TIMEOUT,
            reply(&mut stream, "404 Not Found", "not found"),
        )
        .await??),
        Route::Chat => chat(stream, rooms).await,
    }
}

/// Peeks at the request line (without consuming it, so that tungstenite can read the whole
/// request) and decides where the connection goes.
async fn route(stream: &TcpStream) -> io::Result<Route> {
    // On the heap: a buffer in this future would stay in every connection's task.
    let mut buffer = vec![0u8; REQUEST_LINE_BYTES_MAX];
    loop {
        let peeked = stream.peek(&mut buffer).await?;
        if peeked == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(end) = find(&buffer[..peeked], b"\r\n") {
            let line = String::from_utf8_lossy(&buffer[..end]);
            let mut parts = line.split(' ');
            let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let (path, query) = match target.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (target, None),
            };
            return Ok(match (method, path) {
                ("GET", "/healthz") => Route::Health,
                ("GET", path) if rooms_of(path, query).is_some() => Route::Chat,
                _ => Route::NotFound,
            });
        }
        if peeked == buffer.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request line too long",
            ));
        }
        // The request line came split across segments (rare). `peek` would return the same
        // bytes at once, so give the rest a moment to arrive; the caller's timeout bounds this.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// `/ws` with the query `rooms=<room>,<room>,...` → the distinct room names, if the list has 1 to
/// 64 names (duplicates count) and each is valid. The query is taken literally: room names never
/// need percent-encoding, and any other parameter makes it invalid.
fn rooms_of<'a>(path: &str, query: Option<&'a str>) -> Option<Vec<&'a str>> {
    if path != "/ws" {
        return None;
    }
    let list = query?.strip_prefix("rooms=")?;
    let mut rooms = Vec::new();
    for (count, room) in list.split(',').enumerate() {
        if count == ROOMS_PER_CONNECTION_MAX || !is_room_name(room) {
            return None;
        }
        if !rooms.contains(&room) {
            rooms.push(room);
        }
    }
    Some(rooms)
}

/// 1–64 characters of `[A-Za-z0-9_.-]`, other than `.` and `..`.
fn is_room_name(room: &str) -> bool {
    (1..=ROOM_NAME_BYTES_MAX).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && room != "."
        && room != ".."
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads the rest of a plain HTTP request head, answers it and closes (no keep-alive).
async fn reply(stream: &mut TcpStream, status: &str, body: &str) -> io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while find(&head, b"\r\n\r\n").is_none() {
        let read = stream.read(&mut chunk).await?;
        if read == 0 || head.len() + read > HEAD_BYTES_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad request head",
            ));
        }
        head.extend_from_slice(&chunk[..read]);
    }
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The WebSocket session: join the rooms, forward the rooms to the socket in a spawned task, and
/// publish every text message read from the socket to the room it names.
async fn chat(stream: TcpStream, rooms: &Rooms) -> Result<(), Box<dyn Error + Send + Sync>> {
    let mut memberships = None;
    // The callback's signature (and its large `ErrorResponse`) is tungstenite's `Callback`.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        match rooms_of(request.uri().path(), request.uri().query()) {
            Some(names) => {
                // Join before the 101 goes out: a client that has seen it is in every one of
                // its rooms and gets every message published from then on, even one a
                // neighbour sends at once.
                memberships = Some(rooms.join(&names));
                Ok(response)
            }
            None => Err(not_found()),
        }
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(WS_MESSAGE_BYTES_MAX))
        .max_frame_size(Some(WS_MESSAGE_BYTES_MAX));
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config));
    let outcome = timeout(HANDSHAKE_TIMEOUT, handshake).await;
    let (websocket, memberships) = match (outcome, memberships) {
        (Ok(Ok(websocket)), Some(memberships)) => (websocket, memberships),
        (outcome, memberships) => {
            // Refused (the 404 went out), failed or timed out: undo the callback's join.
            if let Some(memberships) = memberships {
                let names: Vec<String> = memberships.into_iter().map(|(room, ..)| room).collect();
                rooms.leave(&names);
            }
            outcome??;
            return Ok(());
        }
    };

    // Room name → its channel, to publish to (and to tell whether this member is in a room);
    // the receivers, merged into one stream, go to the writer.
    let mut publishers = HashMap::with_capacity(memberships.len());
    let mut receivers = Vec::with_capacity(memberships.len());
    for (room, publisher, receiver) in memberships {
        publishers.insert(room, publisher);
        receivers.push(BroadcastStream::new(receiver));
    }
    let (sink, mut source) = websocket.split();
    let mut writer = tokio::spawn(forward(select_all(receivers), sink));
    let reader = async {
        // Runs until the client's close handshake completes (tungstenite answers a Close and
        // then ends the stream) or the connection fails.
        while let Some(message) = source.next().await {
            if let Message::Text(text) = message? {
                // `<room>\n<payload>`, to a room this member is in; anything else is dropped.
                let room = text.split_once('\n').map(|(room, _)| room);
                match room.and_then(|room| publishers.get(room)) {
                    // `Utf8Bytes` is reference-counted: every member's clone shares these
                    // bytes. `send` fails only when nobody listens, and this member listens.
                    Some(publisher) => {
                        let _ = publisher.send(Message::Text(text));
                    }
                    None => {
                        IGNORED_MESSAGES.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            // Binary frames are ignored; pings are answered by tungstenite.
        }
        Ok::<_, WsError>(())
    };
    let writer_finished = tokio::select! {
        _ = reader => false,
        _ = &mut writer => true,
    };
    if !writer_finished {
        writer.abort();
        // Wait for the writer to be gone, so that its receivers are dropped before `leave`
        // counts.
        let _ = writer.await;
    }
    rooms.leave(publishers.keys());
    Ok(())
}

fn not_found() -> ErrorResponse {
    let mut response = ErrorResponse::new(Some("not found".to_owned()));
    *response.status_mut() = StatusCode::NOT_FOUND;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    headers.insert(
        header::CONTENT_LENGTH,
        header::HeaderValue::from_static("9"),
    );
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

type Sink = SplitSink<WebSocketStream<TcpStream>, Message>;
/// A member's rooms, merged: `select_all` polls only the receivers that were woken, so a message
/// costs the same whether the member is in 1 room or 64 (tokio-stream's `StreamMap` polls them
/// all in turn).
type Messages = SelectAll<BroadcastStream<Message>>;

/// Forwards the rooms' messages to one member. Whatever is already queued goes out with one
/// flush (`feed` buffers, `flush` writes), so a burst costs one write, not one per message.
async fn forward(mut messages: Messages, mut sink: Sink) -> Result<(), WsError> {
    // The stream ends only when every room's channel is closed, which the reader's publishers
    // prevent; the writer is stopped instead.
    while let Some(first) = messages.next().await {
        let mut next = Some(first);
        while let Some(received) = next {
            match received {
                Ok(message) => sink.feed(message).await?,
                Err(BroadcastStreamRecvError::Lagged(_)) => return disconnect_lagged(sink).await,
            }
            // `None` once nothing more is ready right now (or the stream ended).
            next = messages.next().now_or_never().flatten();
        }
        sink.flush().await?;
    }
    Ok(())
}

/// The member fell more than `ROOM_CHANNEL_MESSAGES_MAX` messages behind and has lost some:
/// tell it so with close 1008 (policy violation) rather than let it continue with a gap.
async fn disconnect_lagged(mut sink: Sink) -> Result<(), WsError> {
    LAGGED_DISCONNECTS.fetch_add(1, Ordering::Relaxed);
    let frame = CloseFrame {
        code: CloseCode::Policy,
        reason: "lagged".into(),
    };
    sink.send(Message::Close(Some(frame))).await
}
