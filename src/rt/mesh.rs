//! The cross-core mesh: bounded lock-free SPSC rings between every ordered pair of cores, and a
//! wake-up of the receiving core.
//!
//! [`mesh`] is called once on the main thread for N cores and returns N [`MeshEndpoint`]s; each
//! core moves its endpoint into its thread. Core `i` holds the producer of the ring `i → j` and
//! the consumer of the ring `j → i`, for every `j != i`: N·(N-1) rings from [`rtrb`], each of
//! `ring_capacity` items. Nothing is locked: a ring has one writer and one reader, and the only
//! other shared things are the eventfds (below) and the reference count keeping them open.
//!
//! A core's loop turn is: [`MeshEndpoint::try_send`] any number of items (never blocks; a full
//! ring gives the item back and the caller decides: retry later, drop, disconnect a slow
//! consumer), then [`MeshEndpoint::flush`] once, which wakes each core it pushed to with one
//! eventfd write (not one per item). The receiver awaits [`MeshEndpoint::ready`] and then calls
//! [`MeshEndpoint::drain`], which takes everything waiting, oldest first per sender.
//!
//! Wake-ups. Each core has one eventfd (`EFD_NONBLOCK | EFD_CLOEXEC`, counter semantics). A
//! sender pushes first and writes the target's eventfd after (in `flush`); the receiver reads
//! its eventfd (which resets the counter) and only then looks at its rings. No wake-up is lost:
//! - a push published before the eventfd write that the receiver's read consumed is visible to
//!   the receiver's next look at its rings (the push's release store happens before the write,
//!   the kernel orders the write before the read, the ring check's acquire load comes after);
//! - a push that the receiver's look at its rings missed has its flush still ahead of it, and
//!   that write makes the eventfd readable again after the read reset it, so the next wait ends.
//!
//! `ready` returns at once when something is waiting, so a busy core never touches the eventfd;
//! after reading the counter it checks the rings again and goes back to waiting if they are
//! empty (the items that write announced were taken by an earlier drain), so `ready` never
//! returns with nothing to drain and a receiver never spins on empty wake-ups.
//!
//! One mechanism for both backends: the eventfd is awaited with `tokio::io::unix::AsyncFd`. A
//! tokio-uring 0.5 runtime is a current-thread tokio runtime with I/O enabled that itself waits
//! on its ring's descriptor through `AsyncFd` (tokio-uring `src/runtime/mod.rs`), so the eventfd
//! simply joins the epoll set the core already sleeps on, and no `Backend` has to be passed or
//! detected. A persistent io_uring read of the eventfd was considered and not used: its
//! in-flight operation is `!Send` (it holds tokio-uring's `Rc` driver handle), so it cannot live
//! in an endpoint that must be `Send`; a read dropped with a cancelled `ready` is not cancelled
//! and would later consume a counter that a newer read was waiting for (a lost wake-up); and it
//! wakes the core through the same epoll wait anyway.
//!
//! Lifetimes. Every endpoint holds the same `Arc` of all N eventfds, so a sender never writes
//! to a descriptor that was closed (and whose number might have been reused): they are closed
//! when the last endpoint is dropped. Dropping an endpoint never disturbs another core: rtrb
//! marks its rings abandoned (see [`MeshEndpoint::peer_gone`]); items pushed to a core that is
//! gone stay in the ring until it is full, and are dropped with the ring.
//!
//! Not here: what travels (the chat layer decides), sending to one's own core (do that
//! locally), blocking or async sends (a full ring is the caller's decision), and fairness
//! between senders beyond taking everything waiting from each in turn.

use std::cell::OnceCell;
use std::fmt;
use std::fs::File;
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::{self, ThreadId};

use rtrb::{Consumer, Producer, PushError, RingBuffer};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::doorbell::{self, WakeList};

/// Items per ring (per ordered pair of cores) when the caller has no better figure. Memory per
/// mesh is `cores · (cores - 1) · ring_capacity · size_of::<T>()`.
pub const MESH_RING_CAPACITY_DEFAULT: usize = 4096;
/// The most items one ring may hold.
pub const MESH_RING_CAPACITY_MAX: usize = 1 << 20;
/// The most cores a mesh may connect (rings grow with the square of this).
pub const MESH_CORES_MAX: usize = 1024;

/// The bytes of one eventfd read or write: its 64-bit counter.
const EVENTFD_COUNTER_BYTES: usize = 8;

