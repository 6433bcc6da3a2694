//! `--scenario cycles`: `--cycles` K connect → authenticate → subscribe → close cycles,
//! `--in-flight` C at once, every one of which must succeed, and the server's descriptors and
//! connection count back at their baseline afterwards.
//!
//! Setup: `--users` accounts are signed up, then each logs in (`POST /api/login`), and the
//! cycles use those logins' session cookies round-robin. One cycle: TCP connect (from
//! 127.0.0.1 … 127.0.0.N with `--source-ips N`, so the client's ephemeral ports are not the
//! limit), WebSocket upgrade of `/api/ws` with the cookie (the server authenticates the
//! session), wait for the `hello` (the server has subscribed the connection to every room and
//! sent their history), then the close handshake from our side (close 1000, the server's close
//! frame, the server hangs up). Any other outcome is a failure counted by kind (see
//! `lifecycle`); a failed cycle is not retried.
//!
//! Prints `cycles`, `succeeded`, `failed`, `errors_<kind>`, the cycle and time-to-hello
//! latency (µs percentiles), cycles per second, the server's CPU over the run, and the leak
//! check (`lifecycle::leak_check`). With `--samples`, the server's RSS, descriptors and open
//! connections every `--sample-interval` seconds, with the cycles done so far as `progress`.

use super::lifecycle::{Probe, Sampler, Tally, Ws, fail, leak_check, print_us_hist};
use super::*;

/// Per cycle latency histograms: 1 µs … 120 s, 3 significant digits.
const CYCLE_HIST_MAX_US: u64 = 120_000_000;

struct Counts {
    next: Cell<u64>,
    succeeded: Cell<u64>,
    failed: Cell<u64>,
    errors: RefCell<Tally>,
    cycle_us: RefCell<Histogram<u64>>,
    hello_us: RefCell<Histogram<u64>>,
    done: Arc<AtomicU64>,
}

pub async fn run(args: Rc<Args>, nonce: &str) -> Result<()> {
    let origin = now_ns();
    let mut cookies = Vec::new();
    for u in 0..args.users {
        let name = format!("bench{nonce}u{u}");
        sign_up(&args.addrs[0], &name)?;
        cookies.push(Rc::new(log_in(&args.addrs[0], &name)?));
    }
    let probe = Probe::of(&args);
    let baseline = probe.as_ref().map(Probe::sample).transpose()?;
    let done = Arc::new(AtomicU64::new(0));
    let sampler = match &probe {
        Some(p) => Some(Sampler::start(&args, p.clone(), origin, done.clone())?),
        None => None,
    };
    let counts = Rc::new(Counts {
        next: Cell::new(0),
        succeeded: Cell::new(0),
        failed: Cell::new(0),
        errors: RefCell::new(Tally::default()),
        cycle_us: RefCell::new(Histogram::new_with_bounds(1, CYCLE_HIST_MAX_US, 3)?),
        hello_us: RefCell::new(Histogram::new_with_bounds(1, CYCLE_HIST_MAX_US, 3)?),
        done,
    });
    let before = snapshot(&args)?;
    let t0 = now_ns();
    let workers: Vec<_> = (0..args.in_flight)
        .map(|_| tokio::task::spawn_local(worker(args.clone(), cookies.clone(), counts.clone())))
        .collect();
    let mut reported = 0;
    while workers.iter().any(|w| !w.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let done = counts.done.load(Ordering::Relaxed);
        if done * 10 / args.cycles.max(1) > reported {
            reported = done * 10 / args.cycles.max(1);
            eprintln!(
                "chat-load: {done} cycles, {} failed, {:.1} s",
                counts.failed.get(),
                (now_ns() - t0) as f64 / 1e9
            );
        }
    }
    for w in workers {
        w.await?;
    }
    let wall = (now_ns() - t0) as f64 / 1e9;
    let after = snapshot(&args)?;
    println!("scenario=cycles");
    println!("t_start_s={:.3}", (t0 - origin) as f64 / 1e9);
    println!("t_end_s={:.3}", (now_ns() - origin) as f64 / 1e9);
    println!("cycles={}", args.cycles);
    println!("in_flight={}", args.in_flight);
    println!("users={}", args.users);
    println!("source_ips={}", args.source_ips);
    println!("succeeded={}", counts.succeeded.get());
    println!("failed={}", counts.failed.get());
    println!("seconds={wall:.3}");
    println!(
        "cycles_per_s={:.1}",
        (counts.succeeded.get() + counts.failed.get()) as f64 / wall
    );
    counts.errors.borrow().print("errors");
    print_us_hist("cycle", &counts.cycle_us.borrow());
    print_us_hist("hello", &counts.hello_us.borrow());
    if let (Some(b), Some(a)) = (before.server, after.server) {
        let cpu = (a - b) as f64 / clock_ticks_per_second() as f64;
        println!("server_cpu_seconds={cpu:.3}");
        println!("server_busy_pct={:.1}", cpu / wall * 100.0);
        println!(
            "server_cpu_us_per_cycle={:.1}",
            cpu * 1e6 / args.cycles.max(1) as f64
        );
    }
    println!(
        "generator_busy_pct={:.1}",
        (after.self_ns - before.self_ns) as f64 / 1e9 / wall * 100.0
    );
    if let (Some(probe), Some(baseline)) = (&probe, baseline) {
        leak_check(&args, probe, baseline).await?;
    }
    if let Some(s) = sampler {
        s.stop()?;
    }
    Ok(())
}

async fn worker(args: Rc<Args>, cookies: Vec<Rc<String>>, counts: Rc<Counts>) {
    loop {
        let i = counts.next.get();
        if i >= args.cycles {
            return;
        }
        counts.next.set(i + 1);
        let t0 = now_ns();
        let cookie = &cookies[i as usize % cookies.len()];
        match one_cycle(&args, i as usize, cookie).await {
            Ok(hello_ns) => {
                counts.succeeded.set(counts.succeeded.get() + 1);
                let us = |ns: u64| (ns / 1000).max(1);
                counts.hello_us.borrow_mut().saturating_record(us(hello_ns));
                counts
                    .cycle_us
                    .borrow_mut()
                    .saturating_record(us(now_ns() - t0));
            }
            Err(e) => {
                counts.failed.set(counts.failed.get() + 1);
                counts.errors.borrow_mut().add_error(&e);
            }
        }
        counts.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// One cycle; returns the ns from the start of the connect to the `hello`.
async fn one_cycle(args: &Args, c: usize, cookie: &str) -> Result<u64> {
    let t0 = now_ns();
    let hello_timeout = Duration::from_secs_f64(args.hello_timeout);
    let mut ws = tokio::time::timeout(hello_timeout, Ws::open(args, c, cookie))
        .await
        .map_err(|_| fail("connect_timeout", "no upgrade in time"))??;
    tokio::time::timeout(hello_timeout, ws.hello())
        .await
        .map_err(|_| fail("hello_timeout", "no hello in time"))??;
    let hello_ns = now_ns() - t0;
    ws.close(args.close_timeout).await?;
    Ok(hello_ns)
}
