//! Bearer tokens: who is calling, and in which role.
//!
//! Tokens are JWTs signed with HS256 (`SHOP_JWT_SECRET`) or, from an
//! identity provider, RS256 (`SHOP_JWT_PUBLIC_KEY`); the subject is the
//! caller's id (a customer's orders are theirs) and the `role` claim is one
//! of `customer`, `admin` or `payment`. Third-party callers may send an API
//! key instead (`X-Api-Key`), configured with its name and role.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use shop_runtime::ports::{Clock, SystemClock};

use crate::problem::Problem;
use crate::verified_tokens::VerifiedTokens;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallerRole {
    Customer,
    Admin,
    Payment,
}

impl CallerRole {
    /// `customer`, `admin` or `payment`.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Customer, Self::Admin, Self::Payment]
            .into_iter()
            .find(|role| role.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Admin => "admin",
            Self::Payment => "payment",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: CallerRole,
    iat: u64,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
}

/// What a token must say beyond its signature: its issuer and audience
/// (when set), and a lifetime no longer than `max_ttl`. `exp` is always
/// required and `nbf` honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenChecks {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub max_ttl: Duration,
}

impl Default for TokenChecks {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            max_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// Issues and checks credentials: HS256 tokens signed with the shared
/// secret (what `shop token` issues), RS256 tokens from an identity
/// provider whose public key is configured, and API keys for third-party
/// callers.
pub struct Auth {
    checks: TokenChecks,
    /// `None`: no shared secret, so no HS256 tokens (RS256 alone).
    encoding: Option<EncodingKey>,
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    /// Keys from the configuration (`SHOP_API_KEYS`).
    api_keys: Vec<ApiKey>,
    /// Keys from the deployment's key store, replaced as it changes.
    stored: StoredApiKeys,
    /// Tokens that passed, so a caller's next requests skip the check.
    verified: VerifiedTokens,
}

/// The SHA-256 of an API key, as it is stored and compared.
pub fn api_key_digest(key: &str) -> [u8; 32] {
    digest(key)
}

/// An API key as the verifier holds it: never the key, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub name: String,
    /// Its scope: what it may call.
    pub role: CallerRole,
    pub digest: [u8; 32],
    /// Milliseconds since the epoch after which it is refused.
    pub expires_ms: Option<i64>,
}

/// The stored keys an [`Auth`] accepts, shared with whatever keeps them
/// current (`shop serve` reads the key store every few seconds).
#[derive(Debug, Clone, Default)]
pub struct StoredApiKeys(Arc<RwLock<Vec<ApiKey>>>);

