//! Where components come from: built into the binary, or a rules directory.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use super::error::LoadError;
use super::release::RuleMode;

/// A component's bytes and the name it is known by.
#[derive(Debug, Clone)]
pub struct RuleSource {
    pub name: String,
    pub wasm: Cow<'static, [u8]>,
    /// `builtin`, or the file it was read from.
    pub origin: String,
    /// Part of the binary: trusted as the binary is.
    pub builtin: bool,
    /// The contents of `NAME.wasm.sig` beside the file, if there is one.
    pub signature: Option<Vec<u8>>,
    /// The published version; 0 when it was not published.
    pub version: u32,
    pub mode: RuleMode,
}

impl RuleSource {
    pub fn builtin(name: &str, wasm: &'static [u8]) -> Self {
        Self {
            name: name.to_owned(),
            wasm: Cow::Borrowed(wasm),
            origin: "builtin".to_owned(),
            builtin: true,
            signature: None,
            version: 0,
            mode: RuleMode::Active,
        }
    }

    /// Version `version` of the rule `name` from the deployment's rule
    /// store, to run in `mode`.
    pub fn published(name: &str, version: u32, wasm: Vec<u8>, signature: Option<Vec<u8>>, mode: RuleMode) -> Self {
        Self {
            name: name.to_owned(),
            wasm: Cow::Owned(wasm),
            origin: "store".to_owned(),
            builtin: false,
            signature,
            version,
            mode,
        }
    }

    /// Reads one `.wasm` file, and its `.wasm.sig` when there is one; its
    /// stem is its name.
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let wasm = std::fs::read(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path
            .file_stem()
            .map_or_else(|| "unnamed".to_owned(), |s| s.to_string_lossy().into_owned());
        let mut sig = path.as_os_str().to_owned();
        sig.push(".sig");
        let signature = match std::fs::read(&sig) {
            Ok(signature) => Some(signature),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(LoadError::Io {
                    path: sig.into(),
                    source,
                });
            }
        };
        Ok(Self {
            name,
            wasm: Cow::Owned(wasm),
            origin: path.display().to_string(),
            builtin: false,
            signature,
            version: 0,
            mode: RuleMode::Active,
        })
    }
}

/// The `.wasm` files of `dir`, sorted by name. A missing directory is empty.
pub(crate) fn wasm_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(LoadError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| LoadError::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .path();
        if path.extension().is_some_and(|ext| ext == "wasm") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Names, sizes and modification times of a directory's components.
pub(crate) type Fingerprint = Vec<(PathBuf, u64, Option<std::time::SystemTime>)>;

/// A cheap fingerprint of the directory, to notice changes without reading every file.
pub(crate) fn fingerprint(dir: &Path) -> Fingerprint {
    wasm_files(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            let size = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (path, size, modified)
        })
        .collect()
}
