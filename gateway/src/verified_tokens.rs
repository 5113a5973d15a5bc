//! Bearer tokens already verified, and whom they name.
//!
//! A client sends the same token with every request until it expires, and
//! checking it again each time (two parses and an HMAC or RSA check) was
//! about 4% of a loaded shop's CPU. What a verification concludes holds for
//! as long as the token lives: its signature, issuer, audience and `nbf`
//! do not change, and a lifetime that passed the cap only shortens as time
//! goes on. So a token that passed is kept with its expiry, and its next
//! request is a map look-up. Only tokens that passed are kept: a forged or
//! refused one is checked in full every time, and only the holder of a
//! signing key can add entries. The map is keyed by the whole token, under
//! a per-process random hash, so no one can aim at another's entry.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::auth::Caller;

/// The most tokens held. Past it, the expired ones go; if all are live,
/// every one goes and the next requests are verified anew.
const MOST_HELD: usize = 10_000;

#[derive(Default)]
pub(crate) struct VerifiedTokens {
    held: RwLock<HashMap<Box<str>, Verified>>,
}

struct Verified {
    caller: Caller,
    /// Unix seconds after which the token is refused (`exp` plus the
    /// clock leeway verification allows).
    usable_until: u64,
}

impl VerifiedTokens {
    /// Whom `token` names, if it was verified before and `now` (Unix
    /// seconds) is within its life.
    pub(crate) fn get(&self, token: &str, now: u64) -> Option<Caller> {
        let held = self.held.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        held.get(token)
            .filter(|verified| now <= verified.usable_until)
            .map(|verified| verified.caller.clone())
    }

    /// Keeps `token`, just verified, for its remaining life.
    pub(crate) fn keep(&self, token: &str, caller: &Caller, usable_until: u64, now: u64) {
        let mut held = self.held.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if held.len() >= MOST_HELD && !held.contains_key(token) {
            held.retain(|_, verified| now <= verified.usable_until);
            if held.len() >= MOST_HELD {
                held.clear();
            }
        }
        held.insert(
            token.into(),
            Verified {
                caller: caller.clone(),
                usable_until,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.read().map_or(0, |held| held.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::CallerRole;

    fn caller(subject: &str) -> Caller {
        Caller {
            subject: subject.to_owned(),
            role: CallerRole::Customer,
        }
    }

    #[test]
    fn a_kept_token_names_its_caller_until_it_expires() {
        let tokens = VerifiedTokens::default();
        assert_eq!(tokens.get("t", 100), None);
        tokens.keep("t", &caller("alice"), 105, 100);
        assert_eq!(tokens.get("t", 100), Some(caller("alice")));
        assert_eq!(tokens.get("t", 105), Some(caller("alice")));
        assert_eq!(tokens.get("t", 106), None, "an expired token must be verified again");
        assert_eq!(tokens.get("t2", 100), None);
    }

    #[test]
    fn a_full_map_drops_the_expired_first_then_everything() {
        let tokens = VerifiedTokens::default();
        for i in 0..MOST_HELD {
            // Every other one has expired by 200.
            let until = if i % 2 == 0 { 150 } else { 300 };
            tokens.keep(&format!("t{i}"), &caller("c"), until, 100);
        }
        assert_eq!(tokens.len(), MOST_HELD);
        tokens.keep("new", &caller("n"), 300, 200);
        assert_eq!(tokens.len(), MOST_HELD / 2 + 1, "only the expired went");
        assert_eq!(tokens.get("t1", 200), Some(caller("c")));
        assert_eq!(tokens.get("new", 200), Some(caller("n")));

        for i in 0..MOST_HELD {
            tokens.keep(&format!("u{i}"), &caller("c"), 300, 200);
        }
        assert!(tokens.len() <= MOST_HELD, "never more than the most held");
        assert_eq!(tokens.get(&format!("u{}", MOST_HELD - 1), 200), Some(caller("c")));
    }
}
