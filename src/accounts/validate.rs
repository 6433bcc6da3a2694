//! Validation of the create-account and login request bodies, exactly as the reference checks
//! them (shared/spec/compat.md, "HTTP").
//!
//! Each check maps to one of the reference's `BAD_REQUEST` messages ([`Invalid::message`]), and
//! the checks run in the reference's order, so that a body with several faults gets the same
//! message from ringchat as from the reference:
//!
//! - create-account: body → username size → email length → email format → password size;
//! - login: body → email length → email format → password size.
//!
//! "Body" covers the Content-Type, the JSON syntax, the top level being an object, and each
//! required member being present and a string. Extra members are ignored. Lengths are UTF-8
//! byte lengths, not characters.
//!
//! The email grammar ([`is_valid_email`]) is written out by hand rather than with a regular
//! expression engine; it accepts the same language as the reference's pattern, including its
//! leniencies (see that function), because accounts created by the reference must be able to log
//! in to ringchat with the same address.
//!
//! Not here: the body size limit (the HTTP layer answers 413 before a body reaches this module),
//! the uniqueness checks (`USERNAME_EXISTS`, `EMAIL_EXISTS`; the store decides those), rate
//! limits, and any normalisation of the email (the reference compares addresses byte for byte).

/// The fewest UTF-8 bytes a username may have.
pub const USERNAME_BYTES_MIN: usize = 4;
/// The most UTF-8 bytes a username may have (the `users.username` column is `VARCHAR(100)`).
pub const USERNAME_BYTES_MAX: usize = 100;
/// The most UTF-8 bytes an email address may have (the `users.email` column is `VARCHAR(100)`).
pub const EMAIL_BYTES_MAX: usize = 100;
/// The fewest UTF-8 bytes a password may have.
pub const PASSWORD_BYTES_MIN: usize = 10;
/// The most UTF-8 bytes a password may have; also bounds the work a hash costs.
pub const PASSWORD_BYTES_MAX: usize = 100;
/// The fewest letters in the top-level domain of an address.
pub const EMAIL_TLD_LETTERS_MIN: usize = 2;
/// The most decimal digits in one part of a bracketed IPv4 literal (`[1.2.3.4]`).
pub const EMAIL_IPV4_DIGITS_MAX: usize = 3;

/// The media type both endpoints require (compared case-insensitively).
const JSON_MEDIA_TYPE: &str = "application/json";

/// Why a request body was refused. Always the client's fault: the REST layer answers
/// `400 {"id": "BAD_REQUEST", "message": <message()>}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Wrong or missing Content-Type, not JSON, not an object, or a member missing or not a
    /// string.
    Body,
    /// The username is shorter than [`USERNAME_BYTES_MIN`] or longer than [`USERNAME_BYTES_MAX`].
    UsernameSize,
    /// The email is longer than [`EMAIL_BYTES_MAX`].
    EmailTooLong,
    /// The email does not follow the grammar of [`is_valid_email`].
    EmailFormat,
    /// The password is shorter than [`PASSWORD_BYTES_MIN`] or longer than [`PASSWORD_BYTES_MAX`].
    PasswordSize,
}

impl Invalid {
    /// The reference's `message` for this fault, byte for byte.
    pub fn message(&self) -> &'static str {
        match self {
            Invalid::Body => "Invalid body provided",
            Invalid::UsernameSize => "username: invalid size",
            Invalid::EmailTooLong => "email: too long",
            Invalid::EmailFormat => "email: invalid format",
            Invalid::PasswordSize => "password: invalid size",
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "client sent an invalid body: {}", self.message())
    }
}

impl std::error::Error for Invalid {}

/// A validated `POST /api/create-account` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateAccount {
    pub username: String,
    pub email: String,
    pub password: String,
}

/// A validated `POST /api/login` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub email: String,
    pub password: String,
}

