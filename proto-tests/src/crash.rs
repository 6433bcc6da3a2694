//! Crashes of the server under test, for the durability tests (tests/durability.rs): the
//! ringchat binary killed with SIGKILL, then started again **on the same address**, with the
//! same flags, static root and data directory, as a supervisor would restart a crashed server
//! behind a fixed port that its clients reconnect to.
//!
//! Only additions to [`Ringchat`]: its existing methods ([`Ringchat::start`],
//! [`Ringchat::stop`], [`Ringchat::restart`], which moves to a new port) behave as before. The
//! peers already crash and come back through [`crate::Redis::kill9`] / [`crate::Redis::restart`]
//! and [`crate::MariaDb::kill9`] / [`crate::MariaDb::restart`]. Not here: network faults, disk
//! faults, anything that needs privileges.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::{RINGCHAT_START_DEADLINE, Ringchat, ringchat_binary};

impl Ringchat {
    /// SIGKILL, as a crash would (no shutdown, no checkpoint, nothing flushed), and reaped.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts again after [`Ringchat::kill9`] (or [`Ringchat::stop`]) on the address it had,
    /// with the same flags and directories; returns once it logs `listening`. The listeners use
    /// SO_REUSEADDR, so the port is free again at once, whatever connections the dead process
    /// left in TIME_WAIT.
    pub fn restart_at_same_address(&mut self) {
        assert!(
            self.child.try_wait().expect("wait for ringchat").is_some(),
            "ringchat is still running: kill9 or stop it first"
        );
        self.child = spawn_at(
            self.addr,
            self.static_dir.path(),
            self.data_dir.path(),
            &self.args,
        );
    }
}

/// [`Ringchat`]'s start, listening on `addr` rather than on an ephemeral port; its log is
/// echoed to stderr with a `[ringchat]` prefix.
fn spawn_at(addr: SocketAddr, static_dir: &Path, data_dir: &Path, args: &[String]) -> Child {
    let mut child = Command::new(ringchat_binary())
        .arg("--listen")
        .arg(addr.to_string())
        .args(["--log-level", "info", "--static"])
        .arg(static_dir)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringchat");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("[ringchat] {line}");
            // The receiver goes away once the server listens; keep echoing.
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + RINGCHAT_START_DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("listening") => return child,
            Ok(_) => {}
            Err(e) => {
                let status = child.try_wait();
                let _ = child.kill();
                panic!("ringchat did not log `listening` on {addr} ({e}); exit status {status:?}");
            }
        }
    }
}
