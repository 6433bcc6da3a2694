//! A small bounded pool of threads for CPU-heavy jobs (password hashing), so that such work
//! never runs on a core's event loop.
//!
//! A core calls [`Workers::submit`], which either refuses at once with [`Busy`] (the queue is
//! full: the caller answers 503 with Retry-After) or returns a future that resolves on the core,
//! without blocking it, when a worker thread has run the job. The result travels back through a
//! `tokio::sync::oneshot`, which works on both backends (io_uring and epoll runtimes alike).
//!
//! Design choices:
//! - One shared bounded queue (`std::sync::mpsc::sync_channel`), received by all workers under
//!   a mutex. Thread-per-core forbids locks shared between cores; this queue is instead a
//!   hand-off from the cores to threads that are not cores, like the embedded store's channel,
//!   and a core only ever `try_send`s on it, which never waits for the lock the workers hold.
//! - The threads (`ringchat-hash-N`) are not pinned. They compete with the cores for CPU time
//!   whatever we do; left to the scheduler they run wherever a core is idle, whereas pinning
//!   them would stack hashing onto chosen cores' event loops. Start the pool on the main thread
//!   before any pinning, since threads inherit their parent's affinity. How many threads
//!   (ringchat uses max(1, cores / 2)) is the caller's decision.
//! - The threads run at nice [`WORKER_NICE`] under `SCHED_BATCH`: on a CPU shared with a core,
//!   the core's event loop preempts a hash as soon as it wakes instead of waiting out the
//!   hash's time slice, so HTTP and chat latency hold during a login storm (bench/login.py).
//! - A job that panics is caught (`catch_unwind`) and reported to its submitter as
//!   [`WorkerGone::Panicked`]; the thread goes on with the next job.
//! - When the last [`Workers`] handle is dropped the queue closes; the threads finish every job
//!   already queued, then exit, and that drop waits for them (unless it happens on a worker
//!   thread itself, which cannot wait for itself). Keep one handle on the main thread so the
//!   last drop happens there, at shutdown.
//!
//! Not here: priorities between jobs, cancellation of a queued job whose submitter went away (it still runs;
//! its result is dropped), per-job time limits (the jobs' own inputs must be bounded, as
//! password hashes' parameters are), and resizing the pool after start.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use tokio::sync::oneshot;

/// The most worker threads a pool may have.
pub const WORKER_THREADS_MAX: usize = 256;
/// The most jobs a pool's queue may hold (not counting the jobs running).
pub const WORKER_QUEUE_JOBS_MAX: usize = 64 * 1024;
/// Stack size of a worker thread: argon2 and scrypt keep their large state on the heap.
pub const WORKER_STACK_BYTES: usize = 256 * 1024;
/// The prefix of worker threads' names; the thread index follows.
pub const WORKER_THREAD_NAME_PREFIX: &str = "ringchat-hash-";
/// The workers' nice value. They share CPUs with the cores; a lower priority lets a core's
/// event loop preempt a hash as soon as it has work, instead of waiting out the hash's time
/// slice (milliseconds), while an idle CPU still hashes at full speed.
pub const WORKER_NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A handle on the pool; clone it into each core. The pool stops when the last handle is
/// dropped.
#[derive(Clone)]
pub struct Workers {
    pool: Arc<Pool>,
}

/// The job queue was full; nothing was queued. The client should retry later (503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl fmt::Display for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("internal: the worker queue is full")
    }
}

impl std::error::Error for Busy {}

/// A submitted job gave no result. Internal either way: the REST layer answers 500.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerGone {
    /// The job panicked, with this message when the panic had one.
    Panicked(String),
    /// The pool stopped before the job ran.
    Stopped,
}

impl fmt::Display for WorkerGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerGone::Panicked(message) => write!(f, "internal: worker job panicked: {message}"),
            WorkerGone::Stopped => f.write_str("internal: worker pool stopped before the job ran"),
        }
    }
}

impl std::error::Error for WorkerGone {}

/// What all handles share. Dropping it closes the queue and waits for the threads.
struct Pool {
    /// `None` only while dropping.
    sender: Option<SyncSender<Job>>,
    threads: Vec<JoinHandle<()>>,
    counters: Arc<Counters>,
    /// The queue's capacity, `queue_max` of [`Workers::start`].
    queue_max: usize,
}

#[derive(Default)]
struct Counters {
    queued: AtomicUsize,
    busy: AtomicUsize,
}

