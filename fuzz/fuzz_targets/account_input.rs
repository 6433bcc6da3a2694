//! Fuzzes what a client controls on the account endpoints: the `Cookie` field (`find_in_field`)
//! and the JSON bodies (`parse_create_account`, `parse_login`, `is_valid_email`). None may
//! panic; a cookie value found is always cookie-octets and part of the input; a body accepted
//! always satisfies the spec's size rules and email grammar.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringchat::accounts::{is_valid_email, parse_create_account, parse_login};
use ringchat::proto::http1::find_in_field;

fuzz_target!(|data: &[u8]| {
    if let Some(value) = find_in_field(data, "sid") {
        assert!(
            value
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"\",;\\".contains(&b))
        );
        let range = data.as_ptr_range();
        assert!(range.contains(&value.as_ptr()) || value.is_empty());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = is_valid_email(text);
    }
    if let Ok(request) = parse_create_account(Some("application/json"), data) {
        assert!((4..=100).contains(&request.username.len()));
        assert!(request.email.len() <= 100 && is_valid_email(&request.email));
        assert!((10..=100).contains(&request.password.len()));
    }
    if let Ok(request) = parse_login(Some("application/json; charset=utf-8"), data) {
        assert!(request.email.len() <= 100 && is_valid_email(&request.email));
        assert!((10..=100).contains(&request.password.len()));
    }
});
