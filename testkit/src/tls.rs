//! A private CA and a server certificate for 127.0.0.1, made with the
//! `openssl` command, for tests of NATS and Redis over TLS.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `ca.pem`, `server.pem` and `server.key` in a temporary directory of
/// their own, removed on drop.
#[derive(Debug)]
pub struct TestCertificates {
    dir: tempfile::TempDir,
}

impl TestCertificates {
    /// Makes a CA and a server certificate it signs, valid for 127.0.0.1
    /// and localhost for a day (P-256 keys: quick to make).
    pub fn generate() -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let at = |name: &str| dir.path().join(name);
        std::fs::write(at("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n")?;
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        openssl(
            dir.path(),
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-days",
                    "1",
                    "-subj",
                    "/CN=shop test CA",
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                ],
            ]
            .concat(),
        )?;
        openssl(
            dir.path(),
            &[
                &["req"][..],
                &ec,
                &["-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr"],
            ]
            .concat(),
        )?;
        openssl(
            dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        )?;
        Ok(Self { dir })
    }

    /// The CA's certificate (PEM): what clients trust.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server's certificate (PEM).
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server's private key (PEM).
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

fn openssl(dir: &Path, args: &[&str]) -> std::io::Result<()> {
    let output = Command::new("openssl").current_dir(dir).args(args).output()?;
    match output.status.success() {
        true => Ok(()),
        false => Err(std::io::Error::other(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ))),
    }
}
