//! The line port's chat language (docs/line-chat.md), with no I/O: commands parsed from the
//! lines a telnet or netcat user types, and what the server writes back — chat messages as
//! `[room] user: text`, notices as `* …`, errors as `! ID: message` — made safe for a terminal.
//!
//! Byte-level framing (line ends, the line limit, telnet commands, UTF-8) is
//! [`crate::proto::line`]'s; this module starts from a whole line of text.
//!
//! **Terminal safety.** Names and texts come from every kind of client (a web client may send
//! escape sequences or several lines). Control characters (C0 other than tab, DEL, C1) and the
//! bidirectional-override characters are written as U+FFFD, and a text's further lines are
//! indented by two spaces, so a line the server writes that starts with `[` is always the start
//! of a real message and nobody can move another user's cursor or fake a message.

use super::events::{EventError, ShownMessage};
use crate::store::{GUEST_USER_ID, User};

/// Messages `/history` shows when no count is given.
pub const HISTORY_LINES_DEFAULT: usize = 20;
/// Messages `/join` shows of the room joined.
pub const JOIN_HISTORY_LINES: usize = 10;
/// Shortest guest name.
pub const NICK_CHARS_MIN: usize = 2;
/// Longest guest name.
pub const NICK_CHARS_MAX: usize = 24;
/// Guest names are shown with this mark, which no `/nick` can remove.
pub const GUEST_MARK: char = '~';

/// One line a client typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `/login EMAIL PASSWORD` (the password is the rest of the line).
    Login {
        email: &'a str,
        password: &'a str,
    },
    Join(&'a str),
    Rooms,
    Who,
    /// `/history [N]`, N already checked.
    History(usize),
    Nick(&'a str),
    Help,
    Quit,
    /// A message to the current room (`//x` already unescaped to `/x`).
    Say(&'a str),
    /// A blank line: ignored.
    Nothing,
}

fn error(id: &'static str, message: impl Into<String>) -> EventError {
    EventError::new(id, message)
}

/// Parses one line of text (its terminator already removed).
pub fn parse(line: &str, history_max: usize) -> Result<Command<'_>, EventError> {
    if line.trim().is_empty() {
        return Ok(Command::Nothing);
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(Command::Say(line));
    };
    if rest.starts_with('/') {
        return Ok(Command::Say(rest));
    }
    let (name, raw_args) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    let args = raw_args.trim();
    let words: Vec<&str> = args.split_whitespace().collect();
    let usage = |text: &str| error("BAD_COMMAND", format!("usage: {text}"));
    match name.to_ascii_lowercase().as_str() {
        "login" => {
            // The password is the rest of the line, trailing spaces included.
            let (email, password) = raw_args
                .trim_start()
                .split_once([' ', '\t'])
                .map(|(e, p)| (e, p.trim_start()))
                .filter(|(e, p)| !e.is_empty() && !p.is_empty())
                .ok_or_else(|| usage("/login EMAIL PASSWORD"))?;
            Ok(Command::Login { email, password })
        }
        "join" => match words.as_slice() {
            [room] => Ok(Command::Join(room)),
            _ => Err(usage("/join ROOM")),
        },
        "rooms" if words.is_empty() => Ok(Command::Rooms),
        "who" if words.is_empty() => Ok(Command::Who),
        "help" if words.is_empty() => Ok(Command::Help),
        "quit" => Ok(Command::Quit),
        "history" => match words.as_slice() {
            [] => Ok(Command::History(HISTORY_LINES_DEFAULT.min(history_max))),
            [n] => n
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=history_max).contains(n))
                .map(Command::History)
                .ok_or_else(|| {
                    error(
                        "BAD_COMMAND",
                        format!("/history takes a number from 1 to {history_max}"),
                    )
                }),
            _ => Err(usage("/history [N]")),
        },
        "nick" => match words.as_slice() {
            [nick] => Ok(Command::Nick(nick)),
            _ => Err(usage("/nick NAME")),
        },
        "rooms" | "who" | "help" => Err(usage(&format!("/{}", name.to_ascii_lowercase()))),
        _ => Err(error(
            "UNKNOWN_COMMAND",
            format!("no command /{}; /help lists them", safe_excerpt(name)),
        )),
    }
}

