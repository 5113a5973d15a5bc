//! The prices that intake read from the order side's catalogue copy, kept
//! and refreshed in bulk.
//!
//! Every new order is priced from the catalogue copy. Even grouped with
//! other orders' lookups, that read is a query per handful of orders, while
//! prices change seldom. So the prices read are kept, and a background
//! round ([`super::orders::run_price_refresh`]) reads the ones in use again
//! in one query twice per lifetime; a price older than the lifetime is not
//! served. Expiring entries one by one would not do: over 1,000 products at
//! 4,000 orders/s, a one-second lifetime still cost about as many queries
//! as none (docs/benchmarks.md).
//!
//! A change this process applies to the copy is seen at once; one that
//! another order instance applied (instances share the copy's updates) is
//! seen within the lifetime. The copy already trails the inventory side by
//! however long its events take, so this bounds a lag that exists anyway;
//! it never invents a price. A product the copy does not know is not
//! remembered: it is asked for again, so it can be ordered as soon as the
//! copy learns of it. A product no order asked for between two rounds is
//! dropped, so the rounds read only what sells.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use crate::ports::CatalogueEntry;

/// Most products held; past it, expired entries go, or all when none has.
const MOST_HELD: usize = 100_000;

/// The shortest pause between refresh rounds, whatever the lifetime: below
/// it, prices expire between rounds and intake reads them itself.
const SHORTEST_ROUND: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct PriceCache {
    lifetime_ms: i64,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    entries: HashMap<String, Kept>,
    /// Counts the changes applied: a read that began before one may carry
    /// the price it replaced, so it is not kept.
    changes: u64,
}

#[derive(Debug)]
struct Kept {
    entry: CatalogueEntry,
    /// When (ms) the read that brought it began.
    read_at: i64,
    /// Whether an order asked for it since the last refresh round.
    used: bool,
}

/// The changes counted when a read began, for [`PriceCache::keep`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Since(u64);

/// What a look-up found: the entries held, and the products to read.
#[derive(Debug)]
pub struct Lookup {
    pub held: Vec<CatalogueEntry>,
    pub missing: Vec<String>,
    pub since: Since,
}

/// The products a refresh round reads again.
#[derive(Debug)]
pub struct Due {
    pub product_ids: Vec<String>,
    pub since: Since,
}

