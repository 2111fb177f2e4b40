//! Throwaway `redis-server`s: a single one, or six joined into a Redis Cluster of three masters and three
//! replicas, each on loopback with its files in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{signal, Reservation, LAUNCH_ATTEMPTS};

/// Panics naming the package to install when a Redis program is missing.
fn redis_program(name: &str) -> Command {
    if Command::new(name).arg("--version").stdout(Stdio::null()).status().is_err() {
        panic!("{name} not found: install the Debian package redis-server (scripts/test does)");
    }
    Command::new(name)
}

/// Runs `redis-cli -p PORT ARGS...` and returns what it printed.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli").args(["-h", "127.0.0.1", "-p", &port.to_string()]).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One `redis-server` on a loopback port with its files in `dir`: started, killed (SIGKILL) and restarted on the
/// same port with the same files, killed on drop.
struct RedisProcess {
    child: Option<Child>,
    port: u16,
    /// The cluster bus port of a cluster node.
    bus: Option<u16>,
    dir: PathBuf,
    args: Vec<String>,
}

impl RedisProcess {
    /// Starts one on a free port (and, for a cluster node, a free bus port) and waits until it answers and is
    /// ours. Nothing is saved unless `args` say otherwise (later arguments override earlier ones).
    fn start(dir: &Path, cluster_node: bool, args: &[&str]) -> Self {
        drop(redis_program("redis-cli"));
        std::fs::create_dir_all(dir).unwrap();
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        for _ in 0..LAUNCH_ATTEMPTS {
            // Both held at once (so they differ) until the server starts: no other test is handed them meanwhile.
            let (port, bus) = (Reservation::new(), cluster_node.then(Reservation::new));
            let mut process = Self {
                child: None,
                port: port.release(),
                bus: bus.map(Reservation::release),
                dir: dir.to_owned(),
                args: args.clone(),
            };
            if process.launch() {
                return process;
            }
        }
        panic!("redis-server exited before answering, {LAUNCH_ATTEMPTS} times (ports taken?):\n{}", log(dir));
    }

    /// Starts it again (after [`kill`](Self::kill)) on its port, with its files; waits until it answers.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server on port {} is running", self.port);
        assert!(
            self.launch(),
            "redis-server could not start again on port {} (taken meanwhile?):\n{}",
            self.port,
            log(&self.dir)
        );
    }

    /// Spawns the server and waits until it answers — and is ours; `false` when it exited first (its port or bus
    /// port was taken by then).
    fn launch(&mut self) -> bool {
        let mut command = redis_program("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"));
        if let Some(bus) = self.bus {
            command.args(["--cluster-port", &bus.to_string()]);
        }
        let mut child = command.args(&self.args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.answers_as_ours() {
                self.child = Some(child);
                return true;
            }
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            assert!(Instant::now() < deadline, "redis-server did not start on port {}:\n{}", self.port, log(&self.dir));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server on our port answers and works in our directory: the one we started, not another test's
    /// that took the port first (every server gets a directory of its own).
    fn answers_as_ours(&self) -> bool {
        // PING first: it fails while the server is still loading its files.
        if redis_cli(self.port, &["PING"]).trim() != "PONG" {
            return false;
        }
        let reply = redis_cli(self.port, &["CONFIG", "GET", "dir"]);
        let mut lines = reply.lines();
        if lines.next() != Some("dir") {
            return false;
        }
        let served = lines.next().map(PathBuf::from).and_then(|dir| dir.canonicalize().ok());
        let ours = self.dir.canonicalize().ok();
        assert_eq!(served, ours, "port {} is served by another redis-server", self.port);
        true
    }

    /// SIGKILL: no shutdown, no final save, connections cut.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn alive(&self) -> bool {
        self.child.is_some()
    }

    /// Sends `signal` (`-STOP`, `-CONT`) to the server, if it runs.
    fn signal(&self, signal_name: &str) {
        if let Some(child) = &self.child {
            signal(&[child.id().to_string()], signal_name);
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a server in `dir` logged.
fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default()
}
pub struct Redis {
    process: RedisProcess,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts one; panics naming what to install when Redis is missing.
    #[must_use]
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self { process: RedisProcess::start(dir.path(), false, &[]), _dir: dir }
    }

    /// Starts one that writes every change to its append-only file before answering (`appendfsync always`), so
    /// what it acknowledged survives [`kill`](Self::kill) and [`restart`](Self::restart).
    #[must_use]
    pub fn start_durable() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let process = RedisProcess::start(dir.path(), false, &["--appendonly", "yes", "--appendfsync", "always"]);
        Self { process, _dir: dir }
    }

    /// Its URL.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.process.port)
    }

    /// Runs one `redis-cli` command against it; its output.
    #[must_use]
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.process.port, args)
    }

    /// Kills it with SIGKILL.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again on the same port with the same files, and waits until it answers.
    pub fn restart(&mut self) {
        self.process.restart();
    }

    /// Freezes it (SIGSTOP): connections stay up, nothing answers.
    pub fn pause(&self) {
        self.process.signal("-STOP");
    }

    /// Lets a [`pause`](Self::pause)d server run on.
    pub fn resume(&self) {
        self.process.signal("-CONT");
    }
}

