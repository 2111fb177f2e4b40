//! The accept loop of both listeners, plain and TLS: each connection served by hyper (HTTP/1.1, and HTTP/2 by
//! ALPN or prior knowledge), with time limits on slow clients, so nobody holds a socket by sending nothing.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::ConnectInfo;
use axum::middleware::AddExtension;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsAcceptor;

/// How long slow clients may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// The TLS handshake.
    pub(crate) handshake: Duration,
    /// Each request's head, from the connection's start or the previous request's end.
    pub(crate) header_read: Duration,
}

/// How long the accept loop pauses after a failure that is not one connection's own (out of file descriptors,
/// say): trying again at once would only spin.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `router` on `listener`, over TLS when an acceptor is given, until `shutdown`; then lets open
/// connections finish.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    if !is_connection_error(&err) {
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // The peer's address, added to each request by a wrapper around the router (as `axum::serve` does):
        // `Router::layer` instead would rebuild every route for every connection.
        let service = tower::Layer::layer(&axum::Extension(ConnectInfo::<SocketAddr>(peer)), router.clone());
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let served = match tls {
                None => serve_connection(stream, service, timeouts.header_read, watcher).await,
                Some(acceptor) => match tokio::time::timeout(timeouts.handshake, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve_connection(stream, service, timeouts.header_read, watcher).await,
                    Ok(Err(err)) => {
                        tracing::debug!(error = %err, %peer, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
            };
            if let Err(err) = served {
                tracing::debug!(error = %err, %peer, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// Serves one connection until it ends, or until shutdown once its requests in flight are answered.
async fn serve_connection<S>(
    stream: S,
    service: AddExtension<Router, ConnectInfo<SocketAddr>>,
    header_read: Duration,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(ConnectionTimer::default()).header_read_timeout(header_read);
    let io = TokioIo::new(FirstBytesDeadline::new(stream, header_read));
    watcher.watch(builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service)).into_owned()).await
}

/// hyper's timer for the header-read timeout of one connection, with one timer entry for the connection's life
/// instead of one per request. hyper makes a new wait for every request's head and drops it once the head is
/// read; with `hyper_util`'s `TokioTimer` each wait registers a timer entry and removes it again under the
/// runtime's timer-wheel lock, which cost `/verify` about 8% of its throughput (BENCHMARKS.md, issue #15). Here
/// every wait of the connection shares one entry: a wait only notes its deadline, and the entry, when it fires
/// before the current deadline (a later request's), is moved on to it.
#[derive(Debug, Clone, Default)]
struct ConnectionTimer {
    entry: Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>,
}

impl hyper::rt::Timer for ConnectionTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let now = tokio::time::Instant::now();
        // A duration too long to add is as good as never (tokio's own `sleep` does the same).
        let deadline = now.checked_add(duration).unwrap_or_else(|| now + FAR_FUTURE);
        Box::pin(SharedSleep { deadline, entry: Arc::clone(&self.entry) })
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(SharedSleep { deadline: deadline.into(), entry: Arc::clone(&self.entry) })
    }

    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// About 30 years: later than any connection lives.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// One wait of a [`ConnectionTimer`]: its deadline, and the connection's timer entry.
struct SharedSleep {
    deadline: tokio::time::Instant,
    entry: Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>,
}

impl Future for SharedSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        // Only this connection's task polls it: the lock is never contended. A poisoned lock means a panic
        // while polling a timer; the entry is still sound, so carry on with it.
        let mut entry = self.entry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let armed = entry.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if armed.deadline() > deadline {
            armed.as_mut().reset(deadline);
        }
        while armed.as_mut().poll(cx).is_ready() {
            if armed.deadline() >= deadline {
                return Poll::Ready(());
            }
            armed.as_mut().reset(deadline);
        }
        Poll::Pending
    }
}

impl hyper::rt::Sleep for SharedSleep {}

/// Failures of one incoming connection (it went away before it was accepted): the next one may be fine.
fn is_connection_error(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(err.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// Bytes a connection must send within the header-read timeout before hyper's own timeout takes over: the
/// length of the HTTP/2 connection preface, which hyper reads to tell HTTP/2 from HTTP/1.1 without a timeout
/// of its own.
const FIRST_BYTES: usize = 24;

/// A connection whose first [`FIRST_BYTES`] bytes must arrive before a deadline; a read still waiting for them
/// then fails (and hyper closes the connection). Later reads are passed through untouched.
struct FirstBytesDeadline<S> {
    stream: S,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    awaited: usize,
}

impl<S> FirstBytesDeadline<S> {
    fn new(stream: S, within: Duration) -> Self {
        Self { stream, deadline: Some(Box::pin(tokio::time::sleep(within))), awaited: FIRST_BYTES }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstBytesDeadline<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        let Some(deadline) = &mut this.deadline else { return polled };
        match polled {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len().saturating_sub(before);
                this.awaited = this.awaited.saturating_sub(read);
                // Done waiting: enough bytes, or the end of the stream (which hyper handles).
                if this.awaited == 0 || read == 0 {
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no request within the timeout")))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstBytesDeadline<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use hyper::rt::Timer as _;

    use super::*;

    /// hyper makes a new wait for each request's head on a keep-alive connection: each ends at its own deadline,
    /// although they share one timer entry armed for the first.
    #[tokio::test(start_paused = true)]
    async fn each_wait_ends_at_its_own_deadline_on_the_connections_one_timer_entry() {
        let timer = ConnectionTimer::default();
        let start = tokio::time::Instant::now();
        let mut first = timer.sleep(Duration::from_secs(10));
        assert!(futures_util::FutureExt::now_or_never(first.as_mut()).is_none(), "armed, not elapsed");
        drop(first);
        tokio::time::advance(Duration::from_secs(6)).await;
        let mut second = timer.sleep_until((start + Duration::from_secs(16)).into_std());
        tokio::time::advance(Duration::from_secs(5)).await;
        let pending = futures_util::FutureExt::now_or_never(second.as_mut());
        assert!(pending.is_none(), "the first deadline has passed, the second not");
        second.await;
        assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(16));
        let third = timer.sleep(Duration::from_secs(3));
        third.await;
        assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(19), "an earlier deadline is honoured too");
    }
}
