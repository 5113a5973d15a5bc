//! Customer data: delivery details sealed per customer, readable only for
//! as long as the customer's data key lives.
//!
//! Envelope encryption. Each customer has a data key (AES-256-GCM) that
//! seals the delivery details of every order of theirs; the store keeps it
//! wrapped under a key-encryption key (`SHOP_DATA_KEY`) that only the
//! processes hold ([`Keyring`]). Associated data binds a sealed delivery to
//! its order and key, and a wrapped key to its customer, so ciphertexts
//! cannot be moved between rows. Erasure destroys the data key: every copy
//! of the sealed details (tables, backups) stops being readable at once.
//! Rotation re-wraps the data keys under a new key-encryption key; the
//! orders' rows are not touched.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::{Actor, AuditRecord};
use crate::ports::{CustomerKeys, SealedDelivery, StoreError, StoredKey};

/// Longest field of a delivery, in characters.
pub const MAX_FIELD: usize = 200;

/// Where an order goes: the customer data this module protects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub name: String,
    pub phone: String,
    pub address: String,
}

/// A delivery field that is not acceptable; `field` names it as the API does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {message}")]
pub struct InvalidDelivery {
    pub field: &'static str,
    pub message: &'static str,
}

impl Delivery {
    /// MUST refuse a field that is empty, longer than [`MAX_FIELD`]
    /// characters, or holds a control character.
    pub fn check(&self) -> Result<(), InvalidDelivery> {
        for (field, value) in [
            ("delivery.name", &self.name),
            ("delivery.phone", &self.phone),
            ("delivery.address", &self.address),
        ] {
            if !(1..=MAX_FIELD).contains(&value.chars().count()) {
                return Err(InvalidDelivery {
                    field,
                    message: "must be 1 to 200 characters",
                });
            }
            if value.chars().any(char::is_control) {
                return Err(InvalidDelivery {
                    field,
                    message: "must not contain control characters",
                });
            }
        }
        Ok(())
    }
}

/// What an order's stored delivery reads as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryRead {
    Clear(Delivery),
    /// Its customer's data key was destroyed: the details are gone.
    Erased,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the system's random source failed")]
    Random,
    #[error("no data key is configured (SHOP_DATA_KEY): customer data can be neither sealed nor read")]
    NoKeyring,
    #[error("data key {key_id} is wrapped under key-encryption key {kek_id}, which this process does not hold")]
    UnknownKek { key_id: String, kek_id: String },
    #[error("{0} does not open: corrupted, or sealed under another key")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The key-encryption keys a process holds: the current one, which wraps
/// every new data key, and those it replaced, still read during a rotation.
pub struct Keyring {
    current: Kek,
    previous: Vec<Kek>,
    random: SystemRandom,
}

struct Kek {
    id: String,
    key: LessSafeKey,
}

impl std::fmt::Debug for Keyring {
    // Names the keys, never shows them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field("previous", &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>())
            .finish()
    }
}

impl Kek {
    fn new(secret: &[u8; 32]) -> Self {
        let mut id = Sha256::new();
        id.update(b"shop key-encryption key v1\0");
        id.update(secret);
        Self {
            id: shop_streams::hex::encode(&id.finalize()[..8]),
            key: aead_key(secret),
        }
    }
}

fn aead_key(secret: &[u8; 32]) -> LessSafeKey {
    // AES-256-GCM takes any 32 bytes; `new` fails only on a wrong length.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, secret).unwrap_or_else(|_| unreachable!("a 32-byte AES-256 key")))
}

impl Keyring {
    /// `current` wraps new keys; `previous` are read too (a rotation's old keys).
    pub fn new(current: &[u8; 32], previous: &[[u8; 32]]) -> Self {
        let current = Kek::new(current);
        let previous = previous.iter().map(Kek::new).filter(|k| k.id != current.id).collect();
        Self {
            current,
            previous,
            random: SystemRandom::new(),
        }
    }

    /// The id of the key-encryption key new data keys are wrapped under.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// A new data key for `customer_id`, wrapped under the current key.
    pub fn new_key(&self, customer_id: &str, now_ms: i64) -> Result<StoredKey, SealError> {
        let mut secret = [0u8; 32];
        self.random.fill(&mut secret).map_err(|_| SealError::Random)?;
        let mut id = [0u8; 16];
        self.random.fill(&mut id).map_err(|_| SealError::Random)?;
        let key_id = shop_streams::hex::encode(&id);
        let wrapped = self.seal_with(&self.current.key, &key_aad(customer_id, &key_id), &secret)?;
        Ok(StoredKey {
            customer_id: customer_id.to_owned(),
            key_id,
            kek_id: self.current.id.clone(),
            wrapped,
            created_at: now_ms,
        })
    }

