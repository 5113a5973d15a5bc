//! A private nats-server with JetStream, for tests that restart the broker.

#[cfg(test)]
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_for};

/// Where Debian installs it; `NATS_SERVER` overrides.
const DEFAULT_BINARY: &str = "/usr/sbin/nats-server";

/// A `nats-server -js` child on a loopback port of its own, with its own
/// store directory that survives [`NatsServer::restart`]. Killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
    /// More arguments: a config file, TLS (see [`NatsServer::start_with`]).
    extra: Vec<String>,
}

impl NatsServer {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> std::io::Result<Self> {
        Self::start_with(&[])
    }

    /// [`Self::start`] with more `nats-server` arguments (`-c FILE` for
    /// accounts and users, `--tls ...`).
    pub fn start_with(extra: &[&str]) -> std::io::Result<Self> {
        let store = tempfile::tempdir()?;
        let port = free_port()?;
        let mut server = Self {
            child: None,
            port,
            store,
            extra: extra.iter().map(|a| (*a).to_owned()).collect(),
        };
        server.launch()?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: the broker vanishes mid-conversation.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        self.launch()
    }

    fn launch(&mut self) -> std::io::Result<()> {
        let binary = std::env::var("NATS_SERVER").unwrap_or_else(|_| DEFAULT_BINARY.to_owned());
        let child = Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.store.path())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot run {binary}: {e}")))?;
        self.child = Some(child);
        wait_for(
            "nats-server",
            ([127, 0, 0, 1], self.port).into(),
            Duration::from_secs(10),
        )
    }

    /// The JetStream store directory.
    pub fn store(&self) -> &Path {
        self.store.path()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_and_restarts_on_the_same_port() {
        let mut server = NatsServer::start().expect("nats-server runs");
        let url = server.url();
        server.kill();
        let addr: SocketAddr = url.trim_start_matches("nats://").parse().expect("address");
        assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
        server.restart().expect("restarts");
        assert_eq!(server.url(), url);
        assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok());
    }
}
