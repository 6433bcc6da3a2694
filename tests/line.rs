//! The line port (docs/line-chat.md) against the real binary with the embedded store: login and
//! every command, one message order shared with the WebSocket clients and the history, `/who`
//! across cores, guest mode (names, uniqueness, no impersonation), the answers before login, every
//! kind of bad input (long lines, invalid UTF-8, line ends, telnet negotiation, terminal escapes
//! from the web side), the idle timeout, a slow reader cut while the others keep pace, and the
//! shutdown notice.
//!
//! Each test starts its own server with two rooms, `general` and `random`, and talks to it with
//! [`LineClient`], a raw socket that reads CRLF-terminated lines with a deadline.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;
use common::chat_client::{PASSWORD, Ws, post, post_json, sign_up, sign_up_with};

/// The rooms every test's server has.
const ROOMS: &str = "general:General,random:Random";
/// How long a test waits for a line the server should write at once.
const LINE_DEADLINE: Duration = Duration::from_secs(5);
/// How long a test waits for state that another core updates (presence, released names).
const SETTLE_DEADLINE: Duration = Duration::from_secs(5);
/// Lines kept for a failure's message.
const SEEN_LINES_SHOWN: usize = 30;

/// Starts a server with the line port on an ephemeral port and [`ROOMS`].
fn start(io: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--line-port", "0", "--rooms", ROOMS];
    args.extend_from_slice(extra);
    let server = Server::start(io, &args);
    assert!(
        server.line_addr.is_some(),
        "the listening log line names no line= address"
    );
    server
}

/// Why no line came.
enum NoLine {
    Eof,
    Timeout,
    Error(std::io::Error),
}

impl std::fmt::Display for NoLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoLine::Eof => f.write_str("the server closed the connection"),
            NoLine::Timeout => write!(f, "nothing within the deadline"),
            NoLine::Error(e) => write!(f, "read failed: {e}"),
        }
    }
}

/// A telnet/netcat user: writes lines, reads the server's CRLF-terminated lines.
struct LineClient {
    s: TcpStream,
    /// A label for failure messages.
    who: String,
    /// Bytes read past the last whole line.
    pending: Vec<u8>,
    /// The latest lines read, for failure messages.
    seen: Vec<String>,
}

impl LineClient {
    fn connect(server: &Server, who: &str) -> LineClient {
        let s = TcpStream::connect(server.line_addr.expect("line port")).expect("connect");
        LineClient::wrap(s, who)
    }

