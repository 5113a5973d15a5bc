//! A private nats-server with JetStream, for tests that restart the broker.

use std::ffi::OsString;
#[cfg(test)]
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
#[cfg(test)]
use std::time::Duration;

use crate::free_port;
use crate::process::ServerProcess;

/// Where Debian installs it; `NATS_SERVER` overrides.
const DEFAULT_BINARY: &str = "/usr/sbin/nats-server";

/// A `nats-server -js` child on a loopback port of its own, with its own
/// store directory that survives [`NatsServer::restart`]. Killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    process: ServerProcess,
    port: u16,
    store: tempfile::TempDir,
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
        let mut args: Vec<OsString> = ["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"]
            .into_iter()
            .map(OsString::from)
            .collect();
        args.push(store.path().into());
        args.extend(extra.iter().map(OsString::from));
        Ok(Self {
            process: ServerProcess::start("nats-server", "NATS_SERVER", DEFAULT_BINARY, args, port)?,
            port,
            store,
        })
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: the broker vanishes mid-conversation.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.process.restart()
    }

    /// The JetStream store directory.
    pub fn store(&self) -> &Path {
        self.store.path()
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
