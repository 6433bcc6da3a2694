//! Wiring: one [`Core`] per core turns accepted connections into HTTP conversations and routes
//! each request to operations endpoints, the API, or static files.
//!
//! Routes: `GET /healthz`, `GET /metrics`, `/api/...` (404 until the API issues land), and
//! everything else from the static root. Nothing here touches sockets or the runtime directly;
//! it speaks to connections only through [`crate::rt::Conn`].

pub mod api;
pub mod chat;
mod history;
pub mod http;
mod line;
pub mod metrics;
pub mod response;
pub mod static_files;
pub mod ws;

use std::io;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use self::metrics::CoreMetrics;
use self::response::{Body, DateCache, Response};
use self::static_files::StaticFiles;
use crate::accounts::ratelimit::Rule as RateRule;
use crate::config::Config;
use crate::proto::http1::RequestHead;
use crate::rt::{self, Backend, Conn, CoreInfo, RtOptions, Service};
use crate::store::StoreSetup;

/// The listener index of the line port (`RtOptions::extra_listen`'s first).
const LINE_LISTENER: usize = 1;

/// The parts of the configuration the HTTP server uses, in their working units.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ws: ws::WsSettings,
    pub line: line::LineSettings,
    pub keep_alive_timeout: Duration,
    pub keep_alive_max: u64,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub send_timeout: Duration,
    pub body_bytes_max: u64,
}

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            ws: ws::WsSettings {
                message_bytes_max: config.ws_max_message,
                ping_interval: config.ws_ping_interval,
                idle_timeout: config.ws_idle_timeout,
                allowed_origins: config.allowed_origins.clone(),
                echo: config.ws_echo,
                message_chars_max: config.max_message_chars,
            },
            line: line::LineSettings {
                line_bytes_max: config.line_max_bytes.max(1),
                idle_timeout: config.line_idle_timeout,
                guest_room: config
                    .line_guest_room
                    .as_deref()
                    .and_then(|id| config.rooms.index_of(id)),
            },
            keep_alive_timeout: Duration::from_secs(config.keep_alive_timeout),
            keep_alive_max: config.keep_alive_max.max(1),
            header_timeout: Duration::from_secs(config.header_timeout),
            body_timeout: Duration::from_secs(config.body_timeout),
            send_timeout: Duration::from_secs(config.send_timeout),
            body_bytes_max: config.body_bytes_max,
        }
    }
}

/// One core's server state. `!Send`: it never leaves its core.
pub struct Core {
    info: CoreInfo,
    settings: Arc<Settings>,
    all_metrics: Arc<[CoreMetrics]>,
    date: DateCache,
    statics: StaticFiles,
    api: api::Api,
    hub: Rc<chat::Hub>,
}

impl Core {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn metrics(&self) -> &CoreMetrics {
        &self.all_metrics[self.info.index]
    }

    fn hub(&self) -> &chat::Hub {
        &self.hub
    }

    fn ws_settings(&self) -> &ws::WsSettings {
        &self.settings.ws
    }

    /// The WebSocket endpoint a request targets, if any (the upgrade is checked after).
    fn ws_endpoint(&self, head: &RequestHead<'_>) -> Option<ws::Endpoint> {
        match route_path(head.target) {
            "/api/ws" => Some(ws::Endpoint::Chat {
                sid: crate::proto::http1::find_cookie(head, api::SESSION_COOKIE)
                    .map(str::to_string),
            }),
            "/api/ws-echo" if self.settings.ws.echo => Some(ws::Endpoint::Echo),
            _ => None,
        }
    }

    fn date(&self) -> [u8; 29] {
        self.date.now()
    }

    /// The largest body a request may carry: the API's bodies are small JSON documents (other
    /// paths under /api/ get the general limit, then their 404).
    fn body_limit(&self, head: &RequestHead<'_>) -> u64 {
        if api::is_endpoint(route_path(head.target)) {
            self.settings.body_bytes_max.min(api::API_BODY_BYTES_MAX)
        } else {
            self.settings.body_bytes_max
        }
    }

