//! A rule's release history across a deployment: the versions published
//! under its name, the one that is active, the one running in shadow, and
//! what a rollback returns to. Pure state and its transitions; the rule
//! store keeps it ([`crate::ports::RuleStore`]), [`super::fleet`] changes it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How a published version runs: deciding, or beside the active one with
/// its answers compared and never acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleMode {
    Active,
    Shadow,
}

impl RuleMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleMode::Active => "active",
            RuleMode::Shadow => "shadow",
        }
    }
}

impl fmt::Display for RuleMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One version of a rule, as published. Version numbers count from 1 per
/// name; 0 names a component that was not published (built in, or read
/// from `SHOP_RULES_DIR`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedVersion {
    pub version: u32,
    /// Hex SHA-256 of the component: the key of its bytes in the store.
    pub hash: String,
    /// Milliseconds since the Unix epoch.
    pub published_at: i64,
    /// The component's Ed25519 signature (hex), for hosts that admit
    /// signed components only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Every version published under one name, and which of them run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub name: String,
    /// Oldest first.
    pub versions: Vec<PublishedVersion>,
    pub active: Option<u32>,
    pub shadow: Option<u32>,
    /// The versions that were active before the current one, oldest first:
    /// what rollbacks return to. `None` in it means "no published version":
    /// the built-in component, or no such policy.
    #[serde(default)]
    pub previous: Vec<Option<u32>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    #[error("no rule named {0:?} was published")]
    NoSuchRule(String),
    #[error("{name} has no version {version}")]
    NoSuchVersion { name: String, version: u32 },
    #[error("{0} has no version in shadow to promote")]
    NothingToPromote(String),
    #[error("{0} has no earlier version to roll back to")]
    NothingToRollBack(String),
}

impl Release {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            versions: Vec::new(),
            active: None,
            shadow: None,
            previous: Vec::new(),
        }
    }

    /// Records the component of `hash` as a version (the existing one when
    /// that hash was published before) and runs it in `mode`. Answers its
    /// version number.
    pub fn publish(&mut self, hash: &str, at: i64, signature: Option<String>, mode: RuleMode) -> u32 {
        let version = match self.versions.iter().find(|v| v.hash == hash) {
            Some(known) => known.version,
            None => {
                let version = self.versions.last().map_or(1, |last| last.version + 1);
                self.versions.push(PublishedVersion {
                    version,
                    hash: hash.to_owned(),
                    published_at: at,
                    signature,
                });
                version
            }
        };
        match mode {
            RuleMode::Active => self.activate(Some(version)),
            RuleMode::Shadow if self.active != Some(version) => self.shadow = Some(version),
            RuleMode::Shadow => {}
        }
        version
    }

    /// Makes the shadow version the active one.
    pub fn promote(&mut self) -> Result<u32, ReleaseError> {
        let version = self
            .shadow
            .ok_or_else(|| ReleaseError::NothingToPromote(self.name.clone()))?;
        self.activate(Some(version));
        Ok(version)
    }

    /// Returns to the version active before the current one, or to `to`.
    /// Answers the version now active: `None` when that is no published
    /// version (the built-in component takes over, or the policy is gone).
    pub fn rollback(&mut self, to: Option<u32>) -> Result<Option<u32>, ReleaseError> {
        match to {
            Some(version) => {
                if self.version(version).is_none() {
                    return Err(ReleaseError::NoSuchVersion {
                        name: self.name.clone(),
                        version,
                    });
                }
                self.activate(Some(version));
                Ok(Some(version))
            }
            None => {
                let back = self
                    .previous
                    .pop()
                    .or_else(|| self.active.map(|_| None))
                    .ok_or_else(|| ReleaseError::NothingToRollBack(self.name.clone()))?;
                self.active = back;
                Ok(back)
            }
        }
    }

    pub fn version(&self, version: u32) -> Option<&PublishedVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// The versions that run, active first.
    pub fn running(&self) -> impl Iterator<Item = (RuleMode, &PublishedVersion)> {
        let active = self.active.and_then(|v| self.version(v)).map(|v| (RuleMode::Active, v));
        let shadow = self.shadow.and_then(|v| self.version(v)).map(|v| (RuleMode::Shadow, v));
        active.into_iter().chain(shadow)
    }

    fn activate(&mut self, version: Option<u32>) {
        if self.active == version {
            return;
        }
        self.previous.push(self.active);
        self.active = version;
        if self.shadow.is_some() && self.shadow == version {
            self.shadow = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Release, ReleaseError, RuleMode};

    fn hash(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    #[test]
    fn publishing_numbers_versions_and_activates() {
        let mut release = Release::new("purchase-limit");
        assert_eq!(release.publish(&hash(1), 10, None, RuleMode::Active), 1);
        assert_eq!(release.publish(&hash(2), 20, None, RuleMode::Active), 2);
        assert_eq!(release.active, Some(2));
        // The same bytes again are the same version, not a third.
        assert_eq!(release.publish(&hash(1), 30, None, RuleMode::Active), 1);
        assert_eq!(release.versions.len(), 2);
        assert_eq!(release.active, Some(1));
        assert_eq!(release.previous, vec![None, Some(1), Some(2)]);
    }

    #[test]
    fn a_shadow_runs_beside_the_active_version_until_promoted() {
        let mut release = Release::new("order");
        release.publish(&hash(1), 10, None, RuleMode::Active);
        assert_eq!(release.publish(&hash(2), 20, None, RuleMode::Shadow), 2);
        let running: Vec<_> = release.running().map(|(mode, v)| (mode, v.version)).collect();
        assert_eq!(running, vec![(RuleMode::Active, 1), (RuleMode::Shadow, 2)]);
        assert_eq!(release.promote(), Ok(2));
        assert_eq!((release.active, release.shadow), (Some(2), None));
        assert_eq!(release.promote(), Err(ReleaseError::NothingToPromote("order".into())));
    }

    #[test]
    fn rollback_walks_back_to_the_built_in() {
        let mut release = Release::new("order");
        release.publish(&hash(1), 10, None, RuleMode::Active);
        release.publish(&hash(2), 20, None, RuleMode::Active);
        assert_eq!(release.rollback(None), Ok(Some(1)));
        assert_eq!(release.rollback(None), Ok(None));
        assert_eq!(release.active, None);
        assert_eq!(
            release.rollback(None),
            Err(ReleaseError::NothingToRollBack("order".into()))
        );
        assert_eq!(release.rollback(Some(2)), Ok(Some(2)));
        assert_eq!(
            release.rollback(Some(7)),
            Err(ReleaseError::NoSuchVersion {
                name: "order".into(),
                version: 7
            })
        );
    }

    #[test]
    fn the_release_record_reads_back_as_written() {
        let mut release = Release::new("order");
        release.publish(&hash(1), 10, Some("ab".into()), RuleMode::Active);
        release.publish(&hash(2), 20, None, RuleMode::Shadow);
        let json = serde_json::to_string(&release).expect("encoded");
        assert!(json.contains(r#""shadow":2"#), "{json}");
        assert_eq!(serde_json::from_str::<Release>(&json).expect("decoded"), release);
    }
}