/// Builds the mesh for `cores` cores with `ring_capacity` items per ring. Call it once, on the
/// main thread; endpoint `i` belongs to core `i` and is moved into that core's thread.
///
/// Fails with `InvalidInput` when `cores` is not in `1..=MESH_CORES_MAX` or `ring_capacity` not
/// in `1..=MESH_RING_CAPACITY_MAX`, and with the OS error when an eventfd cannot be created.
pub fn mesh<T: Send + 'static>(
    cores: usize,
    ring_capacity: usize,
) -> io::Result<Vec<MeshEndpoint<T>>> {
    if !(1..=MESH_CORES_MAX).contains(&cores) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a mesh connects 1 to {MESH_CORES_MAX} cores, not {cores}"),
        ));
    }
    if !(1..=MESH_RING_CAPACITY_MAX).contains(&ring_capacity) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a mesh ring holds 1 to {MESH_RING_CAPACITY_MAX} items, not {ring_capacity}"),
        ));
    }
    let wake_fds: Arc<[File]> = (0..cores)
        .map(|_| eventfd())
        .collect::<io::Result<Vec<_>>>()?
        .into();
    let mut outbound: Vec<Vec<Option<Producer<T>>>> = (0..cores)
        .map(|_| (0..cores).map(|_| None).collect())
        .collect();
    let mut inbound: Vec<Vec<Option<Consumer<T>>>> = (0..cores)
        .map(|_| (0..cores).map(|_| None).collect())
        .collect();
    for from in 0..cores {
        for to in (0..cores).filter(|&to| to != from) {
            let (producer, consumer) = RingBuffer::new(ring_capacity);
            outbound[from][to] = Some(producer);
            inbound[to][from] = Some(consumer);
        }
    }
    Ok(outbound
        .into_iter()
        .zip(inbound)
        .enumerate()
        .map(|(core, (outbound, inbound))| MeshEndpoint {
            core,
            outbound,
            inbound,
            wake_fds: wake_fds.clone(),
            wakes: WakeList::new(cores),
            waiter: OnceCell::new(),
        })
        .collect())
}

/// One core's end of the mesh: the producers of its rings to every other core, the consumers
/// of theirs to it, and its wake-up. `Send` so it can be moved into its core's thread; `!Sync`,
/// and `ready` ties it to the thread that first awaits it.
pub struct MeshEndpoint<T> {
    core: usize,
    /// `outbound[to]` is the ring to core `to`; `None` at `core`.
    outbound: Vec<Option<Producer<T>>>,
    /// `inbound[from]` is the ring from core `from`; `None` at `core`.
    inbound: Vec<Option<Consumer<T>>>,
    /// Every core's eventfd, indexed by core; shared by all endpoints so none is closed early.
    wake_fds: Arc<[File]>,
    /// The cores pushed to since the last flush.
    wakes: WakeList,
    /// Registered with the current runtime's reactor by the first `ready`/`poll_ready`.
    waiter: OnceCell<Waiter>,
}

/// This core's eventfd, registered with the reactor of the thread that first waited on it.
struct Waiter {
    fd: AsyncFd<WakeFd>,
    thread: ThreadId,
}

/// One core's eventfd, kept open by the shared `Arc` for as long as the registration lives.
struct WakeFd {
    fds: Arc<[File]>,
    core: usize,
}

impl AsRawFd for WakeFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fds[self.core].as_raw_fd()
    }
}

/// The ring to the chosen core is full; the item is given back untouched.
#[derive(PartialEq, Eq)]
pub struct Full<T>(pub T);

impl<T> Full<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Full(..)")
    }
}

impl<T> fmt::Display for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("internal: the mesh ring to that core is full")
    }
}

impl<T> std::error::Error for Full<T> {}

impl<T> fmt::Debug for MeshEndpoint<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshEndpoint")
            .field("core", &self.core)
            .field("cores", &self.outbound.len())
            .finish_non_exhaustive()
    }
}

impl<T: Send> MeshEndpoint<T> {
    /// This endpoint's core index.
    pub fn core(&self) -> usize {
        self.core
    }

    /// How many cores the mesh connects.
    pub fn cores(&self) -> usize {
        self.outbound.len()
    }