    /// Answers one request. Async because API routes wait on storage and hashing.
    async fn respond(&self, head: &RequestHead<'_>, body: &[u8], peer: IpAddr) -> Response {
        let path = route_path(head.target);
        match path {
            "/healthz" => self.operations(head, || {
                Response::new(
                    200,
                    Bytes::from_static(b"Content-Type: application/json\r\nCache-Control: no-store\r\n"),
                    Body::Shared(Bytes::from_static(b"{\"status\":\"ok\"}")),
                )
            }),
            "/metrics" => self.operations(head, || {
                let mut text = String::with_capacity(4096);
                metrics::render(&self.all_metrics, &mut text);
                Response::new(
                    200,
                    Bytes::from_static(b"Content-Type: text/plain; version=0.0.4; charset=utf-8\r\nCache-Control: no-store\r\n"),
                    Body::Owned(text.into_bytes()),
                )
            }),
            p if p == "/api" || p.starts_with("/api/") => {
                self.api.respond(p, head, body, peer).await
            }
            _ => self.statics.respond(head, Instant::now()),
        }
    }

    fn operations(&self, head: &RequestHead<'_>, make: impl FnOnce() -> Response) -> Response {
        match head.method {
            "GET" | "HEAD" => http::head_only(head, make()),
            _ => static_files::method_not_allowed(),
        }
    }
}

/// The path part of a request target, for routing (absolute-form reduced to its path).
fn route_path(target: &str) -> &str {
    let path = crate::proto::http1::origin_form(target);
    path.split(['?', '#']).next().unwrap_or(path)
}

impl Service for Core {
    async fn serve(self: Rc<Self>, conn: Conn) {
        if conn.listener() == LINE_LISTENER {
            // Boxed: a line connection's state is not part of every HTTP connection's task.
            Box::pin(line::serve(self, conn)).await
        } else {
            http::serve(self, conn).await
        }
    }

    fn refused(&self) {
        CoreMetrics::add(&self.metrics().refused_connections, 1);
    }

    fn begin_drain(&self) {
        self.hub.going_away();
    }
}

/// Sets up `tracing`: `RUST_LOG` when set, else `level`. Colours only on a terminal.
pub fn init_logging(level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .try_init();
}

