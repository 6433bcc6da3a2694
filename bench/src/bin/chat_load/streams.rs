//! `--scenario churn` and `--scenario overload`: open-loop posting to `--conns` connections
//! that come and go, with latency per time window and every failure counted by kind.
//!
//! **Slots.** Each of the `--conns` connections is a slot whose task connects (cookie of
//! account `slot % users`), waits for the `hello`, reads until it is asked to close or the
//! server ends it, then connects again, until the run stops. A close asked for by the churn is
//! a clean close handshake or, every other time, an abrupt hang-up (the socket is dropped, no
//! close frame), so both of the server's paths run. A close by the server (any code), an end
//! of stream, or a failed connect or hello is an error of its kind (`errors_<kind>`); the slot
//! then reconnects after [`RECONNECT_DELAY_MS`]. Sender `s` posts through slot
//! `sender_conn(s)`, which the churn never closes; when it is down, its messages are counted
//! `unsent` (open loop: they are not sent late).
//!
//! - `churn`: `--churn-pct` percent of the connections per second are closed and reopened
//!   (one every `1 / (conns × pct / 100)` s, round-robin over a shuffled order of the
//!   non-sender slots) while `--senders` post `--rate` messages/s for `--warmup` + `--duration`
//!   seconds. Latency windows default to 10 s.
//! - `overload`: no churn; the rate steps through `--steps` (multiples of `--capacity`,
//!   messages/s, each for its seconds), all measured; windows default to 1 s.
//!
//! **What is checked.** On every connection, each sender's sequence numbers must arrive
//! strictly increasing (`out_of_order`: a number not above the last, or a room's message id not
//! above the last) and without gaps within one connection's life, counted from the first message
//! after a reconnect's `hello` (the `hello` itself carries the history); at the end, a
//! connection still open must have everything sent. A missed number is `lost` when another
//! connection received it (stored and broadcast, yet missing here: a real loss), and
//! `missed_unstored` when no connection did (the server never broadcast it: it was dropped with
//! its sender's connection, unacknowledged). Error events (`SERVER_BUSY`, …) count by id as
//! `events_<id>`.
//!
//! **Observers** (`--observers K`, default 0: all): only connections `0..K` and the senders'
//! are parsed, checked and timed; the others read and discard (looking only for error events
//! and closes), so that the generator's core is not what limits a fast server.
//!
//! **Windows** (`--latency-window`, by the message's intended send time): `offered` (messages
//! due), `unsent`, the delivery latency (every connection) and the ack latency (the sender's own
//! connection receiving its message back: stored and broadcast) as percentiles, in µs; and, by
//! receive time, `deliveries_rx`, `acks_rx` and the refusals seen in the window by kind (error
//! events, server closes, failed connects). Printed as `window_<k>=` CSV rows after
//! `window_columns=`. The server's CPU per step is `step_<k>=` (rate, seconds, CPU seconds,
//! busy %, other %). At the end the slots close cleanly and `lifecycle::leak_check` runs.

use std::collections::BTreeMap;

use super::lifecycle::{
    Incoming, Probe, Sampler, Tally, Ws, detail_of, error_event_id, fail, kind_of, leak_check,
    print_us_hist,
};
use super::*;

/// How an error event starts (unobserved connections still count them).
const ERROR_PREFIX: &[u8] = br#"{"type":"error""#;
/// Most `--steps`.
pub const STEPS_MAX: usize = 16;
/// A slot whose connect, hello or connection failed waits this long before connecting again.
const RECONNECT_DELAY_MS: u64 = 100;
/// Latency histograms, µs: 1 µs … 120 s.
const HIST_MAX_US: u64 = 120_000_000;
/// Significant digits of the per-window histograms (1% resolution keeps 2 per window small).
const WINDOW_HIST_DIGITS: u8 = 2;
/// The schedule starts this long after the last connection is ready.
const START_DELAY_NS: u64 = 100_000_000;
/// The drain ends once nothing has arrived for this long (after `--drain` seconds) …
const DRAIN_QUIET_NS: u64 = 1_000_000_000;
/// … or this long after `--drain` seconds at most.
const DRAIN_MAX_S: u64 = 60;
/// At the end, how long the slots have for their close handshakes on top of `--close-timeout`.
const STOP_GRACE_S: f64 = 5.0;

