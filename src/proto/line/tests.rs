//! Vectors and properties for the line decoder, as data-driven tables.
//!
//! - Vectors: captured client input (a Linux telnet client's session start with its option
//!   negotiation and NAWS subnegotiation, netcat's LF, telnet's CRLF and CR NUL), telnet
//!   commands inside lines and between CR and LF, subnegotiations with `IAC IAC` inside, cut
//!   short or past their limit, a literal 0xFF, lines at the limit and one byte past it (with
//!   and without a terminator, with a CR on the boundary), invalid and split UTF-8. Each is fed
//!   whole, split in two at every byte and byte by byte, and must give the same events and
//!   leave the same bytes buffered every way.
//! - Progress: from the states every vector passes through, every possible next byte is used.
//! - Properties (proptest): random input rich in terminators and telnet bytes, in random
//!   chunks, gives the events of one-shot feeding, which are those of a two-pass model written
//!   independently (strip telnet, then cut lines); `buffered()` never exceeds the limit.

use proptest::prelude::*;

use super::*;
use LineEvent::{BadUtf8, TooLong};

const IAC: u8 = TELNET_IAC;
const SB: u8 = TELNET_SB;
const SE: u8 = TELNET_SE;
const WILL: u8 = TELNET_WILL;
const DO: u8 = 253;
const NOP: u8 = 241;

fn line(text: &str) -> LineEvent {
    LineEvent::Line(text.to_owned())
}

/// What feeding a decoder gave: its events, and the bytes it holds at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fed {
    events: Vec<LineEvent>,
    buffered: usize,
}

/// Feeds `pieces` the way the server does, one read each, looping over every read until it is
/// used up. Checks on every call that it made progress and held no more than the limit.
fn feed(max: usize, pieces: &[&[u8]]) -> Fed {
    let mut decoder = LineDecoder::new(max);
    let mut events = Vec::new();
    for piece in pieces {
        let mut input = *piece;
        while !input.is_empty() {
            let (used, event) = decoder.decode(input);
            assert!(
                used > 0 && used <= input.len(),
                "used {used} of {}",
                input.len()
            );
            assert!(decoder.buffered() <= max, "{} held", decoder.buffered());
            input = &input[used..];
            events.extend(event);
        }
    }
    Fed {
        events,
        buffered: decoder.buffered(),
    }
}

/// One captured or constructed input and what it must decode to.
struct Vector {
    name: &'static str,
    max: usize,
    input: Vec<u8>,
    events: Vec<LineEvent>,
    buffered: usize,
}

fn vector(
    name: &'static str,
    max: usize,
    input: impl AsRef<[u8]>,
    events: Vec<LineEvent>,
) -> Vector {
    Vector {
        name,
        max,
        input: input.as_ref().to_vec(),
        events,
        buffered: 0,
    }
}

/// The start of a session from netkit telnet (Debian's `telnet host port`) before the user
/// types: DO SUPPRESS-GO-AHEAD, WILL TERMINAL-TYPE, NAWS, TERMINAL-SPEED, TOGGLE-FLOW-CONTROL,
/// X-DISPLAY-LOCATION, NEW-ENVIRON, DO STATUS, then the window size (80x24).
const TELNET_START: &[u8] = b"\xff\xfd\x03\xff\xfb\x18\xff\xfb\x1f\xff\xfb\x20\xff\xfb\x21\
\xff\xfb\x23\xff\xfb\x27\xff\xfd\x05\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0";

/// A window 255 columns wide: NAWS doubles the 255 inside its subnegotiation.
const NAWS_255: &[u8] = b"\xff\xfa\x1f\x00\xff\xff\x00\x18\xff\xf0";

