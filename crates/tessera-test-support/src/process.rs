//! What both launchers share: port reservations, signals, and the process tree read from `/proc`.

use std::net::TcpListener;
use std::process::Command;

/// How many times a first start tries another port after its server lost the port to another one.
pub(crate) const LAUNCH_ATTEMPTS: usize = 5;

/// A loopback port no one listens on right now, kept bound (so no other test is handed it) until [`release`]d
/// just before the server that will use it starts.
///
/// [`release`]: Self::release
pub(crate) struct Reservation(TcpListener);

impl Reservation {
    pub(crate) fn new() -> Self {
        Self(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    pub(crate) fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }

    /// Frees the port for the server about to start on it.
    pub(crate) fn release(self) -> u16 {
        let port = self.port();
        drop(self.0);
        port
    }
}

/// Whether this process runs as root.
pub(crate) fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}

/// `pid (comm) state ppid ...` from /proc; comm may hold spaces and parentheses, so fields are read after the
/// last ')'.
fn proc_stat_fields(pid: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat.rsplit_once(')')?.1.split_whitespace().map(str::to_owned).collect())
}

pub(crate) fn parent_of(pid: &str) -> Option<String> {
    proc_stat_fields(pid)?.get(1).cloned()
}

pub(crate) fn process_state(pid: &str) -> Option<char> {
    proc_stat_fields(pid)?.first()?.chars().next()
}

pub(crate) fn signal(pids: &[String], signal: &str) {
    let status = Command::new("kill").arg(signal).args(pids).status().expect("kill");
    assert!(status.success(), "kill {signal} {pids:?}");
}
