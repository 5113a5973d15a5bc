//! Fault injection for the shop's tests, against the real services.
//!
//! - [`TcpProxy`]: stands between a client and PostgreSQL, Redis or NATS on
//!   loopback; [`TcpProxy::cut`] makes the service unreachable (live
//!   connections dropped, new ones refused) and [`TcpProxy::restore`] brings
//!   it back, without touching the shared server other tests use.
//! - [`NatsServer`]: a private `nats-server` with JetStream on a free
//!   loopback port and its own store, which a test may kill and restart.
//! - [`RedisServer`]: a private `redis-server` (nothing kept on disk) on a
//!   free loopback port, which a test may kill and restart.
//! - [`TestCertificates`]: a private CA and a server certificate for
//!   127.0.0.1, for NATS and Redis over TLS.
//! - [`fresh_namespace`], [`eventually`]: what every test on shared servers
//!   needs: names no other run uses, and patience with a saga.
//!
//! Test support only: nothing in the product depends on this crate.

#![forbid(unsafe_code)]

mod nats;
mod process;
mod proxy;
mod redis;
mod tls;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use shop_streams::Namespace;
use uuid::Uuid;

pub use nats::NatsServer;
pub use proxy::TcpProxy;
pub use redis::RedisServer;
pub use tls::TestCertificates;

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// Waits until `what` accepts connections on `addr`.
fn wait_for(what: &str, addr: SocketAddr, limit: Duration) -> std::io::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(error) if Instant::now() >= deadline => {
                return Err(std::io::Error::new(
                    error.kind(),
                    format!("{what} did not come up on {addr}: {error}"),
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A namespace no other test run uses: `prefix` and the random tail of a UUIDv7.
pub fn fresh_namespace(prefix: char) -> Namespace {
    let simple = Uuid::now_v7().simple().to_string();
    Namespace::new(&format!("{prefix}{}", &simple[simple.len() - 12..])).expect("a valid namespace")
}

pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(Duration::from_secs(20), what, check).await;
}

pub async fn eventually_within<F, Fut>(limit: Duration, what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}
