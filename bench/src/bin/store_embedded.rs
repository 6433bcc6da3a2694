//! `store-embedded`: messages persisted per second through ringchat's embedded store.
//!
//! ```text
//! store-embedded [--seconds S] [--dir DIR] [--smoke]
//! ```
//!
//! For each combination of appends in flight (1, 16, 64) and messages per append (1, 16), opens
//! a fresh store in a temporary directory under DIR (default: the system's temp directory; put
//! it on the disk you mean to measure), starts that many appender tasks on one current-thread
//! runtime, the way one core would, and lets each append, await the acknowledgement (which the
//! store gives only after the commit holding the message: `synchronous=FULL`, group commit) and
//! append again, for S seconds (default 3). It prints a Markdown table: acknowledged messages
//! per wall-second, per CPU-second of the whole process (the runtime and the storage thread),
//! and the p50/p99/max latency of one append, from the call to the acknowledgement.
//!
//! Unlike the other programs here it links the `ringchat` library: it measures the store in
//! process, with no server or network in the way. It does not pin threads; run it under
//! `taskset` to choose cores. `--smoke` runs each case for 0.2 s, to check it works.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use ringchat::store::NewMessage;
use ringchat::store::embedded::EmbeddedStore;
use ringchat_bench::proc_stat::{decode_clock_ticks_per_second, decode_cpu_ticks};

const IN_FLIGHT: [usize; 3] = [1, 16, 64];
const MESSAGES_PER_APPEND: [usize; 2] = [1, 16];
const SECONDS_DEFAULT: f64 = 3.0;
const SMOKE_SECONDS: f64 = 0.2;
/// Bytes of content per message: about one line of chat.
const CONTENT_BYTES: usize = 64;
const USAGE: &str = "usage: store-embedded [--seconds S] [--dir DIR] [--smoke]";

struct Args {
    seconds: f64,
    dir: PathBuf,
}

struct Outcome {
    messages: u64,
    wall_s: f64,
    cpu_s: f64,
    /// Per append, in microseconds, sorted.
    latencies_us: Vec<u64>,
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
    println!(
        "store-embedded: {} s per case, data under {}\n",
        args.seconds,
        args.dir.display()
    );
    println!(
        "| in flight | msgs/append | msgs acked | msgs/s | msgs per CPU-s | append p50 | append p99 | append max |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for in_flight in IN_FLIGHT {
        for per_append in MESSAGES_PER_APPEND {
            let o = measure(&args, in_flight, per_append, ticks_per_second)?;
            let pct = |p: f64| {
                let i = ((o.latencies_us.len() as f64 - 1.0) * p).round() as usize;
                o.latencies_us.get(i).copied().unwrap_or(0)
            };
            println!(
                "| {in_flight} | {per_append} | {} | {:.0} | {:.0} | {} | {} | {} |",
                o.messages,
                o.messages as f64 / o.wall_s,
                o.messages as f64 / o.cpu_s.max(1e-9),
                micros(pct(0.50)),
                micros(pct(0.99)),
                micros(o.latencies_us.last().copied().unwrap_or(0)),
            );
        }
    }
    Ok(())
}

fn measure(
    args: &Args,
    in_flight: usize,
    per_append: usize,
    ticks_per_second: u64,
) -> Result<Outcome> {
    let dir = tempfile::Builder::new()
        .prefix("store-embedded-")
        .tempdir_in(&args.dir)
        .with_context(|| format!("creating a directory under {}", args.dir.display()))?;
    let store = EmbeddedStore::open(dir.path())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let latencies: Rc<RefCell<Vec<u64>>> = Rc::default();
    let cpu_before = process_cpu_ticks()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    let local = tokio::task::LocalSet::new();
    let messages: u64 = local.block_on(&runtime, async {
        let tasks: Vec<_> = (0..in_flight)
            .map(|task| {
                let store = store.clone();
                let latencies = Rc::clone(&latencies);
                tokio::task::spawn_local(async move {
                    let mut appended = 0u64;
                    while Instant::now() < deadline {
                        let batch: Vec<NewMessage> = (0..per_append)
                            .map(|_| NewMessage {
                                content: "x".repeat(CONTENT_BYTES),
                                user_id: task as i64,
                                timestamp_ms: now_ms(),
                            })
                            .collect();
                        let sent = Instant::now();
                        let ids = store.append_messages("bench", batch).await?;
                        latencies
                            .borrow_mut()
                            .push(sent.elapsed().as_micros() as u64);
                        appended += ids.len() as u64;
                    }
                    anyhow::Ok(appended)
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await??;
        }
        anyhow::Ok(total)
    })?;
    let wall_s = started.elapsed().as_secs_f64();
    let cpu_after = process_cpu_ticks()?;
    store.close()?;
    let mut latencies_us = Rc::try_unwrap(latencies)
        .map_err(|_| anyhow::anyhow!("a task outlived the run"))?
        .into_inner();
    latencies_us.sort_unstable();
    Ok(Outcome {
        messages,
        wall_s,
        cpu_s: cpu_after.saturating_sub(cpu_before) as f64 / ticks_per_second as f64,
        latencies_us,
    })
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

/// Microseconds as a short human figure.
fn micros(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

/// Parses the command line; `Ok(None)` means help was asked for.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>> {
    let mut parsed = Args {
        seconds: SECONDS_DEFAULT,
        dir: std::env::temp_dir(),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--smoke" => parsed.seconds = SMOKE_SECONDS,
            "--seconds" => {
                let value = args.next().context("--seconds needs a value")?;
                parsed.seconds = value
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .with_context(|| format!("bad --seconds {value:?}"))?;
            }
            "--dir" => parsed.dir = args.next().context("--dir needs a value")?.into(),
            other => bail!("unexpected argument {other:?}\n{USAGE}"),
        }
    }
    Ok(Some(parsed))
}
