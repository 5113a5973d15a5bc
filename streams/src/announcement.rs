//! Instances telling the gateway where they serve.
//!
//! Every order and inventory instance of the distributed mode publishes an
//! [`Announcement`] on [`Topology::announcements`] every few seconds (core
//! NATS, not kept: only who is alive now matters) and once more, `leaving`,
//! when it stops. Gateways route to the instances they have heard from
//! recently, so instances come and go without restarting a gateway.
//!
//! Anyone who can publish on the subject could otherwise add an upstream
//! (and receive callers' credentials) or make a gateway forget one, so
//! announcements are sealed: sent with the time and an HMAC-SHA256 over
//! both under the deployment's [`AnnouncementKey`]. A gateway [`Trust`]s an
//! announcement only when its seal holds and is fresh, or when its address
//! is on the operator's allow list.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{Context, DecodeError, Topology, hex};

/// One instance serving one context's API at `url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// Whose API it serves: `order` or `inventory`.
    pub context: Context,
    /// Where its HTTP endpoints are, like `http://10.0.0.7:8080`.
    pub url: String,
    /// Its `SHOP_INSTANCE_ID`, for the logs.
    pub instance: String,
    /// Sent once by an instance that is stopping.
    #[serde(default)]
    pub leaving: bool,
    /// Its share of requests under weighted balancing, against the other
    /// instances of its context (`SHOP_INSTANCE_WEIGHT`; absent means 1).
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

impl Announcement {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))
    }
}

/// How far a sealed announcement's time may be from the gateway's clock:
/// a captured one replays for no longer than this.
pub const FRESH_FOR: Duration = Duration::from_secs(30);

/// The deployment's key for sealing announcements (at least 32 bytes).
#[derive(Clone)]
pub struct AnnouncementKey(Vec<u8>);

impl std::fmt::Debug for AnnouncementKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnnouncementKey(..)")
    }
}

/// Why an announcement was not taken in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("malformed announcement: {0}")]
    Malformed(String),
    #[error("announcement from {url} is not sealed with the deployment's key and its address is not allowed")]
    Unverified { url: String },
    #[error("announcement from {url} is stale or from the future ({skew_ms} ms off)")]
    Stale { url: String, skew_ms: u64 },
}

impl AnnouncementKey {
    /// MUST be given at least 32 bytes: `None` otherwise.
    pub fn new(key: &[u8]) -> Option<Self> {
        (key.len() >= 32).then(|| Self(key.to_vec()))
    }

    /// A key of its own derived from a shared secret the deployment already
    /// holds (the JWT secret), so a deployment needs no second secret.
    pub fn derived_from(secret: &[u8]) -> Option<Self> {
        (secret.len() >= 32).then(|| {
            Self(
                mac(secret, &[b"shop announcements v1"])
                    .finalize()
                    .into_bytes()
                    .to_vec(),
            )
        })
    }

    /// `announcement` as sent at `now_ms`: its fields, `at_ms` and `seal`.
    pub fn seal(&self, announcement: &Announcement, now_ms: u64) -> Vec<u8> {
        let body = announcement.to_bytes();
        let seal = hex::encode(&mac(&self.0, &[&body, &now_ms.to_be_bytes()]).finalize().into_bytes());
        let sealed = Sealed {
            announcement: announcement.clone(),
            at_ms: Some(now_ms),
            seal: Some(seal),
        };
        serde_json::to_vec(&sealed).unwrap_or_default()
    }

    /// The announcement in `bytes` when its seal is this key's and its time
    /// within [`FRESH_FOR`] of `now_ms`.
    fn open(&self, sealed: &Sealed, now_ms: u64) -> Result<(), Rejected> {
        let url = || sealed.announcement.url.clone();
        let (Some(at_ms), Some(seal)) = (sealed.at_ms, sealed.seal.as_deref()) else {
            return Err(Rejected::Unverified { url: url() });
        };
        let body = sealed.announcement.to_bytes();
        let seal = hex::decode(seal).ok_or_else(|| Rejected::Unverified { url: url() })?;
        // Compared in constant time.
        mac(&self.0, &[&body, &at_ms.to_be_bytes()])
            .verify_slice(&seal)
            .map_err(|_| Rejected::Unverified { url: url() })?;
        let skew_ms = now_ms.abs_diff(at_ms);
        if u128::from(skew_ms) > FRESH_FOR.as_millis() {
            return Err(Rejected::Stale { url: url(), skew_ms });
        }
        Ok(())
    }
}

/// Which announcements a gateway takes in: sealed with `key`, or from an
/// address on `allow` (`http://host:port`, as the instance announces it).
#[derive(Debug, Clone, Default)]
pub struct Trust {
    pub key: Option<AnnouncementKey>,
    pub allow: Vec<String>,
}

impl Trust {
    /// Whether anything at all can be taken in.
    pub fn admits_any(&self) -> bool {
        self.key.is_some() || !self.allow.is_empty()
    }

