//! The command line. Every flag can also be set through an environment variable named
//! `RINGCHAT_<FLAG>` (upper case, dashes as underscores); a flag given on the command line wins.
//!
//! This file only describes and validates settings; it starts nothing. README.md's
//! configuration table lists the same flags and must stay in step with this file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::chat::events::MESSAGE_CHARS_MAX_DEFAULT;
use crate::chat::rooms::{REFERENCE_ROOMS, Rooms};
use crate::proto::line::LINE_BYTES_MAX_DEFAULT;
use crate::proto::ws::AllowedOrigins;
use crate::store::mysql::MysqlConfig;
use crate::store::redis::RedisConfig;
use crate::store::{ROOM_RETENTION_MAX, StoreOptions};

/// Which I/O backend the per-core runtimes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IoMode {
    /// io_uring when the kernel allows it, else epoll with one log line saying why.
    Auto,
    /// io_uring or exit with an explanation.
    Uring,
    /// epoll (plain tokio), for containers whose seccomp profile blocks io_uring.
    Epoll,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "ringchat",
    version,
    about = "Thread-per-core group chat server"
)]
pub struct Config {
    /// Address to listen on (every core binds it with SO_REUSEPORT).
    #[arg(long, env = "RINGCHAT_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Worker threads, one per core, each pinned to its core. 0 = the cores available to the process.
    #[arg(long, env = "RINGCHAT_THREADS", default_value_t = 0)]
    pub threads: usize,

    /// I/O backend: auto, uring or epoll.
    #[arg(long, env = "RINGCHAT_IO", value_enum, default_value_t = IoMode::Auto)]
    pub io: IoMode,

    /// Directory of static files (the web client).
    #[arg(long = "static", env = "RINGCHAT_STATIC", default_value = "static")]
    pub static_dir: PathBuf,

    /// Log level (error, warn, info, debug, trace); RUST_LOG, when set, wins.
    #[arg(long, env = "RINGCHAT_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Seconds an idle keep-alive connection is kept open.
    #[arg(long, env = "RINGCHAT_KEEP_ALIVE_TIMEOUT", default_value_t = 5)]
    pub keep_alive_timeout: u64,

    /// Requests served on one connection before it is closed.
    #[arg(long, env = "RINGCHAT_KEEP_ALIVE_MAX", default_value_t = 100)]
    pub keep_alive_max: u64,

    /// Seconds a client has to send a complete request head, counted from its first byte
    /// (or from the accept, for the first request): the slowloris defence.
    #[arg(long, env = "RINGCHAT_HEADER_TIMEOUT", default_value_t = 10)]
    pub header_timeout: u64,

    /// Seconds a client has to send a whole request body (the slow-body defence).
    #[arg(long, env = "RINGCHAT_BODY_TIMEOUT", default_value_t = 30)]
    pub body_timeout: u64,

    /// Seconds a response may take to be accepted by the client's socket before the
    /// connection is dropped (clients that never read).
    #[arg(long, env = "RINGCHAT_SEND_TIMEOUT", default_value_t = 30)]
    pub send_timeout: u64,

    /// Largest request body accepted, in bytes; larger ones get 413 before the body is read.
    #[arg(long, env = "RINGCHAT_BODY_BYTES_MAX", default_value_t = 1024 * 1024)]
    pub body_bytes_max: u64,

    /// Seconds to wait for in-flight requests after SIGINT/SIGTERM before exiting anyway.
    #[arg(long, env = "RINGCHAT_SHUTDOWN_TIMEOUT", default_value_t = 10)]
    pub shutdown_timeout: u64,

