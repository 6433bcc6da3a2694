//! The REST API of accounts and sessions: `POST /api/create-account`, `POST /api/login`,
//! `POST /api/logout`, `GET /api/me` (shared/spec/compat.md, "HTTP"), and `GET /api/limits`,
//! ringchat's own addition for its web client.
//!
//! Each handler validates the body first (the reference's order and messages, 400), then
//! consults the rate limits, then does the work: password hashing and verification on the
//! hashing pool ([`crate::rt::Workers`], never on the core's event loop), users and sessions
//! through the core's [`Store`]. Answers:
//!
//! - 204 with `Set-Cookie: sid=...; HttpOnly; Max-Age=604800; SameSite=Strict; Path=/`
//!   (`; Secure` with `--secure-cookies`) on sign-up and login; every login a new session.
//! - 400 `BAD_REQUEST` / `LOGIN_FAILED` / `USERNAME_EXISTS` / `EMAIL_EXISTS` as the spec says.
//!   An unknown email costs one full password verification, like a wrong password.
//! - 429 `RATE_LIMITED` with Retry-After: failed logins per client address and per email,
//!   successful sign-ups per client address (validation failures are not counted).
//! - 503 `SERVICE_UNAVAILABLE` with Retry-After when the hashing pool's queue is full or a
//!   store does not answer in time (a sign-up while MySQL is known to be down is refused
//!   before its password is hashed); 500 `INTERNAL` when a store answers nonsense.
//! - `POST /api/logout` deletes the session and expires the cookie (204, with or without a
//!   session). `GET /api/me` is 200 `{"id","username"}` or 401 `UNAUTHORIZED`.
//! - `GET /api/limits` is 200 with the limits a client should check before sending (the
//!   validation rules' byte lengths and `--max-message-chars`), so the web client's forms and
//!   message counter agree with this server's configuration. It needs no session.
//!
//! Nothing secret is logged: no passwords, hashes, cookies or session ids, and emails only
//! never (a failed login logs nothing at info level).
//!
//! Not here: `X-Forwarded-For` (behind a proxy every client shares the proxy's address and its
//! buckets), CSRF tokens (`SameSite=Strict` is the defence, as in the reference).

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::response::{Body, Response};
use crate::accounts::ratelimit::{Limiter, RATE_LIMIT_KEYS_MAX, Rule, client_key};
use crate::accounts::{self, Invalid, Verified, validate};
use crate::proto::http1::{RequestHead, find_cookie, set_cookie_value};
use crate::proto::ws::{AllowedOrigins, origin_allowed};
use crate::rt::{Busy, Workers};
use crate::store::{CreateUser, Store, StoreError, UserId};

/// The session cookie's name, as the reference's clients expect.
pub const SESSION_COOKIE: &str = "sid";

const HASHING_BUSY: &str = "the server is busy hashing passwords";

/// Why a login was refused; each front door says it in its own protocol.
#[derive(Debug)]
pub enum LoginRefused {
    /// The email or password fails validation (400 BAD_REQUEST).
    Invalid(Invalid),
    /// Too many failures for this address or account; try again after this long (429).
    RateLimited(Duration),
    /// Unknown email or wrong password (400 LOGIN_FAILED).
    Failed,
    /// The hashing pool's queue is full (503).
    HashingBusy,
    /// The hashing job failed (500).
    HashingFailed,
    /// The store failed (503, or 500 when it answered nonsense).
    Store(StoreError),
}
/// Bodies of API requests are at most this long; larger get 413 before they are read.
pub const API_BODY_BYTES_MAX: u64 = 16 * 1024;
/// Retry-After, in seconds, on a 503.
pub const RETRY_AFTER_BUSY_S: u64 = 1;