/// Sequence state of a (connection, sender): expect 0 next (a connection open since before the
/// first message).
const SEQ_FROM_START: i64 = -1;
/// Take the first message as the base (after a reconnect, the `hello` showed what came before).
const SEQ_ANY: i64 = -2;

fn window_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, WINDOW_HIST_DIGITS).expect("valid bounds")
}

#[derive(Default)]
struct Window {
    /// Latency of measured deliveries intended in this window, µs.
    delivery: Option<Histogram<u64>>,
    ack: Option<Histogram<u64>>,
    /// By receive time.
    deliveries_rx: u64,
    acks_rx: u64,
    refused: BTreeMap<String, u64>,
}

/// What the connections receive, checked and timed.
struct Tracker {
    nonce: String,
    senders: usize,
    rooms: usize,
    /// The schedule's start and the window length, ns.
    start_ns: u64,
    window_ns: u64,
    /// Sender `s` posts through slot `sender_slot[s]`.
    sender_slot: Vec<usize>,
    /// `[slot * senders + s]`: the last sequence number, or SEQ_FROM_START / SEQ_ANY.
    last_seq: Vec<i64>,
    /// `[slot * rooms + room]`: the last message id.
    last_id: Vec<(u64, u64)>,
    windows: Vec<Window>,
    all: Histogram<u64>,
    acks: Histogram<u64>,
    deliveries: Arc<AtomicU64>,
    /// Per sender: bitset of the sequence numbers some connection received (so stored).
    received_any: Vec<Vec<u64>>,
    /// (sender, from, to): sequence numbers `from..to` a connection missed (a gap in one
    /// connection's life, or its tail at the end), sorted out by `received_any` at the end.
    gaps: Vec<(usize, u64, u64)>,
    out_of_order: u64,
    foreign: u64,
    events: Tally,
}

impl Tracker {
    fn window(&mut self, t: u64) -> Option<&mut Window> {
        let w = (t.checked_sub(self.start_ns)? / self.window_ns) as usize;
        if self.windows.len() <= w {
            self.windows.resize_with(w + 1, Window::default);
        }
        Some(&mut self.windows[w])
    }

    /// A refusal of `kind` seen at `t` (error event, server close, failed connect).
    fn refused(&mut self, kind: &str, t: u64) {
        if let Some(w) = self.window(t) {
            *w.refused.entry(kind.to_string()).or_default() += 1;
        }
    }

    /// Slot `slot` has a new connection; `reconnect` when it had one before.
    fn on_open(&mut self, slot: usize, reconnect: bool) {
        let from = if reconnect { SEQ_ANY } else { SEQ_FROM_START };
        let senders = self.senders;
        self.last_seq[slot * senders..(slot + 1) * senders].fill(from);
        let rooms = self.rooms;
        self.last_id[slot * rooms..(slot + 1) * rooms].fill((0, 0));
    }

    fn on_text(&mut self, slot: usize, text: &[u8], t: u64) {
        if let Some(id) = error_event_id(text) {
            self.refused(&id, t);
            self.events
                .add(&id, || String::from_utf8_lossy(text).into_owned());
            return;
        }
        let mut foreign = 0;
        each_server_message(text, |room_name, id, content| {
            match room_name.strip_prefix(b"r").and_then(parse_u64) {
                Some(room) if (room as usize) < self.rooms => {
                    self.on_message(slot, room as usize, id, content, t)
                }
                _ => foreign += 1,
            }
        });
        self.foreign += foreign;
    }

