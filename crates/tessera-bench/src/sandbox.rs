//! The server a benchmark measures: a `tessera` child process in a throwaway directory, configured only by the
//! benchmark (nothing from the caller's environment or files).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use tessera_jose::Algorithm;
use tessera_server::clock::{Clock as _, SystemClock};
use tessera_server::secrets::{OsRng, Rng as _};
use tessera_store::{PostgresStore, RedisSettings, RedisStore, SqliteStore, Store, TieredStore};

use crate::cli::BenchStore;
use crate::load::Scenario;

/// The benchmark user's name and password (scripts/lib/bench.sh uses the same).
pub(crate) const USER: &str = "bench";
pub(crate) const PASSWORD: &str = "bench password 0123456789";
/// The client an embedded verifier follows the revocation feed as (`embedded`).
pub(crate) const SERVICE_CLIENT: &str = "bench-service";

/// The database file `tessera serve` keeps in its data directory on the embedded store.
const DATABASE_FILE: &str = "tessera.db";

/// PostgreSQL connections the seeding of `restart` writes through (the server's default pool size).
const SEED_POOL_SIZE: usize = 16;

/// The `tessera` binary: the one named, or the one beside this program (`cargo build --release` puts both in
/// target/release).
pub(crate) fn tessera_binary(named: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match named {
        Some(path) => path.to_owned(),
        None => {
            let me = std::env::current_exe().context("locating this program")?;
            me.with_file_name(format!("tessera{}", std::env::consts::EXE_SUFFIX))
        }
    };
    anyhow::ensure!(
        path.is_file(),
        "no tessera binary at {}: build it (`cargo build --release -p tessera`) or name it with --tessera",
        path.display()
    );
    // The servers run in their sandbox directory: a relative path would name nothing there.
    Ok(std::path::absolute(&path)?)
}

/// Where a benchmark's server keeps its data.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
    Redis,
    Tiered,
}

impl Backend {
    /// SQLite; PostgreSQL; Redis (a cluster's writes wait for one replica); both, tiered.
    fn of(store: &BenchStore) -> Self {
        match (store.postgres_url.is_some(), store.redis_url.is_empty()) {
            (true, false) => Self::Tiered,
            (true, true) => Self::Postgres,
            (false, false) => Self::Redis,
            (false, true) => Self::Sqlite,
        }
    }

    /// The name `store.backend` takes in the server's configuration.
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Redis => "redis",
            Self::Tiered => "tiered",
        }
    }
}

/// The store's name in reports.
pub(crate) fn store_name(store: &BenchStore) -> &'static str {
    match Backend::of(store) {
        Backend::Redis if store.redis_cluster => "redis-cluster",
        backend => backend.name(),
    }
}

/// Replicas a write waits for: one in a cluster, none on a single development Redis.
fn wait_replicas(store: &BenchStore) -> u32 {
    u32::from(store.redis_cluster)
}

