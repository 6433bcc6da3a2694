//! Outbound connections (to Redis, MySQL, other instances) from a core, through the same
//! [`Conn`] interface as accepted ones, and [`run_local`] to drive such code on a core-like
//! runtime outside the server (tests, benchmarks, tools).
//!
//! Each core thread has one client registry: its connections get deadlines enforced by a
//! sweeper like accepted ones, but never count as open client connections and are not closed
//! by draining (the server may still need its database while it finishes requests).

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::conn::{Conn, Registry, Stream};
use super::core::{Backend, URING_COMPLETION_ENTRIES, URING_SUBMISSION_ENTRIES};

struct Local {
    backend: Backend,
    clients: Rc<Registry>,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

/// Runs `future` to completion on a fresh runtime of `backend` on this thread, as a core would
/// (one io_uring, or one current-thread epoll runtime with a local task set).
pub fn block_on<F: Future>(backend: Backend, future: F) -> io::Result<F::Output> {
    match backend {
        Backend::Uring => {
            let mut builder = tokio_uring::builder();
            builder
                .entries(URING_SUBMISSION_ENTRIES)
                .uring_builder(tokio_uring::uring_builder().setup_cqsize(URING_COMPLETION_ENTRIES));
            let runtime = tokio_uring::Runtime::new(&builder)?;
            Ok(runtime.block_on(future))
        }
        Backend::Epoll => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok(tokio::task::LocalSet::new().block_on(&runtime, future))
        }
    }
}

/// Makes this runtime thread able to [`connect`]: sets up its client registry and the task
/// that enforces client deadlines. Called once per core by `core.rs`, and by [`run_local`].
pub(crate) fn enter(backend: Backend, shutting_down: Arc<AtomicBool>) {
    let clients = Registry::new(shutting_down);
    tokio::task::spawn_local(clients.clone().sweep_forever());
    LOCAL.with(|l| *l.borrow_mut() = Some(Local { backend, clients }));
}

/// Runs `future` on a core-like runtime of `backend` where [`connect`] works.
pub fn run_local<F: Future>(backend: Backend, future: F) -> io::Result<F::Output> {
    block_on(backend, async move {
        enter(backend, Arc::new(AtomicBool::new(false)));
        let out = future.await;
        LOCAL.with(|l| l.borrow_mut().take());
        out
    })
}

/// Opens a TCP connection from the current core. Fails with `Unsupported` outside a core or
/// [`run_local`]. Bound the wait with [`Conn::set_timeout`] after connecting, or by racing this
/// future against a timer (a pending connect is safe to drop: the socket is closed with it).
pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
    let (backend, clients) = LOCAL
        .with(|l| l.borrow().as_ref().map(|l| (l.backend, l.clients.clone())))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "rt::connect outside a ringchat core",
            )
        })?;
    let stream = match backend {
        Backend::Uring => {
            let s = tokio_uring::net::TcpStream::connect(addr).await?;
            let _ = s.set_nodelay(true);
            Stream::Uring(s)
        }
        Backend::Epoll => {
            let s = tokio::net::TcpStream::connect(addr).await?;
            let _ = s.set_nodelay(true);
            Stream::Epoll(s)
        }
    };
    Ok(Conn::new(stream, clients, addr))
}