    fn on_message(&mut self, slot: usize, room: usize, id: (u64, u64), content: &[u8], t: u64) {
        let Some(Content {
            sender,
            seq,
            intended,
            phase,
        }) = Content::parse(content, &self.nonce, self.senders)
        else {
            self.foreign += 1;
            return;
        };
        let last_id = &mut self.last_id[slot * self.rooms + room];
        if id <= *last_id {
            self.out_of_order += 1;
        }
        *last_id = id;
        let last = &mut self.last_seq[slot * self.senders + sender];
        let seq = seq as i64;
        if *last != SEQ_ANY {
            if seq <= *last {
                self.out_of_order += 1;
                return;
            }
            if seq > *last + 1 {
                self.gaps.push((sender, (*last + 1) as u64, seq as u64));
            }
        }
        *last = seq;
        let bits = &mut self.received_any[sender];
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        bits[word] |= 1 << bit;
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        let ack = self.sender_slot[sender] == slot;
        if let Some(w) = self.window(t) {
            w.deliveries_rx += 1;
            w.acks_rx += u64::from(ack);
        }
        if phase != b"m" {
            return;
        }
        let us = (t.saturating_sub(intended) / 1000).max(1);
        self.all.saturating_record(us);
        if ack {
            self.acks.saturating_record(us);
        }
        if let Some(w) = self.window(intended) {
            w.delivery
                .get_or_insert_with(window_hist)
                .saturating_record(us);
            if ack {
                w.ack.get_or_insert_with(window_hist).saturating_record(us);
            }
        }
    }

    /// The missed messages: (lost: some connection received them, so they were stored and
    /// broadcast, but this one did not; unstored: no connection received them, so the server
    /// never broadcast them: refused or dropped with their sender's connection, never
    /// acknowledged).
    fn missed(&self) -> (u64, u64) {
        let (mut lost, mut unstored) = (0, 0);
        for &(s, from, to) in &self.gaps {
            for seq in from..to {
                let word = self.received_any[s].get((seq / 64) as usize).copied();
                if word.is_some_and(|w| w & (1 << (seq % 64)) != 0) {
                    lost += 1;
                } else {
                    unstored += 1;
                }
            }
        }
        (lost, unstored)
    }

    /// At the end: what each connection open now has not received of what was sent.
    fn count_tail(&mut self, open: impl Iterator<Item = usize>, sent_per_sender: &[u64]) {
        for slot in open {
            for (s, &sent) in sent_per_sender.iter().enumerate() {
                let last = self.last_seq[slot * self.senders + s];
                if last != SEQ_ANY && last + 1 < sent as i64 {
                    self.gaps.push((s, (last + 1) as u64, sent));
                }
            }
        }
    }
}

/// The connections and what they share.
struct Slots {
    args: Rc<Args>,
    cookies: Vec<Rc<String>>,
    tracker: RefCell<Tracker>,
    /// Connection failures by kind.
    errors: RefCell<Tally>,
    stop: Cell<bool>,
    /// Set with a notify: this slot's connection should close now.
    close_asked: Vec<Cell<bool>>,
    wake: Vec<tokio::sync::Notify>,
    /// The asked close is a hang-up without a close frame.
    abrupt: Vec<Cell<bool>>,
    ready: Vec<Cell<bool>>,
    ready_count: Cell<usize>,
    live_tasks: Cell<usize>,
    lifetimes: Vec<Cell<u64>>,
    /// Which sender posts through a slot.
    sender_of_slot: Vec<Option<usize>>,
    /// Slots whose deliveries are parsed, checked and timed (`--observers`).
    observed: Vec<bool>,
    /// Per sender: its slot's writer while that slot is connected.
    sender_writers: Vec<Arc<Mutex<Option<Arc<Writer>>>>>,
    /// First connects go through this gate (`--connect-parallel`); reconnects do not.
    gate: tokio::sync::Semaphore,
    /// Reconnects: connect → hello, µs.
    reconnect_hello_us: RefCell<Histogram<u64>>,
    closes_clean: Cell<u64>,
    closes_abrupt: Cell<u64>,
    /// Clean closes when the run stops (not churn).
    closes_at_end: Cell<u64>,
}

impl Slots {
    fn failure(&self, e: &anyhow::Error) {
        let kind = kind_of(e);
        self.tracker.borrow_mut().refused(&kind, now_ns());
        self.errors.borrow_mut().add(&kind, || detail_of(e));
    }

    fn set_writer(&self, slot: usize, writer: Option<Arc<Writer>>) {
        if let Some(s) = self.sender_of_slot[slot] {
            *self.sender_writers[s].lock().unwrap() = writer;
        }
    }
}

async fn open_session(sl: &Slots, slot: usize) -> Result<Ws> {
    let first = sl.lifetimes[slot].get() == 0;
    let _permit = if first {
        Some(sl.gate.acquire().await?)
    } else {
        None
    };
    let cookie = &sl.cookies[slot % sl.cookies.len()];
    let hello_timeout = Duration::from_secs_f64(sl.args.hello_timeout);
    let session = async {
        let mut ws = Ws::open(&sl.args, slot, cookie).await?;
        ws.hello().await?;
        Ok(ws)
    };
    tokio::time::timeout(hello_timeout, session)
        .await
        .map_err(|_| fail("hello_timeout", "no hello in time"))?
}

