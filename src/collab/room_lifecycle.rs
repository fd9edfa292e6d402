//! The life of room participants beyond single requests: connections that are lost
//! (the reconnect grace), devices that connect while a call rings, callees who become
//! unreachable, ring timers, and the sweep of rooms held by servers that are gone.

use std::sync::Arc;

use super::rooms::{alive_since, call_ended, leave, room_updated};
use crate::{
    AppState,
    db::{RoomParticipantId, UserId},
    error::Result,
    rpc::{ConnectionId, proto},
};

/// A connection ended: its participant keeps their place through the reconnect grace
/// (marked lost), then leaves unless a `RejoinRoom` took the place to a new connection.
pub async fn connection_lost(
    app: &Arc<AppState>,
    connection: ConnectionId,
    user: UserId,
) -> Result<()> {
    super::project_lifecycle::connection_lost(app, connection).await?;
    app.rooms.leave(app, connection);
    if !app.pool.is_online(user) {
        end_call_to_unreachable(app, user).await?;
    }
    let Some(row) = app.db.room_of_connection(connection).await? else {
        return Ok(());
    };
    {
        let _order = app.room_locks.lock(row.room_id).await;
        if let Some(state) = app.db.connection_lost(connection).await? {
            room_updated(app, &state);
        }
    }
    let (app, grace) = (app.clone(), app.config.reconnect_grace);
    tokio::spawn(async move {
        // When this server stops, the next one's sweep ends the stay after the grace.
        tokio::select! {
            _ = tokio::time::sleep(grace) => {}
            _ = app.shutdown.cancelled() => return,
        }
        // A host that rejoined the room without resharing loses its projects.
        if let Err(error) = super::project_lifecycle::grace_ended(&app, connection).await {
            tracing::error!(%error, %connection, "could not unshare a lost host's projects");
        }
        // Matches only while the place is still held by the lost connection.
        let reason = proto::project_unshared::Reason::HostLost;
        if let Err(error) = leave(&app, connection, reason).await {
            tracing::error!(%error, %connection, "could not end a lost participant's stay");
        }
    });
    Ok(())
}

/// The callee's last device went away while their call rang: end it now and tell the
/// caller, rather than let it ring out.
async fn end_call_to_unreachable(app: &AppState, callee: UserId) -> Result<()> {
    let Some(pending) = app
        .db
        .participant_of(callee)
        .await?
        .filter(|row| !row.answered())
    else {
        return Ok(());
    };
    let room = pending.room_id;
    let _order = app.room_locks.lock(room).await;
    if let Some((state, pending)) = app.db.end_pending_call(pending.id).await? {
        app.call_timers.stop(callee);
        room_updated(app, &state);
        call_ended(
            app,
            room,
            pending.calling_user_id,
            callee,
            proto::call_ended::Reason::Unavailable,
        );
    }
    Ok(())
}

/// A new connection of a user whose call is ringing rings too.
pub async fn connection_added(
    app: &AppState,
    connection: ConnectionId,
    user: UserId,
) -> Result<()> {
    let Some(pending) = app
        .db
        .participant_of(user)
        .await?
        .filter(|row| !row.answered())
    else {
        return Ok(());
    };
    let state = app.db.get_room(pending.room_id).await?;
    let incoming = proto::IncomingCall {
        room_id: pending.room_id.to_proto(),
        calling_user_id: pending.calling_user_id.to_proto(),
        participant_user_ids: state.answered().map(|row| row.user_id.to_proto()).collect(),
    };
    app.cluster.send(connection, incoming)?;
    Ok(())
}

/// The ring timer of each pending call, by callee (a user has at most one pending call),
/// so that answering, declining or cancelling stops it instead of leaving it asleep.
#[derive(Default)]
pub struct CallTimers {
    timers: parking_lot::Mutex<
        std::collections::HashMap<UserId, (RoomParticipantId, tokio::task::AbortHandle)>,
    >,
}

impl CallTimers {
    pub(super) fn start(
        &self,
        callee: UserId,
        row: RoomParticipantId,
        timer: tokio::task::AbortHandle,
    ) {
        if let Some((_, old)) = self.timers.lock().insert(callee, (row, timer)) {
            old.abort();
        }
    }

    pub(super) fn stop(&self, callee: UserId) {
        if let Some((_, timer)) = self.timers.lock().remove(&callee) {
            timer.abort();
        }
    }

    /// The timer of `row` fired: forget it (unless a newer call replaced it).
    pub(super) fn finished(&self, callee: UserId, row: RoomParticipantId) {
        let mut timers = self.timers.lock();
        if timers
            .get(&callee)
            .is_some_and(|(current, _)| *current == row)
        {
            timers.remove(&callee);
        }
    }
}

/// Every heartbeat interval (and once at start): rooms held by connections of servers
/// that are gone — a crash, or a restart of this one — are swept. Their participants
/// show as lost at once and leave after the reconnect grace; emptied rooms are deleted,
/// in LiveKit too.
pub async fn sweep_gone_servers(app: Arc<AppState>) {
    let mut interval = tokio::time::interval(app.config.heartbeat_interval);
    loop {
        interval.tick().await;
        let grace =
            chrono::Duration::from_std(app.config.reconnect_grace).unwrap_or(chrono::Duration::MAX);
        let alive_since = alive_since(&app);
        let expired_since = alive_since
            .checked_sub_signed(grace)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let swept = match app
            .db
            .sweep_gone_servers(app.server_id, alive_since, expired_since)
            .await
        {
            Ok(swept) => swept,
            Err(error) => {
                tracing::warn!(%error, "sweeping rooms of gone servers failed");
                continue;
            }
        };
        for room in swept.rooms {
            let _order = app.room_locks.lock(room).await;
            if let Ok(state) = app.db.get_room(room).await {
                room_updated(&app, &state);
            }
        }
        if let Err(error) = super::project_lifecycle::sweep_orphans(&app).await {
            tracing::warn!(%error, "unsharing projects of gone hosts failed");
        }
        if let Some(livekit) = &app.livekit {
            for room in swept.deleted_livekit_rooms {
                livekit.delete_room(room);
            }
        }
    }
}
