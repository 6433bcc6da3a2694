//! `cpu-window`: how much CPU time some processes used while a command ran.
//!
//! ```text
//! cpu-window --pid P [--pid Q ...] -- CMD ARGS...
//! ```
//!
//! Reads `utime + stime` of every given process from `/proc/<pid>/stat`, runs CMD with this
//! program's stdin, stdout and stderr, reads the counters again, and prints as its last line
//!
//! ```text
//! cpu_seconds=<f64> wall_seconds=<f64>
//! ```
//!
//! where `cpu_seconds` is the CPU time all given processes used between the two reads, and
//! `wall_seconds` is how long CMD ran. The exit status is CMD's. A user/system split goes to
//! stderr. Pass every process of a multi-process server (nginx: the master and each worker);
//! threads need no listing, since the process-level counters already include them.
//!
//! It does not sample during the window, attach to children the processes start later, or pin
//! anything: run it under `taskset` on the load generator's core, and the server on another
//! (BENCH.md).
//!
//! Resolution is one clock tick (10 ms at the usual 100 Hz), so windows should be seconds long.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use ringchat_bench::proc_stat::{CpuTicks, decode_clock_ticks_per_second, decode_cpu_ticks};

/// What Linux has used for `USER_HZ` on every mainstream architecture, and what glibc's
/// `sysconf(_SC_CLK_TCK)` assumes when the auxiliary vector lacks the entry.
const CLOCK_TICKS_PER_SECOND_DEFAULT: u64 = 100;

const USAGE: &str = "usage: cpu-window --pid P [--pid Q ...] -- CMD [ARGS...]";

struct Args {
    pids: Vec<u32>,
    command: Vec<String>,
}

fn main() -> Result<ExitCode> {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return Ok(ExitCode::SUCCESS);
        }
        Err(error) => {
            eprintln!("cpu-window: {error:#}\n{USAGE}");
            return Ok(ExitCode::from(2));
        }
    };
    let ticks_per_second = clock_ticks_per_second();

    let before = read_all(&args.pids).context("before running the command")?;
    let started = Instant::now();
    let status = Command::new(&args.command[0])
        .args(&args.command[1..])
        .status()
        .with_context(|| format!("running {:?}", args.command[0]))?;
    let wall_seconds = started.elapsed().as_secs_f64();
    // A process that exited during the window makes its share unknowable: fail, don't
    // under-count.
    let after = read_all(&args.pids).context("after running the command (did a server exit?)")?;

    let mut used = CpuTicks { user: 0, system: 0 };
    for (pid, (start, end)) in args.pids.iter().zip(before.iter().zip(&after)) {
        // Counters only grow; a smaller one means the pid was reused by another process.
        if end.user < start.user || end.system < start.system {
            bail!("CPU counters of pid {pid} went backwards: {start:?} then {end:?}");
        }
        used.user += end.user - start.user;
        used.system += end.system - start.system;
    }
    let seconds = |ticks: u64| ticks as f64 / ticks_per_second as f64;
    eprintln!(
        "cpu-window: pids {:?}: user {:.2} s, system {:.2} s, {} ticks/s",
        args.pids,
        seconds(used.user),
        seconds(used.system),
        ticks_per_second
    );
    println!(
        "cpu_seconds={:.6} wall_seconds={wall_seconds:.6}",
        seconds(used.total())
    );

    Ok(exit_code(status))
}

/// Parses the command line; `Ok(None)` means help was asked for.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>> {
    let mut pids = Vec::new();
    loop {
        let Some(arg) = args.next() else {
            bail!("missing `--` before the command");
        };
        let pid_text = match arg.as_str() {
            "--" => break,
            "-h" | "--help" => return Ok(None),
            "--pid" => args.next().context("--pid needs a value")?,
            other => match other.strip_prefix("--pid=") {
                Some(value) => value.to_owned(),
                None => bail!("unexpected argument {other:?}"),
            },
        };
        let pid = pid_text
            .parse::<u32>()
            .with_context(|| format!("bad pid {pid_text:?}"))?;
        if pid == 0 {
            bail!("bad pid 0");
        }
        pids.push(pid);
    }
    if pids.is_empty() {
        bail!("at least one --pid is needed");
    }
    let command: Vec<String> = args.collect();
    if command.is_empty() {
        bail!("missing the command after `--`");
    }
    Ok(Some(Args { pids, command }))
}

fn clock_ticks_per_second() -> u64 {
    let from_auxv = std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|bytes| decode_clock_ticks_per_second(&bytes));
    from_auxv.unwrap_or_else(|| {
        eprintln!(
            "cpu-window: no AT_CLKTCK in /proc/self/auxv; assuming {CLOCK_TICKS_PER_SECOND_DEFAULT} \
             ticks/s (check with `getconf CLK_TCK`)"
        );
        CLOCK_TICKS_PER_SECOND_DEFAULT
    })
}

fn read_all(pids: &[u32]) -> Result<Vec<CpuTicks>> {
    pids.iter().map(|&pid| read_one(pid)).collect()
}

fn read_one(pid: u32) -> Result<CpuTicks> {
    let path = Path::new("/proc").join(pid.to_string()).join("stat");
    let line = std::fs::read_to_string(&path).with_context(|| format!("reading {path:?}"))?;
    decode_cpu_ticks(&line).with_context(|| format!("decoding {path:?}: {line:?}"))
}

/// CMD's exit code, or 128 + signal number as a shell reports a killed command.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        (None, Some(signal)) => ExitCode::from(u8::try_from(128 + signal).unwrap_or(255)),
        (None, None) => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Args>> {
        parse_args(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn parses_pids_and_command() {
        let args = parse(&["--pid", "10", "--pid=11", "--", "wrk", "-t1", "--pid", "x"])
            .expect("valid")
            .expect("not help");
        assert_eq!(args.pids, [10, 11]);
        // Everything after `--` belongs to the command, even what looks like our flags.
        assert_eq!(args.command, ["wrk", "-t1", "--pid", "x"]);
    }

    #[test]
    fn help() {
        assert!(parse(&["--help"]).expect("valid").is_none());
    }

    #[test]
    fn rejects_bad_command_lines() {
        for bad in [
            &["--pid", "10"][..],
            &["--pid", "10", "--"],
            &["--", "true"],
            &["--pid"],
            &["--pid", "ten", "--", "true"],
            &["--pid", "0", "--", "true"],
            &["--pid", "-1", "--", "true"],
            &["--pdi", "10", "--", "true"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
