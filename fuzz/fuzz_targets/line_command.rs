//! Fuzzes the line port's command parser (`chat::line::parse`) and its terminal-safe output
//! (`message`, `notice`, `error_line`) with arbitrary lines. The first byte chooses the
//! `/history` limit; the rest, when it is UTF-8, is the line.
//!
//! The parser must never panic, and what it gives must hold up: a blank line is `Nothing` and
//! only it is; a message is the line itself or, for `//x`, the line less its first slash; a
//! room or nick is one non-empty word of the line, an e-mail a non-empty piece of it with no
//! space or tab; a password is the non-empty rest of the line; a history count is at most the
//! limit (and at least 1 when given); a refusal is `BAD_COMMAND` or `UNKNOWN_COMMAND` with a
//! short message.
//!
//! The output must be safe for a terminal whatever the text: valid UTF-8 made of CRLF-ended
//! lines, with no control character but tab and no bidirectional override inside a line, a
//! message's further lines indented so that none can pass for another message, and a notice
//! or error one line. It checks no more; the unit tests in `src/chat/line.rs` do.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringchat::chat::events::EventError;
use ringchat::chat::line::{Command, error_line, message, notice, parse};
use ringchat::store::HISTORY_PAGE_MESSAGES_MAX;

/// Limits worth reaching: none, one, the default count, the server's.
const HISTORY_MAX: [usize; 4] = [0, 1, 20, HISTORY_PAGE_MESSAGES_MAX];

/// Longest refusal message, in bytes: it quotes at most 32 characters of the line.
const ERROR_MESSAGE_BYTES_MAX: usize = 256;

/// Whether `word` is one whitespace-free, non-empty piece of `line`.
fn is_word_of(word: &str, line: &str) -> bool {
    !word.is_empty() && !word.contains(char::is_whitespace) && is_inside(word, line)
}

/// Whether `part` is a slice of `line` (not merely equal to some part of it).
fn is_inside(part: &str, line: &str) -> bool {
    let range = line.as_bytes().as_ptr_range();
    part.is_empty() || (range.contains(&part.as_ptr()) && part.len() <= line.len())
}

/// Checks that `out` is CRLF-ended lines with no control character but tab and no
/// bidirectional override; returns the lines.
fn safe_lines(out: &[u8]) -> Vec<&str> {
    let text = std::str::from_utf8(out).expect("output is UTF-8");
    let body = text.strip_suffix("\r\n").expect("output ends with CRLF");
    let lines: Vec<&str> = body.split("\r\n").collect();
    for line in &lines {
        for c in line.chars() {
            assert!(!(c.is_control() && c != '\t'), "control {c:?} in {line:?}");
            assert!(
                !matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'),
                "bidirectional override in {line:?}"
            );
        }
    }
    lines
}

fuzz_target!(|data: &[u8]| {
    let [choice, input @ ..] = data else {
        return;
    };
    let Ok(line) = std::str::from_utf8(input) else {
        return;
    };
    let history_max = HISTORY_MAX[usize::from(*choice) % HISTORY_MAX.len()];

    let parsed = parse(line, history_max);
    assert_eq!(
        matches!(parsed, Ok(Command::Nothing)),
        line.trim().is_empty(),
        "Nothing for {line:?}"
    );
    if !matches!(parsed, Ok(Command::Nothing | Command::Say(_))) {
        assert!(
            line.starts_with('/') && !line.starts_with("//"),
            "a command from {line:?}"
        );
    }
    match &parsed {
        Ok(Command::Nothing) => {}
        Ok(Command::Say(text)) => {
            assert!(is_inside(text, line));
            if let Some(rest) = line.strip_prefix('/') {
                assert!(
                    rest.starts_with('/') && *text == rest,
                    "said {text:?} for {line:?}"
                );
            } else {
                assert_eq!(*text, line);
            }
        }
        Ok(Command::Login { email, password }) => {
            // Split at the first space or tab only (other whitespace is part of the e-mail,
            // which then matches no account).
            assert!(
                !email.is_empty() && is_inside(email, line),
                "e-mail {email:?}"
            );
            assert!(!email.contains([' ', '\t']), "e-mail {email:?}");
            assert!(!password.is_empty() && is_inside(password, line));
            assert!(!password.starts_with([' ', '\t']), "password {password:?}");
            assert!(
                line.ends_with(password),
                "the password is the rest of the line"
            );
        }
        Ok(Command::Join(word) | Command::Nick(word)) => {
            assert!(is_word_of(word, line), "word {word:?}");
        }
        Ok(Command::History(n)) => {
            assert!(*n <= history_max, "history {n} over {history_max}");
            assert!(
                *n >= 1 || line.split_whitespace().count() == 1,
                "history 0 asked"
            );
        }
        Ok(Command::Rooms | Command::Who | Command::Help | Command::Quit) => {}
        Err(error) => {
            assert!(
                matches!(error.id, "BAD_COMMAND" | "UNKNOWN_COMMAND"),
                "id {}",
                error.id
            );
            assert!(
                error.message.len() <= ERROR_MESSAGE_BYTES_MAX,
                "a message of {} bytes",
                error.message.len()
            );
        }
    }

    // The line as a room, a user and a message's text: the first output line is the message's
    // head, and every further line is indented, so none can start with `[`.
    let mut out = Vec::new();
    message(&mut out, line, line, line);
    let lines = safe_lines(&out);
    assert!(lines[0].starts_with('['));
    assert!(lines[1..].iter().all(|l| l.starts_with("  ")), "{lines:?}");
    let content = line.strip_suffix('\n').unwrap_or(line);
    assert_eq!(lines.len(), content.split('\n').count());

    let mut out = Vec::new();
    notice(&mut out, line);
    assert_eq!(safe_lines(&out).len(), 1);
    let mut out = Vec::new();
    let error = EventError {
        id: "X",
        message: line.to_string(),
    };
    error_line(&mut out, &error);
    assert_eq!(safe_lines(&out).len(), 1);
});
