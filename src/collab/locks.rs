//! Keyed async locks (per user, per room). A change that is broadcast holds the locks of
//! what it changes from its transaction until its messages are queued, so every
//! receiver sees changes in commit order — and a new connection's full state is never
//! overtaken by an older delta. Pairs are locked in key order, and nobody waits for a
//! lock while holding an unrelated one, so there is no lock cycle.

use std::{collections::HashMap, hash::Hash, sync::Arc};

use parking_lot::Mutex;
use tokio::sync::OwnedMutexGuard;

use crate::db::{RoomId, UserId};

/// Idle entries are pruned once the map grows past this many keys.
const PRUNE_AT: usize = 4096;

pub type UserLocks = KeyedLocks<UserId>;
pub type RoomLocks = KeyedLocks<RoomId>;

pub struct KeyedLocks<K> {
    locks: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        KeyedLocks {
            locks: Mutex::new(HashMap::new()),
        }
    }
}

/// Held locks; released on drop.
pub struct Guards(#[allow(dead_code)] Vec<OwnedMutexGuard<()>>);

impl<K: Copy + Eq + Hash + Ord> KeyedLocks<K> {
    fn entry(&self, key: K) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock();
        if locks.len() >= PRUNE_AT {
            // Only this map holds an idle lock: nobody holds or awaits it.
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        locks.entry(key).or_default().clone()
    }

    pub async fn lock(&self, key: K) -> Guards {
        Guards(vec![self.entry(key).lock_owned().await])
    }

    /// Locks both keys, lower first.
    pub async fn lock_pair(&self, a: K, b: K) -> Guards {
        if a == b {
            return self.lock(a).await;
        }
        let (first, second) = if a < b { (a, b) } else { (b, a) };
        let first = self.entry(first).lock_owned().await;
        let second = self.entry(second).lock_owned().await;
        Guards(vec![first, second])
    }
}
