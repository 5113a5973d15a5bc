//! Published versions and candidates in shadow: what the store installs
//! runs over the built-in components; a candidate answers beside the
//! active version, changes nothing, and is counted and reported.

use crate::common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::registry::Registry;
use shop_rules::order::{OrderCommand, PlaceOrder};
use shop_runtime::metrics::Metrics;
use shop_runtime::ports::{Clock, Disagreement};
use shop_runtime::rules::{Capabilities, ComponentKind, RuleHost, RuleMode, RuleSettings, RuleSource};

fn order(id: &str, quantity: i64) -> PlaceOrder {
    common::order(id, "alice", quantity)
}

fn published(name: &str, version: u32, wasm: &[u8], mode: RuleMode) -> RuleSource {
    RuleSource::published(name, version, wasm.to_vec(), None, mode)
}

/// Disagreements the host reported, as the composition root would keep them.
fn reported(host: &RuleHost) -> Arc<Mutex<Vec<Disagreement>>> {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let sink = kept.clone();
    host.on_disagreement("test-1", move |d| sink.lock().expect("unpoisoned").push(d));
    kept
}

fn exposition(metrics: &Metrics) -> String {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encoded");
    text
}

#[test]
fn published_versions_run_over_the_built_in_ones_until_withdrawn() {
    let t = common::start(common::default_settings());
    let v3 = common::with_custom_section(shop_rules_bundle::ORDER.wasm, "v3");
    let report = t
        .host
        .install(vec![published("order", 3, &v3, RuleMode::Active)])
        .expect("installed");
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    let decided = t
        .host
        .decide_order(None, &OrderCommand::Place(order("o-1", 1)))
        .expect("decided");
    assert_eq!(decided.rule.version, 3);
    let order_rules = |host: &RuleHost| {
        host.components()
            .into_iter()
            .find(|c| c.role == ComponentKind::Order)
            .expect("order rules")
    };
    assert_eq!(order_rules(&t.host).origin, "store");
    t.host.install(Vec::new()).expect("withdrawn");
    assert_eq!(order_rules(&t.host).origin, "builtin");
    assert_eq!(order_rules(&t.host).stamp.version, 0);
}

#[test]
fn a_rollback_to_the_set_before_compiles_nothing_and_older_sets_are_let_go() {
    let t = common::start(common::default_settings());
    let version = |n: u32| common::with_custom_section(shop_rules_bundle::ORDER.wasm, &format!("v{n}"));
    let compiled_afresh = |n: u32| {
        let report = t
            .host
            .install(vec![published("order", n, &version(n), RuleMode::Active)])
            .expect("installed");
        let order = report
            .active
            .iter()
            .find(|c| c.role == ComponentKind::Order)
            .expect("order rules");
        assert_eq!(order.stamp.version, n, "{report:?}");
        !order.from_cache
    };
    assert!(compiled_afresh(1), "a new version is compiled");
    assert!(compiled_afresh(2), "a new version is compiled");
    assert!(!compiled_afresh(1), "rolling back to the set before reuses its code");
    assert!(!compiled_afresh(2), "and so does rolling forward again");
    assert!(compiled_afresh(3), "a new version is compiled");
    assert!(compiled_afresh(1), "two sets back, the code was let go");
}

#[test]
fn a_policy_in_shadow_is_counted_and_reported_but_refuses_nothing_and_writes_nothing() {
    let metrics = Metrics::default();
    let t = common::start(RuleSettings {
        metrics: metrics.clone(),
        ..common::default_settings()
    });
    let kept = reported(&t.host);
    t.host
        .install(vec![published(
            "purchase-limit",
            1,
            shop_rules_bundle::PURCHASE_LIMIT.wasm,
            RuleMode::Shadow,
        )])
        .expect("installed");

    let allowed = t.host.check_policies(&order("o-big", 12)).expect("nothing refuses");
    assert!(
        allowed.is_empty(),
        "a shadow is not among the deciding policies: {allowed:?}"
    );
    t.host.check_policies(&order("o-small", 2)).expect("allowed");

    let kept = kept.lock().expect("unpoisoned").clone();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let d = &kept[0];
    assert_eq!(
        (d.name.as_str(), d.candidate, d.instance.as_str()),
        ("purchase-limit", 1, "test-1")
    );
    assert_eq!(d.input["order_id"], "o-big");
    assert_eq!(d.active, serde_json::json!({ "Ok": null }));
    assert_eq!(d.shadow, serde_json::json!({ "Err": "purchase-limit" }));
    let text = exposition(&metrics);
    for (outcome, count) in [("disagree", 1), ("agree", 1)] {
        let sample =
            format!(r#"shop_rule_shadow_total{{name="purchase-limit",candidate="1",outcome="{outcome}"}} {count}"#);
        assert!(text.contains(&sample), "{sample} in:\n{text}");
    }
    // Its counters were only read: the dry run answered its writes.
    let stored = format!("{:?}", t.kv);
    assert!(!stored.contains("purchase-limit"), "a shadow wrote: {stored}");
}

/// A clock that moves on with every reading.
struct Ticking(AtomicI64);

impl Clock for Ticking {
    fn now_ms(&self) -> i64 {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

#[test]
fn the_same_rules_in_shadow_agree_though_the_clock_moves_between_calls() {
    let metrics = Metrics::default();
    let kv = Arc::new(common::MapKv::default());
    let capabilities = Capabilities {
        clock: Arc::new(Ticking(AtomicI64::new(1_000))),
        kv,
        namespace: "test".into(),
    };
    let settings = RuleSettings {
        metrics: metrics.clone(),
        ..common::default_settings()
    };
    let host = RuleHost::start(settings, capabilities).expect("rules load");
    let kept = reported(&host);
    let candidate = common::with_custom_section(shop_rules_bundle::ORDER.wasm, "candidate");
    host.install(vec![published("order", 1, &candidate, RuleMode::Shadow)])
        .expect("installed");
    for n in 0..3 {
        host.decide_order(None, &OrderCommand::Place(order(&format!("o-{n}"), 1)))
            .expect("decided");
    }
    assert!(kept.lock().expect("unpoisoned").is_empty());
    let text = exposition(&metrics);
    let agreed = r#"shop_rule_shadow_total{name="order",candidate="1",outcome="agree"} 3"#;
    assert!(text.contains(agreed), "{agreed} in:\n{text}");
}
