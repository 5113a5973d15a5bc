//! A private redis-server, for tests that stop Redis under a running shop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_for};

/// Where Debian installs it; `REDIS_SERVER` overrides.
const DEFAULT_BINARY: &str = "/usr/bin/redis-server";

/// A `redis-server` child on a loopback port of its own, keeping nothing on
/// disk (a restart starts empty, as after a failover to a cold replica).
/// Killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    /// More arguments: a password, TLS (see [`RedisServer::start_with`]).
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> std::io::Result<Self> {
        Self::start_with(&[])
    }

    /// [`Self::start`] with more `redis-server` arguments (`--requirepass`,
    /// `--tls-*`). With `--tls-port` in them, [`Self::port`] is the TLS port
    /// and the plain one is off.
    pub fn start_with(extra: &[&str]) -> std::io::Result<Self> {
        let mut server = Self {
            child: None,
            port: free_port()?,
            extra: extra.iter().map(|a| (*a).to_owned()).collect(),
        };
        server.launch()?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on (TLS when started with `--tls-port`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIGKILL: Redis vanishes mid-conversation.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        self.launch()
    }

    fn launch(&mut self) -> std::io::Result<()> {
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| DEFAULT_BINARY.to_owned());
        let port = self.port.to_string();
        let tls = self.extra.iter().any(|a| a == "--tls-port");
        let ports: Vec<&str> = match tls {
            true => vec!["--port", "0", "--tls-port", &port],
            false => vec!["--port", &port],
        };
        let extra = self.extra.iter().filter(|a| *a != "--tls-port");
        let child = Command::new(&binary)
            .args(["--bind", "127.0.0.1"])
            .args(ports)
            .args(extra)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no", "--dir"])
            .arg(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot run {binary}: {e}")))?;
        self.child = Some(child);
        wait_for(
            "redis-server",
            ([127, 0, 0, 1], self.port).into(),
            Duration::from_secs(10),
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, TcpStream};

    use super::*;

    #[test]
    fn starts_and_restarts_on_the_same_port() {
        let mut server = RedisServer::start().expect("redis-server runs");
        let url = server.url();
        let addr: SocketAddr = url.trim_start_matches("redis://").parse().expect("address");
        server.kill();
        assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
        server.restart().expect("restarts");
        assert_eq!(server.url(), url);
        assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok());
    }
}