/// The `GET /api/limits` body: what a client should check before sending.
fn limits_json(message_chars_max: usize) -> String {
    serde_json::json!({
        "usernameBytesMin": validate::USERNAME_BYTES_MIN,
        "usernameBytesMax": validate::USERNAME_BYTES_MAX,
        "emailBytesMax": validate::EMAIL_BYTES_MAX,
        "passwordBytesMin": validate::PASSWORD_BYTES_MIN,
        "passwordBytesMax": validate::PASSWORD_BYTES_MAX,
        "messageCharsMax": message_chars_max,
    })
    .to_string()
}

/// Rate-limit settings, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failed logins per client address and, separately, per email.
    pub login_failures: Rule,
    /// Successful sign-ups per client address.
    pub signups: Rule,
    /// `--max-message-chars`, published by `GET /api/limits`.
    pub message_chars_max: usize,
}

/// One core's account endpoints.
pub struct Api {
    store: Store,
    workers: Workers,
    secure_cookies: bool,
    failures_by_ip: RefCell<Limiter<IpAddr>>,
    failures_by_email: RefCell<Limiter<String>>,
    signups_by_ip: RefCell<Limiter<IpAddr>>,
    /// The `GET /api/limits` body, encoded once.
    limits_body: Bytes,
    /// Origins whose pages may POST here (`--allowed-origins`, as for WebSockets).
    allowed_origins: AllowedOrigins,
    /// This core's logins between their admission and their answer (see
    /// [`Api::check_login`]); at most the hashing pool's capacity.
    logins_in_flight: Cell<usize>,
}

/// Counts one login in [`Api::logins_in_flight`] for as long as it lives.
struct LoginInFlight<'a>(&'a Cell<usize>);

impl<'a> LoginInFlight<'a> {
    fn enter(count: &'a Cell<usize>) -> LoginInFlight<'a> {
        count.set(count.get() + 1);
        LoginInFlight(count)
    }
}

impl Drop for LoginInFlight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// The endpoints and the methods each allows.
const ROUTES: [(&str, &str); 5] = [
    ("/api/create-account", "POST"),
    ("/api/login", "POST"),
    ("/api/logout", "POST"),
    ("/api/me", "GET, HEAD"),
    ("/api/limits", "GET, HEAD"),
];

/// Whether `path` is one of the API's endpoints (whatever the method).
pub fn is_endpoint(path: &str) -> bool {
    ROUTES.iter().any(|(p, _)| *p == path)
}

impl Api {
    pub fn new(
        store: Store,
        workers: Workers,
        secure_cookies: bool,
        limits: Limits,
        allowed_origins: AllowedOrigins,
    ) -> Api {
        Api {
            allowed_origins,
            store,
            workers,
            secure_cookies,
            failures_by_ip: RefCell::new(Limiter::new(limits.login_failures, RATE_LIMIT_KEYS_MAX)),
            failures_by_email: RefCell::new(Limiter::new(
                limits.login_failures,
                RATE_LIMIT_KEYS_MAX,
            )),
            signups_by_ip: RefCell::new(Limiter::new(limits.signups, RATE_LIMIT_KEYS_MAX)),
            limits_body: Bytes::from(limits_json(limits.message_chars_max)),
            logins_in_flight: Cell::new(0),
        }
    }

