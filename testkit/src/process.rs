//! A server binary run as a child on a loopback port of its own, which a
//! test may kill and start again with the same arguments.

use std::ffi::OsString;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait_for;

/// Killed on drop.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    name: &'static str,
    binary: String,
    args: Vec<OsString>,
    port: u16,
    child: Option<Child>,
}

impl ServerProcess {
    /// Runs `binary` (the environment variable `override_with`, when set)
    /// with `args`, and waits until it accepts connections on `port`.
    pub(crate) fn start(
        name: &'static str,
        override_with: &str,
        default_binary: &str,
        args: Vec<OsString>,
        port: u16,
    ) -> std::io::Result<Self> {
        let mut server = Self {
            name,
            binary: std::env::var(override_with).unwrap_or_else(|_| default_binary.to_owned()),
            args,
            port,
            child: None,
        };
        server.launch()?;
        Ok(server)
    }

    /// SIGKILL: the server vanishes mid-conversation.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again with the same arguments on the same port.
    pub(crate) fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        self.launch()
    }

    fn launch(&mut self) -> std::io::Result<()> {
        let child = Command::new(&self.binary)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot run {}: {e}", self.binary)))?;
        self.child = Some(child);
        wait_for(self.name, ([127, 0, 0, 1], self.port).into(), Duration::from_secs(10))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