async fn slot_task(sl: Rc<Slots>, slot: usize) {
    sl.live_tasks.set(sl.live_tasks.get() + 1);
    while !sl.stop.get() {
        let t0 = now_ns();
        let mut ws = match open_session(&sl, slot).await {
            Ok(ws) => ws,
            Err(e) => {
                sl.failure(&e);
                tokio::time::sleep(Duration::from_millis(RECONNECT_DELAY_MS)).await;
                continue;
            }
        };
        let reconnect = sl.lifetimes[slot].get() > 0;
        if reconnect {
            sl.reconnect_hello_us
                .borrow_mut()
                .saturating_record(((now_ns() - t0) / 1000).max(1));
        }
        sl.lifetimes[slot].set(sl.lifetimes[slot].get() + 1);
        sl.tracker.borrow_mut().on_open(slot, reconnect);
        sl.close_asked[slot].set(false);
        sl.set_writer(slot, Some(ws.writer.clone()));
        sl.ready[slot].set(true);
        sl.ready_count.set(sl.ready_count.get() + 1);
        let end = read_until_asked(&sl, slot, &mut ws).await;
        sl.ready[slot].set(false);
        sl.ready_count.set(sl.ready_count.get() - 1);
        sl.set_writer(slot, None);
        match end {
            Ok(()) if sl.abrupt[slot].get() && !sl.stop.get() => {
                drop(ws);
                sl.closes_abrupt.set(sl.closes_abrupt.get() + 1);
            }
            Ok(()) => match ws.close(sl.args.close_timeout).await {
                Ok(()) if sl.stop.get() => sl.closes_at_end.set(sl.closes_at_end.get() + 1),
                Ok(()) => sl.closes_clean.set(sl.closes_clean.get() + 1),
                Err(e) => sl.failure(&e),
            },
            Err(e) => {
                sl.failure(&e);
                tokio::time::sleep(Duration::from_millis(RECONNECT_DELAY_MS)).await;
            }
        }
    }
    sl.live_tasks.set(sl.live_tasks.get() - 1);
}

/// Reads and tracks until the slot is asked to close (Ok) or the connection ends (Err).
async fn read_until_asked(sl: &Slots, slot: usize, ws: &mut Ws) -> Result<()> {
    let mut t = now_ns();
    loop {
        while let Some(frame) = ws.next_frame()? {
            match frame {
                // An unobserved connection only reads, and looks for error events.
                Incoming::Text(text) if sl.observed[slot] || text.starts_with(ERROR_PREFIX) => {
                    sl.tracker.borrow_mut().on_text(slot, text, t)
                }
                Incoming::Text(_) => {}
                Incoming::Close(code) => {
                    return Err(fail(format!("server_close_{code}"), "the server closed"));
                }
            }
        }
        tokio::select! {
            biased;
            () = sl.wake[slot].notified() => {
                if sl.close_asked[slot].replace(false) {
                    return Ok(());
                }
            }
            more = ws.fill() => {
                if !more? {
                    return Err(fail("eof", "the server hung up"));
                }
                t = now_ns();
            }
        }
    }
}

/// What the sender thread did.
struct StepsReport {
    sent_per_sender: Vec<u64>,
    /// All messages due, and those not sent (sender down or its write failed).
    offered_total: u64,
    unsent_total: u64,
    /// The same per window (measured steps only).
    offered: Vec<u64>,
    unsent: Vec<u64>,
    unsent_kinds: BTreeMap<String, u64>,
    lag_sum_ns: u64,
    lag_max_ns: u64,
    /// When each step started, and the end, with the CPU counters then.
    edges: Vec<(u64, Snapshot)>,
}