    /// Open connections per core; further ones are accepted and closed at once.
    #[arg(
        long,
        env = "RINGCHAT_CONNECTIONS_PER_CORE_MAX",
        default_value_t = 10_000
    )]
    pub connections_per_core_max: usize,

    /// Directory of the embedded SQLite store, used for users without --mysql and for sessions
    /// and messages without --redis. Created when missing.
    #[arg(long, env = "RINGCHAT_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Keep users in MySQL or MariaDB: mysql://user:password@host:port/database (the table is
    /// created when missing).
    #[arg(long, env = "RINGCHAT_MYSQL", value_parser = MysqlConfig::from_url)]
    pub mysql: Option<MysqlConfig>,

    /// MySQL connections per core kept open at least / opened at most.
    #[arg(long, env = "RINGCHAT_MYSQL_POOL_MIN", default_value_t = 1)]
    pub mysql_pool_min: usize,
    #[arg(long, env = "RINGCHAT_MYSQL_POOL_MAX", default_value_t = 8)]
    pub mysql_pool_max: usize,

    /// How long a request waits for a free MySQL connection of its core (e.g. 1s, 500ms).
    #[arg(long, env = "RINGCHAT_MYSQL_ACQUIRE_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub mysql_acquire_timeout: Duration,

    /// How long one MySQL statement may take, connecting included.
    #[arg(long, env = "RINGCHAT_MYSQL_TIMEOUT", default_value = "1500ms", value_parser = parse_duration)]
    pub mysql_timeout: Duration,

    /// Keep sessions and messages in Redis: redis://[user:password@]host[:port][/db]
    /// (the BoostServerTech data model; Redis 6.2 or later).
    #[arg(long, env = "RINGCHAT_REDIS", value_parser = RedisConfig::from_url)]
    pub redis: Option<RedisConfig>,

    /// Messages kept per room: older ones are deleted as new ones arrive (Redis: `XADD` with
    /// `MAXLEN ~ N`, so a room may hold up to one stream node more; embedded: exactly N).
    /// 0 keeps every message, as the reference does.
    #[arg(long, env = "RINGCHAT_ROOM_RETENTION", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=ROOM_RETENTION_MAX))]
    pub room_retention: u64,

    /// How long a session lives after login or sign-up (the cookie's Max-Age and the store's
    /// expiry): 30s, 12h, 7d... at most 365d.
    #[arg(long, env = "RINGCHAT_SESSION_TTL", default_value = "7d", value_parser = parse_session_ttl)]
    pub session_ttl: Duration,

    /// How long one Redis request may take before it fails (503 or an error event).
    #[arg(long, env = "RINGCHAT_REDIS_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub redis_timeout: Duration,

    /// At start-up, how long to wait for --mysql and --redis to answer before giving up
    /// with an error.
    #[arg(long, env = "RINGCHAT_STORE_WAIT", default_value = "10s", value_parser = parse_duration)]
    pub store_wait: Duration,

    /// Add `Secure` to the session cookie (serve over HTTPS, e.g. behind a TLS proxy).
    #[arg(long, env = "RINGCHAT_SECURE_COOKIES")]
    pub secure_cookies: bool,

    /// Password-hashing threads (argon2id, scrypt). 0 = half the cores, at least 1.
    #[arg(long, env = "RINGCHAT_HASH_THREADS", default_value_t = 0)]
    pub hash_threads: usize,

    /// Password hashes waiting for a hashing thread at most; beyond it, 503 with Retry-After.
    #[arg(long, env = "RINGCHAT_HASH_QUEUE", default_value_t = 64)]
    pub hash_queue: usize,

    /// Failed logins allowed per client address, and separately per email, per minute
    /// (also the burst); beyond it, 429 with Retry-After.
    #[arg(long, env = "RINGCHAT_LOGIN_FAILURES_PER_MINUTE", default_value_t = 10)]
    pub login_failures_per_minute: u32,

    /// Successful sign-ups allowed per client address per hour (also the burst).
    #[arg(long, env = "RINGCHAT_SIGNUPS_PER_HOUR", default_value_t = 30)]
    pub signups_per_hour: u32,

    /// Largest WebSocket message accepted, in bytes; a larger one closes with 1009.
    #[arg(long, env = "RINGCHAT_WS_MAX_MESSAGE", default_value_t = 64 * 1024)]
    pub ws_max_message: usize,

    /// How often the server pings each WebSocket client.
    #[arg(long, env = "RINGCHAT_WS_PING_INTERVAL", default_value = "20s", value_parser = parse_duration)]
    pub ws_ping_interval: Duration,

    /// A WebSocket client that sends nothing (not even pongs) for this long is disconnected.
    #[arg(long, env = "RINGCHAT_WS_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub ws_idle_timeout: Duration,

    /// Origins allowed to open WebSockets and POST to /api/: `same-host` (the request's own Host), `*`, or a
    /// comma-separated list such as `https://chat.example.com,https://example.com`.
    #[arg(long, env = "RINGCHAT_ALLOWED_ORIGINS", default_value = "same-host", value_parser = parse_origins)]
    pub allowed_origins: AllowedOrigins,

    /// Serve `/api/ws-echo`, a WebSocket that echoes every message (for the Autobahn suite).
    #[arg(long, env = "RINGCHAT_WS_ECHO")]
    pub ws_echo: bool,

    /// The chat rooms, in order: `id:Name,id:Name,...` (ids: A-Z a-z 0-9 _ . -). The default
    /// is the reference server's four rooms.
    #[arg(long, env = "RINGCHAT_ROOMS", default_value = REFERENCE_ROOMS, value_parser = parse_rooms)]
    pub rooms: Rooms,

    /// Longest chat message, in characters; longer ones get an error event.
    #[arg(long, env = "RINGCHAT_MAX_MESSAGE_CHARS", default_value_t = MESSAGE_CHARS_MAX_DEFAULT)]
    pub max_message_chars: usize,

    /// Open the plain TCP line port (telnet/netcat chat, docs/line-chat.md) on this port, on
    /// the address of --listen; 0 lets the kernel pick. Off when not given.
    #[arg(long, env = "RINGCHAT_LINE_PORT")]
    pub line_port: Option<u16>,

    /// Guest mode on the line port: clients that have not logged in chat in this room (a
    /// room id) under a random `~guest-xxxx` name they can change with /nick.
    #[arg(long, env = "RINGCHAT_LINE_GUEST_ROOM")]
    pub line_guest_room: Option<String>,

    /// Longest line accepted on the line port, in bytes; a longer one gets an error line.
    #[arg(long, env = "RINGCHAT_LINE_MAX_BYTES", default_value_t = LINE_BYTES_MAX_DEFAULT)]
    pub line_max_bytes: usize,

    /// A line-port client that sends nothing for this long is disconnected.
    #[arg(long, env = "RINGCHAT_LINE_IDLE_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub line_idle_timeout: Duration,
}

