//! The [`RateLimiter`] contract. `prefix` keeps the suite's keys apart from
//! other runs sharing the same server.

use std::time::Duration;

use crate::ports::{Quota, RateLimiter, Verdict};

pub async fn run(limiter: &impl RateLimiter, prefix: &str) {
    let key = |name: &str| format!("{prefix}{name}");
    let quota = Quota {
        per_second: 10,
        burst: 3,
    };
    for n in 0..3 {
        assert_eq!(
            limiter.check(&key("a"), quota).await,
            Ok(Verdict::Allowed),
            "request {n} of the burst"
        );
    }
    let Ok(Verdict::Limited { retry_after }) = limiter.check(&key("a"), quota).await else {
        panic!("the request after the burst is limited");
    };
    assert!(
        retry_after > Duration::ZERO && retry_after <= Duration::from_millis(110),
        "one interval at most, not {retry_after:?}"
    );
    // Limited requests do not dig the hole deeper.
    for _ in 0..5 {
        assert!(matches!(
            limiter.check(&key("a"), quota).await,
            Ok(Verdict::Limited { .. })
        ));
    }
    assert_eq!(
        limiter.check(&key("b"), quota).await,
        Ok(Verdict::Allowed),
        "keys are apart"
    );

    tokio::time::sleep(retry_after + Duration::from_millis(20)).await;
    assert_eq!(
        limiter.check(&key("a"), quota).await,
        Ok(Verdict::Allowed),
        "allowance comes back at the rate"
    );
    assert!(matches!(
        limiter.check(&key("a"), quota).await,
        Ok(Verdict::Limited { .. })
    ));
}