fn vectors() -> Vec<Vector> {
    let sb_max = TELNET_SUBNEGOTIATION_BYTES_MAX;
    let mut vectors = vec![
        vector(
            "telnet session start, then a login with CRLF",
            LINE_BYTES_MAX_DEFAULT,
            [TELNET_START, b"/login a@b.c pw\r\n"].concat(),
            vec![line("/login a@b.c pw")],
        ),
        vector(
            "telnet in character mode: CR NUL, negotiation between keystrokes",
            LINE_BYTES_MAX_DEFAULT,
            [b"h", TELNET_START, b"i\r\0/quit\r\0"].concat(),
            vec![line("hi"), line("/quit")],
        ),
        vector(
            "netcat: LF",
            LINE_BYTES_MAX_DEFAULT,
            b"hello\nworld\n",
            vec![line("hello"), line("world")],
        ),
        vector(
            "mixed terminators and empty lines",
            LINE_BYTES_MAX_DEFAULT,
            b"a\r\nb\nc\r\0\n\r\n\r\0d\n",
            vec![
                line("a"),
                line("b"),
                line("c"),
                line(""),
                line(""),
                line(""),
                line("d"),
            ],
        ),
        vector(
            "lone CRs stay in the line",
            LINE_BYTES_MAX_DEFAULT,
            b"a\rb\n\r\r\n\rx\r\n",
            vec![line("a\rb"), line("\r"), line("\rx")],
        ),
        vector(
            "LF CR: the CR starts the next line",
            LINE_BYTES_MAX_DEFAULT,
            b"a\n\rb\n",
            vec![line("a"), line("\rb")],
        ),
        vector(
            "NUL not after a CR is a byte of the line",
            LINE_BYTES_MAX_DEFAULT,
            b"\0a\0\n",
            vec![line("\0a\0")],
        ),
        vector(
            "negotiation in the middle of a line",
            LINE_BYTES_MAX_DEFAULT,
            b"he\xff\xfb\x18l\xff\xfd\x01lo\xff\xf1!\n",
            vec![line("hello!")],
        ),
        vector(
            "a command between CR and LF: still CRLF",
            LINE_BYTES_MAX_DEFAULT,
            [
                b"a\r".as_slice(),
                &[IAC, NOP],
                NAWS_255,
                b"\nb\r",
                &[IAC, WILL, 1],
                b"\0",
            ]
            .concat(),
            vec![line("a"), line("b")],
        ),
        vector(
            "subnegotiation with IAC IAC inside",
            LINE_BYTES_MAX_DEFAULT,
            [b"x".as_slice(), NAWS_255, b"y\r\n"].concat(),
            vec![line("xy")],
        ),
        vector(
            "line ends inside a subnegotiation are not line ends",
            LINE_BYTES_MAX_DEFAULT,
            [
                b"a".as_slice(),
                &[IAC, SB, 24, 0],
                b"\r\n\n\r\0",
                &[IAC, SE],
                b"b\n",
            ]
            .concat(),
            vec![line("ab")],
        ),
        vector(
            "a command inside a subnegotiation ends it",
            LINE_BYTES_MAX_DEFAULT,
            [
                &[IAC, SB, 24, 0, b'v', IAC, NOP][..],
                b"hi\n",
                &[IAC, SB, 1, IAC, WILL, 3],
                b"yo\n",
            ]
            .concat(),
            vec![line("hi"), line("yo")],
        ),
        vector(
            "subnegotiation at its limit",
            LINE_BYTES_MAX_DEFAULT,
            [&[IAC, SB][..], &vec![b'z'; sb_max], &[IAC, SE], b"ok\n"].concat(),
            vec![line("ok")],
        ),
        vector(
            "subnegotiation past its limit: the rest is data",
            LINE_BYTES_MAX_DEFAULT,
            [
                &[IAC, SB][..],
                &vec![b'z'; sb_max + 3],
                b"\n",
                &[IAC, SE],
                b"ok\n",
            ]
            .concat(),
            vec![line("zzz"), line("ok")],
        ),
        vector(
            "subnegotiation past its limit on IAC IAC: a 0xFF data byte",
            LINE_BYTES_MAX_DEFAULT,
            [&[IAC, SB][..], &vec![b'z'; sb_max], &[IAC, IAC], b"\nok\n"].concat(),
            vec![BadUtf8, line("ok")],
        ),
        vector(
            "IAC IAC is a literal 0xFF, which makes the line BadUtf8",
            LINE_BYTES_MAX_DEFAULT,
            b"a\xff\xffb\nok\n",
            vec![BadUtf8, line("ok")],
        ),
        vector(
            "a raw 0xFF before LF swallows the LF as a command",
            LINE_BYTES_MAX_DEFAULT,
            b"a\xff\nb\n",
            vec![line("ab")],
        ),
        vector(
            "a stray SE outside a subnegotiation is dropped",
            LINE_BYTES_MAX_DEFAULT,
            [&[IAC, SE][..], b"a\n"].concat(),
            vec![line("a")],
        ),
        vector(
            "exactly the limit",
            8,
            b"12345678\n12345678\r\n12345678\r\0",
            vec![line("12345678"), line("12345678"), line("12345678")],
        ),
        vector(
            "one byte past the limit, then a good line",
            8,
            b"123456789\nok\n",
            vec![TooLong, line("ok")],
        ),
        vector(
            "a lone CR as the byte past the limit",
            8,
            b"12345678\rx\nok\n",
            vec![TooLong, line("ok")],
        ),
        vector(
            "a lone CR past the limit, then CRLF ends the discarded line",
            8,
            b"12345678\r\r\nok\n",
            vec![TooLong, line("ok")],
        ),
        vector(
            "telnet commands do not count towards the limit",
            4,
            b"ab\xff\xfb\x18c\xff\xf1d\r\n",
            vec![line("abcd")],
        ),
        vector(
            "too long without a terminator, continuing over many bytes",
            8,
            [&vec![b'x'; 100][..], b"\xff\xfb\x18yyy\r", b"zz\nok\n"].concat(),
            vec![TooLong, line("ok")],
        ),
        vector(
            "a subnegotiation inside a discarded line hides its line ends",
            2,
            [
                b"abc".as_slice(),
                &[IAC, SB, 1],
                b"\n",
                &[IAC, SE],
                b"d\nok\n",
            ]
            .concat(),
            vec![TooLong, line("ok")],
        ),
        vector(
            "too long and invalid UTF-8: only TooLong",
            8,
            b"\xc3\x28\xc3\x28\xc3\x28\xc3\x28\xc3\n",
            vec![TooLong],
        ),
        vector(
            "limit 0: only empty lines pass",
            0,
            b"\n\r\na\nb\r\0\r\0",
            vec![line(""), line(""), TooLong, TooLong, line("")],
        ),
        vector(
            "invalid UTF-8",
            LINE_BYTES_MAX_DEFAULT,
            b"\xc3\x28\n\xc0\xaf\n\x80\n\xed\xa0\x80\n\xf4\x90\x80\x80\n\xe2\x82\nok\n",
            vec![
                BadUtf8,
                BadUtf8,
                BadUtf8,
                BadUtf8,
                BadUtf8,
                BadUtf8,
                line("ok"),
            ],
        ),
        vector(
            "multibyte UTF-8",
            LINE_BYTES_MAX_DEFAULT,
            "héllo wörld ✓ 🙂\r\n日本語\n".as_bytes(),
            vec![line("héllo wörld ✓ 🙂"), line("日本語")],
        ),
        vector(
            "multibyte UTF-8 at the limit counts bytes",
            4,
            "🙂\né🙂\n".as_bytes(),
            vec![line("🙂"), TooLong],
        ),
    ];
    let mut unfinished = vector(
        "an unfinished line is held, its pending CR and telnet command are not",
        LINE_BYTES_MAX_DEFAULT,
        b"ok\nabc\r\xff",
        vec![line("ok")],
    );
    unfinished.buffered = 3;
    vectors.push(unfinished);
    let mut unfinished_long = vector(
        "an unfinished line past the limit holds nothing",
        8,
        b"0123456789",
        vec![TooLong],
    );
    unfinished_long.buffered = 0;
    vectors.push(unfinished_long);
    vectors
}

