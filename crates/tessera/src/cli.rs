//! The command line: every command, flag and help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tessera_jose::Algorithm;

/// Tessera: a strict, fast JWT token service.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Configuration file [default: ./tessera.toml when present].
    #[arg(long, global = true, env = "TESSERA_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Data directory holding the signing keys [default: ./tessera-data].
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the token service (login, refresh, logout, /verify, JWKS) on a durable embedded store.
    Serve {
        /// Address to listen on [default: server.listen, 127.0.0.1:8080].
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Manage service clients (client credentials, introspection); works on the store directly.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage users who log in with a password (works on the store directly; a running server sees it at once).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage signing keys: generate, import, list, rotate, publish.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Revoke a token (by jti), a session (by sid) or everything a subject was issued (by sub), on the store
    /// directly: a running server applies it within its reload interval. Who and why are kept for audit.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["jti", "sid", "sub"])))]
    Revoke {
        /// An access token's `jti` (tokens derived from it by exchange die with it).
        // Identifiers are base64url: one random identifier in 64 starts with '-', and must not be taken for a
        // flag.
        #[arg(long, value_name = "JTI", allow_hyphen_values = true)]
        jti: Option<String>,
        /// A session id (`sid`): its refresh tokens and every access token carrying it.
        #[arg(long, value_name = "SID", allow_hyphen_values = true)]
        sid: Option<String>,
        /// A subject (`sub`): every session and token issued to it until now (or --before).
        #[arg(long, value_name = "SUB", allow_hyphen_values = true)]
        sub: Option<String>,
        /// With --sub: revoke what was issued up to this instant (Unix seconds), not later.
        #[arg(long, value_name = "UNIX_SECONDS", requires = "sub")]
        before: Option<i64>,
        /// Why, kept with the revocation.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Issue, verify and inspect tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Move users from legacy session cookies to tokens: the rollout's status, a new phase, the kill switch.
    /// Talks to a running server's admin API (`server.listen`, or --url; the admin credential from
    /// TESSERA_ADMIN_TOKEN or server.admin_token_file), which records who changed what.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// The security events a running server recorded (reuse detected, sessions revoked, logins locked, key
    /// rotations, admin changes), newest first. Talks to its admin API (`server.listen`, or --url; the admin
    /// credential from TESSERA_ADMIN_TOKEN or server.admin_token_file).
    Events(EventsArgs),
    /// Work on the shared store itself, with every node stopped.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Security audit of a JWT or a key set: findings with severity, evidence and fixes. Exits 1 when anything
    /// HIGH or CRITICAL is found.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `tessera store ...`
#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Moves the Redis revocation log to another number of partitions (`store.redis_log_partitions`), every entry
    /// to the partition it belongs to in the new number. Stop every node first, run this, then start them with
    /// the new number; interrupted, run it again. Nodes refuse to start while the number differs.
    Repartition {
        /// The new number of partitions (1 to 1024).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
        partitions: u16,
    },
}

/// `tessera keys ...`
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Generate a signing key. On an empty keyring it signs at once; otherwise it is published first and signs
    /// after the pre-publication period, unless --now.
    Generate {
        /// Algorithm.
        #[arg(long, value_parser = signing_algorithm)]
        alg: Algorithm,
        /// RSA modulus size (RS256 only).
        #[arg(long, default_value_t = 2048, value_parser = rsa_bits)]
        bits: u32,
        #[command(flatten)]
        activation: ActivationArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Import a private key from a PEM (PKCS#8, PKCS#1, SEC1) or JWK file.
    Import {
        /// The key file.
        file: PathBuf,
        #[command(flatten)]
        activation: ActivationArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List keys with their phases (next, active, retired): the signing keys, then the RS256 keys of ID tokens.
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Rotate: schedule a successor of the configured algorithm, or with --now, switch immediately.
    Rotate {
        /// Rotate the RS256 keys kept for ID tokens (keys.rs256_id_tokens) instead of the signing keys.
        #[arg(long)]
        rs256: bool,
        #[command(flatten)]
        activation: ActivationArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Print the public JWKS (RFC 7517).
    Jwks,
    /// Print a new random master key for encrypting keys at rest (set it as TESSERA_MASTER_KEY).
    MasterKey,
    /// Rotate the MAC keys of refresh and CSRF tokens: every node learns the successor at once, and it makes
    /// tokens two minutes later (or at once with --now). Tokens made with the previous key stay valid until the
    /// next rotation, so no session is lost.
    RotateSecrets {
        /// Make tokens with the successor at once. On several nodes, a node that has not reloaded yet refuses
        /// them for up to one reload interval. Run twice to stop accepting the key before the previous one (for
        /// a leaked key), which ends the sessions that have not refreshed since.
        #[arg(long)]
        now: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Seal (encrypt and authenticate) under the master key a keyring and secrets written before one was set.
    /// Until then, Tessera refuses them: with a master key, an unsealed entry may have been planted.
    Seal,
}

/// `tessera audit ...`
#[derive(Debug, Subcommand)]
#[expect(clippy::large_enum_variant, reason = "parsed once per run: the size of the command line is no cost")]
pub(crate) enum AuditCommand {
    /// Static findings on one token; HMAC secrets are cracked from a built-in list, a wordlist and a brute force.
    Token {
        /// The token, or - to read it from standard input.
        token: String,
        /// The issuer's key set (file or http(s) URL): checks the signature and the algorithm against the key.
        #[arg(long, value_name = "FILE_OR_URL")]
        jwks: Option<String>,
        /// Extra secrets to try, one per line (the common jwt.secrets.list format; CRLF is fine).
        #[arg(long, value_name = "FILE")]
        wordlist: Option<std::path::PathBuf>,
        /// Brute-force every lower-case alphanumeric secret up to this length (0 to 6).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(0..=6))]
        brute_force_length: u8,
        /// Lifetimes (exp − iat) longer than this are a finding.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        max_lifetime: std::time::Duration,
        /// Evaluate time claims at this instant (seconds since the epoch) instead of now.
        #[arg(long, value_name = "UNIX_TIME")]
        at: Option<i64>,
        #[command(flatten)]
        format: FormatArgs,
    },
    /// Active probe of a live endpoint with forged variants of a valid token; exits 1 if any is accepted. Sends
    /// traffic only to URL and to its own loopback listener (the attacker key set for jku/x5u). With
    /// --authorize-client, URL is an OAuth authorization endpoint instead, probed for loose redirect URI
    /// matching, PKCE downgrades, a dropped state, a missing iss and open redirects (no token needed).
    Endpoint {
        /// The endpoint, e.g. http://127.0.0.1:8080/verify (or /oauth2/authorize with --authorize-client).
        url: String,
        /// A valid token the endpoint accepts.
        #[arg(long, required_unless_present = "authorize_client")]
        token: Option<String>,
        /// URL is an authorization endpoint: probe it as this registered client (with --redirect-uri).
        #[arg(long, value_name = "CLIENT_ID", requires = "redirect_uri",
              conflicts_with_all = ["token", "introspect_as", "protected_path", "jwks", "reject"])]
        authorize_client: Option<String>,
        /// A redirect URI registered for --authorize-client.
        #[arg(long, value_name = "URI", requires = "authorize_client")]
        redirect_uri: Option<String>,
        /// The scope the authorization probes ask for.
        #[arg(long, default_value = "openid", requires = "authorize_client")]
        scope: String,
        /// Header carrying the token; `authorization` gets `Bearer TOKEN`, any other the bare token.
        #[arg(long, default_value = "authorization")]
        header: String,
        /// HTTP method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// The issuer's public key set (file or URL), for the key-confusion probes.
        #[arg(long, value_name = "FILE_OR_URL")]
        jwks: Option<String>,
        /// A token the endpoint must refuse (expired, wrong audience, revoked, ...); repeatable.
        #[arg(long = "reject", value_name = "TOKEN")]
        reject: Vec<String>,
        /// Per-request timeout.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// Probe an RFC 7662 introspection endpoint: POST `token=...` as this client (with --client-secret);
        /// a token counts as accepted when the answer says `"active": true`.
        #[arg(long, value_name = "CLIENT_ID", requires = "client_secret")]
        introspect_as: Option<String>,
        /// The introspecting client's secret (generated secrets may begin with `-`, which is accepted here).
        #[arg(long, allow_hyphen_values = true)]
        client_secret: Option<String>,
        /// URL is a forward-authentication endpoint (e.g. /verify): also probe for gateway bypasses (competing
        /// forwarded headers, other spellings of a path), starting from this path, on which the token must be
        /// refused (401 or 403), e.g. /admin/users.
        #[arg(long, value_name = "PATH", conflicts_with = "introspect_as")]
        protected_path: Option<String>,
        /// The method of the request the token must be refused for.
        #[arg(long, value_name = "METHOD", default_value = "GET", requires = "protected_path")]
        protected_method: String,
        /// A path on which the token must be allowed with GET.
        #[arg(long, value_name = "PATH", default_value = "/", requires = "protected_path")]
        allowed_path: String,
        /// How the gateway names the original request to the endpoint.
        #[arg(long, value_enum, default_value_t = GatewayStyle::Auto, requires = "protected_path")]
        style: GatewayStyle,
        #[command(flatten)]
        format: FormatArgs,
    },
    /// Findings on a source tree (a directory or one file), read only, never built or run: JWT misuse in
    /// JavaScript, TypeScript, Python, Go, Java, Kotlin, Rust, PHP and C# code (client-side signing, algorithms
    /// taken from the token, disabled checks, hard-coded and weak secrets, header values in paths, queries,
    /// commands and URLs, tokens in web storage or unprotected cookies), and JWT libraries its lockfiles pin at
    /// versions with published advisories. Exits 1 on a HIGH or CRITICAL finding.
    Source {
        /// The directory or file.
        path: std::path::PathBuf,
        /// A newer advisory table in the shipped format (see docs/audit.md), used instead of the shipped one.
        #[arg(long, value_name = "FILE")]
        advisories: Option<std::path::PathBuf>,
        /// Also analyse test code (test directories and files, Rust `#[cfg(test)]` modules), which is left out by
        /// default: tests use throwaway secrets and switch checks off on purpose.
        #[arg(long)]
        include_tests: bool,
        /// More known secrets to check hard-coded ones against, one per line (the jwt.secrets.list format).
        #[arg(long, value_name = "FILE")]
        wordlist: Option<std::path::PathBuf>,
        #[command(flatten)]
        format: FormatArgs,
    },
    /// Findings on a JWK Set: private or symmetric keys published, weak RSA, duplicate kids, cache headers.
    Jwks {
        /// The key set: a file or an http(s) URL.
        source: String,
        #[command(flatten)]
        format: FormatArgs,
    },
}

/// `--style`: how a gateway names the original request to a forward-authentication endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum GatewayStyle {
    /// Every style below whose baseline holds.
    Auto,
    /// nginx `auth_request`: X-Original-Method and X-Original-URI headers.
    Nginx,
    /// Traefik ForwardAuth: X-Forwarded-Method and X-Forwarded-Uri headers.
    Traefik,
    /// Envoy `ext_authz` with a path_prefix: the original method, and the original path behind URL's path.
    Envoy,
}

/// Report format.
#[derive(Debug, Args)]
pub(crate) struct FormatArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub(crate) format: ReportFormat,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportFormat {
    /// A text table.
    Table,
    /// JSON.
    Json,
    /// SARIF 2.1.0, for code-scanning dashboards.
    Sarif,
    /// A Markdown audit report: summary, findings by severity, risk matrix, remediation priorities.
    Markdown,
}

/// `tessera client ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ClientCommand {
    /// Add a client; its generated secret (256 bits) is printed once and never again. With --jwks it
    /// authenticates with `private_key_jwt` (RFC 7523) instead and has no secret. With --redirect-uri it signs
    /// users in through `/oauth2/authorize` (authorization code with PKCE, OpenID Connect), as a --confidential
    /// client (a server-side app: a secret or keys) or a --public one (a browser or native app: neither).
    Add {
        /// `client_id` (letters, digits, `.`, `_`, `-`).
        id: String,
        /// Space-separated scopes the client may ask for (`openid profile email` to sign users in with OpenID
        /// Connect).
        #[arg(long, default_value = "")]
        scope: String,
        /// Audience the client may ask tokens for; repeatable. Required unless the client signs users in.
        #[arg(long = "audience", required_unless_present = "redirect_uris")]
        audiences: Vec<String>,
        /// Where the client may have codes sent, matched exactly (a loopback `http` URI on any port); repeatable.
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        /// Where the client may send the browser after a logout it asks for, matched exactly; repeatable.
        #[arg(long = "post-logout-redirect-uri", value_name = "URI", requires = "redirect_uris")]
        post_logout_redirect_uris: Vec<String>,
        /// A public client (browser or native app): no secret, PKCE alone binds its codes.
        #[arg(long, requires = "redirect_uris", conflicts_with_all = ["confidential", "jwks"])]
        public: bool,
        /// A confidential client (a server-side app): authenticates with its secret (or --jwks keys).
        #[arg(long, requires = "redirect_uris")]
        confidential: bool,
        /// The client must push its authorization requests first (RFC 9126).
        #[arg(long, requires = "redirect_uris")]
        require_par: bool,
        /// An application of this operator: users are not asked to consent to it.
        #[arg(long, requires = "redirect_uris")]
        first_party: bool,
        /// How its ID tokens are signed (`id_token_signed_response_alg`): keys.algorithm (the default) or RS256,
        /// for applications that accept nothing else.
        #[arg(long, value_name = "ALG", requires = "redirect_uris", value_parser = signing_algorithm)]
        id_token_alg: Option<Algorithm>,
        /// Grants, comma-separated: client_credentials, token_exchange, legacy_session (token exchange of a legacy
        /// session cookie for a user session, while a migration from legacy sessions runs).
        #[arg(long, value_delimiter = ',', default_value = "client_credentials", value_parser = ["client_credentials", "token_exchange", "legacy_session"])]
        grant: Vec<String>,
        /// The client's public keys (a JWKS file): it signs client assertions (`private_key_jwt`) with them.
        #[arg(long, value_name = "FILE")]
        jwks: Option<std::path::PathBuf>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List clients (never their secrets).
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Disable a client: it can no longer authenticate.
    Disable {
        /// `client_id`.
        id: String,
    },
    /// Replace the public keys of a `private_key_jwt` client; its tokens issued until now stop working.
    SetJwks {
        /// `client_id`.
        id: String,
        /// The new JWKS file.
        file: std::path::PathBuf,
    },
    /// Replace a client's secret; the new one is printed once, the old one and the tokens issued with it stop
    /// working (a running server applies it within its reload interval).
    RotateSecret {
        /// `client_id`.
        id: String,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// `tessera user ...`
#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Add a user. The password is prompted for, or read from standard input with --password-stdin.
    Add {
        /// Login name (also the `sub` of their tokens).
        name: String,
        /// Role, copied into the `roles` claim; repeatable.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        /// Full name, released to applications with the `profile` scope.
        #[arg(long = "name", value_name = "NAME")]
        full_name: Option<String>,
        /// Email address, released to applications with the `email` scope.
        #[arg(long)]
        email: Option<String>,
        /// Vouch that the email address is the user's (`email_verified`).
        #[arg(long, requires = "email")]
        email_verified: bool,
    },
    /// List users.
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Disable a user: no login or refresh, and every outstanding token of theirs stops verifying.
    Disable {
        /// Login name.
        name: String,
    },
    /// Enable a disabled user again (old sessions stay ended).
    Enable {
        /// Login name.
        name: String,
    },
    /// Set a user's password and end every session and access token they hold (a changed password usually
    /// means the old one leaked).
    SetPassword {
        /// Login name.
        name: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        /// Leave the user's sessions and access tokens alive.
        #[arg(long)]
        keep_sessions: bool,
    },
}

/// When a new key signs.
#[derive(Debug, Args)]
pub(crate) struct ActivationArgs {
    /// Sign with it immediately (for a compromised key). Caches that have not refetched the JWKS will refuse new
    /// tokens until they do.
    #[arg(long)]
    pub(crate) now: bool,
}

/// Output format.
#[derive(Debug, Args)]
pub(crate) struct OutputArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `tessera token ...`
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Issue a signed RFC 9068 access token with the active key.
    Issue {
        /// Subject (`sub`).
        #[arg(long)]
        sub: String,
        /// Audience (`aud`); repeat for several [default: tokens.audience].
        #[arg(long)]
        aud: Vec<String>,
        /// Space-separated scopes.
        #[arg(long)]
        scope: Option<String>,
        /// Lifetime, e.g. 15m [default: tokens.access_ttl].
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
        /// `client_id` [default: tokens.cli_client_id].
        #[arg(long)]
        client_id: Option<String>,
        /// Extra claim NAME=VALUE; VALUE is JSON when it parses as JSON, else a string. Repeatable.
        #[arg(long = "claim", value_name = "NAME=VALUE")]
        claims: Vec<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Verify a token: exit 0 and print its claims as JSON, or exit 1 with the reason.
    Verify {
        /// The token, or - to read it from standard input.
        token: String,
        /// Key set to verify with: a JWKS file or http(s) URL [default: the data directory's keys].
        #[arg(long, value_name = "FILE_OR_URL")]
        jwks: Option<String>,
        /// Required issuer [default: issuer; with --profile jws, none].
        #[arg(long)]
        iss: Option<String>,
        /// Accepted audience; repeat for several [default: tokens.audience; with --profile jws, any].
        #[arg(long)]
        aud: Vec<String>,
        /// Evaluate time claims at this instant (seconds since the epoch) instead of now.
        #[arg(long, value_name = "UNIX_TIME")]
        at: Option<i64>,
        /// What kind of token to expect.
        #[arg(long, value_enum, default_value_t = ProfileArg::Access)]
        profile: ProfileArg,
    },
    /// Decode a token without verifying it: header, claims, and times in plain words.
    Inspect {
        /// The token, or - to read it from standard input.
        token: String,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// `--profile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProfileArg {
    /// An RFC 9068 access token (typ at+jwt; iss, sub, aud, exp, iat, jti, client_id).
    Access,
    /// Any JWS: signature, algorithm policy, and whichever time claims are present.
    Jws,
}

fn signing_algorithm(text: &str) -> Result<Algorithm, String> {
    let alg: Algorithm = text.parse()?;
    if alg.can_sign() {
        Ok(alg)
    } else {
        Err(format!("{alg} is verify-only; Tessera signs with EdDSA, ES256 or RS256"))
    }
}

fn rsa_bits(text: &str) -> Result<u32, String> {
    match text {
        "2048" => Ok(2048),
        "3072" => Ok(3072),
        _ => Err("RSA keys are 2048 or 3072 bits".into()),
    }
}

/// `tessera migrate ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum MigrateCommand {
    /// The phase, who is steered, the history, and this node's token-path health against triggers and gates.
    Status {
        /// The admin API's JSON as it is.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: MigrateTarget,
    },
    /// Moves the rollout to a phase. An advance is refused while the current phase's gate does not hold.
    Set {
        /// off, canary, rollout, tokens-only or done.
        #[arg(long)]
        phase: String,
        /// With --phase rollout: the share of all users steered to tokens, in percent (0.1 is 0.1%).
        #[arg(long, default_value_t = 0.0)]
        percent: f64,
        /// A user steered to tokens from the canary phase on (repeat for several; replaces the list).
        #[arg(long = "canary-user", value_name = "USER")]
        canary_users: Vec<String>,
        /// A role whose holders are steered to tokens from the canary phase on (repeat; replaces the list).
        #[arg(long = "segment-role", value_name = "ROLE")]
        segment_roles: Vec<String>,
        /// Users whose legacy session has this attribute value, from the canary phase on (repeat; with
        /// --segment-role, replaces the segments). The attribute is one of the adapter's `attribute_fields`.
        #[arg(long = "segment-attribute", value_name = "NAME=VALUE")]
        segment_attributes: Vec<String>,
        /// Advance although the gate does not hold (recorded as forced).
        #[arg(long)]
        force: bool,
        /// Why, kept in the history.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        target: MigrateTarget,
    },
    /// The kill switch: everyone back to legacy sessions on every node within a second. Nobody is logged out.
    Rollback {
        /// Why, kept in the history.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        target: MigrateTarget,
    },
}

/// `tessera events`.
#[derive(Debug, clap::Args)]
pub(crate) struct EventsArgs {
    /// Only events of this kind (refresh_token_reuse, session_revoked, sessions_revoked_all, login_locked,
    /// key_rotated, key_entry_refused, admin_change, migration_auto_rollback).
    #[arg(long)]
    pub(crate) kind: Option<String>,
    /// Only events about this subject.
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) sub: Option<String>,
    /// Only events at or after this time: RFC 3339 in UTC (2026-08-04T10:00:00Z), or a duration ago (1h, 7d).
    #[arg(long, value_name = "TIME")]
    pub(crate) since: Option<String>,
    /// Only events before this time (as --since).
    #[arg(long, value_name = "TIME")]
    pub(crate) until: Option<String>,
    /// At most this many events.
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: usize,
    /// The admin API's JSON events as they are.
    #[arg(long)]
    pub(crate) json: bool,
    /// The server's base URL [default: http://<server.listen>].
    #[arg(long, value_name = "URL")]
    pub(crate) url: Option<String>,
}

/// Which server `tessera migrate` talks to, and as whom.
#[derive(Debug, clap::Args)]
pub(crate) struct MigrateTarget {
    /// The server's base URL [default: http://<server.listen>].
    #[arg(long, value_name = "URL")]
    pub(crate) url: Option<String>,
    /// Who is making the change, for the history [default: $USER@<host>].
    #[arg(long)]
    pub(crate) actor: Option<String>,
}
