//! Long-lived sessions (WebSocket, SSE) that the gateway can end from outside.
//!
//! Pingora has no hook to end a live proxied session. The upstream connection of every session is
//! therefore made by a [`SessionConnector`] (a custom L4 connector) whose socket checks a cut flag
//! on every read and write, and is woken when the flag is set. Cutting a backend's sessions fails
//! their upstream sockets at once; Pingora then closes both sides, and clients reconnect through
//! the gateway to a healthy backend, as haproxy's `on-marked-down shutdown-sessions` made them do.
//!
//! Session connections use their own pool key, so plain requests never ride on them.

use async_trait::async_trait;
use futures::task::AtomicWaker;
use pingora::connectors::L4Connect;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::l4::stream::Stream;
use pingora::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use pingora::{Error, ErrorType, OrErr, Result};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Why sessions were cut, as counted in `ssv_ha_sessions_cut_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutReason {
    /// The backend was marked down.
    BackendDown,
    /// A better backend (the primary) is healthy again.
    FailBack,
    /// The gateway is shutting down.
    Shutdown,
    /// Nothing crossed the session for `timeouts.websocket_idle` (counted, not caused, here).
    Idle,
    /// A configuration reload removed or replaced the backend.
    Removed,
}

impl CutReason {
    /// Its label in the metrics.
    pub fn as_str(self) -> &'static str {
        crate::metrics::CUT_REASONS[self.index()]
    }

    /// Every reason, in the order of [`CutReason::index`].
    pub const ALL: [CutReason; 5] = [
        CutReason::BackendDown,
        CutReason::FailBack,
        CutReason::Shutdown,
        CutReason::Idle,
        CutReason::Removed,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    /// Why, in words, for the recent events.
    pub fn describe(self) -> &'static str {
        match self {
            CutReason::BackendDown => "the backend went down",
            CutReason::FailBack => "fail-back: a better backend is healthy again",
            CutReason::Shutdown => "the gateway is stopping",
            CutReason::Idle => "idle for longer than timeouts.websocket_idle",
            CutReason::Removed => "a reload removed or replaced the backend",
        }
    }
}

/// The cut switch shared by one session's socket and the registry.
#[derive(Debug, Default)]
struct CutHandle {
    cut: AtomicBool,
    read: AtomicWaker,
    write: AtomicWaker,
}

impl CutHandle {
    fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        self.read.wake();
        self.write.wake();
    }
}

/// The live session connections to one backend.
#[derive(Debug, Default)]
pub struct Sessions {
    live: Mutex<Vec<Weak<CutHandle>>>,
}

impl Sessions {
    /// Ends every live session connection; returns how many were live.
    pub fn cut_all(&self) -> usize {
        let handles: Vec<Weak<CutHandle>> = std::mem::take(&mut *self.lock());
        handles
            .iter()
            .filter_map(Weak::upgrade)
            .map(|h| h.cut())
            .count()
    }

    fn register(&self) -> Arc<CutHandle> {
        let handle = Arc::new(CutHandle::default());
        let mut live = self.lock();
        // Forget sockets that are gone when the list is full, rather than on every new session:
        // the list stays within a few times the live sessions, and a new session costs O(1)
        // amortized.
        if live.len() == live.capacity() {
            live.retain(|h| h.strong_count() > 0);
            // Mostly live: grow, so the next sweep is as many sessions away as there are now.
            let len = live.len();
            if len * 2 > live.capacity() {
                live.reserve(len);
            }
        }
        live.push(Arc::downgrade(&handle));
        handle
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<CutHandle>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Connects session sockets for one backend endpoint and registers them with its [`Sessions`].
#[derive(Debug)]
pub struct SessionConnector {
    pub sessions: Arc<Sessions>,
    pub connect_timeout: Duration,
}

#[async_trait]
impl L4Connect for SessionConnector {
    async fn connect(&self, addr: &SocketAddr) -> Result<Stream> {
        let Some(inet) = addr.as_inet() else {
            return Error::e_explain(
                ErrorType::ConnectError,
                "session connections need an IP address",
            );
        };
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(inet)).await {
            Ok(tcp) => tcp.or_err(ErrorType::ConnectRefused, "connecting a session")?,
            Err(_) => return Error::e_explain(ErrorType::ConnectTimedout, "connecting a session"),
        };
        tcp.set_nodelay(true)
            .or_err(ErrorType::ConnectError, "setting TCP_NODELAY")?;
        // A session idles for up to an hour: a backend the network lost must show as an error.
        if let Err(e) =
            pingora::protocols::l4::ext::set_tcp_keepalive(&tcp, &super::connections::keepalive())
        {
            tracing::debug!(error = %e, "TCP keepalive not set on a session");
        }
        let socket = CuttableSocket {
            tcp,
            handle: self.sessions.register(),
        };
        Ok(Stream::from(VirtualSocketStream::new(Box::new(socket))))
    }
}

/// A TCP socket that fails every read and write once its session is cut.
#[derive(Debug)]
struct CuttableSocket {
    tcp: TcpStream,
    handle: Arc<CutHandle>,
}

/// The error a cut session's socket returns (and that its log lines carry).
pub const SESSION_CUT: &str = "session cut by ssv-ha";

fn cut_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, SESSION_CUT)
}

impl AsyncRead for CuttableSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.handle.read.register(cx.waker());
        if this.handle.cut.load(Ordering::Acquire) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for CuttableSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.handle.write.register(cx.waker());
        if this.handle.cut.load(Ordering::Acquire) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

impl VirtualSocket for CuttableSocket {
    fn set_socket_option(&self, opt: VirtualSockOpt) -> io::Result<()> {
        match opt {
            VirtualSockOpt::NoDelay => self.tcp.set_nodelay(true),
            // Keep-alive probes matter for idle pooled connections, which sessions are not.
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn every_cut_reason_has_its_own_metric_label() {
        assert_eq!(CutReason::ALL.len(), crate::metrics::CUT_REASONS.len());
        for (i, reason) in CutReason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason:?}");
            assert_eq!(reason.as_str(), crate::metrics::CUT_REASONS[i]);
        }
        assert_eq!(CutReason::BackendDown.as_str(), "backend_down");
        assert_eq!(CutReason::Removed.as_str(), "removed");
    }

    #[test]
    fn the_list_of_sessions_stays_as_short_as_the_live_ones_allow() {
        let sessions = Sessions::default();
        let held: Vec<_> = (0..100).map(|_| sessions.register()).collect();
        for _ in 0..10_000 {
            drop(sessions.register());
        }
        let len = sessions.lock().len();
        assert!(
            len <= 4 * held.len(),
            "{len} entries for {} live sessions",
            held.len()
        );
        drop(held);
        for _ in 0..1_000 {
            drop(sessions.register());
        }
        assert_eq!(sessions.cut_all(), 0, "nothing is live any more");
    }

    #[tokio::test]
    async fn cutting_ends_a_blocked_read_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sessions = Arc::new(Sessions::default());
        let connector = SessionConnector {
            sessions: sessions.clone(),
            connect_timeout: Duration::from_secs(1),
        };
        let mut stream = connector.connect(&SocketAddr::Inet(addr)).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        server.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();

        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            stream.read(&mut buf).await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(sessions.cut_all(), 1);
        let result = tokio::time::timeout(Duration::from_millis(100), reader)
            .await
            .expect("woken at once")
            .unwrap();
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
        assert_eq!(sessions.cut_all(), 0, "a cut session is forgotten");
    }
}