/// The open-loop schedule through `steps` of (messages/s, seconds): message `j` of a step is
/// due at the step's start + j / rate, from sender `i % senders` (`i` counting every message).
/// Steps before `measured_from` are warm-up; windows count from the first measured step.
fn send_steps(
    args: Args,
    nonce: String,
    start: u64,
    window_ns: u64,
    steps: Vec<(f64, f64)>,
    measured_from: usize,
    writers: Vec<Arc<Mutex<Option<Arc<Writer>>>>>,
) -> Result<StepsReport> {
    let mut r = StepsReport {
        sent_per_sender: vec![0; args.senders],
        offered_total: 0,
        unsent_total: 0,
        offered: Vec::new(),
        unsent: Vec::new(),
        unsent_kinds: BTreeMap::new(),
        lag_sum_ns: 0,
        lag_max_ns: 0,
        edges: Vec::new(),
    };
    let window_origin = measure_start(start, &steps, measured_from);
    let mut step_start = start;
    let mut i = 0u64;
    for (k, &(rate, seconds)) in steps.iter().enumerate() {
        sleep_until_ns(step_start);
        r.edges.push((now_ns(), snapshot(&args)?));
        let phase = if k < measured_from { 'w' } else { 'm' };
        let count = (rate * seconds).round() as u64;
        for j in 0..count {
            let intended = step_start + (j as f64 * 1e9 / rate) as u64;
            sleep_until_ns(intended);
            let s = (i % args.senders as u64) as usize;
            i += 1;
            let w = (intended.checked_sub(window_origin)).map(|t| (t / window_ns) as usize);
            if let Some(w) = w
                && r.offered.len() <= w
            {
                r.offered.resize(w + 1, 0);
                r.unsent.resize(w + 1, 0);
            }
            r.offered_total += 1;
            if let Some(w) = w {
                r.offered[w] += 1;
            }
            let writer = writers[s].lock().unwrap().clone();
            let outcome = match writer {
                None => Err("sender_disconnected".to_string()),
                Some(writer) => {
                    let frame =
                        message_frame(&args, &nonce, s, r.sent_per_sender[s], intended, phase);
                    let lag = now_ns().saturating_sub(intended);
                    r.lag_sum_ns += lag;
                    r.lag_max_ns = r.lag_max_ns.max(lag);
                    writer
                        .write_all(&frame)
                        .map_err(|e| format!("send_io_{:?}", e.kind()))
                }
            };
            match outcome {
                Ok(()) => r.sent_per_sender[s] += 1,
                Err(kind) => {
                    r.unsent_total += 1;
                    if let Some(w) = w {
                        r.unsent[w] += 1;
                    }
                    *r.unsent_kinds.entry(kind).or_default() += 1;
                }
            }
        }
        step_start += (seconds * 1e9) as u64;
    }
    sleep_until_ns(step_start);
    r.edges.push((now_ns(), snapshot(&args)?));
    Ok(r)
}

/// When step `measured_from` starts, for a schedule starting at `start` (as `send_steps` counts).
fn measure_start(start: u64, steps: &[(f64, f64)], measured_from: usize) -> u64 {
    start
        + steps[..measured_from]
            .iter()
            .map(|&(_, seconds)| (seconds * 1e9) as u64)
            .sum::<u64>()
}

/// A fixed shuffle (xorshift64 seeded by `seed`), so the churn's order is not slot order.
fn shuffled(mut items: Vec<usize>, seed: u64) -> Vec<usize> {
    let mut x = seed | 1;
    for i in (1..items.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        items.swap(i, (x % (i as u64 + 1)) as usize);
    }
    items
}

/// Closes and reopens connections, one every `1 / (conns × pct / 100)` s, until `done()`.
async fn churn(sl: &Slots, seed: u64, done: impl Fn() -> bool) -> u64 {
    let args = &sl.args;
    let senders: Vec<usize> = (0..args.senders).map(|s| args.sender_conn(s)).collect();
    let order = shuffled(
        (0..args.conns).filter(|c| !senders.contains(c)).collect(),
        seed,
    );
    let per_s = args.conns as f64 * args.churn_pct / 100.0;
    if order.is_empty() || per_s <= 0.0 {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        return 0;
    }
    let period_ns = 1e9 / per_s;
    let t0 = now_ns();
    let (mut asked, mut next) = (0u64, 0usize);
    while !done() {
        let due = t0 + ((asked + 1) as f64 * period_ns) as u64;
        let now = now_ns();
        if now < due {
            tokio::time::sleep(Duration::from_nanos((due - now).min(10_000_000))).await;
            continue;
        }
        // The next slot in the order that is connected (one pass at most).
        for _ in 0..order.len() {
            let slot = order[next % order.len()];
            next += 1;
            if sl.ready[slot].get() && !sl.close_asked[slot].get() {
                sl.abrupt[slot].set(asked % 2 == 1);
                sl.close_asked[slot].set(true);
                sl.wake[slot].notify_one();
                break;
            }
        }
        asked += 1;
    }
    asked
}

