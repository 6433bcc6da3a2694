//! The mesh's wake-up protocol without its I/O: which cores a sender wakes at its next flush,
//! and the receiver's wait, "look, sleep, reset the doorbell, look again".
//!
//! [`mesh`](super::mesh) plugs in rtrb rings and one eventfd per core (its module docs argue why
//! no wake-up is lost). The loom model below plugs in a copy of rtrb's ring built on loom's
//! atomics and a model of the eventfd as the kernel and tokio's reactor treat it, and checks
//! every interleaving of one sender and one receiver for lost wake-ups and for lost, duplicated
//! or reordered items. Both run this file's code, so a change to the order of the steps here is
//! a change the model sees. Run it with `proto-tests/loom`.
//!
//! Not here: the rings, the eventfd, the reactor; nothing in this file touches shared memory.

use std::io;
use std::task::{Poll, ready};

/// The cores a sender pushed to since its last flush, each listed once: a flush wakes each of
/// them with one doorbell ring however many items it sent.
#[derive(Debug)]
pub(super) struct WakeList {
    /// `marked[to]`: pushed to since the last flush (and so listed once in `to_wake`).
    marked: Vec<bool>,
    to_wake: Vec<usize>,
}

impl WakeList {
    /// An empty list for a mesh of `cores` cores.
    pub(super) fn new(cores: usize) -> Self {
        WakeList {
            marked: vec![false; cores],
            to_wake: Vec::with_capacity(cores),
        }
    }

    /// Notes that an item was pushed to core `to`. Call it after the push succeeded: the ring
    /// that `flush` rings must announce an item that is already in the ring.
    pub(super) fn mark(&mut self, to: usize) {
        if !self.marked[to] {
            self.marked[to] = true;
            self.to_wake.push(to);
        }
    }

    /// Calls `ring(to)` once for every core marked since the last flush, and unmarks it.
    pub(super) fn flush(&mut self, mut ring: impl FnMut(usize)) {
        for to in self.to_wake.drain(..) {
            self.marked[to] = false;
            ring(to);
        }
    }
}

/// The receiver's wait. Ready at once when `waiting()` (an item is in some ring to this core);
/// otherwise waits for the doorbell with `poll_bell`, resets it with `reset` (the eventfd read
/// that zeroes its counter, then forgetting the readiness), and only then looks at the rings
/// again; goes back to waiting when they are still empty, so it is never ready with nothing to
/// take. Resetting before looking is what loses no wake-up: a push the second look misses has
/// its doorbell ring still ahead of it, after the reset.
pub(super) fn poll_ready<B>(
    mut waiting: impl FnMut() -> bool,
    mut poll_bell: impl FnMut() -> Poll<io::Result<B>>,
    mut reset: impl FnMut(B) -> io::Result<()>,
) -> Poll<io::Result<()>> {
    if waiting() {
        return Poll::Ready(Ok(()));
    }
    loop {
        let bell = ready!(poll_bell())?;
        reset(bell)?;
        if waiting() {
            return Poll::Ready(Ok(()));
        }
    }
}

/// The model, a unit test: `cargo test --lib loom_model` explores every interleaving with at
/// most [`loom_model::PREEMPTIONS`] preemptions (about a second); `proto-tests/loom --full`
/// removes the bound (about ten minutes on two cores). `LOOM_MAX_PREEMPTIONS` overrides it.
///
/// One sender core pushes `ITEMS` numbered items through a ring of `CAPACITY` slots and flushes
/// as mesh.rs's callers do; one receiver core waits with [`poll_ready`] and drains as
/// `MeshEndpoint::drain` does. Loom runs every interleaving (and every outcome the atomics'
/// orderings allow) and fails on: a receiver asleep for good while items wait (a lost wake-up:
/// loom reports a deadlock, or a sender spinning on a full ring past its branch limit), a slot
/// read while it is written (loom's `UnsafeCell` checks), an item taken twice, lost or out of
/// order, and a `poll_ready` that returns with nothing to drain.
#[cfg(test)]
mod loom_model {
    use std::cell::Cell;
    use std::task::Poll;

    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::sync::{Arc, Condvar, Mutex};

    use super::{WakeList, poll_ready};

    /// Ring slots: small enough for loom, small enough that the sender finds the ring full.
    const CAPACITY: usize = 2;
    /// Items sent: one more than fits, so the ring fills and its positions wrap.
    const ITEMS: u32 = 3;
    /// The receiver's core index in the sender's `WakeList` (a mesh of two cores).
    const RECEIVER: usize = 1;
    /// Preemptions per execution explored by default: every mutation listed in
    /// proto-tests/loom (a lost re-check, a `Relaxed` index store, a core never unmarked) is
    /// caught at 2 already.
    pub(super) const PREEMPTIONS: usize = 3;