/// Parses and validates a create-account request, in the reference's order.
pub fn parse_create_account(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<CreateAccount, Invalid> {
    let [username, email, password] =
        json_strings(content_type, body, ["username", "email", "password"])?;
    if !(USERNAME_BYTES_MIN..=USERNAME_BYTES_MAX).contains(&username.len()) {
        return Err(Invalid::UsernameSize);
    }
    check_email(&email)?;
    check_password(&password)?;
    Ok(CreateAccount {
        username,
        email,
        password,
    })
}

/// Parses and validates a login request, in the reference's order.
pub fn parse_login(content_type: Option<&str>, body: &[u8]) -> Result<Login, Invalid> {
    let [email, password] = json_strings(content_type, body, ["email", "password"])?;
    check_email(&email)?;
    check_password(&password)?;
    Ok(Login { email, password })
}

/// Validates a login's email and password given as text (the line port's `/login`), with the
/// same checks, order and messages as [`parse_login`] after its body check.
pub fn check_login(email: &str, password: &str) -> Result<(), Invalid> {
    check_email(email)?;
    check_password(password)
}

fn check_email(email: &str) -> Result<(), Invalid> {
    if email.len() > EMAIL_BYTES_MAX {
        return Err(Invalid::EmailTooLong);
    }
    if !is_valid_email(email) {
        return Err(Invalid::EmailFormat);
    }
    Ok(())
}

fn check_password(password: &str) -> Result<(), Invalid> {
    if !(PASSWORD_BYTES_MIN..=PASSWORD_BYTES_MAX).contains(&password.len()) {
        return Err(Invalid::PasswordSize);
    }
    Ok(())
}

/// The "body" check shared by both endpoints: Content-Type, JSON object, and the named members
/// present as strings (taken out, in the order asked for).
fn json_strings<const N: usize>(
    content_type: Option<&str>,
    body: &[u8],
    names: [&str; N],
) -> Result<[String; N], Invalid> {
    if !content_type.is_some_and(is_json_content_type) {
        return Err(Invalid::Body);
    }
    // serde_json rejects invalid UTF-8, trailing non-whitespace, and nesting deeper than 128.
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| Invalid::Body)?;
    let serde_json::Value::Object(mut object) = value else {
        return Err(Invalid::Body);
    };
    let mut out = names.map(|_| String::new());
    for (slot, name) in out.iter_mut().zip(names) {
        match object.remove(name) {
            Some(serde_json::Value::String(s)) => *slot = s,
            _ => return Err(Invalid::Body),
        }
    }
    Ok(out)
}

/// Whether a Content-Type field value names JSON.
///
/// The reference accepts only the exact string `application/json`; ringchat also accepts any
/// parameters after it (RFC 9110 §8.3.1: `media-type = type "/" subtype parameters`, with
/// `parameters = *( OWS ";" OWS [ parameter ] )`) and any case in the type and subtype ("The
/// type and subtype tokens are case-insensitive"). The parameters are not looked at: RFC 8259
/// §11 says of `application/json` "No 'charset' parameter is defined for this registration.
/// Adding one really has no effect on compliant recipients", and the body must be UTF-8 anyway.
pub fn is_json_content_type(value: &str) -> bool {
    let media_type = value.split(';').next().unwrap_or_default();
    media_type
        .trim_matches([' ', '\t'])
        .eq_ignore_ascii_case(JSON_MEDIA_TYPE)
}

/// Whether `s` is an email address by the reference's grammar (compat.md, "Email format").
///
/// The reference checks addresses with the widely copied pattern
///
/// ```text
/// ^(([^<>()[\]\\.,;:\s@"]+(\.[^<>()[\]\\.,;:\s@"]+)*)|(".+"))@((\[[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\])|(([a-zA-Z\-0-9]+\.)+[a-zA-Z]{2,}))$
/// ```
///
/// and this function accepts the same language, read as follows:
///
/// - The domain contains no `@`, so the local part is everything before the last `@`.
/// - Local part, unquoted: one or more runs separated by single dots; a run is one or more
///   characters other than `<>()[]\.,;:@"` and whitespace. Any other character, including
///   non-ASCII letters (`ñ@example.com`), is allowed. Whitespace is Unicode `White_Space`.
/// - Local part, quoted (`".+"`): a `"`, one or more characters other than line terminators
///   (CR, LF, U+2028, U+2029: what `.` does not match), and a closing `"`. As in the pattern,
///   the characters between may include spaces, `@` and even `"`; `""` (empty) is refused.
/// - Domain, IPv4 literal: `[`, four dot-separated runs of one to three ASCII digits, `]`. The
///   octets are not range-checked (`[999.1.1.1]` is accepted), because the reference accepts
///   them and its accounts must be able to log in here.
/// - Domain, name: one or more labels of `[A-Za-z0-9-]`, each followed by a dot, then a
///   top-level domain of two or more ASCII letters. Hyphens may lead or trail a label, as in the
///   pattern. Non-ASCII domains are refused (no IDNA).
pub fn is_valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    is_valid_local_part(local) && is_valid_domain(domain)
}

