//! Binding one listening socket per core on the same address with SO_REUSEPORT.
//!
//! The kernel then spreads incoming connections over the cores by a hash of the 4-tuple, so no
//! core hands connections to another. Accepting is done by each core's runtime in `core.rs`.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Accept backlog of each core's listener (the kernel caps it at `net.core.somaxconn`).
pub const LISTEN_BACKLOG_CONNECTIONS: i32 = 4096;

/// Binds `count` listeners to `addr`. When `addr` has port 0, the first bind picks the port and
/// the others bind that same port, so every core serves one address.
pub fn bind_reuseport(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.set_cloexec(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG_CONNECTIONS)?;
        let listener: TcpListener = socket.into();
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// A duplicate of a listener's descriptor, kept by the main thread so that shutdown can stop
/// a core's accept even while that core is blocked in it (see `core.rs`). Shutting down a
/// duplicate acts on the shared socket; owning the duplicate means its number is never reused.
pub fn duplicate(listener: &TcpListener) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a valid descriptor returns a new descriptor we own, or -1.
    let fd = unsafe { libc::fcntl(listener.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by fcntl and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Stops accepting on a listening socket: pending and future `accept` calls on every duplicate
/// of it fail with EINVAL, under io_uring and epoll alike.
pub fn stop_accepting(fd: &OwnedFd) {
    // SAFETY: fd is a valid descriptor we own; shutdown has no memory effects.
    unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RD) };
}