    /// rtrb 0.4.1's `RingBuffer`, reduced to what mesh.rs calls and built on loom's atomics:
    /// positions run over `0..2 * capacity` (so full and empty differ), the producer publishes
    /// with a `Release` store of `tail`, the consumer frees slots with a `Release` store of
    /// `head`, and each side reads the other's index with `Acquire` only when its cached copy
    /// says the ring may be full (producer) or empty (consumer). Same orderings, same caching.
    struct Ring {
        head: AtomicUsize,
        tail: AtomicUsize,
        slots: Box<[UnsafeCell<Option<u32>>]>,
    }

    impl Ring {
        /// rtrb `RingBuffer::new`: an empty ring's two ends.
        fn ends() -> (Producer, Consumer) {
            let ring = Arc::new(Ring {
                head: AtomicUsize::new(0),
                tail: AtomicUsize::new(0),
                slots: (0..CAPACITY).map(|_| UnsafeCell::new(None)).collect(),
            });
            let producer = Producer {
                ring: ring.clone(),
                cached_head: Cell::new(0),
                cached_tail: Cell::new(0),
            };
            let consumer = Consumer {
                ring,
                cached_head: Cell::new(0),
                cached_tail: Cell::new(0),
            };
            (producer, consumer)
        }

        /// rtrb `RingBuffer::distance`.
        fn distance(a: usize, b: usize) -> usize {
            if a <= b { b - a } else { 2 * CAPACITY - a + b }
        }

        /// rtrb `RingBuffer::increment`.
        fn increment(position: usize, n: usize) -> usize {
            let threshold = 2 * CAPACITY - n;
            if position < threshold {
                position + n
            } else {
                position - threshold
            }
        }

        /// rtrb `RingBuffer::collapse_position`: the slot of a position.
        fn slot(position: usize) -> usize {
            if position < CAPACITY {
                position
            } else {
                position - CAPACITY
            }
        }
    }

    struct Producer {
        ring: Arc<Ring>,
        cached_head: Cell<usize>,
        cached_tail: Cell<usize>,
    }

    impl Producer {
        /// rtrb `Producer::push` with `next_tail`.
        fn push(&mut self, item: u32) -> Result<(), u32> {
            let tail = self.cached_tail.get();
            if Ring::distance(self.cached_head.get(), tail) == CAPACITY {
                let head = self.ring.head.load(Ordering::Acquire);
                self.cached_head.set(head);
                if Ring::distance(head, tail) == CAPACITY {
                    return Err(item);
                }
            }
            // SAFETY: (a model) the slot at `tail` is free; loom checks it is not accessed
            // concurrently.
            self.ring.slots[Ring::slot(tail)].with_mut(|slot| unsafe { *slot = Some(item) });
            let tail = Ring::increment(tail, 1);
            self.ring.tail.store(tail, Ordering::Release);
            self.cached_tail.set(tail);
            Ok(())
        }
    }

    struct Consumer {
        ring: Arc<Ring>,
        cached_head: Cell<usize>,
        cached_tail: Cell<usize>,
    }

    impl Consumer {
        /// rtrb `Consumer::is_empty` (`next_head`): mesh.rs's `waiting`.
        fn is_empty(&self) -> bool {
            let head = self.cached_head.get();
            if head == self.cached_tail.get() {
                let tail = self.ring.tail.load(Ordering::Acquire);
                self.cached_tail.set(tail);
                if head == tail {
                    return true;
                }
            }
            false
        }

        /// mesh.rs `MeshEndpoint::drain` for one ring: rtrb `Consumer::slots`, then
        /// `read_chunk(slots)` (its cached tail is fresh, so it loads nothing), then the chunk's
        /// iterator, whose drop publishes the new head.
        fn drain(&mut self, mut f: impl FnMut(u32)) -> usize {
            let tail = self.ring.tail.load(Ordering::Acquire);
            self.cached_tail.set(tail);
            let head = self.cached_head.get();
            let waiting = Ring::distance(head, tail);
            if waiting == 0 {
                return 0;
            }
            for i in 0..waiting {
                let slot = Ring::slot(Ring::increment(head, i));
                // SAFETY: (a model) the slot was published by the tail just loaded; loom
                // checks it is not accessed concurrently.
                let item = self.ring.slots[slot].with_mut(|slot| unsafe { (*slot).take() });
                f(item.expect("a published slot holds an item"));
            }
            let head = Ring::increment(head, waiting);
            self.ring.head.store(head, Ordering::Release);
            self.cached_head.set(head);
            waiting
        }
    }