    /// Pushes `item` into the ring to core `to` without blocking, and marks `to` to be woken by
    /// the next [`flush`](Self::flush). When that ring is full the item comes back in `Full`.
    ///
    /// # Panics
    ///
    /// If `to` is this core or not a core of the mesh: a bug in the caller.
    pub fn try_send(&mut self, to: usize, item: T) -> Result<(), Full<T>> {
        let producer = self
            .outbound
            .get_mut(to)
            .and_then(Option::as_mut)
            .expect("try_send: `to` must be another core of this mesh");
        match producer.push(item) {
            Ok(()) => {
                self.wakes.mark(to);
                Ok(())
            }
            Err(PushError::Full(item)) => Err(Full(item)),
        }
    }

    /// Wakes every core this endpoint pushed to since the last flush: one eventfd write per
    /// core, however many items it was sent. Call it once per loop turn, after the sends.
    pub fn flush(&mut self) {
        let wake_fds = &self.wake_fds;
        self.wakes.flush(|to| wake(&wake_fds[to], to));
    }

    /// Takes every item waiting from all other cores, calling `f(from, item)` for each, oldest
    /// first per sender. Returns how many it took: at most `(cores - 1) · ring_capacity`, since
    /// it takes only what was there when it looked at each ring.
    pub fn drain(&mut self, mut f: impl FnMut(usize, T)) -> usize {
        let mut taken = 0;
        for (from, consumer) in self.inbound.iter_mut().enumerate() {
            let Some(consumer) = consumer else { continue };
            let waiting = consumer.slots();
            if waiting == 0 {
                continue;
            }
            let chunk = consumer
                .read_chunk(waiting)
                .expect("slots() counted these items and only this consumer takes them");
            for item in chunk {
                f(from, item);
            }
            taken += waiting;
        }
        taken
    }

    /// Waits until another core has sent items to this one (in practice: until it flushed).
    /// Returns at once when items are already waiting, and never returns with none waiting.
    ///
    /// Cancel-safe: dropping the future loses nothing (the wake-up stays in the eventfd), so it
    /// can sit in a `select!`. Works on both backends; see the module docs.
    ///
    /// The first call registers this core's eventfd with the calling thread's runtime; calls
    /// from another thread later fail with `Unsupported`, as do calls outside a tokio-based
    /// runtime (ringchat's cores and `rt::run_local` are such runtimes, on both backends).
    pub async fn ready(&self) -> io::Result<()> {
        poll_fn(|cx| self.poll_ready(cx)).await
    }

    /// [`ready`](Self::ready) as a poll function, for callers that keep the endpoint in a
    /// `RefCell` shared by several tasks of the core and borrow it only while polling.
    ///
    /// One task per core should wait: like `AsyncFd`'s, only the waker of the latest pending
    /// poll is woken.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Look, sleep, reset, look again: the order is in `doorbell`, which its loom model
        // checks; the module docs argue it here.
        doorbell::poll_ready(
            || self.waiting(),
            || match self.waiter() {
                Ok(waiter) => waiter.fd.poll_read_ready(cx),
                Err(e) => Poll::Ready(Err(e)),
            },
            |mut guard| {
                // A non-semaphore eventfd read returns and zeroes the whole counter (or finds
                // it zero), so the descriptor is observed not readable now: clearing is right,
                // and a write after the read brings a new edge, which the guard's tick does not
                // cover.
                read_counter(&self.wake_fds[self.core])?;
                guard.clear_ready();
                Ok(())
            },
        )
    }

    /// True once core `to` has dropped its endpoint: what is sent to it is never taken, and
    /// once its ring is full every `try_send` to it fails.
    ///
    /// # Panics
    ///
    /// If `to` is this core or not a core of the mesh.
    pub fn peer_gone(&self, to: usize) -> bool {
        self.outbound
            .get(to)
            .and_then(Option::as_ref)
            .expect("peer_gone: `to` must be another core of this mesh")
            .is_abandoned()
    }

    /// Whether any ring to this core holds an item.
    fn waiting(&self) -> bool {
        self.inbound
            .iter()
            .flatten()
            .any(|consumer| !consumer.is_empty())
    }

    fn waiter(&self) -> io::Result<&Waiter> {
        let here = thread::current().id();
        if let Some(waiter) = self.waiter.get() {
            if waiter.thread != here {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "mesh: ready() on another thread than the core that first awaited it",
                ));
            }
            return Ok(waiter);
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "mesh: ready() outside a ringchat core or rt::run_local",
            ));
        }
        let wake_fd = WakeFd {
            fds: self.wake_fds.clone(),
            core: self.core,
        };
        // SAFETY: `wake_fd.as_raw_fd()` always returns the same descriptor, `fds[core]`, which
        // stays open and unchanged while the registration lives: `wake_fd` holds the `Arc` of
        // the never-modified eventfd slice, which closes its files only when dropped.
        let fd = unsafe { AsyncFd::register_with_interest(wake_fd, Interest::READABLE) }?;
        Ok(self.waiter.get_or_init(|| Waiter { fd, thread: here }))
    }
}

