//! Turns at the product locks within one process.
//!
//! The distributed lock is polled: a handler that finds it taken sleeps and
//! tries again. When many handlers of one process want the same product (a
//! flash sale), most of them sleep through the moments it is free. So they
//! first queue here, in arrival order, on an in-process mutex per key; only
//! the one whose turn it is goes on to take the distributed lock, which
//! then mostly keeps other processes out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as Queue, OwnedMutexGuard};

#[derive(Debug, Default)]
pub(crate) struct Turns {
    queues: Mutex<HashMap<String, Arc<Queue<()>>>>,
}

/// Held while it is this handler's turn at every key it asked for.
#[derive(Debug)]
pub(crate) struct Turn<'a> {
    turns: &'a Turns,
    keys: Vec<String>,
    held: Vec<OwnedMutexGuard<()>>,
}

impl Turns {
    /// Waits for the turn at every one of `keys`, taken in the order given
    /// (sorted by the caller, so two handlers never wait on each other).
    pub(crate) async fn take(&self, keys: &[String]) -> Turn<'_> {
        let queues: Vec<Arc<Queue<()>>> = {
            let mut all = self.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            keys.iter()
                .map(|key| Arc::clone(all.entry(key.clone()).or_default()))
                .collect()
        };
        let mut held = Vec::with_capacity(queues.len());
        for queue in queues {
            held.push(queue.lock_owned().await);
        }
        Turn {
            turns: self,
            keys: keys.to_vec(),
            held,
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.held.clear();
        // Forget the queues nobody waits in, so the map holds only products
        // being worked on.
        let mut all = self
            .turns
            .queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for key in &self.keys {
            if all.get(key).is_some_and(|queue| Arc::strong_count(queue) == 1) {
                all.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_turn_at_a_time_per_key_in_arrival_order_and_nothing_left_behind() {
        let turns = Arc::new(Turns::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = turns.take(&["a".to_owned()]).await;
        let mut waiting = Vec::new();
        for n in 0..5 {
            let (turns, order) = (Arc::clone(&turns), Arc::clone(&order));
            waiting.push(tokio::spawn(async move {
                let _turn = turns.take(&["a".to_owned(), "b".to_owned()]).await;
                order.lock().expect("not poisoned").push(n);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Another key is free meanwhile.
        drop(turns.take(&["c".to_owned()]).await);
        assert!(order.lock().expect("not poisoned").is_empty(), "all wait for a");
        drop(first);
        for task in waiting {
            task.await.expect("no panic");
        }
        assert_eq!(
            *order.lock().expect("not poisoned"),
            [0, 1, 2, 3, 4],
            "first come, first served"
        );
        assert!(
            turns.queues.lock().expect("not poisoned").is_empty(),
            "no queue kept for idle keys"
        );
    }
}
