//! Which connections belong to which user, on this server. Used to reach every device
//! of a user and to tell contacts when someone comes online or goes offline.

use std::collections::{HashMap, HashSet};

use parking_lot::Mutex;

use crate::{db::UserId, rpc::ConnectionId};

#[derive(Default)]
pub struct ConnectionPool {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    users: HashMap<ConnectionId, UserId>,
    connections: HashMap<UserId, HashSet<ConnectionId>>,
}

impl ConnectionPool {
    /// Adds a connection; `true` when it is the user's first (they just came online).
    pub fn add(&self, connection: ConnectionId, user: UserId) -> bool {
        let mut inner = self.inner.lock();
        inner.users.insert(connection, user);
        let connections = inner.connections.entry(user).or_default();
        connections.insert(connection);
        connections.len() == 1
    }

    /// Removes a connection; returns its user and whether it was their last.
    pub fn remove(&self, connection: ConnectionId) -> Option<(UserId, bool)> {
        let mut inner = self.inner.lock();
        let user = inner.users.remove(&connection)?;
        let connections = inner.connections.get_mut(&user)?;
        connections.remove(&connection);
        let last = connections.is_empty();
        if last {
            inner.connections.remove(&user);
        }
        Some((user, last))
    }

    pub fn user_connections(&self, user: UserId) -> Vec<ConnectionId> {
        self.inner
            .lock()
            .connections
            .get(&user)
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn is_online(&self, user: UserId) -> bool {
        self.inner.lock().connections.contains_key(&user)
    }

    pub fn users_online(&self) -> usize {
        self.inner.lock().connections.len()
    }
}
