//! `tessera revoke`: a revocation written to the store directly, for operators. Running servers pick it up from
//! the revocation log within their reload interval.

use std::process::ExitCode;

use tessera_store::Provenance;

use crate::config::Config;

pub(crate) fn run(
    config: &Config,
    jti: Option<String>,
    sid: Option<String>,
    sub: Option<String>,
    before: Option<i64>,
    reason: String,
) -> anyhow::Result<ExitCode> {
    let now = crate::now_ms();
    let revocation = tessera_revocation::operator_request(jti, sid, sub, before, now, config.retention())?;
    if reason.len() > tessera_revocation::MAX_ID_LEN {
        anyhow::bail!("the reason is too long (at most {} bytes)", tessera_revocation::MAX_ID_LEN);
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let changed = runtime.block_on(async {
        let store = crate::store::open(config).await?;
        anyhow::Ok(store.revoke(revocation.clone(), Provenance::new("cli", reason), now).await?)
    })?;
    let what = serde_json::to_string(&revocation)?;
    if changed {
        println!("revoked: {what}");
    } else {
        println!("already revoked (nothing changed): {what}");
    }
    Ok(ExitCode::SUCCESS)
}
