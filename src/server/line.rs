//! The line-port connection driver (`--line-port`, docs/line-chat.md): telnet and netcat
//! users chatting in the same rooms as the web client.
//!
//! Like the WebSocket driver, two loops share the connection, joined in one task: the
//! **reader** reads, frames lines with the sans-I/O [`LineDecoder`], and runs each command
//! (awaiting the store, the hashing pool, or other cores); the **writer** waits until there is
//! something to send and sends everything queued in one vectored write per turn. Everything the
//! connection is sent — its answers, errors, and the rooms' messages from the hub — goes
//! through its [`Outbox`], whose byte budget is the WebSocket's (`--ws-max-message` ×
//! [`OUTBOX_MESSAGES_BUDGET`]): a client that does not read is cut as a slow consumer (the
//! queue is dropped, one last error line is admitted past the budget, the socket is closed
//! within [`SLOW_CONSUMER_CLOSE_WITHIN_MS`]), and no write ever waits on the core.
//!
//! **Idle timeout.** Every read pushes the idle deadline to `--line-idle-timeout` from now; the
//! writer, waiting, notices it passed and says `IDLE_TIMEOUT` before closing. `rt`'s deadline
//! on the socket sits [`LINE_IDLE_GRACE_MS`] later, for a client that does not even take that.
//!
//! **Membership.** A logged-in user or a guest is registered with the hub under its user (a
//! guest: id 0, `~name`) and subscribed to its current room only; `/join` moves it, showing
//! the room's last messages exactly like a WebSocket `hello` (held broadcasts released after
//! them, none shown twice or lost). A client that has not logged in (without guest mode) is
//! not registered: it receives nothing and is closed at once when the server drains.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use super::Core;
use super::api::LoginRefused;
use super::chat::{Frames, Hub, Recipient};
use super::history::{self, Authors};
use super::metrics::CoreMetrics;
use super::ws::{CLOSE_WAIT_MS, OUTBOX_MESSAGES_BUDGET};
use crate::chat::events::EventError;
use crate::chat::line::{
    self as text, Command, JOIN_HISTORY_LINES, check_nick, guest_user, nick_key,
};
use crate::chat::outbox::{OUTBOX_WRITE_BYTES_MAX, Outbox, SLOW_CONSUMER_CLOSE_WITHIN_MS};
use crate::chat::subscribers::ConnId;
use crate::proto::line::{LineDecoder, LineEvent};
use crate::rt::Conn;
use crate::store::{HISTORY_PAGE_MESSAGES_MAX, MessageId, StoreError, User};

/// Read buffer of a line connection.
pub const LINE_READ_BYTES: usize = 4096;
/// How long after its idle deadline a client that does not take the `IDLE_TIMEOUT` line is
/// shut down anyway.
pub const LINE_IDLE_GRACE_MS: u64 = 5000;
/// Random guest names tried before giving up (each a 1-in-65,536 draw among the taken ones).
pub const GUEST_NAME_DRAWS_MAX: usize = 16;

/// The line port's settings, from the command line.
#[derive(Debug, Clone)]
pub struct LineSettings {
    pub line_bytes_max: usize,
    pub idle_timeout: Duration,
    /// Guest mode's room (an index into the rooms), if on.
    pub guest_room: Option<usize>,
}

fn error(id: &'static str, message: impl Into<String>) -> EventError {
    EventError::new(id, message)
}

struct Shared {
    conn: Conn,
    outbox: RefCell<Outbox>,
    wake: Notify,
    /// Close once the outbox is written (quit, slow consumer, idle, shutdown).
    hangup: Cell<bool>,
    reader_done: Cell<bool>,
    /// The reader is running a command (a login waits for the hashing pool): the client is
    /// waiting for us, so the idle timeout does not run out meanwhile.
    busy: Cell<bool>,
    idle_deadline: Cell<Instant>,
    writing: Cell<bool>,
    /// Every core's metrics and this core's index (for the slow-consumer counter).
    metrics: (std::sync::Arc<[CoreMetrics]>, usize),
}

