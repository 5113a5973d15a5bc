//! The payment port: asks a payment provider to collect a confirmed order's
//! amount, and the signature its answers (webhook notices) carry.
//!
//! The provider answers later and elsewhere: it calls the shop back at
//! `POST /api/payments/webhook` with a notice signed as DESIGN.md §10 fixes
//! it, `Shop-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">` under the
//! shared webhook secret. [`sign`] and [`verify`] are that scheme, written
//! once for the shop (which verifies) and the simulator (which signs).

use std::future::Future;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use shop_streams::hex;

/// What the provider is asked to collect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentIntent {
    /// The idempotency key too: one order, at most one charge.
    pub order_id: String,
    pub customer_id: String,
    /// In the currency's minor unit, as order totals are.
    pub amount: i64,
    pub currency: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The provider could not be reached, timed out or failed on its side:
    /// ask again later (the order id keeps it to one charge).
    #[error("payment provider unavailable: {0}")]
    Unavailable(#[source] super::Cause),
    /// The provider refused the intent itself (an amount or currency it
    /// does not take): asking again gives the same answer.
    #[error("payment provider refused the intent: {0}")]
    Refused(String),
}

pub trait PaymentProvider: Send + Sync + 'static {
    /// MUST ask the provider to collect `intent` and answer the provider's
    /// intent id once it has accepted it. MUST be idempotent by order id:
    /// asking again for the same order MUST NOT create a second charge and
    /// MUST answer the same intent id. [`PaymentError::Unavailable`] when
    /// the outcome is unknown, [`PaymentError::Refused`] when the provider
    /// will never accept it.
    fn create_intent(&self, intent: &PaymentIntent) -> impl Future<Output = Result<String, PaymentError>> + Send;
}

/// The header a notice's signature travels in.
pub const SIGNATURE_HEADER: &str = "Shop-Signature";

/// `t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>`.
pub fn sign(secret: &[u8], unix: i64, body: &[u8]) -> String {
    format!(
        "t={unix},v1={}",
        hex::encode(&signing(secret, unix, body).finalize().into_bytes())
    )
}

/// Why a signature header does not vouch for a body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is not t=<unix>,v1=<hex>")]
    Malformed,
    #[error("the signature does not match the body")]
    Mismatch,
    /// Signed too long ago (or too far ahead): a captured notice replayed
    /// late, or a clock far off.
    #[error("the signature is {0} s away from now; at most {1} s is accepted")]
    OutOfWindow(i64, i64),
}

/// A checked signature: when it was made, and its MAC (what a replay
/// repeats, so what replays are recognised by).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub unix: i64,
    pub v1: String,
}

/// Checks `header` against `body` under `secret`, `now` and a window of
/// `tolerance_s` seconds either way. Several `v1=` entries (a secret being
/// rolled) pass when any one matches. Compares in constant time.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance_s: i64) -> Result<Signed, SignatureError> {
    let mut unix = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => unix = Some(value.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", value)) => candidates.push(value),
            // Other schemes a provider may add are not ours to check.
            Some(_) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    let unix = unix.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let matching = candidates.into_iter().find(|candidate| {
        hex::decode(candidate).is_some_and(|given| signing(secret, unix, body).verify_slice(&given).is_ok())
    });
    let v1 = matching.ok_or(SignatureError::Mismatch)?;
    let skew = now.saturating_sub(unix);
    if skew.abs() > tolerance_s {
        return Err(SignatureError::OutOfWindow(skew, tolerance_s));
    }
    Ok(Signed {
        unix,
        v1: v1.to_ascii_lowercase(),
    })
}

/// The MAC of `"t.body"` under `secret`, ready to finish or to verify.
fn signing(secret: &[u8], unix: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(unix.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec-0123456789abcdef0123456789abcdef";

    #[test]
    fn a_signature_verifies_its_body_within_the_window_only() {
        let body = br#"{"order_id":"o-1","status":"succeeded"}"#;
        let header = sign(SECRET, 1_000, body);
        let signed = verify(SECRET, &header, body, 1_100, 300).expect("fresh and matching");
        assert_eq!(signed.unix, 1_000);
        assert_eq!(
            verify(SECRET, &header, body, 1_301, 300),
            Err(SignatureError::OutOfWindow(301, 300))
        );
        assert_eq!(
            verify(SECRET, &header, body, 699, 300),
            Err(SignatureError::OutOfWindow(-301, 300))
        );
        assert_eq!(
            verify(b"another secret", &header, body, 1_000, 300),
            Err(SignatureError::Mismatch)
        );
        let tampered = br#"{"order_id":"o-1","status":"failed"}"#;
        assert_eq!(
            verify(SECRET, &header, tampered, 1_000, 300),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed too: moving it breaks the signature.
        let moved = header.replace("t=1000", "t=1001");
        assert_eq!(verify(SECRET, &moved, body, 1_000, 300), Err(SignatureError::Mismatch));
    }

    #[test]
    fn malformed_headers_are_told_apart_from_wrong_ones() {
        for header in ["", "v1=00", "t=1", "t=x,v1=00", "garbage"] {
            assert_eq!(
                verify(SECRET, header, b"{}", 1, 300),
                Err(SignatureError::Malformed),
                "{header}"
            );
        }
        assert_eq!(
            verify(SECRET, "t=1,v1=zz", b"{}", 1, 300),
            Err(SignatureError::Mismatch)
        );
        let good = sign(SECRET, 1, b"{}");
        let rolled = format!("t=1,v1={},{}", "ab".repeat(32), good.trim_start_matches("t=1,"));
        assert!(verify(SECRET, &rolled, b"{}", 1, 300).is_ok(), "{rolled}");
    }
}
