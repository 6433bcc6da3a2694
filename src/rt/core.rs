//! Per-core worker threads: backend choice, pinning, the accept loop, draining, and the main
//! thread's signal handling and shutdown deadline.
//!
//! Shutdown: on SIGINT or SIGTERM the main thread sets the shutdown flag and shuts down the
//! read side of every listener (through its duplicated descriptor), which makes each core's
//! pending `accept` fail. tokio-uring's issue tracker warns against wrapping `accept` in a
//! timeout or select (a dropped accept is not cancelled and may swallow a connection), so this is
//! how accept loops end. Each core then tells its service to drain, shuts down idle connections,
//! and waits for busy ones to finish. The main thread waits at most the shutdown timeout, then
//! returns anyway; a second signal returns at once.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use super::conn::{Conn, Registry, Stream};
use super::{affinity, client, listener};
use crate::config::IoMode;

/// io_uring submission queue entries per core.
pub const URING_SUBMISSION_ENTRIES: u32 = 4096;
/// io_uring completion queue entries per core: sized for the connection count (every open
/// connection may have a read and a write completing at once), so completions never overflow.
pub const URING_COMPLETION_ENTRIES: u32 = 32 * 1024;
/// Pause after accept fails for lack of descriptors or memory, before trying again.
pub const ACCEPT_RETRY_MS: u64 = 20;
/// How often the main thread checks whether the cores have finished draining.
pub const SHUTDOWN_POLL_MS: u64 = 10;

/// The I/O backend a runtime was started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Uring,
    Epoll,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Uring => "uring",
            Backend::Epoll => "epoll",
        }
    }
}

/// Settings the runtime needs; the rest of the configuration belongs to the service.
#[derive(Debug, Clone)]
pub struct RtOptions {
    pub listen: SocketAddr,
    /// More ports served by every core, each with its own SO_REUSEPORT listeners, named for
    /// the start-up log (`listening line=…`); a connection knows its listener by
    /// [`Conn::listener`] (`i + 1` for the `i`th of these).
    pub extra_listen: Vec<(&'static str, SocketAddr)>,
    /// 0 = one per available core.
    pub threads: usize,
    pub io: IoMode,
    pub shutdown_timeout: Duration,
    pub connections_per_core_max: usize,
}

/// What a core's service is told about its core.
#[derive(Debug, Clone, Copy)]
pub struct CoreInfo {
    pub index: usize,
    pub cpu: usize,
    pub backend: Backend,
}

/// A per-core connection handler (`!Send`; one instance per core).
pub trait Service: 'static {
    /// Serves one accepted connection until it ends.
    fn serve(self: Rc<Self>, conn: Conn) -> impl Future<Output = ()> + 'static;
    /// A connection was refused because the core is at its connection limit.
    fn refused(&self) {}
    /// The core stopped accepting; long-lived sessions should say goodbye now.
    fn begin_drain(&self) {}
}

/// Picks the backend for `mode`: `Err` carries a message for the operator.
pub fn choose_backend(mode: IoMode) -> Result<Backend, String> {
    match mode {
        IoMode::Epoll => Ok(Backend::Epoll),
        IoMode::Uring => probe_uring().map(|()| Backend::Uring),
        IoMode::Auto => match probe_uring() {
            Ok(()) => Ok(Backend::Uring),
            Err(why) => {
                tracing::warn!("{why}; falling back to epoll (pass --io epoll to silence this)");
                Ok(Backend::Epoll)
            }
        },
    }
}

fn probe_uring() -> Result<(), String> {
    match io_uring::IoUring::new(2) {
        Ok(_) => Ok(()),
        Err(e) => {
            let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .unwrap_or(0);
            let how = match (e.raw_os_error(), disabled) {
                (_, 2) => "kernel.io_uring_disabled=2 forbids it: set `sysctl kernel.io_uring_disabled=0`".to_string(),
                (_, 1) => "kernel.io_uring_disabled=1 limits it to the io_uring_group: set `sysctl kernel.io_uring_disabled=0` or add this user to that group".to_string(),
                (Some(libc::EPERM), _) => "a seccomp profile blocks it (Docker's default does): run the container with a profile that allows io_uring_setup, io_uring_enter and io_uring_register (see README, 'io_uring in containers')".to_string(),
                (Some(libc::ENOSYS), _) => "the kernel has no io_uring: use Linux 5.19 or later".to_string(),
                _ => "see README, 'io_uring in containers'".to_string(),
            };
            Err(format!("io_uring is unavailable ({e}): {how}"))
        }
    }
}