impl StoredApiKeys {
    /// From now on, exactly `keys` (and the configured ones) are accepted.
    pub fn replace(&self, keys: Vec<ApiKey>) {
        match self.0.write() {
            Ok(mut held) => *held = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
    }
}

/// Equal digests, compared in time that does not depend on where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("rs256", &self.rs256.is_some())
            .field("api_keys", &self.api_keys.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot sign the token: {0}")]
pub struct SignError(String);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an RSA public key in PEM form: {0}")]
    BadPublicKey(String),
    #[error("API key {0:?} is shorter than 16 characters")]
    ShortApiKey(String),
}

/// The header third-party callers send their API key in.
pub const API_KEY_HEADER: &str = "x-api-key";

/// How far a token's `exp` and `nbf` may be off this machine's clock.
const LEEWAY_SECS: u64 = 5;

fn validation(algorithm: Algorithm, checks: &TokenChecks) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    let mut required = vec!["exp", "sub"];
    if let Some(issuer) = &checks.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    match &checks.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Auth {
    pub fn hs256(secret: &[u8]) -> Self {
        Self {
            checks: TokenChecks::default(),
            encoding: Some(EncodingKey::from_secret(secret)),
            hs256: Some(DecodingKey::from_secret(secret)),
            rs256: None,
            api_keys: Vec::new(),
            stored: StoredApiKeys::default(),
            verified: VerifiedTokens::default(),
        }
    }

    /// RS256 tokens from the holder of this public key, and no HS256 at all:
    /// with no shared secret configured, none is accepted.
    pub fn rs256_only(pem: &[u8]) -> Result<Self, KeyError> {
        Self {
            checks: TokenChecks::default(),
            encoding: None,
            hs256: None,
            rs256: None,
            api_keys: Vec::new(),
            stored: StoredApiKeys::default(),
            verified: VerifiedTokens::default(),
        }
        .with_rs256_public_key(pem)
    }

    /// Checks tokens (and issues them) by `checks` instead of the defaults.
    pub fn with_token_checks(mut self, checks: TokenChecks) -> Self {
        self.checks = checks;
        self.verified = VerifiedTokens::default();
        self
    }

    /// Also accepts RS256 tokens signed by the holder of this public key.
    pub fn with_rs256_public_key(mut self, pem: &[u8]) -> Result<Self, KeyError> {
        let key = DecodingKey::from_rsa_pem(pem).map_err(|e| KeyError::BadPublicKey(e.to_string()))?;
        self.rs256 = Some(key);
        self.verified = VerifiedTokens::default();
        Ok(self)
    }

    /// Accepts `key` in the `X-Api-Key` header as `name` in `role`.
    pub fn with_api_key(mut self, name: &str, role: CallerRole, key: &str) -> Result<Self, KeyError> {
        if key.len() < 16 {
            return Err(KeyError::ShortApiKey(name.to_owned()));
        }
        self.api_keys.push(ApiKey {
            name: name.to_owned(),
            role,
            expires_ms: None,
            digest: digest(key),
        });
        Ok(self)
    }

    /// An HS256 token for `subject` in `role`, valid for `ttl`.
    pub fn issue(&self, subject: &str, role: CallerRole, ttl: Duration) -> Result<String, SignError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let claims = Claims {
            sub: subject.to_owned(),
            role,
            iat: now,
            exp: now.saturating_add(ttl.as_secs()),
            iss: self.checks.issuer.clone(),
            aud: self.checks.audience.clone(),
        };
        let encoding = self
            .encoding
            .as_ref()
            .ok_or_else(|| SignError("no shared secret to sign with (RS256 only)".into()))?;
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, encoding).map_err(|e| SignError(e.to_string()))
    }

    pub fn verify(&self, token: &str) -> Result<Caller, Problem> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if let Some(caller) = self.verified.get(token, now) {
            return Ok(caller);
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| Problem::unauthorized("the token is not a valid JWT"))?;
        let (key, algorithm) = match (header.alg, &self.hs256, &self.rs256) {
            (Algorithm::HS256, Some(key), _) => (key, Algorithm::HS256),
            (Algorithm::RS256, _, Some(key)) => (key, Algorithm::RS256),
            _ => {
                let accepted = match (&self.hs256, &self.rs256) {
                    (Some(_), Some(_)) => "HS256 or RS256",
                    (None, Some(_)) => "RS256",
                    _ => "HS256",
                };
                return Err(Problem::unauthorized(format!(
                    "the token must be signed with {accepted}"
                )));
            }
        };
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &validation(algorithm, &self.checks)).map_err(|error| {
                let why = match error.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
                    ErrorKind::InvalidIssuer => "the token's issuer is not the one this shop trusts",
                    ErrorKind::InvalidAudience => "the token is meant for another audience",
                    ErrorKind::InvalidSignature => "the token's signature does not match",
                    ErrorKind::Json(_) | ErrorKind::MissingRequiredClaim(_) => {
                        "the token lacks a subject, a role or an expiry"
                    }
                    _ => "the token is not a valid JWT",
                };
                Problem::unauthorized(why)
            })?;
        if data.claims.sub.is_empty() {
            return Err(Problem::unauthorized("the token's subject is empty"));
        }
        let lifetime = data.claims.exp.saturating_sub(data.claims.iat.min(now));
        if lifetime > self.checks.max_ttl.as_secs() {
            return Err(Problem::unauthorized(format!(
                "the token lives {lifetime} s, longer than the {} s this shop accepts",
                self.checks.max_ttl.as_secs()
            )));
        }
        let caller = Caller {
            subject: data.claims.sub,
            role: data.claims.role,
        };
        self.verified
            .keep(token, &caller, data.claims.exp.saturating_add(LEEWAY_SECS), now);
        Ok(caller)
    }

    pub fn verify_api_key(&self, key: &str) -> Result<Caller, Problem> {
        let presented = digest(key);
        let stored = self.stored.0.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Every key is compared, in constant time, whichever matches, so the
        // time taken says nothing about which one came close.
        let mut found = None;
        for candidate in self.api_keys.iter().chain(stored.iter()) {
            if same(&candidate.digest, &presented) {
                found = Some(candidate);
            }
        }
        match found {
            Some(key) if key.expires_ms.is_some_and(|expires| SystemClock.now_ms() >= expires) => {
                Err(Problem::unauthorized("the API key has expired"))
            }
            Some(key) => Ok(Caller {
                subject: key.name.clone(),
                role: key.role,
            }),
            None => Err(Problem::unauthorized("unknown API key")),
        }
    }

    /// The stored keys this verifier accepts, for whoever keeps them current.
    pub fn stored_api_keys(&self) -> StoredApiKeys {
        self.stored.clone()
    }

    /// The caller the request's credentials name: an `X-Api-Key`, or a
    /// bearer token; `None` when it carries neither.
    pub fn authenticate(&self, headers: &HeaderMap) -> Option<Result<Caller, Problem>> {
        if let Some(key) = headers.get(API_KEY_HEADER) {
            return Some(match key.to_str() {
                Ok(key) => self.verify_api_key(key.trim()),
                Err(_) => Err(Problem::unauthorized("unknown API key")),
            });
        }
        let value = headers.get(header::AUTHORIZATION)?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        Some(match token {
            Some(token) => self.verify(token),
            None => Err(Problem::unauthorized(
                "the Authorization header must be \"Bearer <token>\"",
            )),
        })
    }
}