#[test]
fn vectors_decode_the_same_however_split() {
    for v in vectors() {
        let expected = Fed {
            events: v.events.clone(),
            buffered: v.buffered,
        };
        assert_eq!(feed(v.max, &[&v.input]), expected, "{}: whole", v.name);
        for cut in 0..=v.input.len() {
            let (a, b) = v.input.split_at(cut);
            assert_eq!(feed(v.max, &[a, b]), expected, "{}: split at {cut}", v.name);
        }
        let bytes: Vec<&[u8]> = v.input.chunks(1).collect();
        assert_eq!(feed(v.max, &bytes), expected, "{}: byte by byte", v.name);
    }
}

#[test]
fn vectors_agree_with_the_model() {
    for v in vectors() {
        assert_eq!(model(v.max, &v.input), v.events, "{}", v.name);
    }
}

#[test]
fn decode_always_makes_progress() {
    // Every state a vector passes through (after each of its prefixes, fed byte by byte, so
    // mid-command, mid-subnegotiation, CR pending, discarding, at the limit), offered every
    // possible next byte alone and followed by more.
    for v in vectors() {
        let mut decoder = LineDecoder::new(v.max);
        for &byte in &v.input {
            for next in 0..=u8::MAX {
                let mut probe = decoder.clone();
                assert_eq!(probe.decode(&[next]).0, 1, "{}: byte {next}", v.name);
                let mut probe = decoder.clone();
                let used = probe.decode(&[next, b'a', b'\n']).0;
                assert!((1..=3).contains(&used), "{}: byte {next}", v.name);
            }
            assert_eq!(decoder.decode(&[byte]).0, 1);
        }
        assert_eq!(decoder.decode(&[]), (0, None), "{}", v.name);
    }
}

