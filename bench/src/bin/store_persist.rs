//! `store-persist`: messages persisted per second through one of ringchat's store backends, from
//! one core, the way the chat layer will use it.
//!
//! ```text
//! store-persist --backend redis --url redis://127.0.0.1:6379 [--io uring|epoll] [OPTIONS]
//! store-persist --backend embedded --dir DIR [OPTIONS]
//!   --in-flight D   appends waiting for their acknowledgement at once (default 16)
//!   --batch B       messages per append (default 1; Redis wraps B > 1 in MULTI/EXEC)
//!   --messages N    messages to persist in all (default 100000)
//!   --content N     bytes of content per message (default 64)
//! ```
//!
//! Starts D appender tasks on one core-like runtime (`ringchat::rt::run_local`, io_uring or
//! epoll; the embedded store's own storage thread does the disk work). Each task appends B
//! messages, waits for the ids (Redis: XADD's replies; embedded: the group commit), and appends
//! again until N messages were acknowledged. With D tasks the Redis connection carries up to D
//! commands per write: pipeline depth D, which is what `redis-benchmark -c 1 -P D` does for the
//! floor this is compared against (`bench/store-persist.py` runs both side by side).
//!
//! It prints one line of `key=value` pairs: `messages`, `wall_s`, `cpu_s` (this process, all
//! threads, from `/proc/self/stat`), and the append latency `p50_us`, `p99_us`, `max_us` (from
//! the call to the acknowledgement; closed-loop, so it describes this load only). The room is
//! `bench:persist` unless `--room` says otherwise; it is deleted first on Redis.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use ringchat::rt::{self, Backend};
use ringchat::store::NewMessage;
use ringchat::store::embedded::EmbeddedStore;
use ringchat::store::redis::{RedisConfig, RedisStore};
use ringchat_bench::proc_stat::{decode_clock_ticks_per_second, decode_cpu_ticks};

const USAGE: &str = "usage: store-persist --backend redis|embedded [--url URL] [--dir DIR] \
[--io uring|epoll] [--in-flight D] [--batch B] [--messages N] [--content N] [--room R]";

#[derive(Debug, Clone)]
enum Target {
    Redis(RedisConfig),
    Embedded(PathBuf),
}

#[derive(Clone)]
enum Handle {
    Redis(RedisStore),
    Embedded(EmbeddedStore),
}

struct Args {
    target: Target,
    io: Backend,
    in_flight: usize,
    batch: usize,
    messages: u64,
    content: usize,
    room: String,
}

fn main() -> Result<()> {
    let Some(args) = parse_args(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    let ticks_per_second = std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|auxv| decode_clock_ticks_per_second(&auxv))
        .unwrap_or(100);
    let embedded = match &args.target {
        Target::Embedded(dir) => Some(EmbeddedStore::open(dir)?),
        Target::Redis(_) => None,
    };
    let outcome = rt::run_local(args.io, run(&args, embedded.clone()))??;
    if let Some(store) = embedded {
        store.close()?;
    }
    let (messages, wall_s, cpu_before, cpu_after, mut latencies) = outcome;
    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(i).copied().unwrap_or(0)
    };
    println!(
        "messages={messages} wall_s={wall_s:.4} cpu_s={:.4} p50_us={} p99_us={} max_us={}",
        cpu_after.saturating_sub(cpu_before) as f64 / ticks_per_second as f64,
        pct(0.50),
        pct(0.99),
        latencies.last().copied().unwrap_or(0)
    );
    Ok(())
}

type Outcome = (u64, f64, u64, u64, Vec<u64>);

