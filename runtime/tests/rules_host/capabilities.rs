//! The host capabilities the components import: config, clock and the
//! key-value store, exercised through the example purchase-limit policy.

use crate::common;
use crate::common::order;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use shop_rules::order::{CancelReason, OrderCommand, OrderStatus};
use shop_rules::spec::T0;
use shop_runtime::ports::{KeyValue, KvError};
use shop_runtime::rules::{RuleError, RuleSettings, RuleSource};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn config(component: &str, pairs: &[(&str, &str)]) -> BTreeMap<String, BTreeMap<String, String>> {
    let settings = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    BTreeMap::from([(component.to_owned(), settings)])
}

fn with_policy(pairs: &[(&str, &str)]) -> RuleSettings {
    let mut settings = common::default_settings();
    settings.builtin.push(RuleSource::builtin(
        shop_rules_bundle::PURCHASE_LIMIT.name,
        shop_rules_bundle::PURCHASE_LIMIT.wasm,
    ));
    settings.component_config = config("purchase-limit", pairs);
    settings
}

fn violation_code(
    outcome: Result<Vec<shop_runtime::rules::RuleStamp>, RuleError<shop_runtime::rules::PolicyViolation>>,
) -> String {
    match outcome {
        Err(RuleError::Rejected(violation)) => {
            assert_eq!(violation.policy, "purchase-limit");
            violation.code
        }
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn the_purchase_limit_counts_units_per_customer_per_day() {
    let t = common::start(with_policy(&[("max-units-per-day", "5")]));
    let allowed = t.host.check_policies(&order("o-1", "alice", 3)).expect("3 of 5");
    assert_eq!(&*allowed[0].name, "purchase-limit");
    t.host.check_policies(&order("o-2", "alice", 2)).expect("5 of 5");
    assert_eq!(
        violation_code(t.host.check_policies(&order("o-3", "alice", 1))),
        "purchase-limit"
    );
    t.host
        .check_policies(&order("o-4", "bob", 5))
        .expect("bob has his own limit");

    // The refused order gave its unit back: the counter says 5, not 6.
    let day = T0.div_euclid(DAY_MS);
    let key = format!("test:rules:purchase-limit:alice/SKU-1/{day}");
    assert_eq!(
        t.kv.get(&key),
        Ok(Some(b"5".to_vec())),
        "keys are namespaced per deployment and component"
    );

    t.clock.advance(DAY_MS);
    t.host
        .check_policies(&order("o-5", "alice", 5))
        .expect("a new day, a new limit");
}

#[test]
fn concurrent_orders_cannot_slip_past_the_limit_together() {
    let t = common::start(with_policy(&[("max-units-per-day", "10")]));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let host = Arc::clone(&t.host);
            thread::spawn(move || {
                (0..10)
                    .filter(|i| host.check_policies(&order(&format!("o-{w}-{i}"), "alice", 1)).is_ok())
                    .count()
            })
        })
        .collect();
    let allowed: usize = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    assert_eq!(allowed, 10);
}

/// A store that is down: what Redis looks like to the policy when it is unreachable.
struct DownStore;

impl KeyValue for DownStore {
    fn get(&self, _: &str) -> Result<Option<Vec<u8>>, KvError> {
        Err(KvError::Unavailable("connection refused".into()))
    }
    fn set(&self, _: &str, _: &[u8], _: Option<Duration>) -> Result<(), KvError> {
        Err(KvError::Unavailable("connection refused".into()))
    }
    fn increment(&self, _: &str, _: i64, _: Option<Duration>) -> Result<i64, KvError> {
        Err(KvError::Unavailable("connection refused".into()))
    }
    fn delete(&self, _: &str) -> Result<(), KvError> {
        Err(KvError::Unavailable("connection refused".into()))
    }
}

#[test]
fn a_store_outage_allows_orders_unless_configured_to_deny() {
    let memory = Arc::new(common::MapKv::default());
    let open = common::start_with_kv(with_policy(&[]), Arc::new(DownStore), memory.clone());
    open.host
        .check_policies(&order("o-1", "alice", 1))
        .expect("intake survives the outage");

    let closed = common::start_with_kv(with_policy(&[("on-store-error", "deny")]), Arc::new(DownStore), memory);
    assert_eq!(
        violation_code(closed.host.check_policies(&order("o-1", "alice", 1))),
        "policy-unavailable"
    );
}

#[test]
fn without_policies_every_order_passes() {
    let t = common::start(common::default_settings());
    assert_eq!(t.host.check_policies(&order("o-1", "alice", 10_000)), Ok(vec![]));
}

#[test]
fn the_reservation_ttl_comes_from_the_order_component_config() {
    let mut settings = common::default_settings();
    settings.component_config = config("order", &[("reservation-ttl-ms", "1000")]);
    let t = common::start(settings);
    let created = t
        .host
        .decide_order(None, &OrderCommand::Place(order("o-1", "alice", 1)))
        .expect("place")
        .value;
    let mut state = t.host.evolve_order(None, &created[0]).expect("evolve");
    let confirmed = t
        .host
        .decide_order(state.as_ref(), &OrderCommand::Confirm)
        .expect("confirm")
        .value;
    state = t.host.evolve_order(state, &confirmed[0]).expect("evolve");

    let expire = OrderCommand::Cancel(CancelReason::ReservationExpired);
    t.clock.advance(999);
    assert!(matches!(
        t.host.decide_order(state.as_ref(), &expire),
        Err(RuleError::Rejected(_))
    ));
    t.clock.advance(1);
    let cancelled = t
        .host
        .decide_order(state.as_ref(), &expire)
        .expect("expired after 1 s")
        .value;
    state = t.host.evolve_order(state, &cancelled[0]).expect("evolve");
    assert_eq!(state.map(|o| o.status), Some(OrderStatus::Cancelled));
}
