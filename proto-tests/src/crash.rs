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

use crate::Ringchat;

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
        let (child, _) = Self::spawn(
            &self.binary,
            self.addr,
            self.static_dir.path(),
            self.data_dir.path(),
            &self.args,
        );
        self.child = child;
    }
}
