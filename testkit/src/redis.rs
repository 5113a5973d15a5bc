//! A private redis-server, for tests that stop Redis under a running shop.

use std::ffi::OsString;

use crate::free_port;
use crate::process::ServerProcess;

/// Where Debian installs it; `REDIS_SERVER` overrides.
const DEFAULT_BINARY: &str = "/usr/bin/redis-server";

/// A `redis-server` child on a loopback port of its own, keeping nothing on
/// disk (a restart starts empty, as after a failover to a cold replica).
/// Killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    process: ServerProcess,
    port: u16,
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
        let port = free_port()?;
        let port_text = port.to_string();
        let ports: Vec<&str> = match extra.contains(&"--tls-port") {
            true => vec!["--port", "0", "--tls-port", &port_text],
            false => vec!["--port", &port_text],
        };
        let mut args: Vec<OsString> = ["--bind", "127.0.0.1"]
            .into_iter()
            .chain(ports)
            .map(OsString::from)
            .collect();
        args.extend(extra.iter().filter(|a| **a != "--tls-port").map(OsString::from));
        args.extend(["--save", "", "--appendonly", "no", "--daemonize", "no", "--dir"].map(OsString::from));
        args.push(std::env::temp_dir().into());
        Ok(Self {
            process: ServerProcess::start("redis-server", "REDIS_SERVER", DEFAULT_BINARY, args, port)?,
            port,
        })
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
        self.process.kill();
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.process.restart()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

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
