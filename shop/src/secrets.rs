//! The secrets a role needs, failing closed.
//!
//! On real services (PostgreSQL, NATS, Redis) a role refuses to start
//! without a JWT secret of at least 32 bytes (or an RS256 public key) and a
//! data key, naming the variable in one line (exit code 2): a deployment
//! that forgot its secrets must not run on a secret everybody knows. The
//! embedded default needs no configuration: it creates random secrets in
//! its data directory on first start (mode 0600), and `shop token` signs
//! with the same file. Every secret may also come from a file
//! (`NAME_FILE`, see [`crate::config::Settings`]).

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use shop_runtime::customer_data::Keyring;
use shop_streams::AnnouncementKey;

use crate::config::{Database, Settings};

/// Shortest HS256 secret accepted on real services.
pub const MIN_JWT_SECRET: usize = 32;

/// A role on real services that lacks a secret: one line naming it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MissingSecret(pub String);

/// How tokens are checked: an HS256 secret, an RS256 public key, or both.
#[derive(Debug, Clone)]
pub struct JwtKeys {
    pub secret: Option<String>,
    pub public_key_pem: Option<Vec<u8>>,
}

/// The keys of a role on real services, or [`MissingSecret`].
pub fn distributed(settings: &Settings) -> anyhow::Result<JwtKeys> {
    let keys = JwtKeys {
        secret: configured(&settings.jwt_secret),
        public_key_pem: public_key(settings)?,
    };
    match (&keys.secret, &keys.public_key_pem) {
        (Some(secret), _) if secret.len() < MIN_JWT_SECRET => {
            return Err(MissingSecret(format!(
                "SHOP_JWT_SECRET must be at least {MIN_JWT_SECRET} bytes (it has {}); or set only SHOP_JWT_PUBLIC_KEY for RS256 tokens",
                secret.len()
            ))
            .into());
        }
        (None, None) => {
            return Err(MissingSecret(format!(
                "SHOP_JWT_SECRET is not set: a role on PostgreSQL, NATS or Redis needs a secret of at least {MIN_JWT_SECRET} bytes (or SHOP_JWT_PUBLIC_KEY)"
            ))
            .into());
        }
        _ => {}
    }
    match configured(&settings.data_key) {
        Some(key) if is_data_key(&key) => Ok(keys),
        Some(_) => Err(MissingSecret("SHOP_DATA_KEY must be 32 bytes as 64 hex digits (openssl rand -hex 32)".into()).into()),
        None => Err(MissingSecret(
            "SHOP_DATA_KEY is not set: a role on PostgreSQL, NATS or Redis needs a data key of 32 bytes as 64 hex digits (openssl rand -hex 32)".into(),
        )
        .into()),
    }
}

/// The key instances seal their announcements with and gateways check
/// them by: `SHOP_ANNOUNCE_KEY` (32 bytes or more), else one derived from
/// the JWT secret every role of a deployment already shares; `None` when
/// there is neither (RS256 tokens alone).
pub fn announcement_key(settings: &Settings, keys: &JwtKeys) -> anyhow::Result<Option<AnnouncementKey>> {
    match configured(&settings.announce_key) {
        Some(key) => match AnnouncementKey::new(key.as_bytes()) {
            Some(key) => Ok(Some(key)),
            None => Err(MissingSecret(format!(
                "SHOP_ANNOUNCE_KEY must be at least 32 bytes (it has {})",
                key.len()
            ))
            .into()),
        },
        None => Ok(keys
            .secret
            .as_deref()
            .and_then(|secret| AnnouncementKey::derived_from(secret.as_bytes()))),
    }
}

/// The keys of the embedded mode: the configured ones, else those made on
/// first start in `dir` (the data directory), with its data key.
pub fn embedded(settings: &Settings, dir: &Path) -> anyhow::Result<JwtKeys> {
    if configured(&settings.data_key).is_none() {
        made_once(&dir.join("secrets").join("data-key"))?;
    }
    Ok(JwtKeys {
        secret: Some(embedded_jwt_secret(settings, dir)?),
        public_key_pem: public_key(settings)?,
    })
}

/// The embedded mode's JWT secret: `SHOP_JWT_SECRET`, else the one in `dir`
/// (made there if no server has made it yet).
pub fn embedded_jwt_secret(settings: &Settings, dir: &Path) -> anyhow::Result<String> {
    match configured(&settings.jwt_secret) {
        Some(secret) => Ok(secret),
        None => made_once(&dir.join("secrets").join("jwt-secret")),
    }
}

/// The keys this process's settings ask for: the embedded mode's (in the
/// database's directory) or real services' (failing closed).
pub fn for_database(settings: &Settings, database: &Database) -> anyhow::Result<JwtKeys> {
    match database {
        Database::Embedded(url) => embedded(settings, &data_dir(url)),
        Database::Postgres(_) => distributed(settings),
    }
}

