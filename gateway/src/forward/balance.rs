//! Which instance of a context a request goes to first, and which next when
//! it must be tried again: the balancing strategies a gateway uses per
//! context (`SHOP_LB_ORDER`, `SHOP_LB_INVENTORY`).
//!
//! A strategy only orders the instances; [`super::upstream::Pool`] then
//! skips the unhealthy ones, the open circuits and those a request already
//! tried. So every strategy degrades the same way: an instance out of the
//! rotation passes its share to the next in the strategy's order.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::str::FromStr;

/// How a pool orders its instances for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Each instance in turn.
    RoundRobin,
    /// The instance with the fewest of this gateway's requests in flight;
    /// ties in turn. A slow instance holds its requests longer, so it gets
    /// fewer new ones.
    LeastRequests,
    /// In turn, each instance as often as its announced weight.
    Weighted,
    /// By the caller (rendezvous hashing on the customer, else the client
    /// address): one caller's requests go to one instance while it lives,
    /// and when an instance joins or leaves, only the callers it takes or
    /// held move. Every gateway of a deployment agrees on the choice.
    Hash,
}

impl Balance {
    pub const NAMES: &'static str = "round-robin, least-requests, weighted or hash";

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round-robin",
            Self::LeastRequests => "least-requests",
            Self::Weighted => "weighted",
            Self::Hash => "hash",
        }
    }
}

/// A balancing strategy's name that is none of [`Balance::NAMES`].
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a balancing strategy: expected {names}", names = Balance::NAMES)]
pub struct BadBalance(pub String);

impl FromStr for Balance {
    type Err = BadBalance;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [Self::RoundRobin, Self::LeastRequests, Self::Weighted, Self::Hash]
            .into_iter()
            .find(|balance| balance.as_str() == text.trim())
            .ok_or_else(|| BadBalance(text.to_owned()))
    }
}

/// What a strategy sees of one instance.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate<'a> {
    pub url: &'a str,
    /// This gateway's requests to it still unanswered.
    pub in_flight: usize,
    /// Its announced weight, at least 1.
    pub weight: u32,
}