    /// The announcement in `bytes`, if it may be believed at `now_ms`.
    pub fn admit(&self, bytes: &[u8], now_ms: u64) -> Result<Announcement, Rejected> {
        let sealed: Sealed = serde_json::from_slice(bytes).map_err(|e| Rejected::Malformed(e.to_string()))?;
        let url = sealed.announcement.url.trim().trim_end_matches('/');
        if self.allow.iter().any(|allowed| allowed.trim_end_matches('/') == url) {
            return Ok(sealed.announcement);
        }
        match &self.key {
            Some(key) => key.open(&sealed, now_ms).map(|()| sealed.announcement),
            None => Err(Rejected::Unverified {
                url: sealed.announcement.url,
            }),
        }
    }
}

/// An announcement on the wire: its fields, and the seal when there is one.
#[derive(Debug, Serialize, Deserialize)]
struct Sealed {
    #[serde(flatten)]
    announcement: Announcement,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seal: Option<String>,
}

/// The HMAC-SHA256 of `parts` under `key`, to finalize or verify.
fn mac(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for part in parts {
        mac.update(part);
    }
    mac
}

impl Topology {
    /// `{ns}.instances`: where instances announce themselves.
    pub fn announcements(&self) -> String {
        format!("{}.instances", self.namespace())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Namespace;

    #[test]
    fn announcements_round_trip_and_live_outside_the_event_streams() {
        let announcement = Announcement {
            context: Context::Order,
            url: "http://127.0.0.1:8081".into(),
            instance: "order-1".into(),
            leaving: false,
            weight: 1,
        };
        let bytes = announcement.to_bytes();
        assert!(String::from_utf8_lossy(&bytes).contains("\"context\":\"order\""));
        assert_eq!(Announcement::from_bytes(&bytes).ok(), Some(announcement));
        assert!(Announcement::from_bytes(b"{\"context\":\"shipping\"}").is_err());

        let topology = Topology::new(Namespace::new("shop").expect("valid"));
        let subject = topology.announcements();
        assert_eq!(subject, "shop.instances");
        for stream in [
            topology.stream(Context::Order),
            topology.stream(Context::Inventory),
            topology.dead_letter_stream(),
        ] {
            let prefix = stream.subjects[0].trim_end_matches('>');
            assert!(
                !subject.starts_with(prefix),
                "{subject} would be stored in {}",
                stream.name
            );
        }
    }

    fn lamp() -> Announcement {
        Announcement {
            context: Context::Inventory,
            url: "http://10.0.0.7:8081".into(),
            instance: "inventory-1".into(),
            leaving: false,
            weight: 1,
        }
    }

    #[test]
    fn a_sealed_announcement_is_admitted_and_a_forged_one_is_not() {
        let key = AnnouncementKey::derived_from(&[7; 32]).expect("32 bytes");
        let trust = Trust {
            key: Some(key.clone()),
            allow: Vec::new(),
        };
        let now = 1_700_000_000_000;
        let sealed = key.seal(&lamp(), now);
        assert_eq!(trust.admit(&sealed, now + 1_000), Ok(lamp()));

        // Unsealed, sealed under another key, or altered after sealing.
        let unsealed = lamp().to_bytes();
        assert!(matches!(trust.admit(&unsealed, now), Err(Rejected::Unverified { .. })));
        let other = AnnouncementKey::new(&[8; 32]).expect("32 bytes").seal(&lamp(), now);
        assert!(matches!(trust.admit(&other, now), Err(Rejected::Unverified { .. })));
        let altered = String::from_utf8(sealed.clone())
            .expect("JSON")
            .replace("10.0.0.7", "10.6.6.6");
        assert!(matches!(
            trust.admit(altered.as_bytes(), now),
            Err(Rejected::Unverified { .. })
        ));
        let leaving = String::from_utf8(sealed.clone())
            .expect("JSON")
            .replace("\"leaving\":false", "\"leaving\":true");
        assert!(matches!(
            trust.admit(leaving.as_bytes(), now),
            Err(Rejected::Unverified { .. })
        ));

        // A captured one replays only while fresh.
        let late = now + FRESH_FOR.as_millis() as u64 + 1;
        assert!(matches!(trust.admit(&sealed, late), Err(Rejected::Stale { .. })));
        assert!(matches!(trust.admit(b"{}", now), Err(Rejected::Malformed(_))));
    }

    #[test]
    fn an_allowed_address_needs_no_seal_and_no_key_admits_nothing_else() {
        let nobody = Trust::default();
        assert!(!nobody.admits_any());
        assert!(nobody.admit(&lamp().to_bytes(), 0).is_err());
        let listed = Trust {
            key: None,
            allow: vec!["http://10.0.0.7:8081/".into()],
        };
        assert_eq!(listed.admit(&lamp().to_bytes(), 0), Ok(lamp()));
        let stranger = Announcement {
            url: "http://10.6.6.6:8081".into(),
            ..lamp()
        };
        assert!(listed.admit(&stranger.to_bytes(), 0).is_err());
        assert!(AnnouncementKey::new(&[1; 31]).is_none(), "short keys are refused");
        assert!(AnnouncementKey::derived_from(&[1; 31]).is_none());
    }
}