impl Shared {
    /// Queues `bytes`; false (and the connection is cut) when the client is too far behind.
    /// Once the connection is hanging up (its last line is queued), nothing more is: false.
    fn send(&self, bytes: Bytes) -> bool {
        if self.hangup.get() {
            return false;
        }
        let pushed = self.outbox.borrow_mut().push(bytes);
        self.wake.notify_one();
        if pushed.is_err() {
            self.cut();
            return false;
        }
        true
    }

    fn send_error(&self, e: &EventError) -> bool {
        let mut out = Vec::new();
        text::error_line(&mut out, e);
        self.send(Bytes::from(out))
    }

    fn send_notice(&self, line: &str) -> bool {
        let mut out = Vec::new();
        text::notice(&mut out, line);
        self.send(Bytes::from(out))
    }

    /// Writes what is queued, then `last`, then closes.
    fn finish(&self, last: Vec<u8>) {
        if self.hangup.get() {
            return;
        }
        if self
            .outbox
            .borrow_mut()
            .push(Bytes::from(last.clone()))
            .is_err()
        {
            self.outbox.borrow_mut().close_with(Bytes::from(last));
        }
        self.hangup.set(true);
        self.wake.notify_one();
    }

    /// Cut as a slow consumer: the queue is dropped, one last line admitted, and the socket
    /// closed soon whether or not it takes it.
    fn cut(&self) {
        if self.outbox.borrow().is_closing() {
            return;
        }
        CoreMetrics::add(&self.metrics.0[self.metrics.1].line_slow_consumers, 1);
        let mut last = Vec::new();
        text::error_line(
            &mut last,
            &error("SLOW_CONSUMER", "you were not reading; disconnected"),
        );
        self.outbox.borrow_mut().close_with(Bytes::from(last));
        self.hangup.set(true);
        self.conn.set_deadline(Some(
            Instant::now() + Duration::from_millis(SLOW_CONSUMER_CLOSE_WITHIN_MS),
        ));
        self.wake.notify_one();
    }
}

impl Recipient for Shared {
    fn deliver(&self, frames: &Frames) -> bool {
        self.send(frames.lines.clone())
    }

    fn error(&self, error: &EventError) -> bool {
        self.send_error(error)
    }

    fn cut(&self) {
        Shared::cut(self);
    }

    fn going_away(&self) {
        let mut last = Vec::new();
        text::notice(&mut last, "server shutting down");
        self.finish(last);
    }
}

/// Who the connection is, as its commands change it.
#[derive(Default)]
struct Session {
    /// Registered with the hub (logged in, or a guest).
    conn: Option<ConnId>,
    /// Logged in as this account.
    account: Option<User>,
    /// A guest's name (without the mark).
    nick: Option<String>,
    room: Option<usize>,
    /// `/quit` was typed.
    quit: bool,
}

/// Serves a line-port connection until it ends.
pub(super) async fn serve(core: Rc<Core>, conn: Conn) {
    let metrics = core.metrics();
    metrics.connection_opened();
    CoreMetrics::add(&metrics.line_open, 1);
    let settings = core.settings().line.clone();
    let budget = core
        .ws_settings()
        .message_bytes_max
        .saturating_mul(OUTBOX_MESSAGES_BUDGET)
        .max(OUTBOX_WRITE_BYTES_MAX);
    let shared = Rc::new(Shared {
        conn,
        outbox: RefCell::new(Outbox::new(budget)),
        wake: Notify::new(),
        hangup: Cell::new(false),
        reader_done: Cell::new(false),
        busy: Cell::new(false),
        idle_deadline: Cell::new(Instant::now() + settings.idle_timeout),
        writing: Cell::new(false),
        metrics: (core.all_metrics.clone(), core.info.index),
    });
    // Until registered, draining may close it at once (it is owed no goodbye).
    shared.conn.set_idle(true);
    set_idle_deadline(&shared, shared.idle_deadline.get());
    let mut session = Session::default();
    match settings.guest_room {
        Some(room) => start_guest(&core, &shared, &mut session, room).await,
        None => {
            shared.send_notice(
                "welcome to ringchat. /login EMAIL PASSWORD to sign in; /help lists the commands",
            );
        }
    }
    tokio::join!(
        read_loop(&core, &shared, &mut session, &settings),
        write_loop(&core, &shared)
    );
    let hub = core.hub();
    if let Some(conn) = session.conn {
        hub.leave(conn);
        if let Some(nick) = &session.nick {
            hub.release_nick(&nick_key(nick), conn);
        }
    }
    let metrics = core.metrics();
    metrics
        .line_open
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    metrics.connection_closed();
}