async fn run(args: &Args, embedded: Option<EmbeddedStore>) -> Result<Outcome> {
    let handle = match (&args.target, embedded) {
        (Target::Redis(config), _) => {
            let store = RedisStore::connect(config.clone());
            store
                .command(&[b"DEL", args.room.as_bytes()])
                .await
                .context("clearing the bench room")?;
            Handle::Redis(store)
        }
        (Target::Embedded(_), Some(store)) => Handle::Embedded(store),
        (Target::Embedded(_), None) => bail!("embedded store not opened"),
    };
    let content = "x".repeat(args.content);
    let claimed = Rc::new(Cell::new(0u64));
    let latencies: Rc<RefCell<Vec<u64>>> = Rc::default();
    let cpu_before = process_cpu_ticks()?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.in_flight)
        .map(|task| {
            let (handle, claimed, latencies) = (handle.clone(), claimed.clone(), latencies.clone());
            let (content, room, batch, total) = (
                content.clone(),
                args.room.clone(),
                args.batch as u64,
                args.messages,
            );
            async move {
                loop {
                    let take = batch.min(total.saturating_sub(claimed.get()));
                    if take == 0 {
                        return anyhow::Ok(());
                    }
                    claimed.set(claimed.get() + take);
                    let messages: Vec<NewMessage> = (0..take)
                        .map(|_| NewMessage {
                            content: content.clone(),
                            user_id: task as i64,
                            timestamp_ms: now_ms(),
                            guest: None,
                        })
                        .collect();
                    let sent = Instant::now();
                    let ids = match &handle {
                        Handle::Redis(r) => r.append_messages(&room, &messages).await?,
                        Handle::Embedded(e) => e.append_messages(&room, messages).await?,
                    };
                    latencies
                        .borrow_mut()
                        .push(sent.elapsed().as_micros() as u64);
                    if ids.len() as u64 != take {
                        bail!("{take} messages appended, {} ids back", ids.len());
                    }
                }
            }
        })
        .collect();
    for outcome in join_all(tasks).await {
        outcome?;
    }
    let wall_s = started.elapsed().as_secs_f64();
    let cpu_after = process_cpu_ticks()?;
    let latencies = latencies.take();
    Ok((claimed.get(), wall_s, cpu_before, cpu_after, latencies))
}

/// Polls every future in turn on this task until all are done (no spawning, so the
/// appenders share the core the way a core's connections do).
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// `utime + stime` of this process, all threads, in clock ticks.
fn process_cpu_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    Ok(decode_cpu_ticks(&stat)
        .map_err(|e| anyhow::anyhow!("/proc/self/stat: {e:?}"))?
        .total())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Parses the command line; `Ok(None)` means help was asked for.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>> {
    let (mut backend, mut url, mut dir) = (None, None, None);
    let mut parsed = Args {
        target: Target::Embedded(PathBuf::new()),
        io: Backend::Uring,
        in_flight: 16,
        batch: 1,
        messages: 100_000,
        content: 64,
        room: "bench:persist".into(),
    };
    let number = |flag: &str, value: Option<String>| -> Result<u64> {
        let value = value.with_context(|| format!("{flag} needs a value"))?;
        value
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("bad {flag} {value:?}"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--backend" => backend = args.next(),
            "--url" => url = args.next(),
            "--dir" => dir = args.next().map(PathBuf::from),
            "--room" => parsed.room = args.next().context("--room needs a value")?,
            "--io" => {
                parsed.io = match args.next().as_deref() {
                    Some("uring") => Backend::Uring,
                    Some("epoll") => Backend::Epoll,
                    other => bail!("bad --io {other:?}"),
                }
            }
            "--in-flight" => parsed.in_flight = number("--in-flight", args.next())? as usize,
            "--batch" => parsed.batch = number("--batch", args.next())? as usize,
            "--messages" => parsed.messages = number("--messages", args.next())?,
            "--content" => parsed.content = number("--content", args.next())? as usize,
            other => bail!("unexpected argument {other:?}\n{USAGE}"),
        }
    }
    parsed.target = match backend.as_deref() {
        Some("redis") => {
            let url = url.context("--backend redis needs --url")?;
            Target::Redis(RedisConfig::from_url(&url).map_err(anyhow::Error::msg)?)
        }
        Some("embedded") => Target::Embedded(dir.context("--backend embedded needs --dir")?),
        other => bail!("bad --backend {other:?}\n{USAGE}"),
    };
    Ok(Some(parsed))
}