/// The key-encryption keys of customer data: `SHOP_DATA_KEY` (else, in
/// the embedded mode, the data directory's own) wraps new data keys, and
/// `SHOP_DATA_KEY_PREVIOUS` (else the data directory's `data-key.previous`)
/// is still read while `shop keys rotate` moves keys off it. `None` on
/// real services without `SHOP_DATA_KEY` (a serving role refuses to start
/// so, see [`distributed`]).
pub fn keyring(settings: &Settings, database: &Database) -> anyhow::Result<Option<Keyring>> {
    let (current, previous) = match database {
        Database::Embedded(url) => {
            let dir = data_dir(url).join("secrets");
            let current = match configured(&settings.data_key) {
                Some(key) => key,
                None => made_once(&dir.join("data-key"))?,
            };
            let previous = match configured(&settings.data_key_previous) {
                Some(key) => Some(key),
                None => read_if_present(&dir.join(PREVIOUS_DATA_KEY))?,
            };
            (current, previous)
        }
        Database::Postgres(_) => match configured(&settings.data_key) {
            Some(current) => (current, configured(&settings.data_key_previous)),
            None => return Ok(None),
        },
    };
    let current = data_key_bytes("SHOP_DATA_KEY", &current)?;
    let previous = previous
        .map(|key| data_key_bytes("SHOP_DATA_KEY_PREVIOUS", &key))
        .transpose()?;
    Ok(Some(Keyring::new(&current, previous.as_slice())))
}

/// Where the embedded mode keeps the data key a rotation replaced.
pub const PREVIOUS_DATA_KEY: &str = "data-key.previous";

fn data_key_bytes(name: &str, key: &str) -> anyhow::Result<[u8; 32]> {
    let key = key.trim();
    is_data_key(key)
        .then(|| shop_streams::hex::decode(key))
        .flatten()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| {
            MissingSecret(format!(
                "{name} must be 32 bytes as 64 hex digits (openssl rand -hex 32)"
            ))
            .into()
        })
}

fn read_if_present(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The directory of an embedded database URL (`sqlite://data/shop.db` -> `data`).
pub fn data_dir(url: &str) -> PathBuf {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    match Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A secret setting, `None` when unset or empty (an unreadable `NAME_FILE`
/// stopped the settings from loading already).
fn configured(value: &Option<String>) -> Option<String> {
    value.clone().filter(|value| !value.is_empty())
}

/// `SHOP_JWT_PUBLIC_KEY`: the PEM itself, or (as before) the path of a PEM file.
fn public_key(settings: &Settings) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(value) = configured(&settings.jwt_public_key) else {
        return Ok(None);
    };
    if value.trim_start().starts_with("-----BEGIN") {
        return Ok(Some(value.into_bytes()));
    }
    std::fs::read(&value)
        .map(Some)
        .with_context(|| format!("SHOP_JWT_PUBLIC_KEY: cannot read {value}"))
}

fn is_data_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

/// 32 random bytes as 64 hex digits: a new secret or API key.
pub(crate) fn random_hex() -> anyhow::Result<String> {
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut source| source.read_exact(&mut random))
        .context("cannot read random bytes from /dev/urandom")?;
    Ok(shop_streams::hex::encode(&random))
}

/// The secret in `path`, made there (32 random bytes as hex, readable by
/// this user alone) when it is not yet.
fn made_once(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok(text.trim().to_owned()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let secret = random_hex()?;
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(secret)
        }
        // Another process made it first: theirs is the one.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .trim()
            .to_owned()),
        Err(error) => Err(error).with_context(|| format!("cannot create {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn an_embedded_secret_is_made_once_for_its_owner_alone() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("secrets").join("jwt-secret");
        let first = made_once(&path).expect("made");
        assert_eq!(first.len(), 64, "32 bytes as hex");
        assert_eq!(made_once(&path).expect("read back"), first, "made once, then kept");
        let mode = std::fs::metadata(&path).expect("exists").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let other = made_once(&dir.path().join("secrets").join("other")).expect("made");
        assert_ne!(other, first, "random");
    }

    #[test]
    fn data_keys_are_64_hex_digits_and_data_dirs_come_from_the_url() {
        assert!(is_data_key(&"ab".repeat(32)));
        assert!(!is_data_key(&"ab".repeat(31)));
        assert!(!is_data_key(&"zz".repeat(32)));
        assert_eq!(data_dir("sqlite://data/shop.db"), PathBuf::from("data"));
        assert_eq!(
            data_dir("sqlite:///var/lib/shop/shop.db?mode=rwc"),
            PathBuf::from("/var/lib/shop")
        );
        assert_eq!(data_dir("sqlite://shop.db"), PathBuf::from("."));
    }
}