/// Opens the storage the configuration names and waits (at most `--store-wait`) until its
/// network backends answer, so a wrong address or password stops the server at start-up.
pub fn open_store(config: &Config) -> io::Result<StoreSetup> {
    let setup = StoreSetup::open(&config.store_options())
        .map_err(|e| io::Error::other(format!("storage: {e}")))?;
    tracing::info!("storage: {}", setup.describe());
    rt::run_local(Backend::Epoll, setup.check(config.store_wait))?.map_err(|e| {
        io::Error::other(format!(
            "storage did not answer within {:?}: {e}",
            config.store_wait
        ))
    })?;
    Ok(setup)
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(config: Config) -> io::Result<()> {
    if let Some(id) = &config.line_guest_room
        && config.rooms.index_of(id).is_none()
    {
        return Err(io::Error::other(format!(
            "--line-guest-room {id:?} is not one of --rooms"
        )));
    }
    let threads = if config.threads == 0 {
        rt::available_cpus()?.len().max(1)
    } else {
        config.threads
    };
    let settings = Arc::new(Settings::from_config(&config));
    let all_metrics: Arc<[CoreMetrics]> = (0..threads).map(|_| CoreMetrics::default()).collect();
    match rt::raise_open_files_limit() {
        Ok(limit) => {
            let wanted = config.connections_per_core_max.saturating_mul(threads) as u64;
            if limit < wanted {
                tracing::warn!(
                    open_files = limit,
                    connections = wanted,
                    "the open-files limit is below --connections-per-core-max x threads; \
                     accepts beyond it fail (raise LimitNOFILE / ulimit -Hn)"
                );
            } else {
                tracing::info!(open_files = limit, "open-files limit");
            }
        }
        Err(e) => tracing::warn!("cannot raise the open-files limit: {e}"),
    }
    if StaticFiles::new(&config.static_dir).root_exists() {
        tracing::info!(dir = %config.static_dir.display(), "serving static files");
    } else {
        tracing::warn!(dir = %config.static_dir.display(), "static directory not found; static requests will get 404");
    }
    let extra_listen = match config.line_port {
        Some(port) => vec![("line", std::net::SocketAddr::new(config.listen.ip(), port))],
        None => Vec::new(),
    };
    let options = RtOptions {
        listen: config.listen,
        extra_listen,
        threads,
        io: config.io,
        shutdown_timeout: Duration::from_secs(config.shutdown_timeout),
        connections_per_core_max: config.connections_per_core_max,
    };
    let static_dir = config.static_dir.clone();
    let store = Arc::new(open_store(&config)?);
    let cores_store = store.clone();
    let hash_threads = match config.hash_threads {
        0 => (threads / 2).max(1),
        n => n,
    };
    let workers = rt::Workers::start(hash_threads, config.hash_queue.max(1))?;
    let limits = api::Limits {
        login_failures: RateRule::per(config.login_failures_per_minute, Duration::from_secs(60)),
        signups: RateRule::per(config.signups_per_hour, Duration::from_secs(3600)),
        message_chars_max: config.max_message_chars,
    };
    let secure_cookies = config.secure_cookies;
    tracing::info!(
        threads = hash_threads,
        queue = config.hash_queue,
        "password hashing pool"
    );
    let cores_workers = workers.clone();
    let rooms = Arc::new(config.rooms.clone());
    tracing::info!(
        rooms = %rooms.all().iter().map(|r| r.id.as_str()).collect::<Vec<_>>().join(","),
        "chat rooms"
    );
    // Each core takes its own endpoint once, at start-up (the mutex is never touched again).
    let meshes: std::sync::Mutex<Vec<Option<rt::MeshEndpoint<chat::CrossCore>>>> =
        std::sync::Mutex::new(
            rt::mesh(threads, rt::MESH_RING_CAPACITY_DEFAULT)?
                .into_iter()
                .map(Some)
                .collect(),
        );
    let line_on = config.line_port.is_some();
    let allowed_origins = config.allowed_origins.clone();
    let served = rt::run(options, move |info| {
        let store = cores_store.for_core();
        let mesh = meshes.lock().expect("no core panicked holding it")[info.index]
            .take()
            .expect("each core takes its mesh endpoint once");
        let hub = chat::Hub::start(
            rooms.clone(),
            store.clone(),
            mesh,
            line_on,
            all_metrics.clone(),
        );
        Rc::new(Core {
            info,
            settings: settings.clone(),
            all_metrics: all_metrics.clone(),
            date: DateCache::default(),
            statics: StaticFiles::new(&static_dir),
            hub,
            api: api::Api::new(
                store,
                cores_workers.clone(),
                secure_cookies,
                limits,
                allowed_origins.clone(),
            ),
        })
    });
    drop(workers);
    // The cores are gone; the embedded store finishes its queue and checkpoints.
    let closed = match Arc::try_unwrap(store) {
        Ok(setup) => setup.close(),
        Err(_) => Ok(()),
    };
    served?;
    closed.map_err(|e| io::Error::other(format!("storage: {e}")))
}

#[cfg(test)]
mod tests {
    use super::route_path;

    #[test]
    fn routes_on_the_path_only() {
        assert_eq!(route_path("/healthz"), "/healthz");
        assert_eq!(route_path("/metrics?x=1"), "/metrics");
        assert_eq!(route_path("http://h:1/api/x#f"), "/api/x");
        assert_eq!(route_path("https://h"), "/");
        assert_eq!(route_path("HTTP://h/healthz"), "/healthz");
    }
}