/// Guest mode: a random free name, then the guest room.
async fn start_guest(core: &Core, shared: &Rc<Shared>, session: &mut Session, room: usize) {
    let hub = core.hub();
    let conn = register(hub, shared, session, guest_user("guest"));
    for _ in 0..GUEST_NAME_DRAWS_MAX {
        let mut draw = [0u8; 2];
        if getrandom::fill(&mut draw).is_err() {
            break;
        }
        let nick = format!("guest-{:02x}{:02x}", draw[0], draw[1]);
        if hub.claim_nick(&nick_key(&nick), conn).await {
            hub.set_user(conn, guest_user(&nick));
            shared.send_notice(&format!(
                "welcome, you are ~{nick} in [{}]; /nick NAME renames you, /login EMAIL PASSWORD signs you in",
                hub.rooms().all()[room].id
            ));
            session.nick = Some(nick);
            join_room(core, shared, session, room).await;
            return;
        }
    }
    shared.send_error(&error(
        "SERVER_BUSY",
        "no free guest name could be drawn; try again",
    ));
    hub.leave(conn);
    session.conn = None;
    shared.finish(Vec::new());
}

fn register(hub: &Hub, shared: &Rc<Shared>, session: &mut Session, user: User) -> ConnId {
    let recipient: Rc<dyn Recipient> = shared.clone();
    let conn = hub.register(recipient, user);
    session.conn = Some(conn);
    shared.conn.set_idle(false);
    conn
}

fn set_idle_deadline(shared: &Shared, deadline: Instant) {
    shared.idle_deadline.set(deadline);
    if !shared.writing.get() && !shared.hangup.get() {
        shared
            .conn
            .set_deadline(Some(deadline + Duration::from_millis(LINE_IDLE_GRACE_MS)));
    }
}

async fn read_loop(
    core: &Core,
    shared: &Rc<Shared>,
    session: &mut Session,
    settings: &LineSettings,
) {
    let metrics = core.metrics();
    let mut decoder = LineDecoder::new(settings.line_bytes_max);
    let mut buf = Vec::with_capacity(LINE_READ_BYTES);
    'reading: while !shared.hangup.get() {
        buf.clear();
        let (result, b) = shared.conn.read(buf).await;
        buf = b;
        match result {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                CoreMetrics::add(&metrics.bytes_in, n as u64);
                if !shared.hangup.get() {
                    set_idle_deadline(shared, Instant::now() + settings.idle_timeout);
                }
            }
        }
        let mut input = &buf[..];
        while !input.is_empty() {
            let (used, event) = decoder.decode(input);
            input = &input[used..];
            let Some(event) = event else { continue };
            match event {
                LineEvent::TooLong => {
                    shared.send_error(&error(
                        "LINE_TOO_LONG",
                        format!(
                            "a line holds at most {} bytes; it was dropped",
                            settings.line_bytes_max
                        ),
                    ));
                }
                LineEvent::BadUtf8 => {
                    shared.send_error(&error(
                        "BAD_UTF8",
                        "the line is not valid UTF-8; it was dropped",
                    ));
                }
                LineEvent::Line(line) => {
                    shared.busy.set(true);
                    // Boxed: the commands' state is large and needed only for a moment.
                    Box::pin(command(core, shared, session, settings, &line)).await;
                    shared.busy.set(false);
                    if !shared.hangup.get() {
                        set_idle_deadline(shared, Instant::now() + settings.idle_timeout);
                    }
                    shared.wake.notify_one();
                }
            }
            if session.quit || shared.hangup.get() {
                break 'reading;
            }
        }
        // The timeout measures the client's silence, not the time the server took to answer
        // (a login waits for the hashing pool): it starts again once the input is handled.
        if !shared.hangup.get() {
            set_idle_deadline(shared, Instant::now() + settings.idle_timeout);
        }
    }
    shared.reader_done.set(true);
    shared.wake.notify_one();
}

