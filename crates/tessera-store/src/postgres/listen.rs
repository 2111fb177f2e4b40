//! Revocation-log growth pushed to every node: one connection per store LISTENs on [`LOG_CHANNEL`], which every
//! log write NOTIFYs when it commits, and signals [`Store::log_changes`](crate::Store::log_changes).

use tokio_postgres::NoTls;

/// The channel nodes LISTEN on for revocation-log growth.
pub(super) const LOG_CHANNEL: &str = "tessera_log";
/// Wait before reconnecting a lost LISTEN connection.
const RELISTEN_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// Keeps one connection LISTENing on [`LOG_CHANNEL`] and bumps `changes` on every notification, reconnecting
/// when the connection is lost (and bumping then too: notifications may have been missed meanwhile).
pub(super) async fn listen(config: tokio_postgres::Config, changes: tokio::sync::watch::Sender<u64>) {
    use futures_util::StreamExt as _;
    let changes = std::sync::Arc::new(changes);
    let bump = |changes: &tokio::sync::watch::Sender<u64>| changes.send_modify(|n| *n = n.wrapping_add(1));
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                // The connection delivers notifications as it is driven; the client issues LISTEN meanwhile.
                let notified = std::sync::Arc::clone(&changes);
                let mut driver = tokio::spawn(async move {
                    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(tokio_postgres::AsyncMessage::Notification(_)) => bump(&notified),
                            Ok(_) => {}
                            Err(err) => {
                                tracing::warn!(error = %err, "PostgreSQL LISTEN connection lost; reconnecting");
                                break;
                            }
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {LOG_CHANNEL}")).await {
                    Ok(()) => {
                        bump(&changes);
                        let _ = (&mut driver).await;
                    }
                    Err(err) => tracing::warn!(error = %err, "PostgreSQL LISTEN failed; retrying"),
                }
                driver.abort();
            }
            Err(err) => tracing::warn!(error = %err, "PostgreSQL LISTEN connection failed; retrying"),
        }
        bump(&changes);
        tokio::time::sleep(RELISTEN_DELAY).await;
    }
}
