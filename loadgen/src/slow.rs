//! Slow clients (slowloris): connections that send a request line and part
//! of a header, then one byte now and then, so a server that waits for the
//! end of the headers holds a socket and a task for each of them. The
//! `slow-clients` run measures normal requests while a steady number of
//! these is held open, against the same requests with none, in one run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// What the slow clients saw.
#[derive(Debug, Default)]
pub struct Held {
    /// Connections opened, the first `count` and every replacement.
    pub opened: AtomicU64,
    /// Connections the server closed before the client gave up on them.
    pub cut: AtomicU64,
    /// Connections refused or failed outright.
    pub refused: AtomicU64,
}

/// Keeps `count` half-sent requests open against `addr` until `until`.
/// Each sends one byte of a never-ending header every `trickle`; when the
/// server closes it, another takes its place, as an attacker would.
pub async fn hold(addr: SocketAddr, count: usize, trickle: Duration, until: Instant) -> Arc<Held> {
    let held = Arc::new(Held::default());
    let mut clients = JoinSet::new();
    for _ in 0..count {
        let held = Arc::clone(&held);
        clients.spawn(async move {
            while Instant::now() < until {
                held.opened.fetch_add(1, Ordering::Relaxed);
                match one(addr, trickle, until).await {
                    Ok(true) => {
                        held.cut.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => {}
                    Err(_) => {
                        held.refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(trickle).await;
                    }
                }
            }
        });
    }
    tokio::spawn(async move { while clients.join_next().await.is_some() {} });
    held
}

/// One slow client; `Ok(true)` when the server closed it first.
async fn one(addr: SocketAddr, trickle: Duration, until: Instant) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nhost: shop\r\nx-slow: ")
        .await?;
    let mut buffer = [0u8; 512];
    while Instant::now() < until {
        tokio::select! {
            // An answer (408, 400), the end of the stream or an error: the server let go.
            _ = stream.read(&mut buffer) => return Ok(true),
            () = tokio::time::sleep(trickle) => {
                if stream.write_all(b"x").await.is_err() {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}