/// A fresh non-blocking, close-on-exec eventfd with a zero counter.
fn eventfd() -> io::Result<File> {
    // SAFETY: eventfd(2) takes no pointers; it returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd(2): it is open and nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Adds 1 to `core`'s eventfd counter, making it readable.
fn wake(fd: &File, core: usize) {
    loop {
        match (&*fd).write(&1u64.to_ne_bytes()) {
            Ok(_) => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The counter is at its maximum: it is readable already, so nothing is lost.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                tracing::error!(core, "mesh: waking a core failed: {e}");
                return;
            }
        }
    }
}

/// Reads and so zeroes an eventfd's counter (which may be zero already).
fn read_counter(fd: &File) -> io::Result<()> {
    let mut counter = [0u8; EVENTFD_COUNTER_BYTES];
    loop {
        match (&*fd).read(&mut counter) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::rt::{Backend, run_local};

    fn counter(endpoint: &MeshEndpoint<u64>, core: usize) -> u64 {
        let mut bytes = [0u8; EVENTFD_COUNTER_BYTES];
        match (&endpoint.wake_fds[core]).read(&mut bytes) {
            Ok(_) => u64::from_ne_bytes(bytes),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => panic!("reading an eventfd: {e}"),
        }
    }

    fn take_all(endpoint: &mut MeshEndpoint<u64>) -> Vec<(usize, u64)> {
        let mut got = Vec::new();
        let n = endpoint.drain(|from, item| got.push((from, item)));
        assert_eq!(n, got.len());
        got
    }

    #[test]
    fn endpoints_are_send() {
        fn send<S: Send>(_: &S) {}
        let endpoints = mesh::<Box<u64>>(2, 4).unwrap();
        send(&endpoints[0]);
    }

    #[test]
    fn rejects_out_of_range_sizes() {
        for (cores, capacity) in [
            (0, 4),
            (MESH_CORES_MAX + 1, 4),
            (2, 0),
            (2, MESH_RING_CAPACITY_MAX + 1),
        ] {
            let e = mesh::<u64>(cores, capacity).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{cores} {capacity}");
        }
        let one = mesh::<u64>(1, 4).unwrap();
        assert_eq!((one[0].core(), one[0].cores()), (0, 1));
    }

    #[test]
    fn full_ring_gives_the_item_back() {
        let mut endpoints = mesh::<u64>(2, 2).unwrap();
        let (zero, one) = endpoints.split_at_mut(1);
        let (zero, one) = (&mut zero[0], &mut one[0]);
        assert_eq!(zero.try_send(1, 10), Ok(()));
        assert_eq!(zero.try_send(1, 11), Ok(()));
        let full = zero.try_send(1, 12).unwrap_err();
        assert_eq!(full.into_inner(), 12);
        // The other direction has its own ring.
        assert_eq!(one.try_send(0, 20), Ok(()));
        assert_eq!(take_all(one), [(0, 10), (0, 11)]);
        assert_eq!(zero.try_send(1, 12), Ok(()));
        assert_eq!(take_all(one), [(0, 12)]);
        assert_eq!(take_all(zero), [(1, 20)]);
    }

    #[test]
    fn drain_keeps_each_senders_order() {
        let mut endpoints = mesh::<u64>(3, 16).unwrap();
        for i in 0..5 {
            endpoints[1].try_send(0, 100 + i).unwrap();
            endpoints[2].try_send(0, 200 + i).unwrap();
        }
        let got = take_all(&mut endpoints[0]);
        assert_eq!(got.len(), 10);
        for from in [1, 2] {
            let mine: Vec<u64> = got
                .iter()
                .filter(|(f, _)| *f == from)
                .map(|(_, i)| *i)
                .collect();
            let base = from as u64 * 100;
            assert_eq!(mine, (base..base + 5).collect::<Vec<_>>());
        }
        assert!(take_all(&mut endpoints[0]).is_empty());
    }

    #[test]
    fn flush_writes_once_per_target_not_per_item() {
        let mut endpoints = mesh::<u64>(3, 64).unwrap();
        for i in 0..10 {
            endpoints[0].try_send(1, i).unwrap();
            endpoints[0].try_send(2, i).unwrap();
        }
        assert_eq!(
            counter(&endpoints[0], 1),
            0,
            "nothing is woken before flush"
        );
        endpoints[0].flush();
        endpoints[0].flush(); // nothing new pushed: no second write
        assert_eq!(counter(&endpoints[0], 1), 1);
        assert_eq!(counter(&endpoints[0], 2), 1);
        endpoints[0].try_send(1, 10).unwrap();
        endpoints[0].flush();
        assert_eq!(counter(&endpoints[0], 1), 1);
        assert_eq!(counter(&endpoints[0], 2), 0);
        // A full ring marks nothing: the items already in it were announced.
        let mut small = mesh::<u64>(2, 1).unwrap();
        small[0].try_send(1, 0).unwrap();
        small[0].flush();
        assert_eq!(counter(&small[0], 1), 1);
        small[0].try_send(1, 1).unwrap_err();
        small[0].flush();
        assert_eq!(counter(&small[0], 1), 0);
    }

    #[test]
    fn a_dropped_peer_is_gone_and_harmless() {
        let mut endpoints = mesh::<u64>(3, 2).unwrap();
        let two = endpoints.pop().unwrap();
        drop(two);
        assert!(endpoints[0].peer_gone(2));
        assert!(!endpoints[0].peer_gone(1));
        endpoints[0].try_send(2, 1).unwrap();
        endpoints[0].try_send(2, 2).unwrap();
        assert!(endpoints[0].try_send(2, 3).is_err());
        // Waking a core that is gone writes to its still-open eventfd.
        endpoints[0].flush();
        assert_eq!(counter(&endpoints[0], 2), 1);
    }

    #[test]
    #[should_panic(expected = "another core")]
    fn sending_to_oneself_is_a_bug() {
        let mut endpoints = mesh::<u64>(2, 2).unwrap();
        let _ = endpoints[0].try_send(0, 1);
    }

    #[test]
    fn ready_returns_at_once_when_items_wait_and_not_when_none_do() {
        for backend in [Backend::Uring, Backend::Epoll] {
            let mut endpoints = mesh::<u64>(2, 8).unwrap();
            let mut one = endpoints.pop().unwrap();
            let mut zero = endpoints.pop().unwrap();
            run_local(backend, async move {
                let short = Duration::from_millis(50);
                // Pushed but not flushed: waiting all the same.
                one.try_send(0, 1).unwrap();
                tokio::time::timeout(short, zero.ready())
                    .await
                    .expect("items waiting: ready returns at once")
                    .unwrap();
                assert_eq!(take_all(&mut zero), [(1, 1)]);
                // The flush comes after the drain: its wake-up announces nothing, and ready
                // reads it and goes on waiting instead of returning empty-handed.
                one.flush();
                assert!(tokio::time::timeout(short, zero.ready()).await.is_err());
                one.try_send(0, 2).unwrap();
                one.flush();
                tokio::time::timeout(short, zero.ready())
                    .await
                    .expect("flushed: ready returns")
                    .unwrap();
                assert_eq!(take_all(&mut zero), [(1, 2)]);
            })
            .unwrap();
        }
    }

    #[test]
    fn ready_outside_a_runtime_or_thread_is_refused() {
        let endpoints = mesh::<u64>(2, 2).unwrap();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match endpoints[0].poll_ready(&mut cx) {
            Poll::Ready(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::Unsupported),
            other => panic!("{other:?}"),
        }
        let zero = run_local(Backend::Epoll, async move {
            let mut endpoints = endpoints;
            let zero = endpoints.swap_remove(0);
            let waker = std::task::Waker::noop();
            assert!(
                zero.poll_ready(&mut Context::from_waker(waker))
                    .is_pending()
            );
            zero
        })
        .unwrap();
        let moved = std::thread::spawn(move || {
            run_local(Backend::Epoll, async move {
                let waker = std::task::Waker::noop();
                match zero.poll_ready(&mut Context::from_waker(waker)) {
                    Poll::Ready(Err(e)) => e.kind(),
                    other => panic!("{other:?}"),
                }
            })
            .unwrap()
        });
        assert_eq!(moved.join().unwrap(), io::ErrorKind::Unsupported);
    }
}
