//! Fuzzes cookie parsing (`find_in_field`, `find_cookie`) and the `Set-Cookie` writer
//! (`set_cookie_value`). The first byte chooses the cookie name; the rest is one or more
//! `Cookie` field values separated by LF.
//!
//! Nothing may panic, and:
//! - a value found is a slice of the field, cookie-octets only (so it can go into a store key
//!   or a log line as it is), and at most `COOKIE_VALUE_BYTES_MAX` bytes;
//! - the first pair with the name decides: a pair with another name put in front changes
//!   nothing, and neither does a pair with the same name put behind;
//! - `find_cookie` over several fields is the first field's answer that has one, whatever the
//!   case of the field names, and other fields are ignored; through `decode_request`, a
//!   field that survives decoding gives the same answer as the bytes that were sent;
//! - a value found, written with `set_cookie_value`, has no CR, LF or NUL, and reads back as
//!   the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringchat::proto::http1::{
    BodyFraming, COOKIE_VALUE_BYTES_MAX, Decode, HEADERS_COUNT_MAX, RequestHead, Version,
    decode_request, find_cookie, find_in_field, set_cookie_value,
};

/// Names worth asking for: the session cookie's, a one-letter one, the empty name.
const NAMES: [&str; 3] = ["sid", "a", ""];

fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

fn head<'b>(headers: &'b [httparse::Header<'b>]) -> RequestHead<'b> {
    RequestHead {
        method: "GET",
        target: "/",
        version: Version::Http11,
        headers,
        framing: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
    }
}

fuzz_target!(|data: &[u8]| {
    let [choice, input @ ..] = data else {
        return;
    };
    let name = NAMES[usize::from(*choice) % NAMES.len()];
    let fields: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();

    for field in &fields {
        let found = find_in_field(field, name);
        if let Some(value) = found {
            assert!(
                value.len() <= COOKIE_VALUE_BYTES_MAX,
                "{} bytes",
                value.len()
            );
            assert!(value.bytes().all(is_cookie_octet), "{value:?}");
            let range = field.as_ptr_range();
            assert!(value.is_empty() || range.contains(&value.as_ptr()));

            let written = set_cookie_value(name, value, 604_800, choice & 0x80 != 0);
            assert!(!written.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)));
            assert_eq!(find_in_field(written.as_bytes(), name), Some(value));
        }
        let other = if name == "x" { "y" } else { "x" };
        let front = [format!("{other}=1; ").as_bytes(), field].concat();
        assert_eq!(find_in_field(&front, name), found, "a pair in front");
        if found.is_some() {
            let behind = [field, format!("; {name}=other").as_bytes()].concat();
            assert_eq!(find_in_field(&behind, name), found, "a pair behind");
        }
    }

    // Several fields, each named by one bit of the choice byte: Cookie, cOOKIE or another.
    let headers: Vec<httparse::Header> = fields
        .iter()
        .enumerate()
        .map(|(i, field)| httparse::Header {
            name: match (usize::from(*choice) >> (i % 7)) & 3 {
                0 => "Cookie",
                1 => "cOOKIE",
                2 => "Cookies",
                _ => "Set-Cookie",
            },
            value: field,
        })
        .collect();
    let expected = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
        .find_map(|h| find_in_field(h.value, name));
    assert_eq!(find_cookie(&head(&headers), name), expected);

    // The same fields sent in a request.
    let mut request = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    for field in &fields {
        if field.contains(&b'\r') {
            return;
        }
        request.extend_from_slice(b"Cookie: ");
        request.extend_from_slice(field);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    let mut slots = [httparse::EMPTY_HEADER; HEADERS_COUNT_MAX];
    if let Ok(Decode::Complete { value: head, .. }) = decode_request(&request, &mut slots) {
        let sent = fields.iter().find_map(|f| find_in_field(f, name));
        assert_eq!(find_cookie(&head, name), sent, "through decode_request");
    }
});