pub async fn run(args: Rc<Args>, nonce: &str) -> Result<()> {
    let overload = args.scenario == Scenario::Overload;
    let origin = now_ns();
    let (steps, measured_from) = if overload {
        if args.capacity <= 0.0 {
            bail!(
                "--scenario overload needs --capacity MSG_PER_S (bench/overload measures it first)"
            );
        }
        let steps: Vec<(f64, f64)> = args
            .steps
            .iter()
            .map(|&(m, secs)| (m * args.capacity, secs))
            .collect();
        (steps, 0)
    } else {
        (
            vec![(args.rate, args.warmup), (args.rate, args.duration)],
            1,
        )
    };
    let window_s = args
        .latency_window
        .unwrap_or(if overload { 1.0 } else { 10.0 });
    let window_ns = (window_s * 1e9) as u64;

    let mut cookies = Vec::new();
    for u in 0..args.users {
        cookies.push(Rc::new(sign_up(
            &args.addrs[0],
            &format!("bench{nonce}u{u}"),
        )?));
    }
    let probe = Probe::of(&args);
    let baseline = probe.as_ref().map(Probe::sample).transpose()?;
    let deliveries = Arc::new(AtomicU64::new(0));
    let sampler = match &probe {
        Some(p) => Some(Sampler::start(
            &args,
            p.clone(),
            origin,
            deliveries.clone(),
        )?),
        None => None,
    };
    let sender_slot: Vec<usize> = (0..args.senders).map(|s| args.sender_conn(s)).collect();
    let mut sender_of_slot = vec![None; args.conns];
    for (s, &slot) in sender_slot.iter().enumerate() {
        sender_of_slot[slot] = Some(s);
    }
    let n = args.conns;
    let sl = Rc::new(Slots {
        args: args.clone(),
        cookies,
        tracker: RefCell::new(Tracker {
            nonce: nonce.to_string(),
            senders: args.senders,
            rooms: args.rooms,
            start_ns: u64::MAX,
            window_ns,
            sender_slot,
            last_seq: vec![SEQ_FROM_START; n * args.senders],
            last_id: vec![(0, 0); n * args.rooms],
            windows: Vec::new(),
            all: Histogram::new_with_bounds(1, HIST_MAX_US, 3)?,
            acks: Histogram::new_with_bounds(1, HIST_MAX_US, 3)?,
            deliveries,
            received_any: vec![Vec::new(); args.senders],
            gaps: Vec::new(),
            out_of_order: 0,
            foreign: 0,
            events: Tally::default(),
        }),
        errors: RefCell::new(Tally::default()),
        stop: Cell::new(false),
        close_asked: (0..n).map(|_| Cell::new(false)).collect(),
        wake: (0..n).map(|_| tokio::sync::Notify::new()).collect(),
        abrupt: (0..n).map(|_| Cell::new(false)).collect(),
        ready: (0..n).map(|_| Cell::new(false)).collect(),
        ready_count: Cell::new(0),
        live_tasks: Cell::new(0),
        lifetimes: (0..n).map(|_| Cell::new(0)).collect(),
        observed: (0..n)
            .map(|c| args.observers == 0 || c < args.observers || sender_of_slot[c].is_some())
            .collect(),
        sender_of_slot,
        sender_writers: (0..args.senders)
            .map(|_| Arc::new(Mutex::new(None)))
            .collect(),
        gate: tokio::sync::Semaphore::new(args.connect_parallel),
        reconnect_hello_us: RefCell::new(Histogram::new_with_bounds(1, HIST_MAX_US, 3)?),
        closes_clean: Cell::new(0),
        closes_abrupt: Cell::new(0),
        closes_at_end: Cell::new(0),
    });

    let t0 = now_ns();
    let tasks: Vec<_> = (0..n)
        .map(|slot| tokio::task::spawn_local(slot_task(sl.clone(), slot)))
        .collect();
    while sl.ready_count.get() < n {
        if now_ns() - t0 > READY_TIMEOUT_NS {
            bail!(
                "only {} of {n} connections ready after {} s; errors: {:?}",
                sl.ready_count.get(),
                READY_TIMEOUT_NS / 1_000_000_000,
                sl.errors.borrow().examples
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t_ready = now_ns();
    eprintln!(
        "chat-load: {n} connections ready in {:.2} s",
        (t_ready - t0) as f64 / 1e9
    );

    let start = now_ns() + START_DELAY_NS;
    sl.tracker.borrow_mut().start_ns = measure_start(start, &steps, measured_from);
    let sender = {
        let (a, nonce) = ((*args).clone(), nonce.to_string());
        let writers = sl.sender_writers.clone();
        let steps = steps.clone();
        std::thread::spawn(move || {
            send_steps(a, nonce, start, window_ns, steps, measured_from, writers)
        })
    };
    let seed = u64::from_str_radix(nonce, 16).unwrap_or(1);
    let churn_asked = if overload {
        while !sender.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        0
    } else {
        churn(&sl, seed, || sender.is_finished()).await
    };
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
    let t_send_end = now_ns();
    // Drain: at least --drain seconds, then until nothing has arrived for DRAIN_QUIET_NS (a
    // late message is late, not lost), at most DRAIN_MAX_S more.
    let drain_min = t_send_end + (args.drain * 1e9) as u64;
    let drain_max = drain_min + DRAIN_MAX_S * 1_000_000_000;
    let counter = sl.tracker.borrow().deliveries.clone();
    let (mut seen, mut quiet_since) = (counter.load(Ordering::Relaxed), now_ns());
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (now, count) = (now_ns(), counter.load(Ordering::Relaxed));
        if count != seen {
            (seen, quiet_since) = (count, now);
        }
        if now >= drain_max || (now >= drain_min && now - quiet_since >= DRAIN_QUIET_NS) {
            break;
        }
    }
    let t_drained = now_ns();
    {
        let open: Vec<usize> = (0..n)
            .filter(|&c| sl.ready[c].get() && sl.observed[c])
            .collect();
        sl.tracker
            .borrow_mut()
            .count_tail(open.into_iter(), &sent.sent_per_sender);
    }

    // Every slot closes cleanly; then the server should be back where it started.
    sl.stop.set(true);
    for slot in 0..n {
        sl.close_asked[slot].set(true);
        sl.wake[slot].notify_one();
    }
    let stop_deadline = now_ns() + ((args.close_timeout + STOP_GRACE_S) * 1e9) as u64;
    while sl.live_tasks.get() > 0 && now_ns() < stop_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A slot still in its close handshake is cut: the leak check must not count our sockets.
    let tasks_aborted = tasks.iter().filter(|t| !t.is_finished()).count();
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    let t_closed = now_ns();

    let secs = |t: u64| (t - origin) as f64 / 1e9;
    println!("scenario={}", if overload { "overload" } else { "churn" });
    println!("nonce={nonce}");
    println!("conns={n}");
    println!("observed={}", sl.observed.iter().filter(|&&o| o).count());
    println!("users={}", args.users);
    println!("senders={}", args.senders);
    println!("rooms={}", args.rooms);
    println!("size={}", args.size);
    println!("latency_window_s={window_s}");
    println!("t_ready_s={:.3}", secs(t_ready));
    println!("t_send_start_s={:.3}", secs(start));
    if let Some((t, _)) = sent.edges.get(measured_from) {
        println!("t_measure_start_s={:.3}", secs(*t));
    }
    println!("t_send_end_s={:.3}", secs(t_send_end));
    println!("t_closed_s={:.3}", secs(t_closed));
    println!("t_drained_s={:.3}", secs(t_drained));
    println!("tasks_aborted={tasks_aborted}");
    if overload {
        println!("capacity={}", args.capacity);
    } else {
        println!("rate={}", args.rate);
        println!("churn_pct={}", args.churn_pct);
        println!("churn_asked={churn_asked}");
    }
    println!("closes_clean={}", sl.closes_clean.get());
    println!("closes_abrupt={}", sl.closes_abrupt.get());
    println!("closes_at_end={}", sl.closes_at_end.get());
    let (offered, unsent) = (sent.offered_total, sent.unsent_total);
    println!("offered={offered}");
    println!("sent={}", offered - unsent);
    println!("unsent={unsent}");
    for (kind, count) in &sent.unsent_kinds {
        println!("unsent_{kind}={count}");
    }
    println!(
        "send_lag_mean_us={:.1}",
        sent.lag_sum_ns as f64 / (offered - unsent).max(1) as f64 / 1e3
    );
    println!("send_lag_max_us={:.1}", sent.lag_max_ns as f64 / 1e3);
    let ticks = clock_ticks_per_second() as f64;
    for (k, pair) in sent.edges.windows(2).enumerate() {
        let ((t0, b), (t1, a)) = (&pair[0], &pair[1]);
        let wall = (t1 - t0) as f64 / 1e9;
        let (rate, seconds) = steps[k];
        let cpu = match (b.server, a.server) {
            (Some(b), Some(a)) => (a - b) as f64 / ticks,
            _ => 0.0,
        };
        let other = match (b.core, a.core) {
            (Some((bb, bt)), Some((ab, at))) if at > bt => {
                (((ab - bb) as f64 / ticks - cpu) / ((at - bt) as f64 / ticks) * 100.0).max(0.0)
            }
            _ => -1.0,
        };
        let generator = (a.self_ns - b.self_ns) as f64 / 1e9;
        println!(
            "step_{k}={rate:.1},{seconds},{cpu:.3},{:.1},{other:.1},{:.1}",
            cpu / wall.max(1e-9) * 100.0,
            generator / wall.max(1e-9) * 100.0
        );
    }
    println!("step_columns=rate,seconds,server_cpu_s,server_busy_pct,other_pct,generator_busy_pct");

    print_received(&sl, &sent, window_s);
    if let (Some(probe), Some(baseline)) = (&probe, baseline) {
        leak_check(&args, probe, baseline).await?;
    }
    if let Some(s) = sampler {
        s.stop()?;
    }
    Ok(())
}

/// The tracker's and the slots' figures, and the window rows.
fn print_received(sl: &Slots, sent: &StepsReport, window_s: f64) {
    let tr = sl.tracker.borrow();
    println!("deliveries={}", tr.deliveries.load(Ordering::Relaxed));
    let (lost, unstored) = tr.missed();
    println!("lost={lost}");
    println!("missed_unstored={unstored}");
    println!("out_of_order={}", tr.out_of_order);
    println!("foreign={}", tr.foreign);
    tr.events.print("events");
    sl.errors.borrow().print("errors");
    print_us_hist("latency", &tr.all);
    print_us_hist("ack", &tr.acks);
    print_us_hist("reconnect_hello", &sl.reconnect_hello_us.borrow());
    println!(
        "window_columns=index,start_s,offered,unsent,deliveries,p50_us,p99_us,max_us,acks,\
         ack_p50_us,ack_p99_us,ack_max_us,deliveries_rx,acks_rx,refused"
    );
    let rows = tr.windows.len().max(sent.offered.len());
    let empty = window_hist();
    for k in 0..rows {
        let w = tr.windows.get(k);
        let d = w.and_then(|w| w.delivery.as_ref()).unwrap_or(&empty);
        let a = w.and_then(|w| w.ack.as_ref()).unwrap_or(&empty);
        let refused = w
            .map(|w| {
                w.refused
                    .iter()
                    .map(|(kind, n)| format!("{kind}:{n}"))
                    .collect::<Vec<_>>()
                    .join(";")
            })
            .unwrap_or_default();
        println!(
            "window_{k}={k},{:.1},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            k as f64 * window_s,
            sent.offered.get(k).copied().unwrap_or(0),
            sent.unsent.get(k).copied().unwrap_or(0),
            d.len(),
            d.value_at_quantile(0.5),
            d.value_at_quantile(0.99),
            d.max(),
            a.len(),
            a.value_at_quantile(0.5),
            a.value_at_quantile(0.99),
            a.max(),
            w.map_or(0, |w| w.deliveries_rx),
            w.map_or(0, |w| w.acks_rx),
            if refused.is_empty() { "-" } else { &refused },
        );
    }
}