fn parse_rooms(text: &str) -> Result<Rooms, String> {
    Rooms::parse(text).map_err(|e| e.to_string())
}

impl Config {
    /// The storage backends as the command line chose them, with their pool and timeout
    /// settings applied.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            mysql: self.mysql.clone().map(|mut m| {
                m.pool_min = self.mysql_pool_min;
                m.pool_max = self.mysql_pool_max.max(1).max(self.mysql_pool_min);
                m.acquire_timeout = self.mysql_acquire_timeout;
                m.query_timeout = self.mysql_timeout;
                m
            }),
            redis: self.redis.clone().map(|mut r| {
                r.timeout = self.redis_timeout;
                r.room_retention = (self.room_retention > 0).then_some(self.room_retention);
                r
            }),
            data_dir: self.data_dir.clone(),
            room_retention: (self.room_retention > 0).then_some(self.room_retention),
            session_ttl_s: self.session_ttl.as_secs().max(1),
        }
    }
}

/// `same-host`, `*`, or a comma-separated list of origins (`scheme://host[:port]`).
pub fn parse_origins(text: &str) -> Result<AllowedOrigins, String> {
    match text.trim() {
        "same-host" => Ok(AllowedOrigins::SameHost),
        "*" => Ok(AllowedOrigins::Any),
        list => {
            let origins: Vec<String> = list
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .collect();
            for o in &origins {
                let rest = o
                    .strip_prefix("http://")
                    .or_else(|| o.strip_prefix("https://"))
                    .ok_or_else(|| format!("origin {o:?} must start with http:// or https://"))?;
                if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
                    return Err(format!("origin {o:?} must be scheme://host[:port]"));
                }
            }
            Ok(AllowedOrigins::List(origins))
        }
    }
}

