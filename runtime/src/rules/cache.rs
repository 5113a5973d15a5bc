//! Compiled code, cached on disk by content hash so restarts skip Cranelift.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of `<sha256>-<engine>.cwasm` files this process writes itself.
#[derive(Debug, Clone)]
pub(crate) struct CodeCache {
    dir: PathBuf,
    engine_key: String,
}

impl CodeCache {
    pub fn new(dir: &Path, engine: &Engine) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}-{}.cwasm", self.engine_key))
    }

    /// The cached compilation of the component with content hash `hash`.
    pub fn load(&self, engine: &Engine, hash: &str) -> Option<Component> {
        let path = self.path(hash);
        // Read into memory rather than map the file: a file changed under a
        // mapping would crash the process, a copy cannot.
        let bytes = std::fs::read(&path).ok()?;
        // SAFETY: the file was written by `store` below from
        // `Component::serialize` for an engine with this compatibility hash;
        // wasmtime still checks its header and refuses a mismatched one. The
        // cache directory must be writable by this service only.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(engine, &bytes) };
        match loaded {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "discarding unusable cached code");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Best effort: a cache that cannot be written only costs start-up time.
    pub fn store(&self, hash: &str, component: &Component) {
        let path = self.path(hash);
        let written = component.serialize().map_err(|e| e.to_string()).and_then(|bytes| {
            std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
            let partial = path.with_extension(format!("{}.partial", std::process::id()));
            std::fs::write(&partial, bytes).map_err(|e| e.to_string())?;
            std::fs::rename(&partial, &path).map_err(|e| e.to_string())
        });
        if let Err(error) = written {
            tracing::warn!(path = %path.display(), %error, "could not cache compiled rules");
        }
    }
}