#[test]
fn too_long_is_reported_at_the_byte_that_passes_the_limit() {
    let mut decoder = LineDecoder::new(4);
    assert_eq!(decoder.decode(b"abcd"), (4, None));
    assert_eq!(decoder.buffered(), 4);
    assert_eq!(decoder.decode(b"efgh\nij\n"), (1, Some(TooLong)));
    assert_eq!(decoder.buffered(), 0);
    // The end of the discarded line gives no event, so the call reads on to the next one.
    assert_eq!(decoder.decode(b"fgh\nij\n"), (7, Some(line("ij"))));
    assert_eq!(decoder.buffered(), 0);
}

#[test]
fn buffer_never_grows_past_the_limit() {
    for max in [0, 1, 5, 100, 1000] {
        let mut decoder = LineDecoder::new(max);
        for _ in 0..max {
            assert_eq!(decoder.decode(b"x"), (1, None));
        }
        assert!(decoder.line.capacity() <= max, "capacity for {max}");
        let mut decoder = LineDecoder::new(max);
        let input = vec![b'x'; max];
        assert_eq!(decoder.decode(&input), (max, None));
        assert!(decoder.line.capacity() <= max, "capacity for {max}");
    }
}

/// The rules as two independent passes over the whole input: remove telnet commands, then cut
/// the data into lines. Only the events of lines, in order; a TooLong for the unfinished line
/// when it has already passed the limit.
fn model(max: usize, input: &[u8]) -> Vec<LineEvent> {
    // Pass 1: telnet.
    let mut data = Vec::new();
    let mut at = 0;
    while at < input.len() {
        if input[at] != IAC {
            data.push(input[at]);
            at += 1;
            continue;
        }
        match input.get(at + 1) {
            None => break,
            Some(&IAC) => {
                data.push(IAC);
                at += 2;
            }
            Some(&(WILL..=TELNET_DONT)) => at += 3,
            Some(&SB) => at = skip_subnegotiation(input, at + 2),
            Some(_) => at += 2,
        }
    }
    // Pass 2: lines.
    let verdict = |line: &[u8]| {
        if line.len() > max {
            TooLong
        } else {
            String::from_utf8(line.to_vec()).map_or(BadUtf8, LineEvent::Line)
        }
    };
    let mut events = Vec::new();
    let mut line = Vec::new();
    let mut at = 0;
    while at < data.len() {
        match (data[at], data.get(at + 1)) {
            (b'\n', _) => at += 1,
            (b'\r', Some(b'\n' | 0)) => at += 2,
            (byte, _) => {
                line.push(byte);
                at += 1;
                continue;
            }
        }
        events.push(verdict(&line));
        line.clear();
    }
    // The unfinished line, less a final CR that may yet turn out to be a terminator.
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if line.len() > max {
        events.push(TooLong);
    }
    events
}