/// Gives the calling thread [`WORKER_NICE`] and `SCHED_BATCH` (CPU-bound, no wake-up
/// preemption of others). Best effort: a refusal only costs latency, so it is logged, not fatal.
fn lower_priority() {
    // SAFETY: `gettid` has no preconditions; `setpriority` and `sched_setscheduler` only read
    // their arguments, and `param` is a valid `sched_param` that outlives the call.
    let outcome = unsafe {
        let tid = libc::gettid();
        let param = libc::sched_param { sched_priority: 0 };
        let batch = libc::sched_setscheduler(tid, libc::SCHED_BATCH, &param);
        let nice = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, WORKER_NICE);
        (batch, nice)
    };
    if outcome != (0, 0) {
        tracing::debug!(
            "could not lower a hashing thread's priority: {}",
            io::Error::last_os_error()
        );
    }
}

impl Workers {
    /// Starts `threads` worker threads sharing a queue of at most `queue_max` waiting jobs.
    /// `queue_max` may be 0: then a job is taken only when a thread is idle.
    ///
    /// Fails when `threads` is 0 or over [`WORKER_THREADS_MAX`], `queue_max` is over
    /// [`WORKER_QUEUE_JOBS_MAX`], or the OS refuses a thread.
    pub fn start(threads: usize, queue_max: usize) -> io::Result<Workers> {
        if !(1..=WORKER_THREADS_MAX).contains(&threads) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("worker threads must be 1..={WORKER_THREADS_MAX}, not {threads}"),
            ));
        }
        if queue_max > WORKER_QUEUE_JOBS_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "worker queue must hold at most {WORKER_QUEUE_JOBS_MAX} jobs, not {queue_max}"
                ),
            ));
        }
        let (sender, receiver) = sync_channel::<Job>(queue_max);
        let receiver = Arc::new(Mutex::new(receiver));
        let counters = Arc::new(Counters::default());
        let mut pool = Pool {
            sender: Some(sender),
            threads: Vec::with_capacity(threads),
            counters: Arc::clone(&counters),
            queue_max,
        };
        for index in 0..threads {
            let receiver = Arc::clone(&receiver);
            let counters = Arc::clone(&counters);
            // On failure `pool` is dropped here, which stops the threads already started.
            let thread = thread::Builder::new()
                .name(format!("{WORKER_THREAD_NAME_PREFIX}{index}"))
                .stack_size(WORKER_STACK_BYTES)
                .spawn(move || {
                    lower_priority();
                    work(&receiver, &counters)
                })?;
            pool.threads.push(thread);
        }
        Ok(Workers {
            pool: Arc::new(pool),
        })
    }

    /// Queues `job`, or refuses at once with [`Busy`] when the queue is full. The returned
    /// future resolves to the job's result without blocking the thread that polls it; dropping
    /// it does not cancel the job.
    pub fn submit<T, F>(
        &self,
        job: F,
    ) -> Result<impl Future<Output = Result<T, WorkerGone>> + use<T, F>, Busy>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (reply, result) = oneshot::channel::<Result<T, WorkerGone>>();
        let job: Job = Box::new(move || {
            let outcome = catch_unwind(AssertUnwindSafe(job))
                .map_err(|panic| WorkerGone::Panicked(panic_message(panic.as_ref())));
            // The submitter may have given up waiting; then nobody wants the result.
            let _ = reply.send(outcome);
        });
        let counters = &self.pool.counters;
        // Counted before sending, so that a worker that takes it at once never sees zero.
        counters.queued.fetch_add(1, Ordering::Relaxed);
        let sender = self
            .pool
            .sender
            .as_ref()
            .expect("the sender is only taken while the last handle drops");
        match sender.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                counters.queued.fetch_sub(1, Ordering::Relaxed);
                return Err(Busy);
            }
            Err(TrySendError::Disconnected(job)) => {
                // Every thread is gone (they only leave when the queue closes, so this is not
                // expected). Dropping the job drops its reply: the future says Stopped.
                counters.queued.fetch_sub(1, Ordering::Relaxed);
                drop(job);
            }
        }
        Ok(async move { result.await.unwrap_or(Err(WorkerGone::Stopped)) })
    }

    /// Jobs waiting in the queue (a gauge for metrics).
    pub fn queued(&self) -> usize {
        self.pool.counters.queued.load(Ordering::Relaxed)
    }

    /// Jobs running now (a gauge for metrics).
    pub fn busy(&self) -> usize {
        self.pool.counters.busy.load(Ordering::Relaxed)
    }

    /// The number of worker threads.
    pub fn threads(&self) -> usize {
        self.pool.threads.len()
    }

    /// Whether a job submitted now would be refused with [`Busy`]: every thread is busy and the
    /// queue holds `queue_max` jobs. A hint for a caller with work to do before it can submit
    /// (the REST layer's store lookup before a password check), so that it can refuse at once
    /// instead of doing that work first; [`Workers::submit`] still decides.
    pub fn is_full(&self) -> bool {
        self.queued() >= self.pool.queue_max && self.busy() >= self.threads()
    }

    /// The most jobs the pool holds at once: one running per thread, `queue_max` waiting.
    pub fn capacity(&self) -> usize {
        self.threads() + self.pool.queue_max
    }
}

