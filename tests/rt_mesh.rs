//! The cross-core mesh (`rt::mesh`) between real core-like runtimes (`rt::run_local`, one per
//! thread), on both backends.
//!
//! - Every core sends numbered items to every other core in bursts, one flush per burst,
//!   retrying after a yield when a ring is full; each receiver checks per-sender order, no loss
//!   and no duplicates, and that it slept in `ready()` rather than spinning.
//! - `ready()` returns at once when items already wait; a core parked in `ready()` wakes within
//!   milliseconds of a flush from a thread that is not a runtime, and is not polled meanwhile.
//! - Dropping endpoints on several threads panics nowhere and closes every eventfd.
//! - Printed: items/s between two cores, and one-way wake-up latency (p50/p99) in a ping-pong;
//!   only a sanity bound is asserted on the latency (p50 under 5 ms: a wake-up that waits for
//!   something else to wake the core shows there). Run with `--release -- --nocapture` for
//!   meaningful figures.
//!
//! Tests here measure time and count descriptors, so they run one at a time (`serial`).

use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringchat::rt::{self, Backend, Full, MESH_RING_CAPACITY_DEFAULT, MeshEndpoint};

/// Items each core sends to each other core in the all-to-all exchange.
const ITEMS_PER_PAIR: u64 = 100_000;
/// Items sent to one core between two flushes.
const BURST_ITEMS: u64 = 256;
/// Small enough that senders do meet full rings.
const EXCHANGE_RING_CAPACITY: usize = 1024;
/// A lost wake-up shows up as a core that never finishes: fail instead of hanging.
const EXCHANGE_DEADLINE: Duration = Duration::from_secs(120);
/// Rounds of the ping-pong that measures wake-up latency.
const PING_PONG_ROUNDS: usize = 2000;
/// Rounds of the parked-core test.
const PARKED_ROUNDS: u64 = 5;
/// How long the parked core is left waiting before the flush.
const PARKED_MS: u64 = 30;
/// "Within a few milliseconds": the parked core's bound, generous for a loaded CI machine.
const PARKED_WAKE_MS_MAX: u128 = 20;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs each endpoint's `core` future on its own thread with its own runtime of `backend`.
fn on_cores<T, R, F, Fut>(backend: Backend, endpoints: Vec<MeshEndpoint<T>>, core: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(MeshEndpoint<T>) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = R>,
{
    let threads: Vec<JoinHandle<R>> = endpoints
        .into_iter()
        .map(|endpoint| {
            let core = core.clone();
            std::thread::spawn(move || {
                rt::run_local(backend, async move {
                    tokio::time::timeout(EXCHANGE_DEADLINE, core(endpoint))
                        .await
                        .expect("a core did not finish: a wake-up was lost or a core is stuck")
                })
                .expect("runtime")
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("core thread panicked"))
        .collect()
}

/// What one core's receiver saw.
#[derive(Debug)]
struct Receipt {
    received: u64,
    /// Times `ready()` returned.
    wakes: u64,
    /// Times `poll_ready` was polled: a spinning receiver would show it here.
    polls: u64,
    /// Times a send found its ring full.
    full: u64,
}

/// The receiver task of one core: waits in `ready()`, drains, checks order, until it has
/// `items` from every other core.
async fn receive_all(endpoint: Rc<RefCell<MeshEndpoint<u64>>>, items: u64) -> (u64, u64, u64) {
    let (me, cores) = {
        let e = endpoint.borrow();
        (e.core(), e.cores())
    };
    let mut next = vec![0u64; cores];
    next[me] = items;
    let (mut received, mut wakes, mut polls) = (0u64, 0u64, 0u64);
    while next.iter().any(|&n| n < items) {
        poll_fn(|cx| {
            polls += 1;
            endpoint.borrow().poll_ready(cx)
        })
        .await
        .expect("ready");
        wakes += 1;
        let taken = endpoint.borrow_mut().drain(|from, item| {
            assert_eq!(
                item, next[from],
                "core {me} from core {from}: out of order, lost or duplicated"
            );
            next[from] += 1;
        });
        assert!(taken > 0, "ready() returned with nothing waiting");
        received += taken as u64;
    }
    (received, wakes, polls)
}

/// Sends `0..items` to each core in `to`, a flush per burst; a full ring is flushed, and the
/// send retried after a yield. Returns how many sends found a full ring.
async fn send_all(endpoint: &RefCell<MeshEndpoint<u64>>, to: &[usize], items: u64) -> u64 {
    let mut full = 0;
    let mut start = 0;
    while start < items {
        let end = (start + BURST_ITEMS).min(items);
        for &to in to {
            let mut item = start;
            while item < end {
                // Bound first: the borrow must end before the await below.
                let sent = endpoint.borrow_mut().try_send(to, item);
                match sent {
                    Ok(()) => item += 1,
                    Err(Full(back)) => {
                        assert_eq!(back, item, "Full gives the item back");
                        full += 1;
                        endpoint.borrow_mut().flush();
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
        endpoint.borrow_mut().flush();
        start = end;
        tokio::task::yield_now().await;
    }
    full
}

/// One core of the exchange: a receiver task, and this task sending.
async fn exchange_core(endpoint: MeshEndpoint<u64>) -> Receipt {
    let (me, cores) = (endpoint.core(), endpoint.cores());
    let endpoint = Rc::new(RefCell::new(endpoint));
    let receiver = tokio::task::spawn_local(receive_all(endpoint.clone(), ITEMS_PER_PAIR));
    let others: Vec<usize> = (0..cores).filter(|&c| c != me).collect();
    let full = send_all(&endpoint, &others, ITEMS_PER_PAIR).await;
    let (received, wakes, polls) = receiver.await.expect("receiver task");
    Receipt {
        received,
        wakes,
        polls,
        full,
    }
}

fn exchange(backend: Backend, cores: usize) {
    let _serial = serial();
    let endpoints = rt::mesh::<u64>(cores, EXCHANGE_RING_CAPACITY).unwrap();
    let started = Instant::now();
    let receipts = on_cores(backend, endpoints, exchange_core);
    let elapsed = started.elapsed();
    let per_core = ITEMS_PER_PAIR * (cores as u64 - 1);
    for (core, r) in receipts.iter().enumerate() {
        assert_eq!(r.received, per_core, "core {core}: {r:?}");
        // Each wake takes at least one item by construction (asserted in receive_all); a
        // receiver that slept between flushes is polled about once per burst it is sent, so
        // far fewer times than it receives items. A busy-polling one would be polled without end.
        assert!(r.wakes <= r.polls, "core {core}: {r:?}");
        assert!(
            r.polls < per_core / 8,
            "core {core} was polled too often for {per_core} items: {r:?}"
        );
    }
    let total = per_core * cores as u64;
    let full: u64 = receipts.iter().map(|r| r.full).sum();
    println!(
        "mesh {} {cores} cores: {total} items in {elapsed:?} ({:.1} M items/s), \
         {full} sends met a full ring; receipts {receipts:?}",
        backend.name(),
        total as f64 / elapsed.as_secs_f64() / 1e6,
    );
}

#[test]
fn uring_two_cores_exchange_in_order() {
    exchange(Backend::Uring, 2);
}

#[test]
fn uring_four_cores_exchange_in_order() {
    exchange(Backend::Uring, 4);
}

#[test]
fn epoll_two_cores_exchange_in_order() {
    exchange(Backend::Epoll, 2);
}

#[test]
fn epoll_four_cores_exchange_in_order() {
    exchange(Backend::Epoll, 4);
}

/// Items already waiting (flushed or not) make `ready()` return at once; once drained, a stale
/// wake-up does not.
fn ready_when_waiting(backend: Backend) {
    let _serial = serial();
    let mut endpoints = rt::mesh::<u64>(3, MESH_RING_CAPACITY_DEFAULT).unwrap();
    let mut two = endpoints.pop().unwrap();
    let mut one = endpoints.pop().unwrap();
    let mut zero = endpoints.pop().unwrap();
    rt::run_local(backend, async move {
        let short = Duration::from_millis(100);
        one.try_send(0, 1).unwrap();
        two.try_send(0, 2).unwrap();
        two.flush();
        let started = Instant::now();
        tokio::time::timeout(short, zero.ready())
            .await
            .expect("items wait: ready returns")
            .unwrap();
        assert!(started.elapsed() < Duration::from_millis(10));
        let mut got = Vec::new();
        assert_eq!(zero.drain(|from, item| got.push((from, item))), 2);
        got.sort();
        assert_eq!(got, [(1, 1), (2, 2)]);
        one.flush();
        assert!(
            tokio::time::timeout(short, zero.ready()).await.is_err(),
            "nothing waits: ready must not return"
        );
    })
    .unwrap();
}

#[test]
fn uring_ready_returns_at_once_when_items_wait() {
    ready_when_waiting(Backend::Uring);
}

#[test]
fn epoll_ready_returns_at_once_when_items_wait() {
    ready_when_waiting(Backend::Epoll);
}

/// A core parked in `ready()` is woken by a flush from a plain thread within a few ms, is not
/// polled while it waits, and does not wake before the flush.
fn parked_core_wakes(backend: Backend) {
    let _serial = serial();
    let mut endpoints = rt::mesh::<Instant>(2, MESH_RING_CAPACITY_DEFAULT).unwrap();
    let mut sender = endpoints.pop().unwrap();
    let receiver = endpoints.pop().unwrap();
    // Rounds the core has started waiting for (odd: waiting) and polls of its poll_ready.
    let progress = Arc::new(AtomicU64::new(0));
    let polls = Arc::new(AtomicU64::new(0));
    let core = {
        let (progress, polls) = (progress.clone(), polls.clone());
        std::thread::spawn(move || {
            // In a task of its own: the future given to run_local is also polled whenever
            // the runtime's other tasks (the client sweeper's timer) wake, which would count
            // here as polls that ready() did not cause.
            rt::run_local(backend, async move {
                tokio::task::spawn_local(async move {
                    let mut receiver = receiver;
                    let mut latencies = Vec::new();
                    for _ in 0..PARKED_ROUNDS {
                        progress.fetch_add(1, Ordering::SeqCst);
                        tokio::time::timeout(
                            EXCHANGE_DEADLINE,
                            poll_fn(|cx| {
                                polls.fetch_add(1, Ordering::SeqCst);
                                receiver.poll_ready(cx)
                            }),
                        )
                        .await
                        .expect("the flush must wake the core")
                        .unwrap();
                        let woke = Instant::now();
                        receiver.drain(|_, sent| latencies.push(woke - sent));
                        progress.fetch_add(1, Ordering::SeqCst);
                    }
                    latencies
                })
                .await
                .expect("waiting task")
            })
            .unwrap()
        })
    };
    for round in 0..PARKED_ROUNDS {
        let deadline = Instant::now() + Duration::from_secs(10);
        while progress.load(Ordering::SeqCst) != 2 * round + 1 {
            assert!(Instant::now() < deadline, "the core did not start waiting");
            std::thread::yield_now();
        }
        let polls_before = polls.load(Ordering::SeqCst);
        // Leave it parked: long enough to fall asleep, and to show it stays asleep.
        std::thread::sleep(Duration::from_millis(PARKED_MS));
        assert_eq!(
            progress.load(Ordering::SeqCst),
            2 * round + 1,
            "ready() returned with nothing sent"
        );
        // At most the first poll, which may come after `polls_before` was read.
        let polled_while_parked = polls.load(Ordering::SeqCst) - polls_before;
        assert!(
            polled_while_parked <= 1,
            "polled {polled_while_parked} times while parked"
        );
        sender.try_send(0, Instant::now()).unwrap();
        sender.flush();
    }
    let latencies = core.join().unwrap();
    assert_eq!(latencies.len(), PARKED_ROUNDS as usize);
    for latency in &latencies {
        assert!(
            latency.as_millis() < PARKED_WAKE_MS_MAX,
            "woken {latency:?} after the flush: {latencies:?}"
        );
    }
    assert!(
        polls.load(Ordering::SeqCst) <= 3 * PARKED_ROUNDS,
        "{} polls for {PARKED_ROUNDS} wake-ups",
        polls.load(Ordering::SeqCst)
    );
    println!(
        "mesh {} parked-core wake-ups: {latencies:?}",
        backend.name()
    );
}

#[test]
fn uring_parked_core_wakes_within_milliseconds() {
    parked_core_wakes(Backend::Uring);
}

#[test]
fn epoll_parked_core_wakes_within_milliseconds() {
    parked_core_wakes(Backend::Epoll);
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Endpoints dropped on different threads, some while others still send to them, panic
/// nowhere; the last drop closes every eventfd.
fn drops_are_clean(backend: Backend) {
    let _serial = serial();
    // The first runtime of a process opens descriptors that live as long as the process
    // (tokio's signal self-pipe): open them before counting.
    rt::run_local(backend, async {}).unwrap();
    let before = open_descriptors();
    let mut endpoints = rt::mesh::<u64>(3, 4).unwrap();
    assert_eq!(open_descriptors(), before + 3, "one eventfd per core");
    let mut two = endpoints.pop().unwrap();
    let one = endpoints.pop().unwrap();
    let zero = endpoints.pop().unwrap();
    // Core 1 registers its wake-up with a runtime, waits for one item, and drops its endpoint.
    let core_one = std::thread::spawn(move || {
        rt::run_local(backend, async move {
            let mut one = one;
            one.ready().await.unwrap();
            assert_eq!(one.drain(|_, _| {}), 1);
        })
        .unwrap();
    });
    two.try_send(1, 7).unwrap();
    two.flush();
    core_one.join().unwrap();
    assert!(two.peer_gone(1));
    // Sending to and waking a core that is gone: fills its ring, then Full; never a panic.
    let sent = (0..10).filter(|&i| two.try_send(1, i).is_ok()).count();
    assert_eq!(sent, 4);
    two.flush();
    std::thread::spawn(move || drop(zero)).join().unwrap();
    assert!(two.peer_gone(0));
    assert_eq!(
        open_descriptors(),
        before + 3,
        "eventfds live while any endpoint does"
    );
    drop(two);
    assert_eq!(
        open_descriptors(),
        before,
        "the last endpoint closes every eventfd"
    );
}

#[test]
fn uring_drops_are_clean() {
    drops_are_clean(Backend::Uring);
}

#[test]
fn epoll_drops_are_clean() {
    drops_are_clean(Backend::Epoll);
}

/// Items per second from one core to another, printed.
fn throughput(backend: Backend) {
    let _serial = serial();
    let items: u64 = if cfg!(debug_assertions) {
        1_000_000
    } else {
        20_000_000
    };
    let endpoints = rt::mesh::<u64>(2, MESH_RING_CAPACITY_DEFAULT).unwrap();
    let started = Instant::now();
    let receipts = on_cores(backend, endpoints, move |endpoint| async move {
        let me = endpoint.core();
        let endpoint = Rc::new(RefCell::new(endpoint));
        if me == 0 {
            let full = send_all(&endpoint, &[1], items).await;
            (0, 0, 0, full)
        } else {
            let (received, wakes, polls) = receive_from_zero(endpoint, items).await;
            (received, wakes, polls, 0)
        }
    });
    let elapsed = started.elapsed();
    let (received, wakes, polls, _) = receipts[1];
    assert_eq!(received, items);
    println!(
        "mesh {} throughput, core 0 -> core 1, bursts of {BURST_ITEMS}, rings of {MESH_RING_CAPACITY_DEFAULT}: \
         {items} items in {elapsed:?} = {:.1} M items/s; receiver woke {wakes} times ({polls} polls), \
         sender met a full ring {} times",
        backend.name(),
        items as f64 / elapsed.as_secs_f64() / 1e6,
        receipts[0].3,
    );
}

/// `receive_all` for a two-core mesh where only core 0 sends.
async fn receive_from_zero(
    endpoint: Rc<RefCell<MeshEndpoint<u64>>>,
    items: u64,
) -> (u64, u64, u64) {
    let mut next = 0u64;
    let (mut received, mut wakes, mut polls) = (0u64, 0u64, 0u64);
    while next < items {
        poll_fn(|cx| {
            polls += 1;
            endpoint.borrow().poll_ready(cx)
        })
        .await
        .expect("ready");
        wakes += 1;
        received += endpoint.borrow_mut().drain(|from, item| {
            assert_eq!((from, item), (0, next));
            next += 1;
        }) as u64;
    }
    (received, wakes, polls)
}

#[test]
fn uring_throughput_between_two_cores() {
    throughput(Backend::Uring);
}

#[test]
fn epoll_throughput_between_two_cores() {
    throughput(Backend::Epoll);
}

/// One-way wake-up latency between two cores that both sleep in `ready()`: a ping-pong of
/// timestamps, printed as p50/p99.
fn ping_pong(backend: Backend) {
    let _serial = serial();
    let endpoints = rt::mesh::<Instant>(2, MESH_RING_CAPACITY_DEFAULT).unwrap();
    let samples = on_cores(backend, endpoints, |mut endpoint| async move {
        let me = endpoint.core();
        let peer = 1 - me;
        let mut latencies = Vec::with_capacity(PING_PONG_ROUNDS);
        let mut wait = async |endpoint: &mut MeshEndpoint<Instant>| {
            endpoint.ready().await.unwrap();
            let woke = Instant::now();
            assert_eq!(endpoint.drain(|_, sent| latencies.push(woke - sent)), 1);
        };
        // Core 0 serves first; each then waits for the other's stamp and answers with its own.
        for round in 0..PING_PONG_ROUNDS {
            if me == 1 || round > 0 {
                wait(&mut endpoint).await;
            }
            endpoint.try_send(peer, Instant::now()).unwrap();
            endpoint.flush();
        }
        if me == 0 {
            wait(&mut endpoint).await;
        }
        latencies
    });
    let mut all: Vec<Duration> = samples.into_iter().flatten().collect();
    assert_eq!(all.len(), 2 * PING_PONG_ROUNDS);
    all.sort();
    let p50 = all[all.len() / 2];
    let p99 = all[all.len() * 99 / 100];
    println!(
        "mesh {} wake-up latency (one way, {} samples): p50 {p50:?}, p99 {p99:?}, max {:?}",
        backend.name(),
        all.len(),
        all[all.len() - 1]
    );
    assert!(p50 < Duration::from_millis(5), "p50 {p50:?}");
}

#[test]
fn uring_wake_up_latency() {
    ping_pong(Backend::Uring);
}

#[test]
fn epoll_wake_up_latency() {
    ping_pong(Backend::Epoll);
}
