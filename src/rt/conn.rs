//! One accepted TCP connection behind a narrow owned-buffer interface, and the per-core registry
//! that enforces its deadlines.
//!
//! Server code sees only [`Conn`]: read into a buffer it gives away and gets back, write all of a
//! buffer, set a deadline, shut down. Whether the bytes move through io_uring or epoll is decided
//! here and nowhere else.
//!
//! Deadlines are enforced by shutting the socket down, not by dropping a future: under
//! tokio-uring, dropping an in-flight read does not cancel it (the kernel may still write into
//! the buffer), so a timed-out read must be completed by the kernel. `shutdown(2)` does exactly
//! that: the pending read returns 0 and the pending write fails. One sweeper task per core scans
//! the registry every [`SWEEP_INTERVAL_MS`]; there is no timer per connection.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_uring::buf::BoundedBuf;

/// How often each core looks for connections past their deadline while it has any.
/// Deadlines are therefore enforced within this many milliseconds after they pass; a core with
/// no connection does not wake for it at all.
pub const SWEEP_INTERVAL_MS: u64 = 100;

pub(crate) enum Stream {
    Uring(tokio_uring::net::TcpStream),
    Epoll(tokio::net::TcpStream),
}

/// What the registry knows of one open connection. Lives on one core (`!Send`).
struct Entry {
    fd: RawFd,
    deadline: Cell<Option<Instant>>,
    /// Waiting for the next request with nothing in flight: safe to close when draining.
    idle: Cell<bool>,
    /// Set before the descriptor is closed, so the sweeper never touches a reused number.
    closed: Cell<bool>,
    timed_out: Cell<bool>,
}

impl Entry {
    fn shut(&self) {
        if !self.closed.get() {
            // SAFETY: `closed` is false, so `fd` is still this connection's open descriptor:
            // it is closed only after `closed` is set, on this same thread.
            unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        }
    }
}

/// The connections of one core: counts them, enforces their deadlines, drains them on shutdown.
pub(crate) struct Registry {
    entries: RefCell<Vec<Weak<Entry>>>,
    open: Cell<usize>,
    draining: Cell<bool>,
    /// Told when the first connection registers in an empty registry: the sweeper waits for
    /// it instead of waking every [`SWEEP_INTERVAL_MS`] with nothing to sweep.
    registered: tokio::sync::Notify,
    /// Set by the main thread on SIGINT/SIGTERM, before any core notices its listener stopped:
    /// responses from then on say `Connection: close`. Written once; read with a relaxed load.
    shutting_down: Arc<AtomicBool>,
}

impl Registry {
    pub(crate) fn new(shutting_down: Arc<AtomicBool>) -> Rc<Self> {
        Rc::new(Registry {
            entries: RefCell::new(Vec::new()),
            open: Cell::new(0),
            draining: Cell::new(false),
            registered: tokio::sync::Notify::new(),
            shutting_down,
        })
    }

    /// Enforces deadlines for as long as the task runs: a sweep every [`SWEEP_INTERVAL_MS`]
    /// while the registry holds connections (closed ones are forgotten by the sweep), none
    /// while it is empty. One task per registry: a core's accepted connections, and its
    /// outbound clients.
    pub(crate) async fn sweep_forever(self: Rc<Self>) {
        loop {
            if self.entries.borrow().is_empty() {
                // A registration in between left a permit: this returns at once.
                self.registered.notified().await;
            }
            tokio::time::sleep(Duration::from_millis(SWEEP_INTERVAL_MS)).await;
            self.sweep(Instant::now());
        }
    }

    pub(crate) fn open(&self) -> usize {
        self.open.get()
    }

    /// Shuts down every connection whose deadline has passed; forgets closed ones.
    pub(crate) fn sweep(&self, now: Instant) {
        self.entries.borrow_mut().retain(|weak| {
            let Some(entry) = weak.upgrade() else {
                return false;
            };
            if entry.closed.get() {
                return false;
            }
            if let Some(deadline) = entry.deadline.get()
                && deadline <= now
                && !entry.timed_out.get()
            {
                entry.timed_out.set(true);
                entry.shut();
            }
            true
        });
    }

    /// Stops new requests: idle connections are shut down now, busy ones see
    /// [`Conn::draining`] and close after their current response.
    pub(crate) fn drain(&self) {
        self.draining.set(true);
        for weak in self.entries.borrow().iter() {
            if let Some(entry) = weak.upgrade()
                && entry.idle.get()
            {
                entry.shut();
            }
        }
    }
}

/// An accepted connection. Dropping it closes the socket.
pub struct Conn {
    stream: Stream,
    entry: Rc<Entry>,
    registry: Rc<Registry>,
    peer: SocketAddr,
    /// Which of the core's listeners accepted it (0: the first, `RtOptions::listen`).
    listener: usize,
}

impl Conn {
    pub(crate) fn new(stream: Stream, registry: Rc<Registry>, peer: SocketAddr) -> Conn {
        let fd = match &stream {
            Stream::Uring(s) => s.as_raw_fd(),
            Stream::Epoll(s) => s.as_raw_fd(),
        };
        let entry = Rc::new(Entry {
            fd,
            deadline: Cell::new(None),
            idle: Cell::new(false),
            closed: Cell::new(false),
            timed_out: Cell::new(false),
        });
        let first = {
            let mut entries = registry.entries.borrow_mut();
            entries.push(Rc::downgrade(&entry));
            entries.len() == 1
        };
        if first {
            registry.registered.notify_one();
        }
        registry.open.set(registry.open.get() + 1);
        Conn {
            stream,
            entry,
            registry,
            peer,
            listener: 0,
        }
    }

