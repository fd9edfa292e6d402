//! Room membership in memory, and presence: status, cursor and viewport, relayed to the
//! other participants without touching the database.
//!
//! - Coalescing: a connection's updates go out at most `--presence-rate` times per
//!   second; an update that arrives sooner waits for the next slot, and only the latest
//!   state is sent then.
//! - Expiry: a presence not renewed for `--presence-ttl` is dropped, and the others get
//!   `PresenceUpdated { removed: true }`; the same happens when its connection leaves.
//!
//! Broadcasts are queued while the lock is held (queueing never waits), so a presence
//! and its removal can never be delivered out of order.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::{
    AppState,
    db::{RoomId, UserId},
    rpc::{ConnectionId, proto},
};

struct Entry {
    latest: proto::PresenceUpdated,
    updated_at: Instant,
    sent_at: Option<Instant>,
    /// A flush is scheduled for the next slot.
    pending: bool,
}

#[derive(Default)]
struct Inner {
    rooms: HashMap<RoomId, HashSet<ConnectionId>>,
    members: HashMap<ConnectionId, (RoomId, UserId)>,
    presence: HashMap<ConnectionId, Entry>,
}

#[derive(Default)]
pub struct RoomPresence {
    inner: Mutex<Inner>,
}

impl Inner {
    /// Queues `message` for everyone in `room` but `from`.
    fn broadcast(
        &self,
        state: &AppState,
        room: RoomId,
        from: ConnectionId,
        message: &proto::PresenceUpdated,
    ) {
        if let Some(connections) = self.rooms.get(&room) {
            state
                .cluster
                .broadcast(connections.iter().copied().filter(|c| *c != from), message);
        }
    }
}

impl RoomPresence {
    /// `connection` now answers for `user` in `room`.
    pub fn join(&self, connection: ConnectionId, room: RoomId, user: UserId) {
        let mut inner = self.inner.lock();
        inner.members.insert(connection, (room, user));
        inner.rooms.entry(room).or_default().insert(connection);
    }

    /// `connection` left its room: forget it, and tell the others if it had a presence.
    pub fn leave(&self, state: &AppState, connection: ConnectionId) {
        let mut inner = self.inner.lock();
        let Some((room, _)) = inner.members.remove(&connection) else {
            return;
        };
        if let Some(entry) = inner.presence.remove(&connection) {
            inner.broadcast(state, room, connection, &removed(entry.latest));
        }
        if let Some(connections) = inner.rooms.get_mut(&room) {
            connections.remove(&connection);
            if connections.is_empty() {
                inner.rooms.remove(&room);
            }
        }
    }

    /// A presence update from `connection`; ignored when it is in no room.
    pub fn update(
        self: &Arc<Self>,
        state: &Arc<AppState>,
        connection: ConnectionId,
        update: proto::UpdatePresence,
    ) {
        let interval = Duration::from_secs(1) / state.config.presence_rate.max(1);
        let now = Instant::now();
        let mut inner = self.inner.lock();
        let Some(&(room, user)) = inner.members.get(&connection) else {
            tracing::debug!(%connection, "presence from a connection in no room");
            return;
        };
        let latest = proto::PresenceUpdated {
            room_id: room.to_proto(),
            user_id: user.to_proto(),
            peer_id: Some(connection.into()),
            status: update.status,
            cursor: update.cursor,
            viewport: update.viewport,
            removed: false,
        };
        let entry = inner.presence.entry(connection).or_insert(Entry {
            latest: latest.clone(),
            updated_at: now,
            sent_at: None,
            pending: false,
        });
        entry.latest = latest;
        entry.updated_at = now;
        match entry.sent_at {
            Some(sent) if now < sent + interval => {
                if !entry.pending {
                    entry.pending = true;
                    let (this, state, at) = (self.clone(), state.clone(), sent + interval);
                    tokio::spawn(async move {
                        tokio::time::sleep_until(at).await;
                        this.flush(&state, connection);
                    });
                }
            }
            _ => {
                entry.sent_at = Some(now);
                let message = entry.latest.clone();
                inner.broadcast(state, room, connection, &message);
            }
        }
    }

    /// Sends the latest state held back by coalescing (unless it left meanwhile).
    fn flush(&self, state: &AppState, connection: ConnectionId) {
        let mut inner = self.inner.lock();
        let Some(&(room, _)) = inner.members.get(&connection) else {
            return;
        };
        let Some(entry) = inner.presence.get_mut(&connection) else {
            return;
        };
        entry.pending = false;
        entry.sent_at = Some(Instant::now());
        let message = entry.latest.clone();
        inner.broadcast(state, room, connection, &message);
    }

    /// Drops presences not renewed within the TTL; runs until the server stops.
    pub async fn expire(self: Arc<Self>, state: Arc<AppState>) {
        let ttl = state.config.presence_ttl;
        let period = (ttl / 4).clamp(Duration::from_millis(20), Duration::from_secs(5));
        let mut interval = tokio::time::interval(period);
        loop {
            interval.tick().await;
            let now = Instant::now();
            let mut inner = self.inner.lock();
            let stale: Vec<ConnectionId> = inner
                .presence
                .iter()
                .filter(|(_, entry)| now.duration_since(entry.updated_at) >= ttl)
                .map(|(connection, _)| *connection)
                .collect();
            for connection in stale {
                let Some(entry) = inner.presence.remove(&connection) else {
                    continue;
                };
                if let Some(&(room, _)) = inner.members.get(&connection) {
                    inner.broadcast(&state, room, connection, &removed(entry.latest));
                }
            }
        }
    }
}

fn removed(mut latest: proto::PresenceUpdated) -> proto::PresenceUpdated {
    latest.removed = true;
    latest.cursor = None;
    latest.viewport = None;
    latest
}
