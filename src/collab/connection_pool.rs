//! Which connections belong to which user (and were opened with which token), on this
//! server. Used to reach every device of a user, to tell contacts when someone comes
//! online or goes offline, and to end the sessions of a revoked token.

use std::collections::{HashMap, HashSet};

use parking_lot::Mutex;

use crate::{db::UserId, rpc::ConnectionId};

#[derive(Default)]
pub struct ConnectionPool {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    users: HashMap<ConnectionId, (UserId, String)>,
    connections: HashMap<UserId, HashSet<ConnectionId>>,
    tokens: HashMap<String, HashSet<ConnectionId>>,
}

impl ConnectionPool {
    /// Adds a connection; `true` when it is the user's first (they just came online).
    pub fn add(&self, connection: ConnectionId, user: UserId, token_id: &str) -> bool {
        let mut inner = self.inner.lock();
        inner.users.insert(connection, (user, token_id.to_string()));
        inner
            .tokens
            .entry(token_id.to_string())
            .or_default()
            .insert(connection);
        let connections = inner.connections.entry(user).or_default();
        connections.insert(connection);
        connections.len() == 1
    }

    /// Removes a connection; returns its user and whether it was their last.
    pub fn remove(&self, connection: ConnectionId) -> Option<(UserId, bool)> {
        let mut inner = self.inner.lock();
        let (user, token_id) = inner.users.remove(&connection)?;
        if let Some(connections) = inner.tokens.get_mut(&token_id) {
            connections.remove(&connection);
            if connections.is_empty() {
                inner.tokens.remove(&token_id);
            }
        }
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

    /// The connections opened with the access token `token_id` (its `jti`).
    pub fn token_connections(&self, token_id: &str) -> Vec<ConnectionId> {
        self.inner
            .lock()
            .tokens
            .get(token_id)
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