/// A throwaway data directory, and the environment every `tessera` child of a benchmark runs with.
pub(crate) struct Sandbox {
    exe: PathBuf,
    dir: PathBuf,
    alg: Algorithm,
    store: BenchStore,
    /// The admin API credential of this sandbox's server (random per run).
    admin_token: String,
    /// The master key sealing this sandbox's keys (random per run; a shared store refuses to start without one).
    master_key: String,
    /// Settings of the scenario, as environment variables (`TESSERA_TOKENS__ACCESS_TTL`, ...).
    settings: Vec<(&'static str, String)>,
}

impl Sandbox {
    pub(crate) fn new(exe: &Path, alg: Algorithm, store: BenchStore) -> anyhow::Result<Self> {
        let started = SystemClock.now_secs();
        let dir = std::env::temp_dir().join(format!("tessera-bench-{}-{started}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        // A shared store is configured in the sandbox's own configuration file (the children run in its
        // directory, and read ./tessera.toml).
        let backend = Backend::of(&store);
        if backend != Backend::Sqlite {
            // Nodes of a shared store must agree on the issuer (it refuses to start without one).
            let mut section =
                format!("issuer = \"http://tessera.bench\"\n[store]\nbackend = {}\n", toml_string(backend.name()));
            if let Some(url) = &store.postgres_url {
                section += &format!("postgres_url = {}\n", toml_string(url));
            }
            if !store.redis_url.is_empty() {
                let urls: Vec<String> = store.redis_url.iter().map(|url| toml_string(url)).collect();
                section += &format!(
                    "redis_urls = [{}]\nredis_cluster = {}\nredis_wait_replicas = {}\n",
                    urls.join(", "),
                    store.redis_cluster,
                    wait_replicas(&store)
                );
                if backend == Backend::Redis {
                    section += &format!("redis_log_partitions = {}\n", store.redis_log_partitions);
                }
            }
            std::fs::write(dir.join("tessera.toml"), section)?;
        }
        let mut secret = [0u8; 32];
        OsRng.fill(&mut secret)?;
        let admin_token = secret.iter().map(|byte| format!("{byte:02x}")).collect();
        let (_, master_key) = tessera_keys::MasterKey::generate()?;
        Ok(Self { exe: exe.to_owned(), dir, alg, store, admin_token, master_key, settings: Vec::new() })
    }

    /// The same sandbox, its server run with these settings (environment variables named as in
    /// `tessera.example.toml`).
    pub(crate) fn with_settings(mut self, settings: impl IntoIterator<Item = (&'static str, String)>) -> Self {
        self.settings.extend(settings);
        self
    }

    /// The admin API's credential of this sandbox's server.
    pub(crate) fn admin_token(&self) -> &str {
        &self.admin_token
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `tessera` with the benchmark's configuration (nothing from the caller's environment or files).
    fn command(&self) -> Command {
        let mut command = Command::new(&self.exe);
        command
            .current_dir(&self.dir)
            .env("TESSERA_DATA_DIR", self.data_dir())
            .env("TESSERA_KEYS__ALGORITHM", self.alg.as_str())
            .env("TESSERA_RATE_LIMITS__LOGIN_PER_IP", "100000000")
            .env("TESSERA_ADMIN_TOKEN", &self.admin_token)
            .env("TESSERA_MASTER_KEY", &self.master_key)
            .env("RUST_LOG", "warn")
            .envs(self.settings.iter().map(|(name, value)| (name, value)))
            .env_remove("TESSERA_CONFIG");
        command
    }

    /// The store the server will use, opened directly through the store library, for filling it before the
    /// server starts.
    pub(crate) async fn store(&self) -> anyhow::Result<Arc<dyn Store>> {
        let store = &self.store;
        let settings = RedisSettings {
            cluster: store.redis_cluster,
            wait_replicas: wait_replicas(store),
            // Tiered keeps its log in PostgreSQL.
            log_partitions: if Backend::of(store) == Backend::Redis {
                usize::from(store.redis_log_partitions)
            } else {
                1
            },
            ..RedisSettings::default()
        };
        let redis = || RedisStore::connect_with(&store.redis_url, settings);
        let postgres = || async {
            let url = store.postgres_url.as_deref().context("no PostgreSQL URL")?;
            anyhow::Ok(PostgresStore::connect(url, SEED_POOL_SIZE).await?)
        };
        Ok(match Backend::of(store) {
            Backend::Sqlite => {
                // Owner-only, as `tessera serve` makes it (it warns about a data directory open to others).
                let mut builder = std::fs::DirBuilder::new();
                builder.recursive(true);
                #[cfg(unix)]
                std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
                builder.create(self.data_dir())?;
                Arc::new(SqliteStore::open(&self.data_dir().join(DATABASE_FILE))?)
            }
            Backend::Postgres => Arc::new(postgres().await?),
            Backend::Redis => Arc::new(redis().await?),
            Backend::Tiered => {
                let (redis, postgres) = tokio::try_join!(async { anyhow::Ok(redis().await?) }, postgres())?;
                Arc::new(TieredStore::new(redis, postgres))
            }
        })
    }

    /// Starts `tessera serve` on a free port; returns once it listens.
    pub(crate) fn serve(&self) -> anyhow::Result<(Child, SocketAddr)> {
        let mut child = self
            .command()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let addr = line.trim().strip_prefix("listening on http://").context("the server did not start")?.parse();
        match addr {
            Ok(addr) => Ok((child, addr)),
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(err.into())
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running `tessera serve` with the benchmark's user (and client) set up. Fields drop in order: the server is
/// stopped before its directory goes.
pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) addr: SocketAddr,
    /// What the scenario authenticates with: the benchmark client's secret (client credentials) or the admin
    /// API's credential (revocations).
    pub(crate) credential: Option<String>,
    _sandbox: Sandbox,
}

impl ServerProcess {
    pub(crate) fn start(exe: &Path, alg: Algorithm, scenario: Scenario, store: &BenchStore) -> anyhow::Result<Self> {
        let sandbox = Sandbox::new(exe, alg, store.clone())?;
        sandbox.add_user()?;
        let credential = if matches!(scenario, Scenario::Revoke | Scenario::Verify { .. }) {
            Some(sandbox.admin_token.clone())
        } else if scenario == Scenario::ClientCredentials {
            Some(sandbox.add_client("bench", "api", "read")?)
        } else if let Scenario::CodeExchange { rs256_id_tokens, .. } = scenario {
            sandbox.add_app(rs256_id_tokens)?;
            None
        } else if scenario == Scenario::LoginPage {
            sandbox.add_app(false)?;
            None
        } else {
            None
        };
        Self::launch(sandbox, credential)
    }

    /// A server on the SQLite store with the benchmark's user and a service's client ([`SERVICE_CLIENT`], allowed
    /// to read the revocation feed), whose secret is the credential.
    pub(crate) fn start_for_a_service(exe: &Path, alg: Algorithm) -> anyhow::Result<Self> {
        let sandbox = Sandbox::new(exe, alg, BenchStore::default())?;
        sandbox.add_user()?;
        let secret = sandbox.add_client(SERVICE_CLIENT, "tessera", tessera_model::REVOCATION_FEED_SCOPE)?;
        Self::launch(sandbox, Some(secret))
    }

    fn launch(sandbox: Sandbox, credential: Option<String>) -> anyhow::Result<Self> {
        let (child, addr) = sandbox.serve()?;
        Ok(Self { child, addr, credential, _sandbox: sandbox })
    }
}

impl Sandbox {
    fn add_user(&self) -> anyhow::Result<()> {
        let mut adding = self
            .command()
            .args(["user", "add", USER, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        adding.stdin.take().context("stdin")?.write_all(format!("{PASSWORD}\n").as_bytes())?;
        if !adding.wait()?.success() {
            bail!("could not add the benchmark user");
        }
        Ok(())
    }

    /// Adds a client (`client_credentials`); its secret.
    fn add_client(&self, id: &str, audience: &str, scope: &str) -> anyhow::Result<String> {
        let output =
            self.command().args(["client", "add", id, "--audience", audience, "--scope", scope, "--json"]).output()?;
        let added: serde_json::Value =
            serde_json::from_slice(&output.stdout).context("could not add the benchmark client")?;
        Ok(added.get("client_secret").and_then(serde_json::Value::as_str).context("no client secret")?.to_owned())
    }
}

impl Sandbox {
    /// Adds [`BENCH_APP`]: a public, first-party code-flow client (no consent page) redirecting to
    /// [`BENCH_REDIRECT_URI`], registered for RS256 ID tokens when `rs256_id_tokens`.
    fn add_app(&self, rs256_id_tokens: bool) -> anyhow::Result<()> {
        let mut command = self.command();
        command.args(["client", "add", BENCH_APP, "--public", "--first-party", "--scope", "openid"]);
        command.args(["--redirect-uri", BENCH_REDIRECT_URI]);
        if rs256_id_tokens {
            command.args(["--id-token-alg", "RS256"]);
        }
        let added = command.output()?;
        if !added.status.success() {
            bail!("could not add the benchmark app: {}", String::from_utf8_lossy(&added.stderr));
        }
        Ok(())
    }
}

/// The code-flow client of the code-exchange benchmark.
pub(crate) const BENCH_APP: &str = "bench-app";
/// Its redirect URI (nothing listens there: the generator reads the code from `Location`).
pub(crate) const BENCH_REDIRECT_URI: &str = "http://127.0.0.1/cb";

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}