    /// Whether a state-changing request may come from where it says it comes from: a browser's
    /// `Sec-Fetch-Site: cross-site` is refused, and so is an `Origin` that `--allowed-origins`
    /// does not allow (the WebSocket upgrade's rule). Requests without either (curl, the
    /// reference's test clients) pass. The session cookie's `SameSite=Strict` already keeps
    /// browsers from sending it cross-site; this also covers logins and sign-ups, which carry
    /// no cookie, and clients that ignore SameSite.
    fn same_site(&self, head: &RequestHead<'_>) -> bool {
        if head
            .header("sec-fetch-site")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"cross-site"))
        {
            return false;
        }
        origin_allowed(
            head.header("origin"),
            head.header("host"),
            &self.allowed_origins,
        )
    }

    /// This core's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Answers a request under `/api/`.
    pub async fn respond(
        &self,
        path: &str,
        head: &RequestHead<'_>,
        body: &[u8],
        peer: IpAddr,
    ) -> Response {
        let Some(&(_, allowed)) = ROUTES.iter().find(|(p, _)| *p == path) else {
            return Response::json_error(404, "NOT_FOUND", "no such API endpoint");
        };
        let method_ok = match allowed {
            "POST" => head.method == "POST",
            _ => head.method == "GET" || head.method == "HEAD",
        };
        if !method_ok {
            let mut r = Response::json_error(405, "METHOD_NOT_ALLOWED", "method not allowed");
            r.headers = Bytes::from(format!(
                "Content-Type: application/json\r\nCache-Control: no-store\r\nAllow: {allowed}\r\n"
            ));
            return r;
        }
        if allowed == "POST" && !self.same_site(head) {
            return Response::json_error(
                403,
                "CROSS_SITE",
                "requests from other sites' pages are refused",
            );
        }
        let content_type = head
            .header("content-type")
            .and_then(|v| std::str::from_utf8(v).ok());
        let answer = match path {
            "/api/create-account" => self.create_account(content_type, body, peer).await,
            "/api/login" => self.login(content_type, body, peer).await,
            "/api/logout" => self.logout(head).await,
            "/api/limits" => Ok(self.limits(head)),
            _ => self.me(head).await,
        };
        answer.unwrap_or_else(|e| e)
    }

    async fn create_account(
        &self,
        content_type: Option<&str>,
        body: &[u8],
        peer: IpAddr,
    ) -> Result<Response, Response> {
        let request = accounts::parse_create_account(content_type, body).map_err(bad_request)?;
        let ip = client_key(peer);
        self.signups_by_ip
            .borrow()
            .check(&ip, Instant::now())
            .map_err(rate_limited)?;
        // A password hash costs tens of milliseconds of a core; while MySQL is known to be
        // down the insert after it could only fail, so the sign-up is refused first.
        self.store.users_known_unreachable().map_err(store_error)?;
        let password = request.password;
        let hash = self
            .hashing(move || accounts::hash_argon2id(password.as_bytes()))
            .await?
            .map_err(|e| {
                tracing::error!("password hashing failed: {e}");
                Response::json_error(500, "INTERNAL", "password hashing failed")
            })?;
        let created = self
            .store
            .create_user(crate::store::NewUser {
                username: request.username,
                email: request.email,
                password_hash: hash,
            })
            .await
            .map_err(store_error)?;
        let id = match created {
            CreateUser::Created(id) => id,
            CreateUser::UsernameExists => {
                return Err(Response::json_error(400, "USERNAME_EXISTS", ""));
            }
            CreateUser::EmailExists => return Err(Response::json_error(400, "EMAIL_EXISTS", "")),
        };
        self.signups_by_ip.borrow_mut().charge(&ip, Instant::now());
        self.start_session(id).await
    }

    async fn login(
        &self,
        content_type: Option<&str>,
        body: &[u8],
        peer: IpAddr,
    ) -> Result<Response, Response> {
        let request = accounts::parse_login(content_type, body).map_err(bad_request)?;
        let id = self
            .check_login(&request.email, request.password, peer)
            .await
            .map_err(|refused| match refused {
                LoginRefused::Invalid(invalid) => bad_request(invalid),
                LoginRefused::RateLimited(wait) => rate_limited(wait),
                LoginRefused::Failed => Response::json_error(400, "LOGIN_FAILED", "Login failed"),
                LoginRefused::HashingBusy => unavailable(HASHING_BUSY),
                LoginRefused::HashingFailed => {
                    Response::json_error(500, "INTERNAL", "password hashing failed")
                }
                LoginRefused::Store(e) => store_error(e),
            })?;
        self.start_session(id).await
    }

    /// Checks a login (validation, rate limits, the password on the hashing pool, a hash
    /// upgrade), for `POST /api/login` and the line port's `/login`: the same rules and the
    /// same failure counters for both.
    pub async fn check_login(
        &self,
        email: &str,
        password: String,
        peer: IpAddr,
    ) -> Result<UserId, LoginRefused> {
        validate::check_login(email, &password).map_err(LoginRefused::Invalid)?;
        let ip = client_key(peer);
        let email_key = email.to_lowercase();
        let now = Instant::now();
        let by_ip = self.failures_by_ip.borrow().check(&ip, now);
        let by_email = self.failures_by_email.borrow().check(&email_key, now);
        if let Err(wait) = by_ip.and(by_email) {
            return Err(LoginRefused::RateLimited(wait));
        }
        // Logins the hashing pool cannot take are refused before the store is asked: the
        // answer would be 503 anyway, and in a login storm every refused login would first wait
        // its turn for the core's store connections, so the 503s came late (hundreds of
        // milliseconds with MySQL; RELIABILITY.md asks for 50 ms). A full pool refuses, and so
        // does this core when it already has as many logins looking up their user as the pool
        // holds: logins arriving together all find the pool empty, since none has reached it
        // yet.
        if self.workers.is_full() || self.logins_in_flight.get() >= self.workers.capacity() {
            return Err(LoginRefused::HashingBusy);
        }
        let _in_flight = LoginInFlight::enter(&self.logins_in_flight);
        let credentials = self
            .store
            .credentials_by_email(email)
            .await
            .map_err(LoginRefused::Store)?;
        let outcome = match credentials {
            None => {
                // The same work as checking a wrong password, so unknown emails cannot be told
                // apart by the time the answer takes.
                self.hash_job(move || accounts::dummy_verify(password.as_bytes()))
                    .await?;
                None
            }
            Some(c) => {
                let stored = c.password_hash;
                let (verified, upgrade) = self
                    .hash_job(move || {
                        let verified = accounts::verify(password.as_bytes(), &stored);
                        let upgrade = match verified {
                            Verified::Ok {
                                needs_upgrade: true,
                            } => accounts::hash_argon2id(password.as_bytes()).ok(),
                            _ => None,
                        };
                        (verified, upgrade)
                    })
                    .await?;
                match verified {
                    Verified::Ok { .. } => Some((c.id, upgrade)),
                    Verified::Wrong => None,
                    Verified::Unsupported(why) => {
                        tracing::error!(user = c.id, "stored password hash unusable: {why}");
                        None
                    }
                }
            }
        };
        let Some((id, upgrade)) = outcome else {
            let now = Instant::now();
            self.failures_by_ip.borrow_mut().charge(&ip, now);
            self.failures_by_email.borrow_mut().charge(&email_key, now);
            return Err(LoginRefused::Failed);
        };
        if let Some(hash) = upgrade {
            // A failed upgrade is retried at the next login; the login itself succeeded.
            if let Err(e) = self.store.set_password_hash(id, hash).await {
                tracing::warn!(user = id, "password hash upgrade failed: {e}");
            }
        }
        Ok(id)
    }

    async fn logout(&self, head: &RequestHead<'_>) -> Result<Response, Response> {
        if let Some(sid) = find_cookie(head, SESSION_COOKIE).filter(|s| !s.is_empty()) {
            self.store.delete_session(sid).await.map_err(store_error)?;
        }
        Ok(self.cookie_response(""))
    }

    async fn me(&self, head: &RequestHead<'_>) -> Result<Response, Response> {
        let unauthorized = || Response::json_error(401, "UNAUTHORIZED", "no valid session");
        let sid = find_cookie(head, SESSION_COOKIE)
            .filter(|s| !s.is_empty())
            .ok_or_else(unauthorized)?;
        let user_id = self
            .store
            .session_user(sid)
            .await
            .map_err(store_error)?
            .ok_or_else(unauthorized)?;
        let user = self
            .store
            .user_by_id(user_id)
            .await
            .map_err(store_error)?
            .ok_or_else(unauthorized)?;
        let mut body = Vec::with_capacity(64 + user.username.len());
        body.extend_from_slice(b"{\"id\":");
        body.extend_from_slice(itoa::Buffer::new().format(user.id).as_bytes());
        body.extend_from_slice(b",\"username\":");
        body.extend_from_slice(
            serde_json::to_string(&user.username)
                .unwrap_or_default()
                .as_bytes(),
        );
        body.push(b'}');
        let mut r = Response::new(
            200,
            Bytes::from_static(b"Content-Type: application/json\r\nCache-Control: no-store\r\n"),
            Body::Owned(body),
        );
        r.omit_body = head.method == "HEAD";
        Ok(r)
    }

    fn limits(&self, head: &RequestHead<'_>) -> Response {
        let mut r = Response::new(
            200,
            Bytes::from_static(b"Content-Type: application/json\r\nCache-Control: no-cache\r\n"),
            Body::Shared(self.limits_body.clone()),
        );
        r.omit_body = head.method == "HEAD";
        r
    }

    async fn start_session(&self, user_id: i64) -> Result<Response, Response> {
        let sid = self.store.new_session(user_id).await.map_err(store_error)?;
        Ok(self.cookie_response(&sid))
    }

    /// 204 setting the session cookie to `sid`, or expiring it when `sid` is empty.
    fn cookie_response(&self, sid: &str) -> Response {
        let max_age = if sid.is_empty() {
            0
        } else {
            self.store.session_ttl_s()
        };
        let cookie = set_cookie_value(SESSION_COOKIE, sid, max_age, self.secure_cookies);
        Response::new(
            204,
            Bytes::from(format!(
                "Set-Cookie: {cookie}\r\nCache-Control: no-store\r\n"
            )),
            Body::Empty,
        )
    }

    /// Runs `job` on the hashing pool; 503 when its queue is full or it failed.
    async fn hashing<T, F>(&self, job: F) -> Result<T, Response>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.hash_job(job).await.map_err(|refused| match refused {
            LoginRefused::HashingBusy => unavailable(HASHING_BUSY),
            _ => Response::json_error(500, "INTERNAL", "password hashing failed"),
        })
    }

    /// Runs `job` on the hashing pool: `HashingBusy` when its queue is full, `HashingFailed`
    /// when the job panicked.
    async fn hash_job<T, F>(&self, job: F) -> Result<T, LoginRefused>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        match self.workers.submit(job) {
            Err(Busy) => Err(LoginRefused::HashingBusy),
            Ok(pending) => pending.await.map_err(|e| {
                tracing::error!("hashing job failed: {e:?}");
                LoginRefused::HashingFailed
            }),
        }
    }
}

