//! The [`Lock`] contract. `prefix` keeps its keys apart from other runs'.

use std::time::{Duration, Instant};

use crate::ports::{Lock, LockError};

const TTL: Duration = Duration::from_secs(10);
const NO_WAIT: Duration = Duration::from_millis(50);

pub async fn run(lock: &impl Lock, prefix: &str) {
    let key = |name: &str| format!("{prefix}{name}");
    held_keys_exclude_others_until_released(lock, &key("a")).await;
    all_keys_or_none(lock, &key("x"), &key("y"), &key("z")).await;
    an_expired_lease_frees_its_keys_and_cannot_free_the_next(lock, &key("e")).await;
    a_waiter_gets_the_key_when_it_is_released(lock, &key("w")).await;
}

async fn held_keys_exclude_others_until_released(lock: &impl Lock, a: &str) {
    let keys = [a.to_owned()];
    let lease = lock.acquire(&keys, TTL, NO_WAIT).await.expect("free key");
    let started = Instant::now();
    assert!(matches!(
        lock.acquire(&keys, TTL, NO_WAIT).await,
        Err(LockError::Busy(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(2), "gave up after about `wait`");
    lock.release(&lease).await.expect("released");
    let again = lock.acquire(&keys, TTL, NO_WAIT).await.expect("free again");
    assert_ne!(again.token, lease.token, "each acquisition has its own token");
    lock.release(&again).await.expect("released");
}

async fn all_keys_or_none(lock: &impl Lock, x: &str, y: &str, z: &str) {
    let y_only = lock.acquire(&[y.to_owned()], TTL, NO_WAIT).await.expect("free");
    // x is free but y is not: x must not stay taken by the failed attempt.
    let both = [x.to_owned(), y.to_owned()];
    assert!(matches!(
        lock.acquire(&both, TTL, NO_WAIT).await,
        Err(LockError::Busy(_))
    ));
    let x_alone = lock
        .acquire(&[x.to_owned()], TTL, NO_WAIT)
        .await
        .expect("x was left free");
    lock.release(&x_alone).await.expect("released");
    lock.release(&y_only).await.expect("released");
    let all = [z.to_owned(), x.to_owned(), y.to_owned()];
    let lease = lock.acquire(&all, TTL, NO_WAIT).await.expect("all free");
    for key in [x, y, z] {
        assert!(
            lock.acquire(&[key.to_owned()], TTL, NO_WAIT).await.is_err(),
            "{key} held"
        );
    }
    lock.release(&lease).await.expect("released");
}

async fn an_expired_lease_frees_its_keys_and_cannot_free_the_next(lock: &impl Lock, e: &str) {
    let keys = [e.to_owned()];
    let short = lock
        .acquire(&keys, Duration::from_millis(100), NO_WAIT)
        .await
        .expect("free");
    std::thread::sleep(Duration::from_millis(250));
    let next = lock.acquire(&keys, TTL, NO_WAIT).await.expect("expired, so free");
    // The first holder wakes up late and releases: the next holder keeps its key.
    lock.release(&short).await.expect("a stale release is not an error");
    assert!(matches!(
        lock.acquire(&keys, TTL, NO_WAIT).await,
        Err(LockError::Busy(_))
    ));
    lock.release(&next).await.expect("released");
}

async fn a_waiter_gets_the_key_when_it_is_released(lock: &impl Lock, w: &str) {
    let keys = [w.to_owned()];
    let first = lock.acquire(&keys, TTL, NO_WAIT).await.expect("free");
    // `join!` polls the waiter first: it finds the key held and waits.
    let waiter = lock.acquire(&keys, TTL, Duration::from_secs(5));
    let releaser = async {
        lock.release(&first).await.expect("released");
    };
    let (second, ()) = futures::join!(waiter, releaser);
    let second = second.expect("got it after the release, within the wait");
    lock.release(&second).await.expect("released");
}
