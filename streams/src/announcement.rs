//! Instances telling the gateway where they serve.
//!
//! Every order and inventory instance of the distributed mode publishes an
//! [`Announcement`] on [`Topology::announcements`] every few seconds (core
//! NATS, not kept: only who is alive now matters) and once more, `leaving`,
//! when it stops. Gateways route to the instances they have heard from
//! recently, so instances come and go without restarting a gateway.

use serde::{Deserialize, Serialize};

use crate::{Context, DecodeError, Topology};

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
}

impl Announcement {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))
    }
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
}