/// Indexes of `candidates`, in the order a request tries them. `turn` is
/// the pool's count of requests so far; `caller` keys [`Balance::Hash`].
pub(crate) fn order(balance: Balance, candidates: &[Candidate<'_>], turn: usize, caller: &str) -> Vec<usize> {
    let count = candidates.len();
    if count == 0 {
        return Vec::new();
    }
    let from = |first: usize| (0..count).map(move |n| (first + n) % count);
    match balance {
        Balance::RoundRobin => from(turn % count).collect(),
        Balance::LeastRequests => {
            let mut order: Vec<usize> = from(turn % count).collect();
            // Stable: among equals, the turn decides.
            order.sort_by_key(|&i| candidates[i].in_flight);
            order
        }
        Balance::Weighted => {
            // Turn `t` lands in the slot `t mod total` of a cycle in which
            // each instance holds as many slots as its weight.
            let total: u64 = candidates.iter().map(|c| u64::from(c.weight.max(1))).sum();
            let mut slot = turn as u64 % total;
            let first = candidates
                .iter()
                .position(|c| {
                    let weight = u64::from(c.weight.max(1));
                    let here = slot < weight;
                    slot = slot.saturating_sub(weight);
                    here
                })
                .unwrap_or(0);
            from(first).collect()
        }
        Balance::Hash => {
            let mut scored: Vec<(u64, usize)> = candidates
                .iter()
                .enumerate()
                .map(|(i, c)| (rendezvous(caller, c.url), i))
                .collect();
            scored.sort_unstable_by(|a, b| b.cmp(a));
            scored.into_iter().map(|(_, i)| i).collect()
        }
    }
}

/// The caller's score for the instance at `url`: the highest score wins.
/// SipHash with fixed keys, so every gateway running this build agrees.
fn rendezvous(caller: &str, url: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    caller.hash(&mut hasher);
    url.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn candidates<'a>(urls: &[&'a str]) -> Vec<Candidate<'a>> {
        urls.iter()
            .map(|url| Candidate {
                url,
                in_flight: 0,
                weight: 1,
            })
            .collect()
    }

    #[test]
    fn names_are_the_documented_ones() {
        for name in ["round-robin", "least-requests", "weighted", "hash"] {
            assert_eq!(name.parse::<Balance>().map(Balance::as_str).ok(), Some(name));
        }
        assert!("random".parse::<Balance>().is_err());
        assert!("".parse::<Balance>().is_err());
    }

    #[test]
    fn round_robin_rotates_and_every_order_holds_every_instance() {
        let all = candidates(&["a", "b", "c"]);
        assert_eq!(order(Balance::RoundRobin, &all, 4, ""), [1, 2, 0]);
        for balance in [
            Balance::RoundRobin,
            Balance::LeastRequests,
            Balance::Weighted,
            Balance::Hash,
        ] {
            let mut seen = order(balance, &all, 7, "alice");
            seen.sort_unstable();
            assert_eq!(seen, [0, 1, 2], "{balance:?}");
            assert!(order(balance, &[], 7, "alice").is_empty());
        }
    }

    #[test]
    fn least_requests_prefers_the_idlest_and_rotates_among_equals() {
        let mut all = candidates(&["a", "b", "c"]);
        all[0].in_flight = 5;
        all[1].in_flight = 1;
        all[2].in_flight = 3;
        assert_eq!(order(Balance::LeastRequests, &all, 0, ""), [1, 2, 0]);
        let idle = candidates(&["a", "b", "c"]);
        let firsts: Vec<usize> = (0..3)
            .map(|turn| order(Balance::LeastRequests, &idle, turn, "")[0])
            .collect();
        assert_eq!(firsts, [0, 1, 2]);
    }

    #[test]
    fn weights_one_two_three_give_shares_one_two_three() {
        let mut all = candidates(&["a", "b", "c"]);
        for (candidate, weight) in all.iter_mut().zip([1, 2, 3]) {
            candidate.weight = weight;
        }
        let mut counts = [0; 3];
        for turn in 0..6000 {
            counts[order(Balance::Weighted, &all, turn, "")[0]] += 1;
        }
        assert_eq!(counts, [1000, 2000, 3000]);
    }

    #[test]
    fn hashing_keeps_a_caller_and_moves_only_the_newcomers_share() {
        let three = candidates(&["http://a:1", "http://b:1", "http://c:1"]);
        let four = candidates(&["http://a:1", "http://b:1", "http://c:1", "http://d:1"]);
        let callers: Vec<String> = (0..3000).map(|n| format!("customer-{n}")).collect();
        let place = |all: &[Candidate<'_>], caller: &str| all[order(Balance::Hash, all, 0, caller)[0]].url.to_owned();
        let before: Vec<String> = callers.iter().map(|c| place(&three, c)).collect();
        for (caller, url) in callers.iter().zip(&before).take(100) {
            assert!((0..5).all(|turn| three[order(Balance::Hash, &three, turn, caller)[0]].url == url));
        }
        let mut shares: HashMap<&str, usize> = HashMap::new();
        for url in &before {
            *shares.entry(url).or_default() += 1;
        }
        assert!(shares.values().all(|&n| (800..1200).contains(&n)), "{shares:?}");
        let after: Vec<String> = callers.iter().map(|c| place(&four, c)).collect();
        let moved: Vec<&String> = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b != a)
            .map(|(_, a)| a)
            .collect();
        assert!(moved.iter().all(|url| *url == "http://d:1"), "only to the newcomer");
        let share = moved.len() as f64 / callers.len() as f64;
        assert!((0.18..0.33).contains(&share), "{share}: about a quarter moves");
    }
}
