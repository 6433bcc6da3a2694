//! Cookies: finding one cookie in a request's `Cookie` fields, and writing `Set-Cookie` values.
//!
//! A `Cookie` field is `name=value` pairs separated by `; ` (RFC 6265 §4.2.1); browsers send
//! one field, HTTP/2-to-1.1 proxies may split it into several, so every field is searched. The
//! first pair with the exact (case-sensitive) name wins, as browsers order the more specific
//! path first. Values may be wrapped in double quotes, which are removed. A value is returned
//! only when it is made of cookie-octets (RFC 6265 §4.1.1: visible ASCII except `"`, `,`, `;`
//! and `\`), so whatever a caller gets can go into a store key or a log line as it is.
//!
//! Not here: parsing `Set-Cookie` (we are a server), cookie attributes on requests (there are
//! none), percent-decoding (the session cookie is base64 and needs none).

use super::request::RequestHead;

/// Bytes of one cookie value at most; a longer one is treated as absent.
pub const COOKIE_VALUE_BYTES_MAX: usize = 4096;

/// The value of cookie `name` in `head`'s `Cookie` fields, if present and well-formed.
pub fn find_cookie<'b>(head: &RequestHead<'b>, name: &str) -> Option<&'b str> {
    head.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
        .find_map(|h| find_in_field(h.value, name))
}

/// The value of cookie `name` in one `Cookie` field value.
pub fn find_in_field<'b>(field: &'b [u8], name: &str) -> Option<&'b str> {
    for pair in field.split(|&b| b == b';') {
        let pair = trim(pair);
        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
            continue;
        };
        if trim(&pair[..eq]) != name.as_bytes() {
            continue;
        }
        let mut value = trim(&pair[eq + 1..]);
        if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
            value = &value[1..value.len() - 1];
        }
        if value.len() > COOKIE_VALUE_BYTES_MAX || !value.iter().all(|&b| is_cookie_octet(b)) {
            return None;
        }
        return std::str::from_utf8(value).ok();
    }
    None
}

/// RFC 6265 §4.1.1 cookie-octet.
fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A `Set-Cookie` value: `name=value; HttpOnly; Max-Age=N; SameSite=Strict; Path=/`, plus
/// `; Secure` when asked. `value` must be cookie-octets (checked in debug builds).
pub fn set_cookie_value(name: &str, value: &str, max_age_s: u64, secure: bool) -> String {
    debug_assert!(value.bytes().all(is_cookie_octet));
    let mut out = format!("{name}={value}; HttpOnly; Max-Age={max_age_s}; SameSite=Strict; Path=/");
    if secure {
        out.push_str("; Secure");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_named_cookie_among_others() {
        let f = |s: &'static str| find_in_field(s.as_bytes(), "sid");
        assert_eq!(f("sid=abc"), Some("abc"));
        assert_eq!(f("a=1; sid=abc; b=2"), Some("abc"));
        assert_eq!(f("a=1;sid=abc"), Some("abc"));
        assert_eq!(f(" sid = abc "), Some("abc"));
        assert_eq!(f("sid=\"q+/=\""), Some("q+/="));
        assert_eq!(f("sid=first; sid=second"), Some("first"));
        assert_eq!(f("SID=abc"), None);
        assert_eq!(f("xsid=abc"), None);
        assert_eq!(f("sidx=abc"), None);
        assert_eq!(f("sid"), None);
        assert_eq!(f(""), None);
        assert_eq!(f("sid=a b"), None);
        assert_eq!(f("sid=a\\b"), None);
        assert_eq!(f("sid=a,b"), None);
        assert_eq!(f("sid=\""), None);
        assert_eq!(f("sid="), Some(""));
        let long = format!("sid={}", "a".repeat(COOKIE_VALUE_BYTES_MAX + 1));
        assert_eq!(find_in_field(long.as_bytes(), "sid"), None);
        assert_eq!(
            find_in_field(&[b's', b'i', b'd', b'=', 0xc3, 0xb1], "sid"),
            None
        );
    }

    #[test]
    fn every_split_of_a_base64_token_survives() {
        let token = "q1w2e3r4t5y6u7i8o9p0aA==";
        assert_eq!(
            find_in_field(format!("theme=dark; sid={token}").as_bytes(), "sid"),
            Some(token)
        );
    }

    #[test]
    fn set_cookie_has_the_reference_attributes() {
        assert_eq!(
            set_cookie_value("sid", "abc=", 604_800, false),
            "sid=abc=; HttpOnly; Max-Age=604800; SameSite=Strict; Path=/"
        );
        assert!(set_cookie_value("sid", "", 0, true).ends_with("; Secure"));
    }
}