/// The commands, as `/help` lists them.
pub fn help(guest_mode: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut line = |text: &str| notice(&mut out, text);
    line("commands:");
    line("  /login EMAIL PASSWORD   sign in");
    line("  /join ROOM              make ROOM your current room");
    line("  /rooms                  list the rooms");
    line("  /who                    who is in your current room now");
    line("  /history [N]            the last N messages of your room (default 20)");
    if guest_mode {
        line("  /nick NAME              guests: take a new name");
    }
    line("  /help                   this list");
    line("  /quit                   leave");
    line("any other line is a message to your current room; start it with // to send a /");
    out
}

/// Whether `nick` is a valid guest name: [`NICK_CHARS_MIN`] to [`NICK_CHARS_MAX`] ASCII
/// letters, digits, `-` or `_`.
pub fn check_nick(nick: &str) -> Result<(), EventError> {
    let ok = (NICK_CHARS_MIN..=NICK_CHARS_MAX).contains(&nick.len())
        && nick
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(error(
            "BAD_NICK",
            format!(
                "a name is {NICK_CHARS_MIN} to {NICK_CHARS_MAX} letters, digits, - or _ (ASCII)"
            ),
        ))
    }
}

/// The key a guest name is unique by (names differ in more than case).
pub fn nick_key(nick: &str) -> String {
    nick.to_ascii_lowercase()
}

/// A guest's user: id [`GUEST_USER_ID`], name with the guest mark.
pub fn guest_user(nick: &str) -> User {
    User {
        id: GUEST_USER_ID,
        username: format!("{GUEST_MARK}{nick}"),
    }
}

/// A guest's name without its mark, when `user` is a guest.
pub fn guest_name(user: &User) -> Option<&str> {
    if user.id == GUEST_USER_ID {
        Some(
            user.username
                .strip_prefix(GUEST_MARK)
                .unwrap_or(&user.username),
        )
    } else {
        None
    }
}

/// Appends `* text` and CRLF.
pub fn notice(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"* ");
    push_safe(out, text);
    out.extend_from_slice(b"\r\n");
}

/// Appends `! ID: message` and CRLF.
pub fn error_line(out: &mut Vec<u8>, error: &EventError) {
    out.extend_from_slice(b"! ");
    out.extend_from_slice(error.id.as_bytes());
    out.extend_from_slice(b": ");
    push_safe(out, &error.message);
    out.extend_from_slice(b"\r\n");
}

/// Appends one message as `[room] user: text` (further lines of the text indented by two
/// spaces), CRLF after each line.
pub fn message(out: &mut Vec<u8>, room: &str, user: &str, content: &str) {
    out.push(b'[');
    push_safe(out, room);
    out.extend_from_slice(b"] ");
    push_safe(out, user);
    out.extend_from_slice(b": ");
    let content = content.strip_suffix('\n').unwrap_or(content);
    for (i, line) in content.split('\n').enumerate() {
        if i > 0 {
            out.extend_from_slice(b"  ");
        }
        push_safe(out, line.strip_suffix('\r').unwrap_or(line));
        out.extend_from_slice(b"\r\n");
    }
}