/// Starts the cores and blocks until shutdown completes (or its timeout passes).
pub fn run<S, F>(options: RtOptions, make_service: F) -> io::Result<()>
where
    S: Service,
    F: Fn(CoreInfo) -> Rc<S> + Send + Sync + 'static,
{
    let backend = choose_backend(options.io).map_err(io::Error::other)?;
    let mut cpus = affinity::available_cpus()?;
    if options.threads > 0 {
        // More threads than cores share cores round-robin; fewer use the first ones.
        cpus = (0..options.threads).map(|i| cpus[i % cpus.len()]).collect();
    }
    // listeners[core][i]: the core's listener for address i (0: `listen`, then `extra_listen`).
    let mut listeners: Vec<Vec<std::net::TcpListener>> =
        (0..cpus.len()).map(|_| Vec::new()).collect();
    let mut bound = Vec::new();
    for addr in std::iter::once(options.listen).chain(options.extra_listen.iter().map(|e| e.1)) {
        let per_core = listener::bind_reuseport(addr, cpus.len())?;
        bound.push(per_core[0].local_addr()?);
        for (core, l) in per_core.into_iter().enumerate() {
            listeners[core].push(l);
        }
    }
    let local = bound[0];
    let extras: String = options
        .extra_listen
        .iter()
        .zip(&bound[1..])
        .map(|((name, _), addr)| format!(" {name}={addr}"))
        .collect();
    let stoppers = listeners
        .iter()
        .flatten()
        .map(listener::duplicate)
        .collect::<io::Result<Vec<_>>>()?;

    // Signals are registered before any core starts, so a signal can never kill us unhandled.
    let main_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut term, mut int) = main_rt.block_on(async {
        Ok::<_, io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;

    let shutting_down = Arc::new(AtomicBool::new(false));
    // Told by each core's thread as it ends: the main thread waits on it, not on a timer.
    let core_exited = Arc::new(tokio::sync::Notify::new());
    let make_service = Arc::new(make_service);
    let mut cores: Vec<JoinHandle<io::Result<()>>> = Vec::new();
    for (index, (listener, cpu)) in listeners.into_iter().zip(cpus.iter().copied()).enumerate() {
        let info = CoreInfo {
            index,
            cpu,
            backend,
        };
        let make_service = make_service.clone();
        let shutting_down = shutting_down.clone();
        let cap = options.connections_per_core_max;
        let handle = std::thread::Builder::new()
            .name(format!("ringchat-core-{index}"))
            .spawn({
                let exited = TellOnExit(core_exited.clone());
                move || {
                    let _exited = exited;
                    core_thread(info, listener, cap, shutting_down, move |i| make_service(i))
                }
            })?;
        cores.push(handle);
    }
    tracing::info!(addr = %local, cores = cpus.len(), io = backend.name(), "listening{extras}");

    main_rt.block_on(async {
        let reason = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = core_exited.notified() => "a core stopped",
        };
        tracing::info!(reason, "shutting down: no longer accepting");
        shutting_down.store(true, Ordering::SeqCst);
        for fd in &stoppers {
            listener::stop_accepting(fd);
        }
        let deadline = tokio::time::Instant::now() + options.shutdown_timeout;
        loop {
            if cores.iter().all(|c| c.is_finished()) {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!("shutdown timeout passed with requests still in flight; exiting");
                    return Ok(());
                }
                _ = term.recv() => { tracing::warn!("second signal: exiting now"); return Ok(()); }
                _ = int.recv() => { tracing::warn!("second signal: exiting now"); return Ok(()); }
                _ = tokio::time::sleep(Duration::from_millis(SHUTDOWN_POLL_MS)) => {}
            }
        }
        let mut first_error = None;
        for core in cores {
            match core.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(io::Error::other("a core thread panicked"));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => {
                tracing::info!("all connections closed; bye");
                Ok(())
            }
        }
    })
}