/// A throwaway Redis Cluster of three masters with one replica each (or more: [`start_with_replicas`]), killed
/// on drop.
///
/// [`start_with_replicas`]: Self::start_with_replicas
pub struct RedisCluster {
    nodes: Vec<RedisProcess>,
    replicas_per_master: usize,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts six `redis-server --cluster-enabled yes`, joins them with `redis-cli --cluster create
    /// --cluster-replicas 1`, and waits until every node reports the cluster ok and every replica is in sync.
    /// Nodes count one as failed after Redis's default 15 s.
    #[must_use]
    pub fn start() -> Self {
        Self::start_with_node_timeout(Duration::from_secs(15))
    }

    /// [`start`](Self::start), with nodes counting one as failed after `node_timeout` (`cluster-node-timeout`):
    /// a replica takes over from a dead master within a few of these.
    #[must_use]
    pub fn start_with_node_timeout(node_timeout: Duration) -> Self {
        Self::start_with_replicas(1, node_timeout)
    }

    /// Three masters with `replicas_per_master` replicas each (`--cluster-replicas`), nodes counting one as failed
    /// after `node_timeout`.
    #[must_use]
    pub fn start_with_replicas(replicas_per_master: usize, node_timeout: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let timeout = node_timeout.as_millis().to_string();
        let nodes = (0..3 * (1 + replicas_per_master))
            .map(|node| {
                // The cluster bus gets its own free port (the default, port + 10000, may be taken or out of range).
                RedisProcess::start(
                    &dir.path().join(format!("node-{node}")),
                    true,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        &timeout,
                    ],
                )
            })
            .collect();
        let cluster = Self { nodes, replicas_per_master, _dir: dir };
        let addresses: Vec<String> = cluster.nodes.iter().map(|node| format!("127.0.0.1:{}", node.port)).collect();
        let created = redis_program("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas_per_master.to_string(), "--cluster-yes"])
            .output()
            .unwrap();
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        cluster.wait_until_replicated();
        cluster
    }