/// A stored batch, oldest first, as the line port shows it.
pub fn messages(room: &str, shown: &[ShownMessage<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(shown.iter().map(|m| m.content.len() + 32).sum());
    for m in shown {
        message(&mut out, room, &m.user.username, m.content);
    }
    out
}

/// Whether `c` is written as U+FFFD: controls other than tab, and the bidirectional
/// overrides and isolates (which can make a line read as something it is not).
fn unsafe_char(c: char) -> bool {
    (c.is_control() && c != '\t') || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn push_safe(out: &mut Vec<u8>, text: &str) {
    if !text.chars().any(unsafe_char) {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let c = if unsafe_char(c) { '\u{FFFD}' } else { c };
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
}

/// What an error line quotes of what the client typed, at most (characters).
pub const EXCERPT_CHARS_MAX: usize = 32;

/// At most [`EXCERPT_CHARS_MAX`] characters of what the client typed, for an error message.
pub fn safe_excerpt(text: &str) -> String {
    let mut cut: String = text.chars().take(EXCERPT_CHARS_MAX).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MessageId;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn parses_commands_and_messages() {
        let p = |l| parse(l, 100);
        assert_eq!(p("hello"), Ok(Command::Say("hello")));
        assert_eq!(p("//shrug"), Ok(Command::Say("/shrug")));
        assert_eq!(p("   "), Ok(Command::Nothing));
        assert_eq!(p(""), Ok(Command::Nothing));
        assert_eq!(
            p("/login a@b.co  pass word "),
            Ok(Command::Login {
                email: "a@b.co",
                password: "pass word "
            })
        );
        assert_eq!(
            p("/LOGIN a@b.co x"),
            Ok(Command::Login {
                email: "a@b.co",
                password: "x"
            })
        );
        assert_eq!(p("/join general"), Ok(Command::Join("general")));
        assert_eq!(p("/rooms"), Ok(Command::Rooms));
        assert_eq!(p("/who"), Ok(Command::Who));
        assert_eq!(p("/history"), Ok(Command::History(HISTORY_LINES_DEFAULT)));
        assert_eq!(p("/history 7"), Ok(Command::History(7)));
        assert_eq!(p("/nick bob"), Ok(Command::Nick("bob")));
        assert_eq!(p("/help"), Ok(Command::Help));
        assert_eq!(p("/quit"), Ok(Command::Quit));
        assert_eq!(p("/quit now"), Ok(Command::Quit));
        let id = |l| p(l).unwrap_err().id;
        for bad in [
            "/login",
            "/login a@b.co",
            "/join",
            "/join a b",
            "/nick",
            "/nick a b",
            "/who x",
            "/history 0",
            "/history 101",
            "/history x",
            "/history 1 2",
        ] {
            assert_eq!(id(bad), "BAD_COMMAND", "{bad}");
        }
        assert_eq!(id("/frobnicate"), "UNKNOWN_COMMAND");
        assert_eq!(id("/"), "UNKNOWN_COMMAND");
        assert!(
            p(&format!("/{}", "x".repeat(1000)))
                .unwrap_err()
                .message
                .len()
                < 200
        );
    }

    #[test]
    fn nicks_are_checked() {
        for good in ["ab", "alice_2", "A-b", &"x".repeat(NICK_CHARS_MAX)] {
            assert!(check_nick(good).is_ok(), "{good}");
        }
        for bad in [
            "a",
            "",
            "bad nick",
            "é1",
            "~ab",
            &"x".repeat(NICK_CHARS_MAX + 1),
            "a/b",
        ] {
            assert_eq!(check_nick(bad).unwrap_err().id, "BAD_NICK", "{bad}");
        }
        assert_eq!(nick_key("AbC"), "abc");
        let g = guest_user("bob");
        assert_eq!((g.id, g.username.as_str()), (GUEST_USER_ID, "~bob"));
        assert_eq!(guest_name(&g), Some("bob"));
        assert_eq!(
            guest_name(&User {
                id: 3,
                username: "~x".into()
            }),
            None
        );
    }

    #[test]
    fn output_is_safe_for_a_terminal() {
        let mut out = Vec::new();
        message(
            &mut out,
            "general",
            "ev\x1b[2Jil",
            "one\ntwo\r\n[general] alice: fake\n",
        );
        assert_eq!(
            text(out),
            "[general] ev\u{FFFD}[2Jil: one\r\n  two\r\n  [general] alice: fake\r\n"
        );
        let mut out = Vec::new();
        message(&mut out, "r", "u", "tab\there \u{202E}rtl \u{9b}c1 del\x7f");
        assert_eq!(
            text(out),
            "[r] u: tab\there \u{FFFD}rtl \u{FFFD}c1 del\u{FFFD}\r\n"
        );
        let mut out = Vec::new();
        error_line(&mut out, &error("X", "a\nb"));
        notice(&mut out, "hi\r");
        assert_eq!(text(out), "! X: a\u{FFFD}b\r\n* hi\u{FFFD}\r\n");
    }

    #[test]
    fn a_batch_is_one_line_per_message() {
        let alice = User {
            id: 1,
            username: "alice".into(),
        };
        let guest = guest_user("g");
        let shown = [
            ShownMessage {
                id: MessageId { ms: 1, seq: 0 },
                content: "hi",
                user: &alice,
                timestamp_ms: 1,
            },
            ShownMessage {
                id: MessageId { ms: 1, seq: 1 },
                content: "yo",
                user: &guest,
                timestamp_ms: 1,
            },
        ];
        assert_eq!(
            text(messages("lobby", &shown)),
            "[lobby] alice: hi\r\n[lobby] ~g: yo\r\n"
        );
    }

    #[test]
    fn help_mentions_nick_only_in_guest_mode() {
        assert!(text(help(true)).contains("/nick"));
        assert!(!text(help(false)).contains("/nick"));
        assert!(text(help(false)).lines().all(|l| l.starts_with("* ")));
    }
}
