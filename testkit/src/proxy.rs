//! A loopback TCP proxy that can cut its target off or slow it down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards connections from its own loopback port to `target` until cut.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    up: Arc<watch::Sender<bool>>,
    /// Microseconds each chunk from the target waits before the client gets it.
    latency: Arc<AtomicU64>,
}

impl TcpProxy {
    /// Starts forwarding to `target` (for example `127.0.0.1:5432`).
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), target).await
    }

    /// Starts forwarding from `listen` to `target`: a link a script names.
    pub async fn start_on(listen: SocketAddr, target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let up = Arc::new(watch::channel(true).0);
        let latency = Arc::new(AtomicU64::new(0));
        tokio::spawn(accept(listener, target, Arc::clone(&up), Arc::clone(&latency)));
        Ok(Self { addr, up, latency })
    }

    /// From now on every answer the target sends (each chunk of it) reaches
    /// the client `latency` later: a slow instance, a long link.
    pub fn slow_down(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.store(micros, Ordering::Relaxed);
    }

    /// Where clients connect instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The target is gone: every open connection is dropped and new ones are
    /// closed as soon as they are accepted.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// The target is back for new connections.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, up: Arc<watch::Sender<bool>>, latency: Arc<AtomicU64>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        // Dropped by the last handle: the proxy is gone, and so are we.
        if Arc::strong_count(&up) == 1 {
            return;
        }
        if !*up.borrow() {
            drop(client);
            continue;
        }
        tokio::spawn(forward(client, target, up.subscribe(), Arc::clone(&latency)));
    }
}

async fn forward(client: TcpStream, target: SocketAddr, mut up: watch::Receiver<bool>, latency: Arc<AtomicU64>) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let requests = async {
        let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
        let _ = to_server.shutdown().await;
    };
    let answers = async {
        let mut chunk = vec![0u8; 16 * 1024];
        while let Ok(read @ 1..) = from_server.read(&mut chunk).await {
            let wait = latency.load(Ordering::Relaxed);
            if wait > 0 {
                tokio::time::sleep(Duration::from_micros(wait)).await;
            }
            if to_client.write_all(&chunk[..read]).await.is_err() {
                break;
            }
        }
        let _ = to_client.shutdown().await;
    };
    tokio::select! {
        _ = async { tokio::join!(requests, answers) } => {}
        _ = up.wait_for(|up| !*up) => {}
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        stream.write_all(b"ping").await?;
        let mut reply = [0u8; 4];
        stream.read_exact(&mut reply).await?;
        Ok(reply.to_vec())
    }

    #[tokio::test]
    async fn forwards_cuts_and_restores() {
        let proxy = TcpProxy::start(echo_server().await).await.expect("proxy");
        let mut open = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(round_trip(&mut open).await.expect("forwarded"), b"ping");

        proxy.cut();
        assert!(round_trip(&mut open).await.is_err(), "a live connection is dropped");
        let mut refused = TcpStream::connect(proxy.addr()).await.expect("accepted, then closed");
        assert!(round_trip(&mut refused).await.is_err(), "a new connection goes nowhere");

        proxy.restore();
        let mut again = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(round_trip(&mut again).await.expect("forwarded again"), b"ping");
    }

    #[tokio::test]
    async fn slows_answers_down() {
        let proxy = TcpProxy::start(echo_server().await).await.expect("proxy");
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        round_trip(&mut stream).await.expect("forwarded");
        proxy.slow_down(Duration::from_millis(200));
        let started = std::time::Instant::now();
        assert_eq!(round_trip(&mut stream).await.expect("forwarded"), b"ping");
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
    }
}
