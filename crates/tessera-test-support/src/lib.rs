//! # tessera-test-support
//!
//! Throwaway database servers for Tessera's tests — [`Postgres`], [`Redis`] and [`RedisCluster`] — started from
//! the system's binaries in temporary directories, on loopback, and stopped and deleted on drop. Tests of the
//! store's backends, of several nodes sharing one store and of storage faults use them; the conformance suite
//! every backend passes stays in `tessera-store` (feature `conformance`). Not published: test code, which panics
//! naming what went wrong (or what to install) rather than returning errors.
//!
//! # Ports: the server proves it is ours
//!
//! Neither server can pick a free TCP port itself and report it (`redis-server --port 0` turns TCP off, and
//! PostgreSQL has no such option), so a port is chosen the usual way — bind port 0, read the port, release it —
//! and two things close the race in which another test's server takes that port before ours does:
//!
//! - **The reservation is held as long as possible**: the probing socket stays bound until just before the
//!   server is spawned, so the window is one `fork`/`exec`, not a whole set-up.
//! - **Readiness proves identity, not just an answer on the port.** A server that answers is accepted only if
//!   it is the one this test started: Redis must report, in `CONFIG GET dir`, the temporary directory this test
//!   gave it; PostgreSQL must report, in `SHOW data_directory`, the data directory this test created (and be
//!   reachable through the Unix socket in this test's own socket directory, a file only our postmaster creates).
//!   A server that lost the race exits (address in use); on a first start the launch is then retried on another
//!   port, up to a few times. A restart must keep its port (the tests hold its URL): if the port was taken
//!   meanwhile, the restart fails saying so, instead of handing the test somebody else's server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code

mod postgres;
mod process;
mod redis;

pub use postgres::Postgres;
pub use redis::{Redis, RedisCluster};
