//! State-changing API requests from other sites' pages change nothing (RELIABILITY.md,
//! "Accounts": cross-site POSTs): a browser's `Sec-Fetch-Site: cross-site` or an `Origin` that
//! `--allowed-origins` does not allow gets 403 `CROSS_SITE` before anything is read or stored;
//! the same requests from the page's own origin, or with no Origin at all (curl, the
//! reference's test clients), work.

mod common;

use std::io::{Read, Write};

use common::Server;
use common::chat_client::sign_up;

/// Sends one raw request on a fresh connection; the status and the whole response.
fn raw(server: &Server, request: &str) -> (u16, String) {
    let mut s = server.connect();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, text)
}

fn post(path: &str, headers: &str, content_type: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: chat.example:8080\r\nConnection: close\r\n{headers}\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn me(server: &Server, cookie: &str) -> u16 {
    raw(
        server,
        &format!(
            "GET /api/me HTTP/1.1\r\nHost: chat.example:8080\r\nConnection: close\r\nCookie: {cookie}\r\n\r\n"
        ),
    )
    .0
}

#[test]
fn cross_site_posts_change_nothing() {
    let server = Server::start("uring", &[]);
    let cookie = sign_up(&server, "victim");
    assert_eq!(me(&server, &cookie), 200);
    let cross_site = [
        "Origin: https://evil.example\r\n",
        "Origin: http://chat.example:8081\r\n",
        "Origin: null\r\n",
        "Sec-Fetch-Site: cross-site\r\n",
        "Origin: http://chat.example:8080\r\nSec-Fetch-Site: cross-site\r\n",
    ];
    for headers in cross_site {
        for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
            let logout = post(
                "/api/logout",
                &format!("{headers}Cookie: {cookie}\r\n"),
                content_type,
                "",
            );
            let (status, text) = raw(&server, &logout);
            assert_eq!(status, 403, "{headers:?} {content_type}: {text}");
            assert!(text.contains("\"CROSS_SITE\""), "{text}");
            assert!(!text.contains("Set-Cookie"), "{text}");
        }
        let signup = post(
            "/api/create-account",
            headers,
            "application/json",
            r#"{"username":"mallory","email":"mallory@example.com","password":"0123456789"}"#,
        );
        assert_eq!(raw(&server, &signup).0, 403, "{headers:?}");
        let login = post(
            "/api/login",
            headers,
            "application/json",
            r#"{"email":"victim@example.com","password":"0123456789"}"#,
        );
        assert_eq!(raw(&server, &login).0, 403, "{headers:?}");
    }
    // Nothing changed: the session lives, and the account refused above was never made.
    assert_eq!(me(&server, &cookie), 200);
    let again = post(
        "/api/create-account",
        "",
        "application/json",
        r#"{"username":"mallory","email":"mallory@example.com","password":"0123456789"}"#,
    );
    assert_eq!(
        raw(&server, &again).0,
        204,
        "mallory was created by a refused request"
    );
    // The page's own origin, and same-site or direct requests, work.
    for headers in [
        "Origin: http://chat.example:8080\r\n",
        "Sec-Fetch-Site: same-origin\r\nOrigin: http://chat.example:8080\r\n",
        "",
    ] {
        let login = post(
            "/api/login",
            headers,
            "application/json",
            r#"{"email":"victim@example.com","password":"0123456789"}"#,
        );
        assert_eq!(raw(&server, &login).0, 204, "{headers:?}");
    }
    let logout = post(
        "/api/logout",
        &format!("Origin: http://chat.example:8080\r\nCookie: {cookie}\r\n"),
        "text/plain",
        "",
    );
    assert_eq!(raw(&server, &logout).0, 204);
    assert_eq!(me(&server, &cookie), 401);
}