impl PriceCache {
    /// Serves prices for `lifetime` after their read; a zero lifetime
    /// keeps none.
    pub fn new(lifetime: Duration) -> Self {
        Self {
            lifetime_ms: i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX),
            held: Mutex::default(),
        }
    }

    /// Keeps nothing: every look-up reads the copy.
    pub fn off() -> Self {
        Self::new(Duration::ZERO)
    }

    /// How often the prices in use are read again: twice per lifetime, so
    /// none expires while the rounds succeed (but not more often than
    /// every [`SHORTEST_ROUND`]). `None` when nothing is kept.
    pub fn refresh_every(&self) -> Option<Duration> {
        let half = Duration::from_millis(u64::try_from(self.lifetime_ms / 2).unwrap_or(0));
        (self.lifetime_ms > 0).then(|| half.max(SHORTEST_ROUND))
    }

    /// The entries of `product_ids` (each once) read less than the lifetime
    /// before `now_ms`, and the products that have to be read.
    pub fn look_up(&self, product_ids: &[String], now_ms: i64) -> Lookup {
        let mut unique = HashSet::with_capacity(product_ids.len());
        let asked = product_ids.iter().filter(|id| unique.insert(id.as_str()));
        if self.lifetime_ms == 0 {
            return Lookup {
                held: Vec::new(),
                missing: asked.cloned().collect(),
                since: Since(0),
            };
        }
        let mut held = self.lock();
        let mut lookup = Lookup {
            held: Vec::with_capacity(product_ids.len()),
            missing: Vec::new(),
            since: Since(held.changes),
        };
        for id in asked {
            match held.entries.get_mut(id) {
                Some(kept) if now_ms.saturating_sub(kept.read_at) < self.lifetime_ms => {
                    kept.used = true;
                    lookup.held.push(kept.entry.clone());
                }
                _ => lookup.missing.push(id.clone()),
            }
        }
        lookup
    }

    /// Keeps `read`, entries the copy held at `read_at_ms` (taken before
    /// the read began) that an order asked for, unless a change was
    /// applied since `since`.
    pub fn keep(&self, since: Since, read: &[CatalogueEntry], read_at_ms: i64) {
        self.hold(since, read, read_at_ms, true);
    }

    /// Keeps `read` as [`Self::keep`] does, for a refresh round: an entry
    /// no order asked for since the round began still goes at the next.
    pub fn renew(&self, since: Since, read: &[CatalogueEntry], read_at_ms: i64) {
        self.hold(since, read, read_at_ms, false);
    }

    fn hold(&self, since: Since, read: &[CatalogueEntry], read_at_ms: i64, asked: bool) {
        if self.lifetime_ms == 0 || read.is_empty() {
            return;
        }
        let mut held = self.lock();
        if Since(held.changes) != since {
            return;
        }
        if held.entries.len() + read.len() > MOST_HELD {
            let lifetime = self.lifetime_ms;
            held.entries
                .retain(|_, kept| read_at_ms.saturating_sub(kept.read_at) < lifetime);
            if held.entries.len() + read.len() > MOST_HELD {
                held.entries.clear();
            }
        }
        for entry in read {
            match held.entries.get_mut(&entry.price.product_id) {
                // A read that began later, or saw a later version, was kept
                // meanwhile (a round and intake read at once): the price
                // never steps back.
                Some(kept) if (kept.entry.source_version, kept.read_at) >= (entry.source_version, read_at_ms) => {
                    kept.used |= asked;
                }
                Some(kept) => {
                    kept.entry = entry.clone();
                    kept.read_at = read_at_ms;
                    kept.used |= asked;
                }
                None => {
                    let kept = Kept {
                        entry: entry.clone(),
                        read_at: read_at_ms,
                        used: asked,
                    };
                    held.entries.insert(entry.price.product_id.clone(), kept);
                }
            }
        }
    }

    /// The products to read again in a refresh round: those an order asked
    /// for since the last round. The others are dropped.
    pub fn due(&self) -> Due {
        let mut held = self.lock();
        held.entries.retain(|_, kept| std::mem::take(&mut kept.used));
        Due {
            product_ids: held.entries.keys().cloned().collect(),
            since: Since(held.changes),
        }
    }

    /// Forgets `product_id`'s price: the copy has just changed it. Called
    /// after the change is stored, so no later read sees the old price.
    pub fn changed(&self, product_id: &str) {
        if self.lifetime_ms == 0 {
            return;
        }
        let mut held = self.lock();
        held.changes += 1;
        held.entries.remove(product_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // The map stays consistent whatever panicked while it was held.
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use shop_rules::order::CataloguePrice;

    use super::*;

    fn entry(product_id: &str, unit_price: i64) -> CatalogueEntry {
        CatalogueEntry {
            price: CataloguePrice {
                product_id: product_id.to_owned(),
                unit_price,
                currency: "KRW".to_owned(),
            },
            source_version: 1,
        }
    }

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn a_price_read_is_reused_for_its_lifetime_and_no_longer() {
        let cache = PriceCache::new(Duration::from_millis(1000));
        let first = cache.look_up(&ids(&["A", "B"]), 0);
        assert_eq!(first.missing, ids(&["A", "B"]));
        cache.keep(first.since, &[entry("A", 100)], 0);

        let again = cache.look_up(&ids(&["A", "B", "A"]), 999);
        assert_eq!(again.held, vec![entry("A", 100)]);
        assert_eq!(
            again.missing,
            ids(&["B"]),
            "a product the copy lacked is asked for again"
        );

        let later = cache.look_up(&ids(&["A"]), 1000);
        assert!(later.held.is_empty());
        assert_eq!(later.missing, ids(&["A"]));
    }

    #[test]
    fn a_change_applied_here_is_seen_at_once() {
        let cache = PriceCache::new(Duration::from_secs(60));
        let first = cache.look_up(&ids(&["A"]), 0);
        cache.keep(first.since, &[entry("A", 100)], 0);
        cache.changed("A");
        assert_eq!(cache.look_up(&ids(&["A"]), 1).missing, ids(&["A"]));
    }

    #[test]
    fn a_read_that_began_before_a_change_is_not_kept() {
        let cache = PriceCache::new(Duration::from_secs(60));
        let racing = cache.look_up(&ids(&["A"]), 0);
        // The change commits and is applied while the read is under way,
        // and the read carries the old price back.
        cache.changed("A");
        cache.keep(racing.since, &[entry("A", 100)], 0);
        assert_eq!(cache.look_up(&ids(&["A"]), 1).missing, ids(&["A"]));
    }

    #[test]
    fn a_zero_lifetime_keeps_nothing() {
        let cache = PriceCache::off();
        let first = cache.look_up(&ids(&["A", "A"]), 0);
        assert_eq!(first.missing, ids(&["A"]));
        cache.keep(first.since, &[entry("A", 100)], 0);
        assert_eq!(cache.look_up(&ids(&["A"]), 0).missing, ids(&["A"]));
    }

    #[test]
    fn a_full_cache_makes_room() {
        let cache = PriceCache::new(Duration::from_millis(10));
        let all: Vec<String> = (0..MOST_HELD).map(|n| format!("P{n}")).collect();
        let first = cache.look_up(&all, 0);
        let read: Vec<CatalogueEntry> = all.iter().map(|id| entry(id, 1)).collect();
        cache.keep(first.since, &read, 0);
        assert!(cache.look_up(&all, 5).missing.is_empty());

        let next = cache.look_up(&ids(&["new"]), 20);
        cache.keep(next.since, &[entry("new", 2)], 20);
        assert_eq!(cache.look_up(&ids(&["new"]), 21).held, vec![entry("new", 2)]);
        assert_eq!(cache.lock().entries.len(), 1, "the expired entries went");
    }

    #[test]
    fn a_round_reads_again_what_sold_since_the_last_and_drops_the_rest() {
        let cache = PriceCache::new(Duration::from_millis(1000));
        assert_eq!(cache.refresh_every(), Some(Duration::from_millis(500)));
        let first = cache.look_up(&ids(&["A", "B"]), 0);
        cache.keep(first.since, &[entry("A", 100), entry("B", 200)], 0);
        let mut due = cache.due().product_ids;
        due.sort();
        assert_eq!(due, ids(&["A", "B"]), "both were read for an order");

        cache.look_up(&ids(&["A"]), 400);
        let due = cache.due();
        assert_eq!(due.product_ids, ids(&["A"]), "B sold nothing since");
        cache.renew(due.since, &[entry("A", 150)], 500);
        assert_eq!(cache.look_up(&ids(&["A"]), 1400).held, vec![entry("A", 150)]);
        assert_eq!(cache.look_up(&ids(&["B"]), 1400).missing, ids(&["B"]));

        let due = cache.due();
        assert_eq!(due.product_ids, ids(&["A"]));
        cache.renew(due.since, &[entry("A", 150)], 1500);
        assert!(cache.due().product_ids.is_empty(), "a renewal is not an order");
    }

    #[test]
    fn a_round_that_began_before_a_change_keeps_nothing() {
        let cache = PriceCache::new(Duration::from_millis(1000));
        let first = cache.look_up(&ids(&["A", "B"]), 0);
        cache.keep(first.since, &[entry("A", 100), entry("B", 200)], 0);
        let due = cache.due();
        cache.changed("A");
        cache.renew(due.since, &[entry("A", 100), entry("B", 200)], 500);
        assert_eq!(cache.look_up(&ids(&["A"]), 600).missing, ids(&["A"]));
        let b = cache.look_up(&ids(&["B"]), 1000);
        assert_eq!(b.missing, ids(&["B"]), "B expired: the round's read was not kept");
    }

    #[test]
    fn a_price_never_steps_back_to_an_older_read() {
        let cache = PriceCache::new(Duration::from_millis(1000));
        let first = cache.look_up(&ids(&["A"]), 0);
        cache.keep(first.since, &[entry("A", 100)], 0);
        let due = cache.due();
        // Intake read a newer version while the round's read was under way.
        let mut newer = entry("A", 150);
        newer.source_version = 2;
        let racing = cache.look_up(&ids(&["B"]), 600);
        cache.keep(racing.since, std::slice::from_ref(&newer), 600);
        cache.renew(due.since, &[entry("A", 100)], 500);
        assert_eq!(cache.look_up(&ids(&["A"]), 700).held, vec![newer.clone()]);
        // The same version read earlier does not age it either.
        cache.renew(due.since, std::slice::from_ref(&newer), 550);
        assert_eq!(cache.look_up(&ids(&["A"]), 1599).held, vec![newer]);
    }

    #[test]
    fn nothing_kept_means_no_rounds_and_short_lifetimes_bounded_rounds() {
        assert_eq!(PriceCache::off().refresh_every(), None);
        let short = PriceCache::new(Duration::from_millis(1));
        assert_eq!(short.refresh_every(), Some(SHORTEST_ROUND));
    }
}