/// Who is calling: the token's subject and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
    pub role: CallerRole,
}

impl Caller {
    /// The caller as the audit log records them, acting through `request_id`.
    pub fn actor(&self, request_id: &str) -> shop_runtime::audit::Actor {
        shop_runtime::audit::Actor::new(self.subject.as_str(), self.role.as_str(), request_id)
    }

    /// `Ok` when the caller has one of `roles`, a 403 problem otherwise.
    pub fn require(&self, roles: &[CallerRole]) -> Result<(), Problem> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Err(Problem::forbidden(format!(
            "this needs the role {}; the token has {}",
            allowed.join(" or "),
            self.role.as_str()
        )))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        // Verified already by the rate-limit layer.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let auth = parts
            .extensions
            .get::<Arc<Auth>>()
            .ok_or_else(|| Problem::internal("no credential verifier installed"))?
            .clone();
        auth.authenticate(&parts.headers).unwrap_or_else(|| {
            Err(Problem::unauthorized(
                "send a bearer token (Authorization: Bearer <token>) or an API key (X-Api-Key)",
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::{Auth, CallerRole, TokenChecks};

    const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }

    fn signed(claims: serde_json::Value) -> String {
        encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET)).expect("signed")
    }

    fn refusal(auth: &Auth, token: &str) -> String {
        auth.verify(token).map(|_| String::new()).unwrap_or_else(|p| p.detail)
    }

    #[test]
    fn issuer_audience_not_before_and_lifetime_are_checked() {
        let checks = TokenChecks {
            issuer: Some("https://id.shop.example".into()),
            audience: Some("shop-api".into()),
            max_ttl: Duration::from_secs(3600),
        };
        let auth = Auth::hs256(SECRET).with_token_checks(checks);
        let t = now();
        let good = json!({"sub": "alice", "role": "customer", "iat": t, "exp": t + 600,
                          "iss": "https://id.shop.example", "aud": "shop-api"});
        assert!(auth.verify(&signed(good.clone())).is_ok());
        // What `shop token` issues under the same settings passes too.
        let issued = auth
            .issue("bob", CallerRole::Admin, Duration::from_secs(600))
            .expect("issued");
        assert_eq!(auth.verify(&issued).map(|c| c.subject).ok().as_deref(), Some("bob"));

        let mut other_issuer = good.clone();
        other_issuer["iss"] = json!("https://evil.example");
        assert!(refusal(&auth, &signed(other_issuer)).contains("issuer"));
        let mut no_issuer = good.clone();
        no_issuer.as_object_mut().expect("object").remove("iss");
        assert!(!refusal(&auth, &signed(no_issuer)).is_empty());
        let mut other_audience = good.clone();
        other_audience["aud"] = json!("billing");
        assert!(refusal(&auth, &signed(other_audience)).contains("audience"));
        let mut not_yet = good.clone();
        not_yet["nbf"] = json!(t + 600);
        assert!(refusal(&auth, &signed(not_yet)).contains("not valid yet"));
        let mut forever = good.clone();
        forever["exp"] = json!(t + 48 * 3600);
        assert!(refusal(&auth, &signed(forever)).contains("longer than"));
        let mut no_expiry = good;
        no_expiry.as_object_mut().expect("object").remove("exp");
        assert!(!refusal(&auth, &signed(no_expiry)).is_empty());
    }

    #[test]
    fn a_token_verified_once_is_still_checked_against_its_forgeries() {
        let auth = Auth::hs256(SECRET);
        let t = now();
        let token = signed(json!({"sub": "alice", "role": "customer", "iat": t, "exp": t + 600}));
        for _ in 0..2 {
            assert_eq!(auth.verify(&token).map(|c| c.subject).ok().as_deref(), Some("alice"));
        }
        // The same claims under another signature, and other claims under
        // the kept token's signature: neither is the kept token.
        let (body, signature) = token.rsplit_once('.').expect("three parts");
        // Its first character changed: all six of its bits count, so the
        // signature stays valid base64 (the last character's spare bits
        // would not) and only fails to match.
        let first = if signature.starts_with('A') { "B" } else { "A" };
        let forged_signature = format!("{first}{}", &signature[1..]);
        assert!(refusal(&auth, &format!("{body}.{forged_signature}")).contains("signature"));
        let other = signed(json!({"sub": "mallory", "role": "admin", "iat": t, "exp": t + 600}));
        let (other_body, _) = other.rsplit_once('.').expect("three parts");
        assert!(refusal(&auth, &format!("{other_body}.{signature}")).contains("signature"));
        // A token that has expired (beyond the leeway) is refused though
        // a fresh one of the same caller was kept.
        let expired = signed(json!({"sub": "alice", "role": "customer", "iat": t - 600, "exp": t - 60}));
        assert!(refusal(&auth, &expired).contains("expired"));
    }

    #[test]
    fn without_a_shared_secret_hs256_is_refused() {
        // Any valid RSA public key will do: this one is only ever verified against.
        let pem = include_bytes!("../../shop/tests/fixtures/rs256-test-public.pem");
        let auth = Auth::rs256_only(pem).expect("a public key");
        let token = signed(json!({"sub": "alice", "role": "customer", "iat": now(), "exp": now() + 60}));
        assert!(refusal(&auth, &token).contains("RS256"));
        assert!(auth.issue("x", CallerRole::Customer, Duration::from_secs(60)).is_err());
    }

    #[test]
    fn stored_api_keys_are_accepted_until_they_expire_or_are_replaced() {
        let auth = Auth::hs256(SECRET);
        let stored = auth.stored_api_keys();
        let key = "k".repeat(64);
        assert!(auth.verify_api_key(&key).is_err(), "not stored yet");
        let live = super::ApiKey {
            name: "partner".into(),
            role: CallerRole::Customer,
            digest: super::api_key_digest(&key),
            expires_ms: None,
        };
        stored.replace(vec![live.clone()]);
        let caller = auth.verify_api_key(&key).expect("accepted");
        assert_eq!(
            (caller.subject.as_str(), caller.role),
            ("partner", CallerRole::Customer)
        );
        stored.replace(vec![super::ApiKey {
            expires_ms: Some(1),
            ..live
        }]);
        let expired = auth.verify_api_key(&key).expect_err("expired");
        assert!(format!("{expired:?}").contains("expired"), "{expired:?}");
        stored.replace(Vec::new());
        assert!(
            auth.verify_api_key(&key).is_err(),
            "revoked keys are dropped from the set"
        );
        assert_eq!(CallerRole::parse("admin"), Some(CallerRole::Admin));
        assert_eq!(CallerRole::parse("root"), None);
    }
}