/// Runs one line the client typed.
async fn command(
    core: &Core,
    shared: &Rc<Shared>,
    session: &mut Session,
    settings: &LineSettings,
    line: &str,
) {
    let hub = core.hub();
    let parsed = match text::parse(line, HISTORY_PAGE_MESSAGES_MAX) {
        Ok(c) => c,
        Err(e) => {
            shared.send_error(&e);
            return;
        }
    };
    let signed_in = session.account.is_some() || session.nick.is_some();
    let allowed_anonymous = matches!(
        parsed,
        Command::Login { .. } | Command::Help | Command::Quit | Command::Nothing
    );
    if !signed_in && !allowed_anonymous {
        shared.send_error(&error(
            "LOGIN_REQUIRED",
            "log in first: /login EMAIL PASSWORD",
        ));
        return;
    }
    match parsed {
        Command::Nothing => {}
        Command::Help => {
            shared.send(Bytes::from(text::help(settings.guest_room.is_some())));
        }
        Command::Quit => {
            session.quit = true;
            let mut last = Vec::new();
            text::notice(&mut last, "bye");
            shared.finish(last);
        }
        Command::Login { email, password } => login(core, shared, session, email, password).await,
        Command::Rooms => {
            let list: Vec<String> = hub
                .rooms()
                .all()
                .iter()
                .map(|r| format!("{} ({})", r.id, r.name))
                .collect();
            shared.send_notice(&format!("rooms: {}", list.join(", ")));
            match session.room {
                Some(room) => {
                    shared.send_notice(&format!("you are in [{}]", hub.rooms().all()[room].id))
                }
                None => shared.send_notice("you are in no room; /join ROOM"),
            };
        }
        Command::Join(id) => {
            let Some(room) = hub.rooms().index_of(id) else {
                shared.send_error(&error(
                    "UNKNOWN_ROOM",
                    format!("no room {:?}", text::safe_excerpt(id)),
                ));
                return;
            };
            if session.account.is_none()
                && let Some(guest_room) = settings.guest_room
                && room != guest_room
            {
                shared.send_error(&error(
                    "GUESTS_STAY",
                    format!(
                        "guests chat only in [{}]; /login EMAIL PASSWORD to join other rooms",
                        hub.rooms().all()[guest_room].id
                    ),
                ));
                return;
            }
            join_room(core, shared, session, room).await;
        }
        Command::Who => {
            let Some(room) = need_room(shared, session) else {
                return;
            };
            let names = hub.who(room).await;
            shared.send_notice(&format!(
                "in [{}] now ({}): {}",
                hub.rooms().all()[room].id,
                names.len(),
                names.join(", ")
            ));
        }
        Command::History(count) => {
            let Some(room) = need_room(shared, session) else {
                return;
            };
            let room_id = &hub.rooms().all()[room].id;
            match recent(hub, room_id, count).await {
                Ok((lines, n, _)) => {
                    let mut out = Vec::new();
                    text::notice(&mut out, &format!("history of [{room_id}] ({n} messages):"));
                    out.extend_from_slice(&lines);
                    text::notice(&mut out, "end of history");
                    shared.send(Bytes::from(out));
                }
                Err(e) => {
                    tracing::warn!("line history: {e}");
                    shared.send_error(&EventError::history_unavailable());
                }
            }
        }
        Command::Nick(nick) => rename(hub, shared, session, nick).await,
        Command::Say(message) => {
            let Some(room) = need_room(shared, session) else {
                return;
            };
            let max = core.ws_settings().message_chars_max;
            if message.chars().count() > max {
                shared.send_error(&error(
                    "CONTENT_TOO_LONG",
                    format!("a message holds at most {max} characters"),
                ));
                return;
            }
            if let Some(conn) = session.conn {
                hub.post(conn, room, vec![message.to_string()]);
            }
        }
    }
}