/// A duration written as `250ms`, `2s`, `1m`, or a bare number of seconds (`1.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_duration_up_to(text, DAY_MS, "a day")
}

/// A session lifetime: [`parse_duration`]'s forms, whole seconds, at least 1 s and at most
/// [`SESSION_TTL_DAYS_MAX`] days.
pub fn parse_session_ttl(text: &str) -> Result<Duration, String> {
    let ttl = parse_duration_up_to(text, SESSION_TTL_DAYS_MAX as f64 * DAY_MS, "365 days")?;
    if ttl < Duration::from_secs(1) {
        return Err(format!("'{text}': a session lives at least 1s"));
    }
    Ok(Duration::from_secs(ttl.as_secs()))
}

const DAY_MS: f64 = 86_400_000.0;
/// The longest `--session-ttl`.
pub const SESSION_TTL_DAYS_MAX: u64 = 365;

fn parse_duration_up_to(text: &str, max_ms: f64, max_text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3_600_000.0)
    } else if let Some(n) = text.strip_suffix('d') {
        (n, DAY_MS)
    } else {
        (text, 1000.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (examples: 250ms, 2s, 1.5, 1m, 1h)"))?;
    if !value.is_finite() || value <= 0.0 || value * unit_ms > max_ms {
        return Err(format!(
            "'{text}' must be above zero and at most {max_text}"
        ));
    }
    Ok(Duration::from_micros(
        (value * unit_ms * 1000.0).round() as u64
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ttls_parse_days_hours_and_whole_seconds() {
        assert_eq!(parse_session_ttl("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_session_ttl("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_session_ttl("2.7s"), Ok(Duration::from_secs(2)));
        assert_eq!(
            parse_session_ttl("365d"),
            Ok(Duration::from_secs(31_536_000))
        );
        assert!(parse_session_ttl("366d").is_err());
        assert!(parse_session_ttl("500ms").is_err());
        assert!(parse_session_ttl("0").is_err());
        // The other durations still stop at a day.
        assert!(parse_duration("2d").is_err());
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        for bad in [
            "", "s", "-1s", "0", "abc", "2x", "25h", "nan", "inf", "100000s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn store_flags_shape_the_backends() {
        let c = Config::parse_from([
            "ringchat",
            "--mysql",
            "mysql://u:secret@db:3307/chat",
            "--mysql-pool-max",
            "3",
            "--redis",
            "redis://r:6380/2",
            "--redis-timeout",
            "300ms",
            "--room-retention",
            "5000",
            "--session-ttl",
            "1h",
        ]);
        let o = c.store_options();
        let m = o.mysql.unwrap();
        assert_eq!((m.host.as_str(), m.port, m.pool_max), ("db", 3307, 3));
        let r = o.redis.unwrap();
        assert_eq!(
            (r.port, r.db, r.timeout, r.room_retention),
            (6380, 2, Duration::from_millis(300), Some(5000))
        );
        assert_eq!((o.room_retention, o.session_ttl_s), (Some(5000), 3600));
        let defaults = Config::parse_from(["ringchat", "--redis", "redis://r"]).store_options();
        assert_eq!(defaults.redis.unwrap().room_retention, None);
        assert_eq!(
            (defaults.room_retention, defaults.session_ttl_s),
            (None, 604_800)
        );
        assert!(!format!("{c:?}").contains("secret"));
        assert!(Config::try_parse_from(["ringchat", "--mysql", "postgres://x"]).is_err());
        assert!(Config::try_parse_from(["ringchat", "--redis-timeout", "soon"]).is_err());
    }
}