    fn wrap(s: TcpStream, who: &str) -> LineClient {
        s.set_nodelay(true).unwrap();
        LineClient {
            s,
            who: who.to_string(),
            pending: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// Writes `text` and CRLF.
    fn send(&mut self, text: &str) {
        self.send_raw(format!("{text}\r\n").as_bytes());
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.s
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("{}: write failed: {e}\n{}", self.who, self.history()));
    }

    /// The latest lines read and the partial one, for failure messages.
    fn history(&self) -> String {
        let from = self.seen.len().saturating_sub(SEEN_LINES_SHOWN);
        format!(
            "{}: last lines read (oldest first):\n{}\n{}: partial line: {:?}",
            self.who,
            self.seen[from..]
                .iter()
                .map(|l| format!("    {l:?}"))
                .collect::<Vec<_>>()
                .join("\n"),
            self.who,
            String::from_utf8_lossy(&self.pending)
        )
    }

    /// The next line without its CRLF, or why none came within `wait`.
    fn try_line(&mut self, wait: Duration) -> Result<String, NoLine> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = self.pending.drain(..=end).collect();
                assert!(
                    raw.ends_with(b"\r\n"),
                    "{}: a line not ended by CRLF: {:?}\n{}",
                    self.who,
                    String::from_utf8_lossy(&raw),
                    self.history()
                );
                let line = String::from_utf8(raw[..raw.len() - 2].to_vec()).unwrap_or_else(|e| {
                    panic!("{}: a line not in UTF-8: {e}\n{}", self.who, self.history())
                });
                self.seen.push(line.clone());
                return Ok(line);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NoLine::Timeout);
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 16 * 1024];
            match self.s.read(&mut buf) {
                Ok(0) => return Err(NoLine::Eof),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(NoLine::Error(e)),
            }
        }
    }

    /// The next line without its CRLF.
    fn line(&mut self) -> String {
        self.try_line(LINE_DEADLINE)
            .unwrap_or_else(|why| panic!("{}: no line: {why}\n{}", self.who, self.history()))
    }

    /// Asserts the next line is `expected`.
    fn expect(&mut self, expected: &str) {
        let line = self.line();
        assert_eq!(
            line,
            expected,
            "{}: unexpected line\n{}",
            self.who,
            self.history()
        );
    }

    /// Skips lines until one satisfies `want` (described by `what`); returns it and the lines
    /// skipped.
    fn until(&mut self, what: &str, want: impl Fn(&str) -> bool) -> (String, Vec<String>) {
        let mut skipped = Vec::new();
        loop {
            match self.try_line(LINE_DEADLINE) {
                Ok(line) if want(&line) => return (line, skipped),
                Ok(line) => skipped.push(line),
                Err(why) => panic!(
                    "{}: waiting for {what}: {why}; skipped {} lines\n{}",
                    self.who,
                    skipped.len(),
                    self.history()
                ),
            }
        }
    }

    /// Skips lines until one starts with `prefix`; returns it.
    fn expect_prefix(&mut self, prefix: &str) -> String {
        self.until(&format!("a line starting with {prefix:?}"), |l| {
            l.starts_with(prefix)
        })
        .0
    }

    /// Asserts the next line starts with `prefix` (no skipping); returns it.
    fn next_prefix(&mut self, prefix: &str) -> String {
        let line = self.line();
        assert!(
            line.starts_with(prefix),
            "{}: expected a line starting with {prefix:?}, got {line:?}\n{}",
            self.who,
            self.history()
        );
        line
    }

    /// Sends `/rooms` and reads up to its second answer line; returns the lines that came before
    /// the answer (history, messages). The server answers in order, so this is a barrier.
    fn sync(&mut self) -> Vec<String> {
        self.send("/rooms");
        let (_, before) = self.until("the /rooms answer", |l| l.starts_with("* rooms: "));
        self.next_prefix("* you are in ");
        before
    }

    /// [`LineClient::sync`] for a client not logged in, where `/rooms` is refused: reads up to
    /// that refusal; returns the lines before it.
    fn sync_before_login(&mut self) -> Vec<String> {
        self.send("/rooms");
        self.until("the LOGIN_REQUIRED answer to /rooms", |l| {
            l.starts_with("! LOGIN_REQUIRED: ")
        })
        .1
    }

    /// Reads until the server closes; returns the lines read on the way. A reset counts as
    /// closed (the server may close with unread input).
    fn expect_closed(&mut self, within: Duration) -> Vec<String> {
        self.expect_closed_after(within, false)
    }

    /// Like [`LineClient::expect_closed`], but a connection cut while a line was on its way may
    /// end in the middle of it: that partial line is dropped (a slow consumer's close does not
    /// wait for its last write).
    fn expect_closed_cut(&mut self, within: Duration) -> Vec<String> {
        self.expect_closed_after(within, true)
    }

    fn expect_closed_after(&mut self, within: Duration, partial_ok: bool) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_line(left) {
                Ok(line) => lines.push(line),
                Err(NoLine::Eof) => {
                    assert!(
                        partial_ok || self.pending.is_empty(),
                        "{}: closed after an unterminated line\n{}",
                        self.who,
                        self.history()
                    );
                    return lines;
                }
                Err(NoLine::Error(_)) => return lines,
                Err(NoLine::Timeout) => panic!(
                    "{}: not closed within {within:?}\n{}",
                    self.who,
                    self.history()
                ),
            }
        }
    }
}

/// `[room] user: text` split into its parts.
fn chat(line: &str) -> Option<(&str, &str, &str)> {
    let (room, rest) = line.strip_prefix('[')?.split_once("] ")?;
    let (user, text) = rest.split_once(": ")?;
    Some((room, user, text))
}

/// Connects and logs in as the account `name` (made by [`sign_up`]); the client is then in
/// `general` with its join history read.
fn login(server: &Server, name: &str) -> LineClient {
    let mut c = LineClient::connect(server, name);
    c.next_prefix("* welcome");
    c.send(&format!("/login {name}@example.com {PASSWORD}"));
    c.expect(&format!("* logged in as {name}"));
    c.expect("* now in [general] General");
    c.sync();
    c
}

/// The names in a `/who` answer, after checking its count.
fn who_names(line: &str, room: &str) -> Vec<String> {
    let rest = line
        .strip_prefix(&format!("* in [{room}] now ("))
        .unwrap_or_else(|| panic!("not a /who answer for {room}: {line:?}"));
    let (count, names) = rest
        .split_once("): ")
        .unwrap_or_else(|| panic!("not a /who answer: {line:?}"));
    let names: Vec<String> = names.split(", ").map(str::to_string).collect();
    assert_eq!(count.parse::<usize>().ok(), Some(names.len()), "{line:?}");
    names
}

