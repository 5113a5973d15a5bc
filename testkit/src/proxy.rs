//! A loopback TCP proxy that can cut its target off.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards connections from its own loopback port to `target` until cut.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    up: Arc<watch::Sender<bool>>,
}

impl TcpProxy {
    /// Starts forwarding to `target` (for example `127.0.0.1:5432`).
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let up = Arc::new(watch::channel(true).0);
        tokio::spawn(accept(listener, target, Arc::clone(&up)));
        Ok(Self { addr, up })
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

async fn accept(listener: TcpListener, target: SocketAddr, up: Arc<watch::Sender<bool>>) {
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
        tokio::spawn(forward(client, target, up.subscribe()));
    }
}

async fn forward(mut client: TcpStream, target: SocketAddr, mut up: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = copy_bidirectional(&mut client, &mut server) => {}
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
}
