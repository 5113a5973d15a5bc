//! Which components from a rules directory may run: a directory anyone can
//! write to must not be a way to run code in every instance.
//!
//! A component is admitted when its SHA-256 is on the allow list, or when
//! the file beside it, `NAME.wasm.sig`, holds an Ed25519 signature of its
//! bytes (64 bytes, raw or as 128 hex digits) by one of the trusted keys.

use std::collections::BTreeSet;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use shop_streams::hex;

#[derive(Debug, Clone, Default)]
pub struct RuleTrust {
    /// SHA-256 digests (lower-case hex) of admitted components.
    pub allowed: BTreeSet<String>,
    /// Keys whose signature admits a component.
    pub keys: Vec<VerifyingKey>,
}

impl RuleTrust {
    /// A key from its 32 bytes as 64 hex digits.
    pub fn key_from_hex(text: &str) -> Option<VerifyingKey> {
        let bytes: [u8; 32] = hex::decode(text.trim())?.try_into().ok()?;
        VerifyingKey::from_bytes(&bytes).ok()
    }

    /// Whether the component `wasm`, of digest `hash`, with `signature` (the
    /// contents of its `.sig` file, if any) may run.
    pub fn admits(&self, hash: &str, wasm: &[u8], signature: Option<&[u8]>) -> bool {
        if self.allowed.contains(hash) {
            return true;
        }
        let Some(signature) = signature.and_then(parse_signature) else {
            return false;
        };
        self.keys.iter().any(|key| key.verify(wasm, &signature).is_ok())
    }
}

fn parse_signature(bytes: &[u8]) -> Option<Signature> {
    let raw: [u8; 64] = match bytes.len() {
        64 => bytes.try_into().ok()?,
        _ => hex::decode(std::str::from_utf8(bytes).ok()?.trim())?.try_into().ok()?,
    };
    Some(Signature::from_bytes(&raw))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    #[test]
    fn admits_by_digest_or_by_a_trusted_signature_only() {
        let signer = SigningKey::from_bytes(&[7; 32]);
        let stranger = SigningKey::from_bytes(&[8; 32]);
        let wasm = b"\0asm component bytes";
        let trust = RuleTrust {
            allowed: BTreeSet::from(["ab".repeat(32)]),
            keys: vec![signer.verifying_key()],
        };
        assert!(trust.admits(&"ab".repeat(32), b"anything", None), "on the allow list");
        let signed = signer.sign(wasm).to_bytes();
        assert!(trust.admits("cd", wasm, Some(&signed)), "raw signature");
        let text = hex::encode(&signed);
        assert!(
            trust.admits("cd", wasm, Some(format!("{text}\n").as_bytes())),
            "hex signature"
        );
        assert!(
            !trust.admits("cd", b"\0asm tampered bytes", Some(&signed)),
            "another component"
        );
        assert!(
            !trust.admits("cd", wasm, Some(&stranger.sign(wasm).to_bytes())),
            "an untrusted key"
        );
        assert!(!trust.admits("cd", wasm, None), "unsigned");
        assert!(!trust.admits("cd", wasm, Some(b"garbage")), "not a signature");
        let key = hex::encode(&signer.verifying_key().to_bytes());
        assert_eq!(RuleTrust::key_from_hex(&key), Some(signer.verifying_key()));
        assert_eq!(RuleTrust::key_from_hex("zz"), None);
    }
}