fn is_valid_local_part(local: &str) -> bool {
    if let Some(inner) = local
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        return !inner.is_empty() && !inner.chars().any(is_line_terminator);
    }
    local
        .split('.')
        .all(|run| !run.is_empty() && !run.chars().any(is_special_in_local_part))
}

/// Characters an unquoted local part may not contain (the pattern's `[^<>()[\]\\.,;:\s@"]`;
/// `.` is handled by the split into runs).
fn is_special_in_local_part(c: char) -> bool {
    matches!(
        c,
        '<' | '>' | '(' | ')' | '[' | ']' | '\\' | '.' | ',' | ';' | ':' | '@' | '"'
    ) || c.is_whitespace()
}

/// The characters ECMAScript's `.` does not match.
fn is_line_terminator(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

fn is_valid_domain(domain: &str) -> bool {
    if let Some(inner) = domain
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        let mut parts = 0;
        for part in inner.split('.') {
            parts += 1;
            if part.is_empty()
                || part.len() > EMAIL_IPV4_DIGITS_MAX
                || !part.bytes().all(|b| b.is_ascii_digit())
            {
                return false;
            }
        }
        return parts == 4;
    }
    let Some((labels, tld)) = domain.rsplit_once('.') else {
        // A name needs at least one label before the top-level domain.
        return false;
    };
    let tld_ok = tld.len() >= EMAIL_TLD_LETTERS_MIN && tld.bytes().all(|b| b.is_ascii_alphabetic());
    let labels_ok = labels.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    tld_ok && labels_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: Option<&str> = Some("application/json");

    #[test]
    fn messages_are_the_references() {
        let table = [
            (Invalid::Body, "Invalid body provided"),
            (Invalid::UsernameSize, "username: invalid size"),
            (Invalid::EmailTooLong, "email: too long"),
            (Invalid::EmailFormat, "email: invalid format"),
            (Invalid::PasswordSize, "password: invalid size"),
        ];
        for (invalid, message) in table {
            assert_eq!(invalid.message(), message);
        }
    }

    #[test]
    fn spec_examples() {
        let valid = [
            "email@example.com",
            "\"email\"@example.com",
            "_______@example.com",
            "ñ@example.com",
            "email@example.co.jp",
            "firstname+lastname@example.com",
        ];
        let invalid = [
            "plainaddress",
            "@example.com",
            "email@example",
            "email..email@example.com",
            ".email@example.com",
            "email.@example.com",
            "email@example..com",
            "email@example.com (Joe Smith)",
        ];
        for email in valid {
            assert!(is_valid_email(email), "{email:?} should be valid");
        }
        for email in invalid {
            assert!(!is_valid_email(email), "{email:?} should be invalid");
        }
    }

    #[test]
    fn edge_cases() {
        let table: &[(&str, bool)] = &[
            // Local part.
            ("a@example.com", true),
            ("first.middle.last@example.com", true),
            ("1234567890@example.com", true),
            ("email@example-one.com", true),
            ("-@example.com", true),
            ("日本語@example.com", true),
            ("a\u{00a0}b@example.com", false), // no-break space is whitespace
            ("a b@example.com", false),
            ("a\tb@example.com", false),
            ("a<b@example.com", false),
            ("a>b@example.com", false),
            ("a(b@example.com", false),
            ("a)b@example.com", false),
            ("a[b@example.com", false),
            ("a]b@example.com", false),
            ("a\\b@example.com", false),
            ("a,b@example.com", false),
            ("a;b@example.com", false),
            ("a:b@example.com", false),
            ("a\"b@example.com", false),
            ("a@b@example.com", false),
            ("@@example.com", false),
            // Quoted local part.
            ("\"\"@example.com", false),
            ("\"a b\"@example.com", true),
            ("\"a@b\"@example.com", true),
            ("\"a..b\"@example.com", true),
            ("\"a\"b\"@example.com", true), // the pattern's `".+"` allows an inner quote
            ("\"a\nb\"@example.com", false),
            ("\"a\rb\"@example.com", false),
            ("\"a\u{2028}b\"@example.com", false),
            ("\"@example.com", false),
            ("\"a@example.com", false),
            ("a\"@example.com", false),
            ("\"a\".b@example.com", false),
            // IPv4 literal.
            ("email@[123.123.123.123]", true),
            ("email@[1.2.3.4]", true),
            ("email@[999.999.999.999]", true), // not range-checked, as in the reference
            ("email@[1234.1.1.1]", false),
            ("email@[1.2.3]", false),
            ("email@[1.2.3.4.5]", false),
            ("email@[1..3.4]", false),
            ("email@[a.b.c.d]", false),
            ("email@[1.2.3.4", false),
            ("email@1.2.3.4]", false),
            ("email@[]", false),
            ("email@[١.2.3.4]", false), // Arabic-Indic digit
            // Domain names.
            ("email@123.123.123.123", false), // numeric top-level domain
            ("email@example.c", false),
            ("email@example.com.", false),
            ("email@.example.com", false),
            ("email@-example-.com", true), // the pattern allows edge hyphens
            ("email@example.c0m", false),
            ("email@example_x.com", false),
            ("email@exämple.com", false),
            ("email@example.cöm", false),
            ("email@EXAMPLE.COM", true),
            ("email@", false),
            ("", false),
            ("@", false),
        ];
        for &(email, expected) in table {
            assert_eq!(is_valid_email(email), expected, "{email:?}");
        }
    }

    #[test]
    fn content_types() {
        let table = [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("application/json;charset=UTF-8", true),
            ("application/json ; charset=utf-8", true),
            ("Application/JSON", true),
            (" application/json ", true),
            ("application/json;", true),
            ("application/jsonx", false),
            ("application/json+x", false),
            ("text/json", false),
            ("text/plain", false),
            ("application /json", false),
            ("", false),
            (";application/json", false),
        ];
        for (value, expected) in table {
            assert_eq!(is_json_content_type(value), expected, "{value:?}");
        }
    }

    #[test]
    fn create_account_accepts_a_good_body_and_ignores_extra_keys() {
        let body = br#"{"username":"user1","email":"user1@example.com","password":"0123456789","extra":[1,{}]}"#;
        let parsed = parse_create_account(JSON, body).unwrap();
        assert_eq!(
            parsed,
            CreateAccount {
                username: "user1".into(),
                email: "user1@example.com".into(),
                password: "0123456789".into(),
            }
        );
        let parsed = parse_create_account(Some("application/json; charset=utf-8"), body);
        assert!(parsed.is_ok());
    }

    #[test]
    fn login_accepts_a_good_body() {
        let body = br#"{"password":"0123456789","email":"user1@example.com"}"#;
        let parsed = parse_login(JSON, body).unwrap();
        assert_eq!(parsed.email, "user1@example.com");
        assert_eq!(parsed.password, "0123456789");
    }

    #[test]
    fn bodies_that_are_not_a_json_object_of_strings() {
        let good = br#"{"username":"user1","email":"user1@example.com","password":"0123456789"}"#;
        assert_eq!(parse_create_account(None, good), Err(Invalid::Body));
        assert_eq!(
            parse_create_account(Some("text/plain"), good),
            Err(Invalid::Body)
        );
        let bad: &[&[u8]] = &[
            b"",
            b"null",
            b"[]",
            b"\"x\"",
            b"{",
            b"{}",
            br#"{"username":"user1","email":"user1@example.com"}"#,
            br#"{"username":"user1","email":"user1@example.com","password":1234567890}"#,
            br#"{"username":null,"email":"user1@example.com","password":"0123456789"}"#,
            br#"{"username":"user1","email":["a@b.cd"],"password":"0123456789"}"#,
            br#"{"username":"user1","email":"user1@example.com","password":"0123456789"} x"#,
            b"{\"username\":\"us\xffr1\",\"email\":\"user1@example.com\",\"password\":\"0123456789\"}",
        ];
        for body in bad {
            assert_eq!(
                parse_create_account(JSON, body),
                Err(Invalid::Body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(parse_login(JSON, b"{}"), Err(Invalid::Body));
        assert_eq!(
            parse_login(JSON, br#"{"email":"a@example.com"}"#),
            Err(Invalid::Body)
        );
        assert_eq!(
            parse_login(
                Some("application/xml"),
                br#"{"email":"a@example.com","password":"0123456789"}"#
            ),
            Err(Invalid::Body)
        );
    }

    fn create(username: &str, email: &str, password: &str) -> Result<CreateAccount, Invalid> {
        let body = serde_json::json!({"username": username, "email": email, "password": password});
        parse_create_account(JSON, body.to_string().as_bytes())
    }

    fn login(email: &str, password: &str) -> Result<Login, Invalid> {
        let body = serde_json::json!({"email": email, "password": password});
        parse_login(JSON, body.to_string().as_bytes())
    }

    #[test]
    fn sizes_are_utf8_bytes_with_inclusive_bounds() {
        let email = "user@example.com";
        let password = "0123456789";
        assert_eq!(create("abc", email, password), Err(Invalid::UsernameSize));
        assert!(create("abcd", email, password).is_ok());
        // Two characters, four bytes.
        assert!(create("ññ", email, password).is_ok());
        assert_eq!(create("ñ", email, password), Err(Invalid::UsernameSize));
        assert!(create(&"a".repeat(100), email, password).is_ok());
        assert_eq!(
            create(&"a".repeat(101), email, password),
            Err(Invalid::UsernameSize)
        );
        // 50 characters, 100 bytes; 51 characters, 102 bytes.
        assert!(create(&"ñ".repeat(50), email, password).is_ok());
        assert_eq!(
            create(&"ñ".repeat(51), email, password),
            Err(Invalid::UsernameSize)
        );

        let long_email = |total: usize| format!("{}@example.com", "a".repeat(total - 12));
        assert_eq!(long_email(100).len(), 100);
        assert!(create("user", &long_email(100), password).is_ok());
        assert_eq!(
            create("user", &long_email(101), password),
            Err(Invalid::EmailTooLong)
        );
        assert_eq!(
            login(&long_email(101), password).unwrap_err(),
            Invalid::EmailTooLong
        );

        assert_eq!(
            create("user", email, "012345678"),
            Err(Invalid::PasswordSize)
        );
        assert!(create("user", email, "0123456789").is_ok());
        assert!(create("user", email, &"p".repeat(100)).is_ok());
        assert_eq!(
            create("user", email, &"p".repeat(101)),
            Err(Invalid::PasswordSize)
        );
        // Five characters, ten bytes.
        assert!(create("user", email, "ñññññ").is_ok());
        assert_eq!(
            login(email, "012345678").unwrap_err(),
            Invalid::PasswordSize
        );
        assert!(login(email, &"p".repeat(100)).is_ok());
        assert_eq!(
            login(email, &"p".repeat(101)).unwrap_err(),
            Invalid::PasswordSize
        );
    }

    #[test]
    fn create_account_checks_in_the_references_order() {
        let too_long_and_malformed = "a".repeat(101);
        // Every field wrong: the username is reported first.
        assert_eq!(create("ab", "bad", "short"), Err(Invalid::UsernameSize));
        // Email too long beats email format and password size.
        assert_eq!(
            create("user", &too_long_and_malformed, "short"),
            Err(Invalid::EmailTooLong)
        );
        // Email format beats password size.
        assert_eq!(create("user", "bad", "short"), Err(Invalid::EmailFormat));
        assert_eq!(
            create("user", "user@example.com", "short"),
            Err(Invalid::PasswordSize)
        );
        // The body check comes before everything: a missing password with a bad username.
        assert_eq!(
            parse_create_account(JSON, br#"{"username":"ab","email":"bad"}"#),
            Err(Invalid::Body)
        );
    }

    #[test]
    fn login_checks_in_the_references_order() {
        assert_eq!(login(&"a".repeat(101), "short"), Err(Invalid::EmailTooLong));
        assert_eq!(login("bad", "short"), Err(Invalid::EmailFormat));
        assert_eq!(
            login("user@example.com", "short"),
            Err(Invalid::PasswordSize)
        );
        assert_eq!(parse_login(JSON, br#"{"email":"bad"}"#), Err(Invalid::Body));
    }

    #[test]
    fn json_escapes_are_decoded_before_lengths_are_taken() {
        // "\u00f1" is one character of two bytes: two of them make a 4-byte username, just enough.
        let body =
            br#"{"username":"\u00f1\u00f1","email":"\u00f1@example.com","password":"0123456789"}"#;
        let parsed = parse_create_account(JSON, body).unwrap();
        assert_eq!(parsed.username, "ññ");
        assert_eq!(parsed.email, "ñ@example.com");
    }
}