fn need_room(shared: &Shared, session: &Session) -> Option<usize> {
    if session.room.is_none() {
        shared.send_error(&error("NO_ROOM", "/join a room first"));
    }
    session.room
}

async fn login(
    core: &Core,
    shared: &Rc<Shared>,
    session: &mut Session,
    email: &str,
    password: &str,
) {
    if let Some(user) = &session.account {
        shared.send_error(&error(
            "ALREADY_LOGGED_IN",
            format!("you are logged in as {}", user.username),
        ));
        return;
    }
    let peer = shared.conn.peer().ip();
    let checked = core
        .api
        .check_login(email, password.to_string(), peer)
        .await;
    let id = match checked {
        Ok(id) => id,
        Err(refused) => {
            shared.send_error(&login_error(refused));
            return;
        }
    };
    let user = match core.hub().store().user_by_id(id).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            shared.send_error(&error("LOGIN_FAILED", "Login failed"));
            return;
        }
        Err(e) => {
            shared.send_error(&login_error(LoginRefused::Store(e)));
            return;
        }
    };
    let hub = core.hub();
    match session.conn {
        Some(conn) => {
            hub.set_user(conn, user.clone());
            if let Some(nick) = session.nick.take() {
                hub.release_nick(&nick_key(&nick), conn);
            }
        }
        None => {
            register(hub, shared, session, user.clone());
        }
    }
    shared.send_notice(&format!("logged in as {}", user.username));
    session.account = Some(user);
    let room = session.room.unwrap_or(0);
    join_room(core, shared, session, room).await;
}

fn login_error(refused: LoginRefused) -> EventError {
    match refused {
        LoginRefused::Invalid(invalid) => error("BAD_REQUEST", invalid.message()),
        LoginRefused::RateLimited(wait) => {
            let seconds = super::api::retry_after_seconds(wait);
            error(
                "RATE_LIMITED",
                format!("too many attempts; try again in {seconds} s"),
            )
        }
        LoginRefused::Failed => error("LOGIN_FAILED", "Login failed"),
        LoginRefused::HashingBusy => error(
            "SERVICE_UNAVAILABLE",
            "the server is busy hashing passwords; try again",
        ),
        LoginRefused::HashingFailed => error("INTERNAL", "password hashing failed"),
        LoginRefused::Store(e) => {
            tracing::warn!("line login: {e}");
            error(
                "SERVICE_UNAVAILABLE",
                "storage is unavailable; try again shortly",
            )
        }
    }
}

async fn rename(hub: &Hub, shared: &Shared, session: &mut Session, nick: &str) {
    let (Some(conn), Some(old)) = (session.conn, session.nick.clone()) else {
        let who = session
            .account
            .as_ref()
            .map_or(String::new(), |u| format!("; you are {}", u.username));
        shared.send_error(&error("NOT_A_GUEST", format!("/nick is for guests{who}")));
        return;
    };
    if let Err(e) = check_nick(nick) {
        shared.send_error(&e);
        return;
    }
    let key = nick_key(nick);
    if !hub.claim_nick(&key, conn).await {
        shared.send_error(&error("NICK_TAKEN", format!("~{nick} is taken")));
        return;
    }
    if nick_key(&old) != key {
        hub.release_nick(&nick_key(&old), conn);
    }
    hub.set_user(conn, guest_user(nick));
    session.nick = Some(nick.to_string());
    shared.send_notice(&format!("you are now ~{nick}"));
}