    /// Marks the connection as accepted by listener `index` (see [`Conn::listener`]).
    pub(crate) fn accepted_by(mut self, index: usize) -> Conn {
        self.listener = index;
        self
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The listener that accepted the connection: 0 for `RtOptions::listen`, `i + 1` for
    /// `RtOptions::extra_listen[i]`.
    pub fn listener(&self) -> usize {
        self.listener
    }

    /// Reads into the spare capacity of `buf` (after its current length) and returns it.
    /// `Ok(0)` means end of stream, or that the deadline passed (see [`Conn::timed_out`]).
    pub async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        if buf.len() == buf.capacity() {
            buf.reserve(4096);
        }
        match &self.stream {
            Stream::Uring(s) => {
                let len = buf.len();
                let cap = buf.capacity();
                let (result, slice) = s.read(buf.slice(len..cap)).await;
                (result, slice.into_inner())
            }
            Stream::Epoll(s) => loop {
                if let Err(e) = s.readable().await {
                    return (Err(e), buf);
                }
                match s.try_read_buf(&mut buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    result => return (result, buf),
                }
            },
        }
    }

    /// Writes all of `buf` and returns it (cleared or not: the caller decides).
    pub async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        match &self.stream {
            Stream::Uring(s) => s.write_all(buf).await,
            Stream::Epoll(s) => {
                let result = epoll_write_all(s, &buf).await;
                (result, buf)
            }
        }
    }

    /// Writes all of several shared buffers, in order, with as few system calls as the socket
    /// allows (one `writev` when the socket takes everything, as it usually does).
    pub async fn write_all_vectored(&self, mut bufs: Vec<Bytes>) -> io::Result<()> {
        bufs.retain(|b| !b.is_empty());
        while !bufs.is_empty() {
            let written = match &self.stream {
                Stream::Uring(s) => {
                    let (result, returned) = s.writev(bufs).await;
                    bufs = returned;
                    result?
                }
                Stream::Epoll(s) => loop {
                    s.writable().await?;
                    let slices: Vec<io::IoSlice<'_>> =
                        bufs.iter().map(|b| io::IoSlice::new(b)).collect();
                    match s.try_write_vectored(&slices) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        result => break result?,
                    }
                },
            };
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            advance(&mut bufs, written);
        }
        Ok(())
    }

    /// Sets when this connection is shut down if still waiting; `None` for never.
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        self.entry.deadline.set(deadline);
    }

    /// Sets the deadline `after` from now.
    pub fn set_timeout(&self, after: Duration) {
        self.set_deadline(Some(Instant::now() + after));
    }

    /// Whether the sweeper shut this connection down because its deadline passed.
    pub fn timed_out(&self) -> bool {
        self.entry.timed_out.get()
    }

    /// Marks the connection idle (waiting for a next request, nothing in flight): a draining
    /// core may then close it at once.
    pub fn set_idle(&self, idle: bool) {
        self.entry.idle.set(idle);
    }

    /// Whether this core is shutting down: finish the current response, then close.
    pub fn draining(&self) -> bool {
        self.registry.draining.get() || self.registry.shutting_down.load(Ordering::Relaxed)
    }

    /// Makes the close abortive (`SO_LINGER` 0): when the connection is dropped the kernel
    /// discards whatever it has not yet sent and sends a reset, instead of retransmitting the
    /// bytes to a peer that may only come back later. For a client that has already told its
    /// waiters that their requests failed: a request still queued in the kernel must not run
    /// afterwards.
    pub fn discard_unsent_on_close(&self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: the descriptor is open for as long as `self` lives, and `linger` is a valid
        // `struct linger` of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                self.entry.fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::debug!(
                "SO_LINGER on a client socket: {}",
                io::Error::last_os_error()
            );
        }
    }

    /// Half-closes the sending side (FIN) once everything is written.
    pub fn shutdown_write(&self) {
        let _ = match &self.stream {
            Stream::Uring(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Epoll(_) => {
                // SAFETY: the descriptor is open for as long as `self` lives.
                let rc = unsafe { libc::shutdown(self.entry.fd, libc::SHUT_WR) };
                if rc == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            }
        };
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Mark closed before the stream field drops and closes the descriptor.
        self.entry.closed.set(true);
        self.registry.open.set(self.registry.open.get() - 1);
    }
}

/// Drops `n` written bytes from the front of `bufs`.
fn advance(bufs: &mut Vec<Bytes>, mut n: usize) {
    let mut done = 0;
    for b in bufs.iter_mut() {
        if n >= b.len() {
            n -= b.len();
            done += 1;
        } else {
            let _ = b.split_to(n);
            break;
        }
    }
    bufs.drain(..done);
}

async fn epoll_write_all(s: &tokio::net::TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        s.writable().await?;
        match s.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_drops_written_bytes_across_buffers() {
        let mut bufs = vec![
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"de"),
            Bytes::from_static(b"fgh"),
        ];
        advance(&mut bufs, 4);
        assert_eq!(
            bufs,
            vec![Bytes::from_static(b"e"), Bytes::from_static(b"fgh")]
        );
        advance(&mut bufs, 1);
        assert_eq!(bufs, vec![Bytes::from_static(b"fgh")]);
        advance(&mut bufs, 3);
        assert!(bufs.is_empty());
    }
}