/// Where ordinary input resumes after the subnegotiation whose content starts at `at`.
fn skip_subnegotiation(input: &[u8], mut at: usize) -> usize {
    let mut bytes = 0;
    while at < input.len() {
        if input[at] == IAC {
            match input.get(at + 1) {
                None => return input.len(),
                Some(&SE) => return at + 2,
                Some(&IAC) if bytes < TELNET_SUBNEGOTIATION_BYTES_MAX => {
                    bytes += 1;
                    at += 2;
                }
                // Past the limit, or a command that ends it: read on as ordinary input.
                Some(_) => return at,
            }
        } else if bytes < TELNET_SUBNEGOTIATION_BYTES_MAX {
            bytes += 1;
            at += 1;
        } else {
            return at;
        }
    }
    at
}

/// Input for the properties: mostly the bytes that matter to the decoder.
fn interesting_bytes(len: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            4 => Just(b'a'),
            2 => Just(b'\n'),
            2 => Just(b'\r'),
            1 => Just(0u8),
            3 => Just(IAC),
            1 => Just(SB),
            1 => Just(SE),
            1 => Just(WILL),
            1 => Just(DO),
            1 => Just(NOP),
            1 => Just(0xc3),
            1 => Just(0xa9),
            2 => any::<u8>(),
        ],
        0..len,
    )
}

fn limits() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..4, 4usize..40, Just(LINE_BYTES_MAX_DEFAULT)]
}

/// `input` cut at `cuts` (taken modulo its length, in any order).
fn cut_at<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut from = 0;
    for cut in cuts {
        pieces.push(&input[from..cut]);
        from = cut;
    }
    pieces.push(&input[from..]);
    pieces
}

proptest! {
    #[test]
    fn random_chunks_give_the_one_shot_events(
        max in limits(),
        input in interesting_bytes(400),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = feed(max, &[&input]);
        prop_assert_eq!(&whole.events, &model(max, &input));
        prop_assert_eq!(feed(max, &cut_at(&input, &cuts)), whole.clone());
        for event in &whole.events {
            if let LineEvent::Line(text) = event {
                prop_assert!(text.len() <= max && !text.contains('\n'));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_in_arbitrary_reads(
        max in limits(),
        input in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = feed(max, &[&input]);
        prop_assert_eq!(&whole.events, &model(max, &input));
        prop_assert_eq!(feed(max, &cut_at(&input, &cuts)), whole);
    }

    #[test]
    fn lines_come_out_as_they_went_in(
        lines in proptest::collection::vec(("[^\r\n]{0,30}", 0usize..3), 0..10),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut input = Vec::new();
        for (text, terminator) in &lines {
            input.extend_from_slice(text.as_bytes());
            input.extend_from_slice([&b"\n"[..], b"\r\n", b"\r\0"][*terminator]);
        }
        let expected: Vec<LineEvent> = lines.iter().map(|(text, _)| line(text)).collect();
        prop_assert_eq!(feed(LINE_BYTES_MAX_DEFAULT, &cut_at(&input, &cuts)).events, expected);
    }
}
