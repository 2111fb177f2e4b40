//! A throwaway PostgreSQL server: `initdb` into a temporary directory, `postgres` on a loopback port with its
//! Unix socket in that directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{is_root, parent_of, process_state, signal, Reservation, LAUNCH_ATTEMPTS};

/// A throwaway PostgreSQL server, stopped and deleted on drop.
pub struct Postgres {
    server: Child,
    data: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
}

fn server_binaries() -> PathBuf {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|dir| dir.join("initdb").exists());
    let debian = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|versions| {
        versions.filter_map(Result::ok).map(|v| v.path().join("bin")).find(|d| d.join("initdb").exists())
    });
    from_pg_config.or(debian).unwrap_or_else(|| {
        panic!("PostgreSQL server binaries (initdb, postgres) not found: install them with `apt-get install postgresql` (scripts/test does)")
    })
}

/// PostgreSQL refuses to run as root: as root, run it as the `postgres` system user.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// How a launch ended.
enum Launch {
    /// Our server accepts sessions on the port.
    Ready(Child),
    /// Our server exited before it was ready: the port was taken (or it failed for another reason, which the
    /// next attempt shows again).
    Exited,
}

/// Starts `postgres` on `data` and `port` and waits until it accepts sessions — and is ours.
fn launch_postgres(bin: &Path, data: &Path, socket_dir: &Path, port: u16) -> Launch {
    let mut server = as_server_user(&bin.join("postgres"))
        .arg("-D")
        .arg(data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-k"])
        .arg(socket_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if ours_and_ready(bin, data, socket_dir, port) {
            return Launch::Ready(server);
        }
        if server.try_wait().unwrap().is_some() {
            return Launch::Exited;
        }
        assert!(Instant::now() < deadline, "PostgreSQL did not start on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ready means accepting sessions, not just the port: PostgreSQL listens while it is still starting up. Ours
/// means the session on `port` reaches the server of `data`: another test's server that took the port first
/// has its own data directory (and its socket is not in our `socket_dir`).
fn ours_and_ready(bin: &Path, data: &Path, socket_dir: &Path, port: u16) -> bool {
    let port = port.to_string();
    let accepting = Command::new(bin.join("pg_isready"))
        .args(["-q", "-p", &port, "-U", "tessera", "-d", "postgres", "-h"])
        .arg(socket_dir)
        .status()
        .is_ok_and(|status| status.success());
    if !accepting {
        return false;
    }
    let Ok(shown) = Command::new(bin.join("psql"))
        .args(["-h", "127.0.0.1", "-p", &port, "-U", "tessera", "-d", "postgres", "-XAtc", "SHOW data_directory"])
        .stderr(Stdio::null())
        .output()
    else {
        return false;
    };
    let shown = PathBuf::from(String::from_utf8_lossy(&shown.stdout).trim());
    let same = |a: &Path, b: &Path| a.canonicalize().ok().zip(b.canonicalize().ok()).is_some_and(|(a, b)| a == b);
    if !same(&shown, data) {
        panic!(
            "port {port} is served by another PostgreSQL (data directory {}), not ours ({})",
            shown.display(),
            data.display()
        );
    }
    true
}

impl Postgres {
    /// Starts one; panics naming what to install when PostgreSQL is missing.
    #[must_use]
    pub fn start() -> Self {
        let bin = server_binaries();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        if is_root() {
            assert!(Command::new("chown").args(["-R", "postgres"]).arg(dir.path()).status().unwrap().success());
        }
        let initdb = as_server_user(&bin.join("initdb"))
            .args(["-U", "tessera", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(initdb.status.success(), "initdb failed: {}", String::from_utf8_lossy(&initdb.stderr));
        for _ in 0..LAUNCH_ATTEMPTS {
            // Held until the moment the server starts, so that no other test is handed this port meanwhile.
            let port = Reservation::new().release();
            if let Launch::Ready(server) = launch_postgres(&bin, &data, dir.path(), port) {
                return Self { server, port, data, dir };
            }
        }
        panic!("PostgreSQL exited before accepting sessions, {LAUNCH_ATTEMPTS} times (ports taken?)")
    }

    /// Stops the server (fast shutdown): clients see their connections closed and new ones refused.
    pub fn stop(&mut self) {
        // SIGINT to the postmaster (its pid heads postmaster.pid) is PostgreSQL's fast shutdown. It may run as
        // another user, under `runuser`, which does not pass signals on: ask `kill`, then reap `runuser`.
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned));
        match pid {
            Some(pid) => drop(Command::new("kill").args(["-INT", &pid]).status()),
            None => drop(self.server.kill()),
        }
        let _ = self.server.wait();
    }

    /// Freezes the server — the postmaster and every backend — with SIGSTOP: connections stay up and the kernel
    /// keeps accepting bytes, but nothing answers, as with a stuck or partitioned database.
    pub fn pause(&self) {
        // `runuser` (when PostgreSQL runs as another user) stops itself when it sees its child stop, and later
        // misses the child's continuation: it is stopped first and continued last, so it never sees either.
        signal(&[self.launcher()], "-STOP");
        signal(&self.server_processes(), "-STOP");
    }

    /// Lets a [`pause`](Self::pause)d server run on.
    pub fn resume(&self) {
        signal(&self.server_processes(), "-CONT");
        let launcher = self.launcher();
        // Continue the launcher until it stays running, in case it saw the stop after all.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            signal(std::slice::from_ref(&launcher), "-CONT");
            std::thread::sleep(Duration::from_millis(50));
            if process_state(&launcher) != Some('T') || Instant::now() > deadline {
                break;
            }
        }
    }

    /// The process the test started: the postmaster itself, or `runuser` around it.
    fn launcher(&self) -> String {
        self.server.id().to_string()
    }

    /// The postmaster and its children (backends and background workers), from /proc.
    fn server_processes(&self) -> Vec<String> {
        let postmaster = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned))
            .expect("postmaster.pid names the server's process");
        let mut pids = vec![postmaster.clone()];
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if pid.parse::<u32>().is_ok() && parent_of(&pid).as_deref() == Some(postmaster.as_str()) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Starts it again after [`stop`](Self::stop), on the same port with the same data; panics if another
    /// server took the port meanwhile.
    pub fn restart(&mut self) {
        match launch_postgres(&server_binaries(), &self.data, self.dir.path(), self.port) {
            Launch::Ready(server) => self.server = server,
            Launch::Exited => panic!("PostgreSQL could not start again on port {} (taken meanwhile?)", self.port),
        }
    }

    /// The URL of its `postgres` database.
    #[must_use]
    pub fn url(&self) -> String {
        format!("postgres://tessera@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates a fresh, empty database on this server and returns its URL.
    pub async fn database(&self, name: &str) -> String {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        format!("postgres://tessera@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Another test's PostgreSQL that took the port first accepts sessions on it: readiness must not accept it.
    #[test]
    fn a_server_on_our_port_with_another_data_directory_is_not_taken_for_ours() {
        let theirs = Postgres::start();
        let ours = tempfile::tempdir().unwrap();
        let data = ours.path().join("data");
        assert!(!ours_and_ready(&server_binaries(), &data, ours.path(), theirs.port));
        // Reached through its own socket directory, it is taken for what it is: not ours.
        let looked_through_theirs =
            std::panic::catch_unwind(|| ours_and_ready(&server_binaries(), &data, theirs.dir.path(), theirs.port));
        assert!(looked_through_theirs.is_err(), "a server with another data directory passed for ours");
        assert!(ours_and_ready(&server_binaries(), &theirs.data, theirs.dir.path(), theirs.port));
    }
}