    /// The URLs of its nodes.
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|node| format!("redis://127.0.0.1:{}/", node.port)).collect()
    }

    fn any_alive(&self) -> u16 {
        self.nodes.iter().find(|node| node.alive()).expect("every node is dead").port
    }

    /// The node (an index into [`urls`](Self::urls)) of the master that owns `key`'s slot now.
    #[must_use]
    pub fn master_of(&self, key: &str) -> usize {
        let port = self.any_alive();
        let slot: u16 = redis_cli(port, &["CLUSTER", "KEYSLOT", key]).trim().parse().unwrap();
        let nodes = redis_cli(port, &["CLUSTER", "NODES"]);
        // `<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot or range>...`
        let owner = nodes
            .lines()
            .map(|line| line.split(' ').collect::<Vec<_>>())
            .find(|fields| {
                fields.len() > 8
                    && fields[2].contains("master")
                    && fields[8..].iter().any(|range| {
                        let (from, to) = range.split_once('-').unwrap_or((range, range));
                        matches!((from.parse::<u16>(), to.parse::<u16>()), (Ok(from), Ok(to)) if (from..=to).contains(&slot))
                    })
            })
            .unwrap_or_else(|| panic!("no master owns slot {slot}:\n{nodes}"));
        let owner_port: u16 = owner[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
        self.nodes.iter().position(|node| node.port == owner_port).unwrap()
    }

    /// The live nodes that are replicas now.
    #[must_use]
    pub fn replicas(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&node| {
                self.nodes[node].alive()
                    && redis_cli(self.nodes[node].port, &["INFO", "replication"]).contains("role:slave")
            })
            .collect()
    }

    /// Kills node `node` with SIGKILL.
    pub fn kill(&mut self, node: usize) {
        self.nodes[node].kill();
    }

    /// Starts a killed node again on its port with its files: it rejoins the cluster (as a replica, if its slots
    /// were taken over meanwhile) and resynchronises from its master.
    pub fn restart(&mut self, node: usize) {
        self.nodes[node].restart();
    }

    /// Waits (60 s at most) until every live node reports the cluster ok, every slot is served by a live master
    /// (a replica was promoted in place of a dead one) and every live replica is in sync with its master.
    pub fn wait_until_ok(&self) {
        let dead: Vec<String> =
            self.nodes.iter().filter(|node| !node.alive()).map(|node| format!("127.0.0.1:{}@", node.port)).collect();
        let ready = |port: u16| {
            let info = redis_cli(port, &["CLUSTER", "INFO"]);
            let replication = redis_cli(port, &["INFO", "replication"]);
            let serves_no_dead_slot = redis_cli(port, &["CLUSTER", "NODES"]).lines().all(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                !(fields.len() > 8 && dead.iter().any(|dead| fields[1].starts_with(dead.as_str())))
            });
            info.contains("cluster_state:ok")
                && serves_no_dead_slot
                && (replication.contains("role:master") || replication.contains("master_link_status:up"))
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.nodes.iter().filter(|node| node.alive()).all(|node| ready(node.port)) {
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster did not become ready:\n{}",
                redis_cli(self.any_alive(), &["CLUSTER", "NODES"])
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (60 s at most) until every master has as many replicas in sync as the cluster was started with:
    /// writes waiting for them (`WAIT`) succeed everywhere again.
    pub fn wait_until_replicated(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let replicated = |port: u16| {
            let replication = redis_cli(port, &["INFO", "replication"]);
            let connected = replication
                .lines()
                .find_map(|line| line.trim().strip_prefix("connected_slaves:"))
                .and_then(|count| count.parse::<usize>().ok())
                .unwrap_or(0);
            !replication.contains("role:master") || connected >= self.replicas_per_master
        };
        while !self.nodes.iter().filter(|node| node.alive()).all(|node| replicated(node.port)) {
            assert!(Instant::now() < deadline, "a Redis master stayed without a replica");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait_until_ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Another test's server that took the port first answers PING like ours would: readiness must not accept it.
    #[test]
    #[should_panic(expected = "served by another redis-server")]
    fn a_server_working_in_another_directory_is_not_taken_for_ours() {
        let theirs = Redis::start();
        let ours = tempfile::tempdir().unwrap();
        let impostor = RedisProcess {
            child: None,
            port: theirs.process.port,
            bus: None,
            dir: ours.path().to_owned(),
            args: Vec::new(),
        };
        impostor.answers_as_ours();
    }
}