impl fmt::Debug for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workers")
            .field("threads", &self.threads())
            .field("queued", &self.queued())
            .field("busy", &self.busy())
            .finish()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the queue lets each thread drain what is queued and then leave.
        drop(self.sender.take());
        let current = thread::current().id();
        for thread in self.threads.drain(..) {
            if thread.thread().id() == current {
                // The last handle was dropped by a job; that thread leaves by itself.
                continue;
            }
            // A thread's own panic is caught per job, so join only fails if the loop itself
            // panicked; there is nothing left to do about that at shutdown.
            let _ = thread.join();
        }
    }
}

/// A worker thread's loop: take the next job, run it, until the queue closes and is empty.
fn work(receiver: &Mutex<Receiver<Job>>, counters: &Counters) {
    loop {
        let job = {
            // The lock is held only around `recv`, which does not panic; recover from
            // poisoning anyway rather than stop the pool.
            let receiver = receiver
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            receiver.recv()
        };
        let Ok(job) = job else {
            return;
        };
        counters.busy.fetch_add(1, Ordering::Relaxed);
        counters.queued.fetch_sub(1, Ordering::Relaxed);
        // The job catches its own panic (see `submit`).
        job();
        counters.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_string()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "(no message)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    /// How long a test waits for a condition before failing.
    const DEADLINE_MS: u64 = 10_000;

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(future)
    }

    /// Polls `condition` until it holds, failing after [`DEADLINE_MS`].
    fn wait_until(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_millis(DEADLINE_MS);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn results_come_back() {
        let workers = Workers::start(2, 16).unwrap();
        assert_eq!(workers.threads(), 2);
        let futures: Vec<_> = (0..10u64)
            .map(|i| workers.submit(move || i * i).unwrap())
            .collect();
        let results = block_on(async {
            let mut results = Vec::new();
            for future in futures {
                results.push(future.await.unwrap());
            }
            results
        });
        assert_eq!(results, (0..10u64).map(|i| i * i).collect::<Vec<_>>());
    }

    #[test]
    fn jobs_run_on_named_worker_threads() {
        let workers = Workers::start(1, 1).unwrap();
        let caller = thread::current().id();
        let (id, name) = block_on(
            workers
                .submit(|| {
                    let current = thread::current();
                    (current.id(), current.name().map(str::to_string))
                })
                .unwrap(),
        )
        .unwrap();
        assert_ne!(id, caller);
        assert_eq!(name.as_deref(), Some("ringchat-hash-0"));
    }

    #[test]
    fn a_full_queue_is_busy_at_once() {
        let workers = Workers::start(1, 1).unwrap();
        assert_eq!(workers.capacity(), 2);
        let (release, released) = mpsc::channel::<()>();
        // Occupies the only thread until released.
        let running = workers
            .submit(move || released.recv_timeout(Duration::from_millis(DEADLINE_MS)))
            .unwrap();
        wait_until("the first job to start", || workers.busy() == 1);
        assert!(!workers.is_full(), "the queue has room");
        // Fills the queue.
        let queued = workers.submit(|| "queued").unwrap();
        assert_eq!(workers.queued(), 1);
        assert!(workers.is_full());
        let started = Instant::now();
        assert!(matches!(workers.submit(|| "refused"), Err(Busy)));
        assert!(started.elapsed() < Duration::from_millis(100));
        assert_eq!(workers.queued(), 1, "a refused job is not counted");

        release.send(()).unwrap();
        block_on(async {
            assert_eq!(running.await.unwrap(), Ok(()));
            assert_eq!(queued.await.unwrap(), "queued");
        });
        wait_until("the pool to be idle", || workers.busy() == 0);
        assert_eq!(workers.queued(), 0);
        assert!(!workers.is_full());
        // Room again.
        assert_eq!(block_on(workers.submit(|| 7).unwrap()).unwrap(), 7);
    }

    #[test]
    fn a_zero_queue_takes_jobs_only_when_a_thread_waits() {
        let workers = Workers::start(1, 0).unwrap();
        // The thread may not be waiting yet; retry until it takes the job.
        let deadline = Instant::now() + Duration::from_millis(DEADLINE_MS);
        let future = loop {
            match workers.submit(|| 1) {
                Ok(future) => break future,
                Err(Busy) => assert!(Instant::now() < deadline, "never taken"),
            }
            thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(block_on(future).unwrap(), 1);
    }

    #[test]
    fn a_panicking_job_is_an_error_and_the_pool_goes_on() {
        let workers = Workers::start(1, 4).unwrap();
        let panicked = workers
            .submit(|| -> u32 { panic!("job failed on purpose") })
            .unwrap();
        let after = workers.submit(|| 5u32).unwrap();
        block_on(async {
            assert_eq!(
                panicked.await,
                Err(WorkerGone::Panicked("job failed on purpose".into()))
            );
            assert_eq!(after.await, Ok(5));
        });
        let formatted = workers.submit(|| -> u32 { panic!("code {}", 42) }).unwrap();
        assert_eq!(
            block_on(formatted),
            Err(WorkerGone::Panicked("code 42".into()))
        );
        assert_eq!(block_on(workers.submit(|| 6u32).unwrap()), Ok(6));
        wait_until("the pool to be idle", || workers.busy() == 0);
    }

    #[test]
    fn dropping_the_last_handle_finishes_queued_jobs_then_stops() {
        let workers = Workers::start(1, 8).unwrap();
        let clone = workers.clone();
        let (release, released) = mpsc::channel::<()>();
        let (done, finished) = mpsc::channel::<u32>();
        // The futures are dropped at once: that does not cancel their jobs.
        drop(
            workers
                .submit(move || released.recv_timeout(Duration::from_millis(DEADLINE_MS)))
                .unwrap(),
        );
        for i in 0..5 {
            let done = done.clone();
            drop(workers.submit(move || done.send(i).unwrap()).unwrap());
        }
        drop(done);
        let pool_alive = Arc::downgrade(&workers.pool);
        drop(clone);
        // Not the last handle: the pool is still there.
        assert!(pool_alive.upgrade().is_some());
        release.send(()).unwrap();
        // The last drop waits for the queued jobs and the thread.
        drop(workers);
        assert!(pool_alive.upgrade().is_none());
        let ran: Vec<u32> = finished.try_iter().collect();
        assert_eq!(ran, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn the_last_handle_may_drop_on_a_worker() {
        let workers = Workers::start(1, 1).unwrap();
        let inside = workers.clone();
        let pool_alive = Arc::downgrade(&workers.pool);
        let (go, gone) = mpsc::channel::<()>();
        let future = workers
            .submit(move || {
                gone.recv_timeout(Duration::from_millis(DEADLINE_MS))
                    .unwrap();
                // The last handle: the pool drops here, on its own worker thread.
                drop(inside);
            })
            .unwrap();
        // Not the last handle, so this returns at once.
        drop(workers);
        go.send(()).unwrap();
        // The reply still comes, and the pool is gone.
        assert_eq!(block_on(future), Ok(()));
        assert!(pool_alive.upgrade().is_none());
    }

    #[test]
    fn handles_and_futures_cross_threads() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        // Room for both jobs, whether or not the thread has taken the first yet.
        let workers = Workers::start(1, 2).unwrap();
        send_sync(&workers);
        let future = workers.submit(|| 1u8).unwrap();
        send(&future);
        let elsewhere = workers.clone();
        let result = thread::spawn(move || block_on(elsewhere.submit(|| 2u8).unwrap()))
            .join()
            .unwrap();
        assert_eq!(result, Ok(2));
        assert_eq!(block_on(future), Ok(1));
    }

    #[test]
    fn out_of_range_sizes_are_refused() {
        assert!(Workers::start(0, 1).is_err());
        assert!(Workers::start(WORKER_THREADS_MAX + 1, 1).is_err());
        assert!(Workers::start(1, WORKER_QUEUE_JOBS_MAX + 1).is_err());
    }

    #[test]
    fn a_core_keeps_running_while_the_pool_hashes() {
        const HASHES: usize = 4;
        const TICK_MS: u64 = 1;
        let workers = Workers::start(2, HASHES).unwrap();
        let ticks = Rc::new(Cell::new(0u32));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        let (ticks_during, elapsed) = local.block_on(&runtime, async {
            let ticker = {
                let ticks = Rc::clone(&ticks);
                tokio::task::spawn_local(async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(TICK_MS)).await;
                        ticks.set(ticks.get() + 1);
                    }
                })
            };
            let started = Instant::now();
            let before = ticks.get();
            let futures: Vec<_> = (0..HASHES)
                .map(|i| {
                    workers
                        .submit(move || {
                            crate::accounts::hash_argon2id(format!("password {i}").as_bytes())
                        })
                        .unwrap()
                })
                .collect();
            for future in futures {
                let phc = future.await.unwrap().unwrap();
                assert!(phc.starts_with("$argon2id$"));
            }
            let elapsed = started.elapsed();
            ticker.abort();
            (ticks.get() - before, elapsed)
        });
        eprintln!("{HASHES} argon2id hashes on 2 workers: {elapsed:?}, {ticks_during} ticks");
        // Each hash takes milliseconds at least; had they run on this thread, no tick could
        // have happened until all were done. Allow for a coarse timer and a busy machine.
        let expected_ticks = elapsed.as_millis() as u32 / TICK_MS as u32 / 4;
        assert!(
            ticks_during >= expected_ticks.max(1),
            "{ticks_during} ticks in {elapsed:?}"
        );
    }
}