    /// `key` wrapped under the current key-encryption key instead.
    pub fn rewrap(&self, key: &StoredKey) -> Result<StoredKey, SealError> {
        let secret = self.unwrap_key(key)?;
        let wrapped = self.seal_with(&self.current.key, &key_aad(&key.customer_id, &key.key_id), &secret)?;
        Ok(StoredKey {
            kek_id: self.current.id.clone(),
            wrapped,
            ..key.clone()
        })
    }

    /// Whether this process holds the key-encryption key `kek_id`.
    pub fn holds(&self, kek_id: &str) -> bool {
        self.kek(kek_id).is_some()
    }

    /// `delivery` of order `order_id`, sealed under `key`.
    pub fn seal(&self, key: &StoredKey, order_id: &str, delivery: &Delivery) -> Result<SealedDelivery, SealError> {
        let clear = serde_json::to_vec(delivery).map_err(|_| SealError::Corrupt("a delivery".into()))?;
        let data_key = aead_key(&self.unwrap_key(key)?);
        Ok(SealedDelivery {
            order_id: order_id.to_owned(),
            key_id: key.key_id.clone(),
            sealed: self.seal_with(&data_key, &delivery_aad(order_id, &key.key_id), &clear)?,
        })
    }

    /// The delivery `sealed` holds, opened with `key` (the one it names).
    pub fn open(&self, key: &StoredKey, sealed: &SealedDelivery) -> Result<Delivery, SealError> {
        let corrupt = || SealError::Corrupt(format!("the delivery of order {}", sealed.order_id));
        if key.key_id != sealed.key_id {
            return Err(corrupt());
        }
        let data_key = aead_key(&self.unwrap_key(key)?);
        let clear =
            open_with(&data_key, &delivery_aad(&sealed.order_id, &key.key_id), &sealed.sealed).ok_or_else(corrupt)?;
        serde_json::from_slice(&clear).map_err(|_| corrupt())
    }

    fn kek(&self, kek_id: &str) -> Option<&Kek> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == kek_id)
    }

    fn unwrap_key(&self, key: &StoredKey) -> Result<[u8; 32], SealError> {
        let kek = self.kek(&key.kek_id).ok_or_else(|| SealError::UnknownKek {
            key_id: key.key_id.clone(),
            kek_id: key.kek_id.clone(),
        })?;
        open_with(&kek.key, &key_aad(&key.customer_id, &key.key_id), &key.wrapped)
            .and_then(|clear| <[u8; 32]>::try_from(clear.as_slice()).ok())
            .ok_or_else(|| SealError::Corrupt(format!("data key {}", key.key_id)))
    }

    /// Nonce and ciphertext of `clear`, as base64. Nonces are random: a
    /// data key seals one customer's orders, far below GCM's bound of 2^32
    /// random nonces per key.
    fn seal_with(&self, key: &LessSafeKey, aad: &[u8], clear: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut sealed = clear.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut sealed)
            .map_err(|_| SealError::Corrupt("a value to seal".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(BASE64.encode(out))
    }
}

fn open_with(key: &LessSafeKey, aad: &[u8], sealed: &str) -> Option<Vec<u8>> {
    let bytes = BASE64.decode(sealed).ok()?;
    let (nonce, ciphertext) = bytes.split_at_checked(NONCE_LEN)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buffer = ciphertext.to_vec();
    let clear = key.open_in_place(nonce, Aad::from(aad), &mut buffer).ok()?;
    Some(clear.to_vec())
}

fn key_aad(customer_id: &str, key_id: &str) -> Vec<u8> {
    [
        b"shop customer key v1\0",
        customer_id.as_bytes(),
        b"\0",
        key_id.as_bytes(),
    ]
    .concat()
}

fn delivery_aad(order_id: &str, key_id: &str) -> Vec<u8> {
    [b"shop delivery v1\0", order_id.as_bytes(), b"\0", key_id.as_bytes()].concat()
}

/// What a rotation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Data keys now wrapped under the current key-encryption key.
    pub rewrapped: u64,
    /// Data keys under a key-encryption key this process does not hold:
    /// still readable only where that key is.
    pub unknown: u64,
}

