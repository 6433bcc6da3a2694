//! Network faults for the tests: a private network namespace with only its own loopback, in
//! which the peers, the server and the test's clients run, and iptables rules in it that drop a
//! TCP port's packets both ways, so a peer goes silent without a FIN or a reset (a cable pulled,
//! a host frozen) while every process keeps running.
//!
//! A [`Netns`] is a named namespace (`ip netns add ringchat-<pid>-<n>`, loopback up), deleted
//! when dropped. [`Netns::run`] runs a closure on a thread that has entered it (setns(2)):
//! everything the closure starts (a redis-server, MariaDB, ringchat: a child process inherits
//! its thread's namespace) and every socket it opens (clients, the harness's readiness probes)
//! is inside, on a loopback nothing else shares, so the rules see only the test's traffic. The
//! crate root's helpers ([`crate::Redis`], [`crate::MariaDb`], [`crate::Ringchat`]) work there
//! unchanged. [`Netns::cut`] inserts the DROP rules for a port and returns a [`Cut`] that
//! removes them (or its drop does).
//!
//! Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), `ip` (iproute2) and `iptables`.
//! [`Netns::create_or_skip`] tells a test what to do when they are missing: skip it with a
//! loud `SKIPPED:` line, unless [`REQUIRE_ENV`] is `1` (proto-tests/run, CI), where it fails.
//!
//! Not here: latency, loss rates or reordering (tc netem), faults between hosts, anything
//! outside the namespace.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Set to `1` where network faults must be tested: a namespace that cannot be created is then
/// a failure, not a skip.
pub const REQUIRE_ENV: &str = "RINGCHAT_REQUIRE_NETNS";

/// Where `ip netns add` mounts its namespaces.
const NETNS_DIR: &str = "/run/netns";
/// This crate's namespaces: `<prefix><pid>-<n>`, so stale ones (a test process killed before
/// its drop ran) can be told apart and removed.
const NAME_PREFIX: &str = "ringchat-";

/// A private network namespace; deleted when dropped (it lives on, unnamed, until the last
/// process in it has exited).
pub struct Netns {
    name: String,
    /// `/run/netns/<name>`, for setns(2).
    handle: File,
}

impl Netns {
    /// Creates a namespace with its loopback up and checks that iptables works in it; the
    /// reason when it cannot (not root, no `ip`, no `iptables`, a container that forbids it).
    pub fn create() -> Result<Netns, String> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        remove_stale();
        let name = format!(
            "{NAME_PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run_tool("ip", &["netns", "add", &name])?;
        // From here on, the drop deletes it.
        let handle = match File::open(Path::new(NETNS_DIR).join(&name)) {
            Ok(handle) => handle,
            Err(e) => {
                let _ = run_tool("ip", &["netns", "del", &name]);
                return Err(format!("open {NETNS_DIR}/{name}: {e}"));
            }
        };
        let ns = Netns { name, handle };
        run_tool("ip", &["-n", &ns.name, "link", "set", "lo", "up"])?;
        ns.iptables(&["-S"])?;
        Ok(ns)
    }

    /// [`Netns::create`] for `test`: `None` after a `SKIPPED: <reason>` line when it fails,
    /// unless [`REQUIRE_ENV`] is `1`, where the failure panics.
    pub fn create_or_skip(test: &str) -> Option<Netns> {
        match Self::create() {
            Ok(ns) => Some(ns),
            Err(reason) if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") => {
                panic!("{test}: no network namespace ({REQUIRE_ENV}=1): {reason}")
            }
            Err(reason) => {
                eprintln!(
                    "SKIPPED: {test}: no network namespace with iptables ({reason}); run as root \
                     with iproute2 and iptables installed (proto-tests/run installs them), or \
                     set {REQUIRE_ENV}=1 to make this a failure"
                );
                None
            }
        }
    }

    /// Runs `f` on a thread inside the namespace and returns what it returns; a panic in `f`
    /// is the caller's panic. Threads and processes `f` starts are inside too.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            let inside = std::thread::Builder::new()
                .name(format!("in {}", self.name))
                .spawn_scoped(scope, || {
                    rustix::thread::move_into_link_name_space(
                        self.handle.as_fd(),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )
                    .unwrap_or_else(|e| panic!("setns into {}: {e}", self.name));
                    f()
                })
                .expect("spawn a thread for the namespace");
            inside
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Drops every TCP packet to or from `port` on the namespace's loopback (both ends of each
    /// connection on that port, new connections included) until the [`Cut`] is restored or
    /// dropped. Returns once the rules are in place.
    pub fn cut(&self, port: u16) -> Cut<'_> {
        let port = port.to_string();
        let rules: Vec<Vec<String>> = ["--dport", "--sport"]
            .iter()
            .map(|side| {
                ["INPUT", "-p", "tcp", side, &port, "-j", "DROP"]
                    .map(String::from)
                    .to_vec()
            })
            .collect();
        for rule in &rules {
            let mut args = vec!["-I"];
            args.extend(rule.iter().map(String::as_str));
            self.iptables(&args)
                .unwrap_or_else(|e| panic!("cut port {port}: {e}"));
        }
        Cut {
            ns: self,
            port,
            rules,
            since: Instant::now(),
            restored: false,
        }
    }

    /// Runs `iptables` in the namespace with `args`; its output, or why it failed.
    pub fn iptables(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["netns", "exec", &self.name, "iptables", "-w"];
        all.extend_from_slice(args);
        run_tool("ip", &all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run_tool("ip", &["netns", "del", &self.name]);
    }
}

/// A port's traffic dropped in a [`Netns`] (see [`Netns::cut`]).
pub struct Cut<'a> {
    ns: &'a Netns,
    port: String,
    rules: Vec<Vec<String>>,
    /// When the rules were in place.
    pub since: Instant,
    restored: bool,
}

impl Cut<'_> {
    /// Removes the rules; returns once packets flow again (the instant after the last one was
    /// removed).
    pub fn restore(mut self) -> Instant {
        self.remove();
        Instant::now()
    }

    fn remove(&mut self) {
        if std::mem::replace(&mut self.restored, true) {
            return;
        }
        for rule in &self.rules {
            let mut args = vec!["-D"];
            args.extend(rule.iter().map(String::as_str));
            if let Err(e) = self.ns.iptables(&args) {
                // Not a panic: this also runs while a failing test unwinds.
                eprintln!("restoring port {}: {e}", self.port);
            }
        }
    }
}

impl Drop for Cut<'_> {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Runs a tool to completion; its standard output, or why it failed (not installed, a non-zero
/// exit with its standard error).
fn run_tool(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program} {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {} exited with {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Deletes this crate's namespaces whose process is gone (killed before their drop ran).
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(NAME_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run_tool("ip", &["netns", "del", &name]);
        }
    }
}
