//! Per-user async locks. A change that is broadcast to users holds their locks from its
//! transaction until its messages are queued, so each user's devices see changes in
//! commit order — and a new connection's full state is never overtaken by an older
//! delta. Two users are always locked in id order, and nobody waits for a lock while
//! holding an unrelated one, so there is no lock cycle.

use std::{collections::HashMap, sync::Arc};

use parking_lot::Mutex;
use tokio::sync::OwnedMutexGuard;

use crate::db::UserId;

/// Idle entries are pruned once the map grows past this many users.
const PRUNE_AT: usize = 4096;

#[derive(Default)]
pub struct UserLocks {
    locks: Mutex<HashMap<UserId, Arc<tokio::sync::Mutex<()>>>>,
}

pub struct Guards(#[allow(dead_code)] Vec<OwnedMutexGuard<()>>);

impl UserLocks {
    fn entry(&self, user: UserId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock();
        if locks.len() >= PRUNE_AT {
            // Only this map holds an idle lock: nobody holds or awaits it.
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        locks.entry(user).or_default().clone()
    }

    pub async fn lock(&self, user: UserId) -> Guards {
        Guards(vec![self.entry(user).lock_owned().await])
    }

    /// Locks both users, lower id first.
    pub async fn lock_pair(&self, a: UserId, b: UserId) -> Guards {
        if a == b {
            return self.lock(a).await;
        }
        let (first, second) = if a < b { (a, b) } else { (b, a) };
        let first = self.entry(first).lock_owned().await;
        let second = self.entry(second).lock_owned().await;
        Guards(vec![first, second])
    }
}