    /// One core's eventfd as the mesh uses it: registered edge-triggered with the reactor's
    /// epoll set (tokio registers `EPOLLET`). The kernel serialises a write, a read and epoll's
    /// look at the descriptor with the eventfd's wait-queue lock, which the mutex stands for.
    struct Bell {
        state: Mutex<BellState>,
        changed: Condvar,
    }

    struct BellState {
        /// The eventfd's counter.
        counter: u64,
        /// An edge queued for the next `epoll_wait` (the descriptor on epoll's ready list).
        edge: bool,
    }

    impl Bell {
        fn new() -> Self {
            Bell {
                state: Mutex::new(BellState {
                    counter: 0,
                    edge: false,
                }),
                changed: Condvar::new(),
            }
        }

        /// mesh.rs `wake`: `write(2)` adds 1 and wakes the wait queue, whose epoll callback
        /// queues an edge, every time (edge-triggered: even when it was readable already).
        fn write(&self) {
            let mut state = self.state.lock().expect("not poisoned");
            state.counter += 1;
            state.edge = true;
            self.changed.notify_one();
        }

        /// The reactor's `epoll_wait` until it reports the descriptor: it takes the queued
        /// edge, but reports it only if the descriptor is readable now (`ep_send_events`
        /// polls it again), so an edge whose counter was read already is dropped.
        fn wait_for_edge(&self) {
            let mut state = self.state.lock().expect("not poisoned");
            loop {
                if state.edge {
                    state.edge = false;
                    if state.counter > 0 {
                        return;
                    }
                }
                state = self.changed.wait(state).expect("not poisoned");
            }
        }

        /// mesh.rs `read_counter`: `read(2)` returns and zeroes the counter.
        fn read(&self) {
            self.state.lock().expect("not poisoned").counter = 0;
        }
    }

    /// The receiver's `poll_ready` as mesh.rs calls it, with tokio's readiness bit (`ready`):
    /// `poll_read_ready` returns at once while it is set, else the core sleeps until the reactor
    /// reports an edge and sets it; `clear_ready` clears it (the reactor runs on the same
    /// thread, so no report can slip in between).
    fn wait(consumer: &Consumer, bell: &Bell, ready: &Cell<bool>) {
        let polled = poll_ready(
            || !consumer.is_empty(),
            || {
                if !ready.get() {
                    bell.wait_for_edge();
                    ready.set(true);
                }
                Poll::Ready(Ok(()))
            },
            |()| {
                bell.read();
                ready.set(false);
                Ok(())
            },
        );
        assert!(matches!(polled, Poll::Ready(Ok(()))));
    }

    /// Sends `ITEMS` items, retrying on a full ring after a flush (the caller's "retry on a
    /// later loop turn"), and flushes after every push or only when the ring is full and at the
    /// end.
    fn send(mut producer: Producer, bell: &Bell, flush_every_push: bool) {
        let mut wakes = WakeList::new(RECEIVER + 1);
        for item in 0..ITEMS {
            let mut item = item;
            loop {
                match producer.push(item) {
                    Ok(()) => {
                        wakes.mark(RECEIVER);
                        break;
                    }
                    Err(back) => {
                        item = back;
                        wakes.flush(|_| bell.write());
                        loom::thread::yield_now();
                    }
                }
            }
            if flush_every_push {
                wakes.flush(|_| bell.write());
            }
        }
        wakes.flush(|_| bell.write());
    }

    fn check(flush_every_push: bool) {
        let mut builder = loom::model::Builder::new();
        if std::env::var_os("RINGCHAT_LOOM_FULL").is_some() {
            builder.preemption_bound = None;
        } else if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(PREEMPTIONS);
        }
        builder.check(move || {
            let (producer, mut consumer) = Ring::ends();
            let bell = Arc::new(Bell::new());
            let sender_bell = bell.clone();
            let sender =
                loom::thread::spawn(move || send(producer, &sender_bell, flush_every_push));
            let ready = Cell::new(false);
            let mut got = Vec::new();
            while got.len() < ITEMS as usize {
                wait(&consumer, &bell, &ready);
                let taken = consumer.drain(|item| got.push(item));
                assert!(taken > 0, "poll_ready returned with nothing to drain");
            }
            assert_eq!(got, (0..ITEMS).collect::<Vec<_>>());
            sender.join().expect("the sender does not panic");
            assert!(consumer.is_empty(), "no item is sent twice");
        });
    }

    #[test]
    fn loom_mesh_wakes_for_every_item_flushing_per_push() {
        check(true);
    }

    #[test]
    fn loom_mesh_wakes_for_every_item_flushing_per_batch() {
        check(false);
    }
}