/// Makes `room` the session's room: subscribed, its last messages shown, then what was held.
async fn join_room(core: &Core, shared: &Shared, session: &mut Session, room: usize) {
    let hub = core.hub();
    let Some(conn) = session.conn else { return };
    hub.subscribe(conn, &[room]);
    session.room = Some(room);
    let info = &hub.rooms().all()[room];
    let mut out = Vec::new();
    text::notice(&mut out, &format!("now in [{}] {}", info.id, info.name));
    let newest = match recent(hub, &info.id, JOIN_HISTORY_LINES).await {
        Ok((lines, _, newest)) => {
            out.extend_from_slice(&lines);
            newest
        }
        Err(e) => {
            tracing::warn!("line join: {e}");
            text::error_line(&mut out, &EventError::history_unavailable());
            None
        }
    };
    shared.send(Bytes::from(out));
    hub.hello_sent(conn, &[(room, newest)]);
}

/// The last `count` messages of a room as lines, oldest first; how many; the newest id.
async fn recent(
    hub: &Hub,
    room_id: &str,
    count: usize,
) -> Result<(Vec<u8>, usize, Option<MessageId>), StoreError> {
    let store = hub.store();
    let (page, _) = history::page(store, room_id, None, count).await?;
    let authors = Authors::of(store, page.iter()).await?;
    let mut shown = authors.shown(&page);
    shown.reverse();
    Ok((
        text::messages(room_id, &shown),
        page.len(),
        page.first().map(|m| m.id),
    ))
}

async fn write_loop(core: &Core, shared: &Shared) {
    let metrics = core.metrics();
    loop {
        if !shared.hangup.get()
            && !shared.busy.get()
            && Instant::now() >= shared.idle_deadline.get()
        {
            // Checked here too: a client that only reads a busy room never lets the writer idle.
            idle_timeout(core, shared);
        }
        let frames = shared
            .outbox
            .borrow_mut()
            .take_batch(OUTBOX_WRITE_BYTES_MAX);
        if frames.is_empty() {
            if shared.hangup.get() {
                shared.conn.shutdown_write();
                shared
                    .conn
                    .set_deadline(Some(Instant::now() + Duration::from_millis(CLOSE_WAIT_MS)));
                return;
            }
            if shared.reader_done.get() {
                return;
            }
            if shared.busy.get() {
                // No idle clock while a command runs; the reader wakes us when it is done.
                shared.wake.notified().await;
                continue;
            }
            let idle_at = shared.idle_deadline.get();
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep_until(idle_at.into()) => {
                    if !shared.busy.get() && Instant::now() >= shared.idle_deadline.get() {
                        idle_timeout(core, shared);
                    }
                }
            }
            continue;
        }
        let len: usize = frames.iter().map(Bytes::len).sum();
        shared.writing.set(true);
        if !shared.hangup.get() {
            shared
                .conn
                .set_deadline(Some(Instant::now() + core.settings().send_timeout));
        }
        let result = shared.conn.write_all_vectored(frames).await;
        shared.writing.set(false);
        shared.outbox.borrow_mut().completed(len);
        if result.is_err() {
            return;
        }
        if !shared.hangup.get() {
            set_idle_deadline(shared, shared.idle_deadline.get());
        }
        CoreMetrics::add(&metrics.bytes_out, len as u64);
    }
}

/// Says `IDLE_TIMEOUT` after what is queued, then closes.
fn idle_timeout(core: &Core, shared: &Shared) {
    let idle = core.settings().line.idle_timeout;
    let mut last = Vec::new();
    text::error_line(
        &mut last,
        &error(
            "IDLE_TIMEOUT",
            format!("nothing received for {} s; disconnected", idle.as_secs()),
        ),
    );
    shared.finish(last);
}