enum Listener {
    Uring(tokio_uring::net::TcpListener),
    Epoll(tokio::net::TcpListener),
}

impl Listener {
    async fn accept(&self) -> io::Result<(Stream, SocketAddr)> {
        match self {
            Listener::Uring(l) => {
                let (s, peer) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Stream::Uring(s), peer))
            }
            Listener::Epoll(l) => {
                let (s, peer) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Stream::Epoll(s), peer))
            }
        }
    }
}

fn core_thread<S, F>(
    info: CoreInfo,
    listeners: Vec<std::net::TcpListener>,
    connections_max: usize,
    shutting_down: Arc<AtomicBool>,
    make_service: F,
) -> io::Result<()>
where
    S: Service,
    F: FnOnce(CoreInfo) -> Rc<S>,
{
    if let Err(e) = affinity::pin_current_thread(info.cpu) {
        tracing::warn!(
            core = info.index,
            cpu = info.cpu,
            "could not pin thread: {e}"
        );
    }
    let backend = info.backend;
    client::block_on(backend, async move {
        let listeners = listeners
            .into_iter()
            .map(|l| {
                Ok(match backend {
                    Backend::Uring => Listener::Uring(tokio_uring::net::TcpListener::from_std(l)),
                    Backend::Epoll => Listener::Epoll(tokio::net::TcpListener::from_std(l)?),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        client::enter(backend, shutting_down.clone());
        core_main(
            info,
            listeners,
            connections_max,
            shutting_down,
            make_service(info),
        )
        .await;
        Ok(())
    })?
}

async fn core_main<S: Service>(
    info: CoreInfo,
    listeners: Vec<Listener>,
    connections_max: usize,
    shutting_down: Arc<AtomicBool>,
    service: Rc<S>,
) {
    let registry = Registry::new(shutting_down.clone());
    let sweeper = tokio::task::spawn_local(registry.clone().sweep_forever());
    // One accept loop per listener; each ends when shutdown stops its listener.
    let loops = listeners.into_iter().enumerate().map(|(index, listener)| {
        accept_loop(
            info,
            listener,
            index,
            connections_max,
            &shutting_down,
            &service,
            &registry,
        )
    });
    futures_join_all(loops).await;
    service.begin_drain();
    registry.drain();
    while registry.open() > 0 {
        tokio::time::sleep(Duration::from_millis(SHUTDOWN_POLL_MS)).await;
    }
    sweeper.abort();
    tracing::debug!(core = info.index, "drained");
}

/// Tells the main thread that a core's thread is ending, however it ends (a panic included),
/// so that an idle server's main thread sleeps until a signal or this instead of polling.
struct TellOnExit(Arc<tokio::sync::Notify>);

impl Drop for TellOnExit {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// Accepts on one of the core's listeners until shutdown stops it.
async fn accept_loop<S: Service>(
    info: CoreInfo,
    listener: Listener,
    index: usize,
    connections_max: usize,
    shutting_down: &AtomicBool,
    service: &Rc<S>,
    registry: &Rc<Registry>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if registry.open() >= connections_max {
                    // Refused by closing at once: the client sees a reset or EOF immediately
                    // instead of waiting in the backlog. Counted first, so that a client that
                    // saw its refusal finds it in /metrics (counted after the close, a core
                    // descheduled in between once left the count one short in CI).
                    service.refused();
                    drop(stream);
                    continue;
                }
                let conn = Conn::new(stream, registry.clone(), peer).accepted_by(index);
                tokio::task::spawn_local(service.clone().serve(conn));
            }
            Err(_) if shutting_down.load(Ordering::SeqCst) => break,
            Err(e) => match e.raw_os_error() {
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                    tracing::warn!(
                        core = info.index,
                        "accept: {e}; retrying in {ACCEPT_RETRY_MS} ms"
                    );
                    tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                }
                // The peer gave up before we accepted: nothing to do.
                Some(libc::ECONNABORTED | libc::EPROTO | libc::EPERM) => {}
                _ => {
                    tracing::warn!(core = info.index, "accept: {e}");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                }
            },
        }
    }
}

/// Awaits every future of `futures` on this task (they are few: one per listener).
async fn futures_join_all<F: Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        futures.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if futures.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}