/// Asks `/who` until the answer lists exactly the names in `expected`, or fails with the last
/// answer: presence on another core may take a moment to show. The answer must be sorted; the
/// contract does not say whether case counts, so either order passes.
fn wait_for_who(c: &mut LineClient, room: &str, expected: &[&str]) {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    let mut expected: Vec<&str> = expected.to_vec();
    expected.sort_unstable();
    loop {
        c.send("/who");
        let line = c.expect_prefix("* in [");
        let names = who_names(&line, room);
        let mut by_bytes = names.clone();
        by_bytes.sort_unstable();
        let mut by_letters = names.clone();
        by_letters.sort_by_key(|n| n.to_lowercase());
        assert!(
            names == by_bytes || names == by_letters,
            "{}: /who is not sorted: {line:?}",
            c.who
        );
        if by_bytes == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: /who never listed {expected:?}; last answer {line:?}",
            c.who
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The WebSocket client's next `serverMessages` event: (room, [(user id, username, content)]).
fn ws_messages(ws: &mut Ws) -> (String, Vec<(u64, String, String)>) {
    let ev = ws.event();
    assert_eq!(ev["type"], "serverMessages", "{ev}");
    let room = ev["payload"]["roomId"].as_str().unwrap().to_string();
    let messages = ev["payload"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user"]["id"].as_u64().unwrap(),
                m["user"]["username"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (room, messages)
}

fn open_ws(server: &Server, cookie: &str) -> Ws {
    let mut ws = Ws::open(server, Some(cookie));
    let hello = ws.event();
    assert_eq!(hello["type"], "hello", "{hello}");
    ws
}

fn commands_work(io: &str) {
    let server = start(io, &[]);
    sign_up(&server, "alice");
    let mut c = LineClient::connect(&server, "alice");
    let welcome = c.line();
    assert!(
        welcome.starts_with("* welcome") && welcome.contains("/login EMAIL PASSWORD"),
        "{welcome:?}"
    );
    // Before login, /help works.
    c.send("/help");
    let help = c.sync_before_login();
    assert!(help.iter().all(|l| l.starts_with("* ")), "{help:#?}");
    let help = help.join("\n");
    for command in [
        "/login", "/join", "/rooms", "/who", "/history", "/help", "/quit",
    ] {
        assert!(help.contains(command), "/help lacks {command}: {help}");
    }
    c.send(&format!("/login alice@example.com {PASSWORD}"));
    c.expect("* logged in as alice");
    c.expect("* now in [general] General");
    assert_eq!(c.sync(), Vec::<String>::new(), "general has no history yet");
    c.send("hello from the terminal");
    c.expect("[general] alice: hello from the terminal");
    // Blank lines are ignored; command names are case-insensitive.
    c.send("");
    c.send("   ");
    c.send("/ROOMS");
    c.expect("* rooms: general (General), random (Random)");
    c.expect("* you are in [general]");
    c.send("/who");
    c.expect("* in [general] now (1): alice");
    for i in 1..=11 {
        c.send(&format!("m{i}"));
        c.expect(&format!("[general] alice: m{i}"));
    }
    c.send("/history 5");
    c.expect("* history of [general] (5 messages):");
    for i in 7..=11 {
        c.expect(&format!("[general] alice: m{i}"));
    }
    c.expect("* end of history");
    c.send("/history");
    c.expect("* history of [general] (12 messages):");
    c.expect("[general] alice: hello from the terminal");
    for i in 1..=11 {
        c.expect(&format!("[general] alice: m{i}"));
    }
    c.expect("* end of history");
    for bad in ["/history 0", "/history 101", "/history x", "/history -1"] {
        c.send(bad);
        c.expect("! BAD_COMMAND: /history takes a number from 1 to 100");
    }
    c.send("/history 5 5");
    c.expect("! BAD_COMMAND: usage: /history [N]");
    // Another room: its messages stay there; coming back shows general's last 10.
    c.send("/join random");
    c.expect("* now in [random] Random");
    c.send("/rooms");
    c.expect("* rooms: general (General), random (Random)");
    c.expect("* you are in [random]");
    c.send("over here");
    c.expect("[random] alice: over here");
    c.send("/join general");
    c.expect("* now in [general] General");
    let shown = c.sync();
    let expected: Vec<String> = (2..=11).map(|i| format!("[general] alice: m{i}")).collect();
    assert_eq!(
        shown, expected,
        "/join shows the last 10 messages, oldest first"
    );
    c.send("/join kitchen");
    c.expect(r#"! UNKNOWN_ROOM: no room "kitchen""#);
    c.send("/join");
    c.expect("! BAD_COMMAND: usage: /join ROOM");
    c.send("/join general random");
    c.expect("! BAD_COMMAND: usage: /join ROOM");
    c.send(&format!("/login alice@example.com {PASSWORD}"));
    c.next_prefix("! ALREADY_LOGGED_IN: ");
    c.send("/frobnicate");
    c.expect("! UNKNOWN_COMMAND: no command /frobnicate; /help lists them");
    c.send("//shrug");
    c.expect("[general] alice: /shrug");
    // The history is the room's, shared with the web client.
    let cookie = sign_up(&server, "webby");
    let mut ws = Ws::open(&server, Some(&cookie));
    let hello = ws.event();
    let general = &hello["payload"]["rooms"][0];
    assert_eq!(general["id"], "general");
    assert_eq!(general["messages"][0]["content"], "/shrug");
    assert_eq!(general["messages"][0]["user"]["username"], "alice");
    c.send("/quit");
    c.expect("* bye");
    assert_eq!(c.expect_closed(LINE_DEADLINE), Vec::<String>::new());
}

#[test]
fn login_join_chat_and_every_command_on_uring() {
    commands_work("uring");
}

#[test]
fn login_join_chat_and_every_command_on_epoll() {
    commands_work("epoll");
}

fn one_order_for_line_and_web_clients(io: &str) {
    let server = start(io, &[]);
    sign_up(&server, "alice");
    sign_up(&server, "bobby");
    let carol = sign_up(&server, "carol");
    let mut a = login(&server, "alice");
    let mut b = login(&server, "bobby");
    let mut ws = open_ws(&server, &carol);
    // Everyone is in: a /who from each line client lists all three.
    wait_for_who(&mut a, "general", &["alice", "bobby", "carol"]);
    wait_for_who(&mut b, "general", &["alice", "bobby", "carol"]);
    const EACH: usize = 50;
    for i in 0..EACH {
        a.send(&format!("a{i}"));
        b.send(&format!("b{i}"));
        post(&mut ws, "general", &format!("c{i}"));
    }
    let total = 3 * EACH;
    let mut orders: Vec<Vec<(String, String)>> = Vec::new();
    for c in [&mut a, &mut b] {
        let mut order = Vec::new();
        while order.len() < total {
            let line = c.line();
            let (room, user, text) =
                chat(&line).unwrap_or_else(|| panic!("{}: not a message: {line:?}", c.who));
            assert_eq!(room, "general");
            order.push((user.to_string(), text.to_string()));
        }
        orders.push(order);
    }
    let mut ids = std::collections::HashMap::new();
    let mut order = Vec::new();
    while order.len() < total {
        let (room, messages) = ws_messages(&mut ws);
        assert_eq!(room, "general");
        for (id, user, text) in messages {
            assert_ne!(id, 0, "accounts have ids");
            assert_eq!(
                *ids.entry(user.clone()).or_insert(id),
                id,
                "one id per user"
            );
            order.push((user, text));
        }
    }
    assert_eq!(ids.len(), 3, "{ids:?}");
    orders.push(order);
    // Each sender's messages in its order, every message once.
    for (user, tag) in [("alice", 'a'), ("bobby", 'b'), ("carol", 'c')] {
        let mine: Vec<&str> = orders[0]
            .iter()
            .filter(|(u, _)| u == user)
            .map(|(_, t)| t.as_str())
            .collect();
        let expected: Vec<String> = (0..EACH).map(|i| format!("{tag}{i}")).collect();
        assert_eq!(mine, expected, "{user}'s messages");
    }
    assert_eq!(orders[1], orders[0], "bobby's order differs from alice's");
    assert_eq!(orders[2], orders[0], "the web client's order differs");
    // The history is that order too, on the line port and over the WebSocket.
    a.send("/history 100");
    a.expect("* history of [general] (100 messages):");
    let history: Vec<(String, String)> = (0..100)
        .map(|_| {
            let line = a.line();
            let (_, user, text) = chat(&line).unwrap();
            (user.to_string(), text.to_string())
        })
        .collect();
    a.expect("* end of history");
    assert_eq!(history, orders[0][total - 100..]);
    let mut late = Ws::open(&server, Some(&carol));
    let hello = late.event();
    let newest_first: Vec<(String, String)> = hello["payload"]["rooms"][0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user"]["username"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut expected = orders[0].clone();
    expected.reverse();
    assert_eq!(newest_first, expected[..newest_first.len()]);
    assert_eq!(newest_first.len(), 100);
    // A room's messages go to that room's line users only.
    b.send("/join random");
    b.expect("* now in [random] Random");
    b.sync();
    b.send("elsewhere");
    b.expect("[random] bobby: elsewhere");
    let (room, got) = ws_messages(&mut ws);
    assert_eq!(room, "random");
    assert_eq!(got[0].2, "elsewhere");
    assert_eq!(a.sync(), Vec::<String>::new(), "alice is in general");
}

#[test]
fn line_and_web_clients_see_one_order_on_uring() {
    one_order_for_line_and_web_clients("uring");
}

#[test]
fn line_and_web_clients_see_one_order_on_epoll() {
    one_order_for_line_and_web_clients("epoll");
}

#[test]
fn who_lists_everyone_on_every_core_once() {
    let server = start("uring", &[]);
    let webby = sign_up(&server, "webby");
    // Eight accounts on eight connections, more while one core has none: SO_REUSEPORT spreads
    // connections by a hash of their address, so a few land on each core.
    const USERS_MIN: usize = 8;
    const USERS_MAX: usize = 24;
    let mut names: Vec<String> = Vec::new();
    let mut clients: Vec<LineClient> = Vec::new();
    let on_core = |core: usize| {
        server.metric(&format!(
            "ringchat_line_open_connections{{core=\"{core}\"}}"
        ))
    };
    while names.len() < USERS_MIN || on_core(0) == 0 || on_core(1) == 0 {
        assert!(
            names.len() < USERS_MAX,
            "every line connection is on one core"
        );
        let name = format!("user{}", names.len());
        sign_up(&server, &name);
        clients.push(login(&server, &name));
        names.push(name);
    }
    // Second connections of one line user and of the web user are not listed twice.
    let mut again = login(&server, "user0");
    let _web = [open_ws(&server, &webby), open_ws(&server, &webby)];
    let mut everyone: Vec<&str> = names.iter().map(String::as_str).collect();
    everyone.push("webby");
    for c in &mut clients {
        wait_for_who(c, "general", &everyone);
    }
    wait_for_who(&mut again, "general", &everyone);
    // A line user who moves to another room leaves general's list; the web user is in every
    // room.
    clients[7].send("/join random");
    clients[7].expect("* now in [random] Random");
    wait_for_who(&mut clients[7], "random", &["user7", "webby"]);
    everyone.retain(|n| *n != "user7");
    wait_for_who(&mut clients[0], "general", &everyone);
    // A user gone from every connection leaves the list; one with a connection left stays.
    clients[3].send("/quit");
    clients[3].expect("* bye");
    clients[3].expect_closed(LINE_DEADLINE);
    clients[0].send("/quit");
    clients[0].expect("* bye");
    clients[0].expect_closed(LINE_DEADLINE);
    everyone.retain(|n| *n != "user3");
    for k in [1, 6] {
        wait_for_who(&mut clients[k], "general", &everyone);
    }
    wait_for_who(&mut again, "general", &everyone);
}

/// Reads a welcome line in guest mode; returns the guest's name, with its `~`.
fn guest_welcome(c: &mut LineClient) -> String {
    let line = c.line();
    let name = line
        .strip_prefix("* welcome, you are ")
        .and_then(|rest| rest.split_once(" in [general]; "))
        .map(|(name, _)| name.to_string())
        .unwrap_or_else(|| panic!("not a guest welcome: {line:?}"));
    assert!(
        line.ends_with("/nick NAME renames you, /login EMAIL PASSWORD signs you in"),
        "{line:?}"
    );
    let hex = name
        .strip_prefix("~guest-")
        .unwrap_or_else(|| panic!("not a guest name: {name:?}"));
    assert!(
        hex.len() == 4
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "not 4 hex digits: {name:?}"
    );
    name
}

fn guest(server: &Server, label: &str) -> (LineClient, String) {
    let mut c = LineClient::connect(server, label);
    let name = guest_welcome(&mut c);
    c.who = format!("{label} ({name})");
    // The welcome may be followed by the room's join answer and history.
    c.sync();
    (c, name)
}

/// Renames a guest, retrying while the name is still taken (a name released on another core
/// may take a moment to be free).
fn nick_when_free(c: &mut LineClient, nick: &str) {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        c.send(&format!("/nick {nick}"));
        // Messages in the room may come first.
        let (line, _) = c.until("the /nick answer", |l| !l.starts_with('['));
        if line == format!("* you are now ~{nick}") {
            return;
        }
        assert!(
            line.starts_with("! NICK_TAKEN: ") && Instant::now() < deadline,
            "{}: /nick {nick} never succeeded; last answer {line:?}",
            c.who
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn guests_chat_under_marked_names_they_can_change() {
    let server = start("uring", &["--line-guest-room", "general"]);
    let webby = sign_up(&server, "webby");
    let mut ws = open_ws(&server, &webby);
    let (mut g1, name1) = guest(&server, "g1");
    g1.send("hi");
    g1.expect(&format!("[general] {name1}: hi"));
    let (_, got) = ws_messages(&mut ws);
    assert_eq!(got, [(0, name1.clone(), "hi".to_string())], "user id 0");
    g1.send("/nick alice_2");
    g1.expect("* you are now ~alice_2");
    g1.send("renamed");
    g1.expect("[general] ~alice_2: renamed");
    let (_, got) = ws_messages(&mut ws);
    assert_eq!(got, [(0, "~alice_2".to_string(), "renamed".to_string())]);

    let (mut g2, name2) = guest(&server, "g2");
    assert_ne!(name1, name2);
    g2.send("/nick ALICE_2");
    g2.next_prefix("! NICK_TAKEN: ");
    g2.send("/nick alice_2");
    g2.next_prefix("! NICK_TAKEN: ");
    for bad in ["a", &"x".repeat(25), "é", "~bob", "bob!", "b.b"] {
        g2.send(&format!("/nick {bad}"));
        g2.next_prefix("! BAD_NICK: ");
    }
    // Two words are an extra argument, like any command's.
    for usage in ["/nick bad nick", "/nick"] {
        g2.send(usage);
        g2.expect("! BAD_COMMAND: usage: /nick NAME");
    }
    let longest = "y".repeat(24);
    g2.send(&format!("/nick {longest}"));
    g2.expect(&format!("* you are now ~{longest}"));
    g2.send("/nick B-2");
    g2.expect("* you are now ~B-2");
    // Guests stay in their room; /who, /rooms and /history work.
    g2.send("/join random");
    g2.next_prefix("! GUESTS_STAY: ");
    g2.send("/rooms");
    g2.expect("* rooms: general (General), random (Random)");
    g2.expect("* you are in [general]");
    wait_for_who(&mut g2, "general", &["webby", "~B-2", "~alice_2"]);
    g2.send("/history 2");
    g2.expect("* history of [general] (2 messages):");
    g2.expect(&format!("[general] {name1}: hi"));
    g2.expect("[general] ~alice_2: renamed");
    g2.expect("* end of history");
    // A guest may take an account's name, but keeps the mark and id 0.
    g2.send("/nick webby");
    g2.expect("* you are now ~webby");
    g2.send("it is me");
    g2.expect("[general] ~webby: it is me");
    g1.expect("[general] ~webby: it is me");
    let (_, got) = ws_messages(&mut ws);
    assert_eq!(got, [(0, "~webby".to_string(), "it is me".to_string())]);

    // A name is free again once its guest is gone.
    g1.send("/quit");
    g1.expect("* bye");
    g1.expect_closed(LINE_DEADLINE);
    nick_when_free(&mut g2, "alice_2");

    // A guest's random name is taken while it is connected, and released by /login.
    let (mut g3, name3) = guest(&server, "g3");
    let bare3 = name3.trim_start_matches('~').to_string();
    g2.send(&format!("/nick {bare3}"));
    g2.next_prefix("! NICK_TAKEN: ");
    g3.send(&format!("/login webby@example.com {PASSWORD}"));
    g3.expect("* logged in as webby");
    g3.expect("* now in [general] General");
    g3.sync();
    g3.send("now with my account");
    g3.expect("[general] webby: now with my account");
    loop {
        let (_, got) = ws_messages(&mut ws);
        if let Some((id, user, _)) = got.iter().find(|(_, _, t)| t == "now with my account") {
            assert_ne!(*id, 0);
            assert_eq!(user, "webby");
            break;
        }
    }
    nick_when_free(&mut g2, &bare3);
    // A guest who logs in may then move between rooms.
    g3.send("/join random");
    g3.expect("* now in [random] Random");
}

#[test]
fn without_guest_mode_only_login_help_and_quit_work_before_login() {
    // One core: the failure counters are per core, and this test counts them.
    let server = start(
        "epoll",
        &["--threads", "1", "--login-failures-per-minute", "3"],
    );
    sign_up(&server, "alice");
    sign_up_with(
        &server,
        "spacey",
        "spacey@example.com",
        "correct horse battery",
    );
    let mut c = LineClient::connect(&server, "anonymous");
    c.next_prefix("* welcome");
    for refused in [
        "hello?",
        "/join general",
        "/who",
        "/history 5",
        "/rooms",
        "/nick bob",
    ] {
        c.send(refused);
        c.expect("! LOGIN_REQUIRED: log in first: /login EMAIL PASSWORD");
    }
    c.send("/help");
    c.next_prefix("* ");
    c.sync_before_login();
    c.send("/login alice@example.com wrong-password");
    c.expect("! LOGIN_FAILED: Login failed");
    c.send("/login nobody@example.com 0123456789");
    c.expect("! LOGIN_FAILED: Login failed");
    // The REST API's validation, in its order.
    c.send("/login not-an-email 0123456789");
    c.expect("! BAD_REQUEST: email: invalid format");
    c.send("/login not-an-email short");
    c.expect("! BAD_REQUEST: email: invalid format");
    c.send("/login alice@example.com short");
    c.expect("! BAD_REQUEST: password: invalid size");
    c.send(&format!(
        "/login {}@example.com 0123456789",
        "a".repeat(100)
    ));
    c.expect("! BAD_REQUEST: email: too long");
    c.send("/login");
    c.next_prefix("! BAD_COMMAND: ");
    // The password is the rest of the line, spaces included.
    c.send("/login spacey@example.com correct horse battery");
    c.expect("* logged in as spacey");
    c.expect("* now in [general] General");
    c.sync();
    c.send("in");
    c.expect("[general] spacey: in");
    c.send("/quit");
    c.expect("* bye");
    c.expect_closed(LINE_DEADLINE);

    // /quit works before login.
    let mut d = LineClient::connect(&server, "quitter");
    d.next_prefix("* welcome");
    d.send("/quit");
    d.expect("* bye");
    d.expect_closed(LINE_DEADLINE);

    // Failed logins count with the REST API's: 2 so far from this address, the limit is 3.
    let mut e = LineClient::connect(&server, "guesser");
    e.next_prefix("* welcome");
    e.send("/login alice@example.com wrong-again");
    e.expect("! LOGIN_FAILED: Login failed");
    e.send("/login alice@example.com wrong-thrice");
    let line = e.next_prefix("! RATE_LIMITED: too many attempts; try again in ");
    assert!(line.ends_with(" s"), "{line:?}");
    let (status, _) = post_json(
        &server,
        "/api/login",
        &serde_json::json!({"email": "alice@example.com", "password": "wrong-password"}),
    );
    assert_eq!(status, 429, "the REST API shares the line port's counters");
}

#[test]
fn bad_input_gets_an_error_line_and_the_connection_stays() {
    let server = start(
        "uring",
        &["--line-max-bytes", "100", "--max-message-chars", "40"],
    );
    sign_up(&server, "alice");
    let webby = sign_up(&server, "webby");
    let mut c = LineClient::connect(&server, "alice");
    c.next_prefix("* welcome");
    // Telnet negotiation before the login (WILL ECHO, DO SUPPRESS-GO-AHEAD) is removed and
    // never answered: the next bytes from the server are the login's answer.
    let mut login = b"\xff\xfb\x01\xff\xfd\x03".to_vec();
    login.extend_from_slice(format!("/login alice@example.com {PASSWORD}\r\n").as_bytes());
    c.send_raw(&login);
    c.expect("* logged in as alice");
    c.expect("* now in [general] General");
    c.sync();

    // Line length: 100 bytes pass (25 characters of 4 bytes, within the 40 characters a message
    // may hold), 101 do not, and the connection goes on.
    let at_limit = "\u{1f600}".repeat(25);
    assert_eq!(at_limit.len(), 100);
    c.send(&at_limit);
    c.expect(&format!("[general] alice: {at_limit}"));
    c.send(&"y".repeat(101));
    c.expect("! LINE_TOO_LONG: a line holds at most 100 bytes; it was dropped");
    c.send("after");
    c.expect("[general] alice: after");
    // A 10,000-byte line without its end: the error comes before the end does, once; the rest of
    // the line is discarded.
    c.send_raw(&[b'z'; 10_000]);
    let promptly = c
        .try_line(Duration::from_secs(2))
        .unwrap_or_else(|why| panic!("no error before the line's end: {why}\n{}", c.history()));
    assert_eq!(
        promptly,
        "! LINE_TOO_LONG: a line holds at most 100 bytes; it was dropped"
    );
    c.send_raw(&[b'z'; 5_000]);
    c.send("still the long line\r\nlater");
    c.expect("[general] alice: later");

    // Invalid UTF-8 is dropped; so is IAC IAC (a 0xFF byte, never UTF-8).
    c.send_raw(b"bad \xc3\x28 utf8\r\n");
    c.expect("! BAD_UTF8: the line is not valid UTF-8; it was dropped");
    c.send_raw(b"ff \xff\xff byte\r\n");
    c.expect("! BAD_UTF8: the line is not valid UTF-8; it was dropped");
    c.send("good");
    c.expect("[general] alice: good");

    // Every line end, also several in one write.
    c.send_raw(b"crlf\r\n");
    c.expect("[general] alice: crlf");
    c.send_raw(b"lf\n");
    c.expect("[general] alice: lf");
    c.send_raw(b"cr nul\r\0");
    c.expect("[general] alice: cr nul");
    c.send_raw(b"one\ntwo\r\nthree\r\0four\r\n");
    for text in ["one", "two", "three", "four"] {
        c.expect(&format!("[general] alice: {text}"));
    }
    // The terminator does not count toward the limit.
    c.send_raw(format!("{at_limit}\r\0").as_bytes());
    c.expect(&format!("[general] alice: {at_limit}"));

    // Telnet subnegotiation (terminal type) and two-byte commands (NOP, AYT) mid-line.
    c.send_raw(b"hel\xff\xfa\x18\x00xterm\xff\xf0lo\xff\xf1 th\xff\xf6ere\r\n");
    c.expect("[general] alice: hello there");

    // Commands and content.
    c.send("/foo");
    c.expect("! UNKNOWN_COMMAND: no command /foo; /help lists them");
    c.send("//x");
    c.expect("[general] alice: /x");
    let forty = "é".repeat(40);
    c.send(&forty);
    c.expect(&format!("[general] alice: {forty}"));
    c.send(&"é".repeat(41));
    c.expect("! CONTENT_TOO_LONG: a message holds at most 40 characters");
    c.send("ok");
    c.expect("[general] alice: ok");

    // What the web client sends is made safe for the terminal: control characters (not tab)
    // become U+FFFD, later lines are indented.
    let mut ws = open_ws(&server, &webby);
    post(
        &mut ws,
        "general",
        "bell\u{7} esc\u{1b}[2J del\u{7f} c1\u{9b}1m\ttab",
    );
    c.expect("[general] webby: bell\u{fffd} esc\u{fffd}[2J del\u{fffd} c1\u{fffd}1m\ttab");
    post(&mut ws, "general", "first\nsecond\n[general] fake: third");
    c.expect("[general] webby: first");
    c.expect("  second");
    c.expect("  [general] fake: third");
    c.send("still here");
    c.expect("[general] alice: still here");

    // Names are made safe too.
    let evil = sign_up_with(&server, "ev\u{1b}[31mil", "evil@example.com", PASSWORD);
    let mut ws = open_ws(&server, &evil);
    post(&mut ws, "general", "boo");
    c.expect("[general] ev\u{fffd}[31mil: boo");
}

#[test]
fn an_idle_client_is_told_and_closed() {
    let server = start("uring", &["--line-idle-timeout", "1s"]);
    let mut c = LineClient::connect(&server, "idle");
    c.next_prefix("* welcome");
    // Input keeps it open past the timeout.
    let began = Instant::now();
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(400));
        c.send("/help");
    }
    assert!(began.elapsed() >= Duration::from_millis(1500));
    c.sync_before_login();
    let quiet = Instant::now();
    let lines = c.expect_closed(Duration::from_secs(4));
    let waited = quiet.elapsed();
    assert_eq!(
        lines,
        ["! IDLE_TIMEOUT: nothing received for 1 s; disconnected"],
        "{}",
        c.history()
    );
    assert!(
        waited >= Duration::from_millis(500),
        "closed after {waited:?}"
    );
}

/// A socket whose receive buffer is small, so that a reader that never reads backs up into the
/// server's outbox soon.
fn small_buffer_connect(server: &Server) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let addr = server.line_addr.unwrap();
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.into()
}

#[test]
fn a_slow_reader_is_cut_while_the_others_keep_pace() {
    // `--ws-max-message 4096`: the outbox budget is 64 KiB.
    let server = start("uring", &["--ws-max-message", "4096"]);
    for name in ["sender", "reader", "sloww"] {
        sign_up(&server, name);
    }
    let mut slow = LineClient::wrap(small_buffer_connect(&server), "sloww");
    slow.next_prefix("* welcome");
    slow.send(&format!("/login sloww@example.com {PASSWORD}"));
    slow.expect("* logged in as sloww");
    slow.expect("* now in [general] General");
    slow.sync();
    let mut sender = login(&server, "sender");
    let mut reader = login(&server, "reader");
    wait_for_who(&mut reader, "general", &["reader", "sender", "sloww"]);
    // ~4 KB a message: the slow one's socket buffers (a few MB on loopback at most) fill, then
    // its outbox.
    const MESSAGES_MAX: usize = 4000;
    const CHECK_EVERY: usize = 100;
    let filler = "x".repeat(3900);
    let text = |i: usize| format!("m{i:05} {filler}");
    let mut received: Vec<String> = Vec::new();
    let mut sent = 0;
    let mut cut_after = None;
    while sent < MESSAGES_MAX {
        sender.send(&text(sent));
        sender.expect(&format!("[general] sender: {}", text(sent)));
        sent += 1;
        while received.len() < sent {
            let line = reader.line();
            let (_, user, text) =
                chat(&line).unwrap_or_else(|| panic!("reader: not a message: {line:.80?}"));
            assert_eq!(user, "sender");
            received.push(text.to_string());
        }
        if sent.is_multiple_of(CHECK_EVERY) {
            reader.send("/who");
            let answer = reader.next_prefix("* in [general] now (");
            if !who_names(&answer, "general").contains(&"sloww".to_string()) {
                cut_after = Some(sent);
                break;
            }
        }
    }
    let cut_after = cut_after.unwrap_or_else(|| {
        panic!("the slow reader was still in /who after {MESSAGES_MAX} messages")
    });
    assert_eq!(received.len(), cut_after);
    for (i, got) in received.iter().enumerate() {
        assert!(*got == text(i), "reader: message {i} is {got:.20?}");
    }
    // The slow one now reads: a prefix of the messages in order, perhaps the notice, then the
    // end.
    let lines = slow.expect_closed_cut(LINE_DEADLINE);
    let mut next = 0;
    for (k, line) in lines.iter().enumerate() {
        if line.starts_with('!') {
            assert_eq!(
                line, "! SLOW_CONSUMER: you were not reading; disconnected",
                "sloww"
            );
            assert_eq!(k, lines.len() - 1, "the notice is the last line");
            continue;
        }
        assert_eq!(
            chat(line).map(|(_, _, t)| t.to_string()),
            Some(text(next)),
            "sloww: line {k}"
        );
        next += 1;
    }
    assert!(next < cut_after, "the slow reader was cut before the end");
    assert_eq!(
        server.metric("ringchat_line_slow_consumers_total{core=\"all\"}"),
        1
    );
    eprintln!(
        "slow reader cut after {cut_after} messages; it had {next} in its socket, {} lines",
        lines.len()
    );
}

#[test]
fn shutdown_tells_line_clients_and_closes_them() {
    let mut server = start("uring", &["--line-guest-room", "general"]);
    let mut clients: Vec<(LineClient, String)> =
        (0..4).map(|i| guest(&server, &format!("g{i}"))).collect();
    for (c, _) in &mut clients {
        c.send("/who");
        c.next_prefix("* in [general] now (");
    }
    server.signal(15);
    for (c, _) in &mut clients {
        let lines = c.expect_closed(LINE_DEADLINE);
        assert_eq!(
            lines.last().map(String::as_str),
            Some("* server shutting down"),
            "{}",
            c.history()
        );
    }
    let (code, _) = server.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0));
}

/// A client that only reads a busy room sends nothing: the idle timeout still comes, with its
/// line, after the chat that was queued before it.
#[test]
fn a_client_that_only_reads_a_busy_room_times_out_too() {
    let server = start("uring", &["--line-idle-timeout", "1s"]);
    sign_up(&server, "talker");
    sign_up(&server, "lurker");
    let mut lurker = login(&server, "lurker");
    let mut talker = login(&server, "talker");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // The talker keeps its own connection alive by talking.
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                talker.send(&format!("busy {i}"));
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let lines = lurker.expect_closed(Duration::from_secs(6));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("[general] talker: busy")),
            "the lurker saw no chat\n{}",
            lurker.history()
        );
        assert_eq!(
            lines.last().map(String::as_str),
            Some("! IDLE_TIMEOUT: nothing received for 1 s; disconnected"),
            "{}",
            lurker.history()
        );
    });
}
