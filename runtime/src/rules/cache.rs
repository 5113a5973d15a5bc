//! Compiled code, cached on disk by content hash so restarts skip Cranelift.
//!
//! Loading compiled code is trusting it: wasmtime runs what it deserializes
//! as native code. So every file carries an HMAC-SHA256 tag, under a key
//! the cache directory does not hold, over the component's hash, the engine
//! and the code; a file whose tag does not verify (altered, swapped for
//! another component's, written by someone without the key) is removed and
//! the component compiled afresh, never loaded.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::Engine;
use wasmtime::component::Component;

const TAG: usize = 32;

/// A directory of `<sha256>-<engine>.cwasm` files this process writes itself.
#[derive(Clone)]
pub(crate) struct CodeCache {
    dir: PathBuf,
    engine_key: String,
    key: [u8; 32],
}

impl std::fmt::Debug for CodeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl CodeCache {
    /// `key` authenticates the files; `None` uses a random key of this
    /// process's own, so the cache serves this process only (and there is
    /// no cache when no random key can be had).
    pub fn new(dir: &Path, engine: &Engine, key: Option<[u8; 32]>) -> Option<Self> {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Some(Self {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
            key: key.or_else(process_key)?,
        })
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}-{}.cwasm", self.engine_key))
    }

    fn tag(&self, hash: &str, code: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(hash.as_bytes());
        mac.update(self.engine_key.as_bytes());
        mac.update(code);
        mac
    }

    /// The cached compilation of the component with content hash `hash`.
    pub fn load(&self, engine: &Engine, hash: &str) -> Option<Component> {
        let path = self.path(hash);
        // Read into memory rather than map the file: a file changed under a
        // mapping would crash the process, a copy cannot.
        let bytes = std::fs::read(&path).ok()?;
        let authentic = bytes.len() > TAG && {
            let (code, tag) = bytes.split_at(bytes.len() - TAG);
            // Compared in constant time.
            self.tag(hash, code).verify_slice(tag).is_ok()
        };
        if !authentic {
            tracing::warn!(target: "shop::rules", path = %path.display(), "cached code fails its authentication; compiling afresh");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        let code = &bytes[..bytes.len() - TAG];
        // SAFETY: the tag proves `code` was written by `store` below, from
        // `Component::serialize` of this component for an engine with this
        // compatibility hash, by a holder of the key; wasmtime still checks
        // its header and refuses a mismatched one.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(engine, code) };
        match loaded {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(target: "shop::rules", path = %path.display(), %error, "discarding unusable cached code");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Best effort: a cache that cannot be written only costs start-up time.
    pub fn store(&self, hash: &str, component: &Component) {
        let path = self.path(hash);
        let written = component.serialize().map_err(|e| e.to_string()).and_then(|mut bytes| {
            let tag = self.tag(hash, &bytes).finalize().into_bytes();
            bytes.extend_from_slice(&tag);
            std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
            let partial = path.with_extension(format!("{}.partial", std::process::id()));
            std::fs::write(&partial, bytes).map_err(|e| e.to_string())?;
            std::fs::rename(&partial, &path).map_err(|e| e.to_string())
        });
        if let Err(error) = written {
            tracing::warn!(target: "shop::rules", path = %path.display(), %error, "could not cache compiled rules");
        }
    }
}

/// A random key made once per process.
fn process_key() -> Option<[u8; 32]> {
    static KEY: OnceLock<Option<[u8; 32]>> = OnceLock::new();
    *KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut random| random.read_exact(&mut key))
            .ok()
            .map(|()| key)
    })
}