/// Re-wraps every data key in `keys` that is not under the keyring's
/// current key-encryption key, `progress` told after each batch.
pub async fn rotate<K: CustomerKeys>(
    keys: &K,
    keyring: &Keyring,
    mut progress: impl FnMut(Rotation),
) -> Result<Rotation, SealError> {
    const BATCH: u32 = 256;
    let mut done = Rotation::default();
    let mut after = String::new();
    loop {
        let batch = keys.keys_not_under(keyring.current_id(), &after, BATCH).await?;
        let Some(last) = batch.last() else {
            return Ok(done);
        };
        after.clone_from(&last.key_id);
        for key in &batch {
            if !keyring.holds(&key.kek_id) {
                done.unknown += 1;
                continue;
            }
            if keys.rewrap_key(&keyring.rewrap(key)?, &key.kek_id).await? {
                done.rewrapped += 1;
            }
        }
        progress(done);
    }
}

/// The audit log's record of `actor` erasing the customer's data at `at`.
pub fn erasure(actor: &Actor, customer_id: &str, at: i64) -> AuditRecord {
    actor.did(
        "order",
        "customer.erase",
        format!("customer:{customer_id}"),
        at,
        &serde_json::json!({}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> Delivery {
        Delivery {
            name: "Kim Minji".into(),
            phone: "+82 10 1234 5678".into(),
            address: "1 Sejong-daero, Seoul".into(),
        }
    }

    #[test]
    fn a_sealed_delivery_opens_with_its_key_and_order_only() {
        let keyring = Keyring::new(&[7; 32], &[]);
        let key = keyring.new_key("alice", 1).expect("a key");
        let sealed = keyring.seal(&key, "order-1", &delivery()).expect("sealed");
        assert!(!sealed.sealed.contains("Seoul"), "not in clear");
        assert_eq!(keyring.open(&key, &sealed).expect("opens"), delivery());

        let moved = SealedDelivery {
            order_id: "order-2".into(),
            ..sealed.clone()
        };
        assert!(
            matches!(keyring.open(&key, &moved), Err(SealError::Corrupt(_))),
            "bound to its order"
        );
        let other = keyring.new_key("alice", 2).expect("another key");
        assert!(keyring.open(&other, &sealed).is_err(), "bound to its key");
        let stolen = StoredKey {
            customer_id: "mallory".into(),
            ..key.clone()
        };
        assert!(
            keyring.open(&stolen, &sealed).is_err(),
            "a key is bound to its customer"
        );
    }

    #[test]
    fn rewrapping_moves_a_key_to_the_new_kek_and_keeps_what_it_sealed() {
        let old = Keyring::new(&[1; 32], &[]);
        let key = old.new_key("bob", 1).expect("a key");
        let sealed = old.seal(&key, "o", &delivery()).expect("sealed");

        let rotating = Keyring::new(&[2; 32], &[[1; 32]]);
        assert!(rotating.holds(&key.kek_id));
        let rewrapped = rotating.rewrap(&key).expect("rewrapped");
        assert_eq!(rewrapped.kek_id, rotating.current_id());
        assert_ne!(rewrapped.wrapped, key.wrapped);

        let new_only = Keyring::new(&[2; 32], &[]);
        assert_eq!(new_only.open(&rewrapped, &sealed).expect("opens"), delivery());
        assert!(matches!(
            new_only.open(&key, &sealed),
            Err(SealError::UnknownKek { .. })
        ));
        assert!(format!("{new_only:?}").contains(new_only.current_id()));
    }

    #[test]
    fn deliveries_are_checked_field_by_field() {
        assert_eq!(delivery().check(), Ok(()));
        let empty = Delivery {
            name: String::new(),
            ..delivery()
        };
        assert_eq!(empty.check().map_err(|e| e.field), Err("delivery.name"));
        let long = Delivery {
            address: "가".repeat(201),
            ..delivery()
        };
        assert_eq!(long.check().map_err(|e| e.field), Err("delivery.address"));
        let exactly = Delivery {
            address: "가".repeat(200),
            ..delivery()
        };
        assert_eq!(exactly.check(), Ok(()), "characters, not bytes");
        let control = Delivery {
            phone: "010\u{0}1234".into(),
            ..delivery()
        };
        assert_eq!(control.check().map_err(|e| e.field), Err("delivery.phone"));
    }
}