fn bad_request(invalid: Invalid) -> Response {
    Response::json_error(400, "BAD_REQUEST", invalid.message())
}

/// Whole seconds to wait, rounded up, at least 1 (for `Retry-After` and the line port's
/// `RATE_LIMITED` line).
pub fn retry_after_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

fn rate_limited(wait: Duration) -> Response {
    let seconds = retry_after_seconds(wait);
    let mut r = Response::json_error(429, "RATE_LIMITED", "too many attempts; try again later");
    r.headers = Bytes::from(format!(
        "Content-Type: application/json\r\nCache-Control: no-store\r\nRetry-After: {seconds}\r\n",
    ));
    r
}

fn unavailable(message: &str) -> Response {
    let mut r = Response::json_error(503, "SERVICE_UNAVAILABLE", message);
    r.headers = Bytes::from(format!(
        "Content-Type: application/json\r\nCache-Control: no-store\r\nRetry-After: {RETRY_AFTER_BUSY_S}\r\n"
    ));
    r
}

fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::Corrupt { .. } => {
            tracing::error!("store: {e}");
            Response::json_error(500, "INTERNAL", "storage answered unexpectedly")
        }
        StoreError::Unavailable { .. } | StoreError::Timeout { .. } => {
            tracing::warn!("store: {e}");
            unavailable("storage is unavailable; try again shortly")
        }
    }
}
