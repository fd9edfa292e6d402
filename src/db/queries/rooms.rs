//! Rooms and participants. Every function runs in one transaction and returns the room
//! as it is after the change, so the caller can broadcast exactly what was committed.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, ModelTrait,
    QueryFilter, QueryOrder,
};

use super::super::{
    Database, ProjectId, RoomId, RoomParticipantId, UserId,
    entities::{project, room, room_participant as participant, worktree},
};
use crate::{
    error::{Error, Result},
    rpc::{ConnectionId, proto::ParticipantRole},
};

/// A room and all its rows, answered and pending, and the projects shared in it.
#[derive(Clone, Debug)]
pub struct RoomState {
    pub room: room::Model,
    pub participants: Vec<participant::Model>,
    pub projects: Vec<SharedProject>,
}

/// A project shared in a room, as participants see it in `RoomUpdated`.
#[derive(Clone, Debug)]
pub struct SharedProject {
    pub id: ProjectId,
    pub host_user_id: UserId,
    pub worktree_root_names: Vec<String>,
}

impl RoomState {
    pub fn answered(&self) -> impl Iterator<Item = &participant::Model> {
        self.participants.iter().filter(|p| p.answered())
    }

    pub fn participant(&self, user: UserId) -> Option<&participant::Model> {
        self.participants.iter().find(|p| p.user_id == user)
    }
}

/// What leaving did.
#[derive(Clone, Debug)]
pub struct Left {
    pub user: UserId,
    pub room: RoomState,
    /// Users whose ringing calls were cancelled because the leaver made them (or because
    /// the room closed).
    pub canceled_callees: Vec<UserId>,
    /// The room had no answered participant left and was deleted.
    pub room_deleted: bool,
}

pub(super) fn connection_filter(connection: ConnectionId) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(participant::Column::AnsweringConnectionServerId.eq(connection.server_id as i32))
        .add(participant::Column::AnsweringConnectionId.eq(connection.id as i32))
}

pub(super) async fn load(tx: &impl ConnectionTrait, room_id: RoomId) -> Result<RoomState> {
    let room = room::Entity::find_by_id(room_id)
        .one(tx)
        .await?
        .ok_or_else(|| Error::not_found(format!("no room {room_id}")))?;
    let participants = participant::Entity::find()
        .filter(participant::Column::RoomId.eq(room_id))
        .order_by_asc(participant::Column::Id)
        .all(tx)
        .await?;
    let projects = project::Entity::find()
        .filter(project::Column::RoomId.eq(room_id))
        .order_by_asc(project::Column::Id)
        .all(tx)
        .await?;
    let worktrees = worktree::Entity::find()
        .filter(worktree::Column::ProjectId.is_in(projects.iter().map(|p| p.id)))
        .order_by_asc(worktree::Column::Id)
        .all(tx)
        .await?;
    let projects = projects
        .into_iter()
        .map(|project| SharedProject {
            id: project.id,
            host_user_id: project.host_user_id,
            worktree_root_names: worktrees
                .iter()
                .filter(|w| w.project_id == project.id)
                .map(|w| w.root_name.clone())
                .collect(),
        })
        .collect();
    Ok(RoomState {
        room,
        participants,
        projects,
    })
}

pub(super) async fn row_of(
    tx: &impl ConnectionTrait,
    user: UserId,
) -> Result<Option<participant::Model>> {
    Ok(participant::Entity::find()
        .filter(participant::Column::UserId.eq(user))
        .one(tx)
        .await?)
}

/// The row `connection` answers for in `room_id`, or `Forbidden`: acting in a room
/// takes the connection that joined it, not merely the same user on another device.
pub(super) async fn require_participant(
    tx: &impl ConnectionTrait,
    room_id: RoomId,
    connection: ConnectionId,
) -> Result<participant::Model> {
    participant::Entity::find()
        .filter(connection_filter(connection))
        .one(tx)
        .await?
        .filter(|row| row.room_id == room_id)
        .ok_or_else(|| {
            Error::forbidden(format!(
                "this connection is not a participant of room {room_id}"
            ))
        })
}

/// The smallest index no answered participant holds.
pub(super) fn free_index(rows: &[participant::Model]) -> i32 {
    (0..)
        .find(|i| !rows.iter().any(|row| row.participant_index == Some(*i)))
        .unwrap_or(0)
}

fn busy(error: Error) -> Error {
    match error {
        Error::Database(ref db_error) if crate::db::is_unique_violation(db_error) => {
            Error::conflict("that user is already in a room or being called")
        }
        error => error,
    }
}

impl Database {
    /// `user`'s row: the room they are in or being called into.
    pub async fn participant_of(&self, user: UserId) -> Result<Option<participant::Model>> {
        row_of(&self.conn, user).await
    }

    pub async fn get_room(&self, room_id: RoomId) -> Result<RoomState> {
        load(&self.conn, room_id).await
    }

    pub async fn create_room(
        &self,
        user: UserId,
        connection: ConnectionId,
        livekit_room: String,
    ) -> Result<RoomState> {
        self.transaction(move |tx| {
            let livekit_room = livekit_room.clone();
            Box::pin(async move {
                if row_of(tx, user).await?.is_some() {
                    return Err(Error::conflict(
                        "you are already in a room or being called; leave it first",
                    ));
                }
                let room = room::ActiveModel {
                    livekit_room: Set(livekit_room),
                    created_at: Set(Utc::now()),
                    ..Default::default()
                }
                .insert(tx)
                .await?;
                participant::ActiveModel {
                    room_id: Set(room.id),
                    user_id: Set(user),
                    answering_connection_id: Set(Some(connection.id as i32)),
                    answering_connection_server_id: Set(Some(connection.server_id as i32)),
                    answering_connection_lost: Set(false),
                    calling_user_id: Set(user),
                    calling_connection_id: Set(connection.id as i32),
                    calling_connection_server_id: Set(connection.server_id as i32),
                    location_kind: Set(0),
                    location_project_id: Set(None),
                    role: Set(ParticipantRole::Admin as i16),
                    participant_index: Set(Some(0)),
                    created_at: Set(Utc::now()),
                    ..Default::default()
                }
                .insert(tx)
                .await?;
                load(tx, room.id).await
            })
        })
        .await
        .map_err(busy)
    }

    /// Adds `callee` as a pending participant; returns the room and the new row's id.
    pub async fn call(
        &self,
        room_id: RoomId,
        caller: UserId,
        caller_connection: ConnectionId,
        callee: UserId,
    ) -> Result<(RoomState, RoomParticipantId)> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let caller_row = require_participant(tx, room_id, caller_connection).await?;
                if caller_row.role == ParticipantRole::Guest as i16 {
                    return Err(Error::forbidden("guests cannot call"));
                }
                if row_of(tx, callee).await?.is_some() {
                    return Err(Error::conflict(
                        "that user is already in a room or being called",
                    ));
                }
                let row = participant::ActiveModel {
                    room_id: Set(room_id),
                    user_id: Set(callee),
                    answering_connection_id: Set(None),
                    answering_connection_server_id: Set(None),
                    answering_connection_lost: Set(false),
                    calling_user_id: Set(caller),
                    calling_connection_id: Set(caller_connection.id as i32),
                    calling_connection_server_id: Set(caller_connection.server_id as i32),
                    location_kind: Set(0),
                    location_project_id: Set(None),
                    role: Set(ParticipantRole::Member as i16),
                    participant_index: Set(None),
                    created_at: Set(Utc::now()),
                    ..Default::default()
                }
                .insert(tx)
                .await?;
                Ok((load(tx, room_id).await?, row.id))
            })
        })
        .await
        .map_err(busy)
    }

    /// Ends the pending call `row` if it is still pending (a timeout, or nobody to ring).
    pub async fn end_pending_call(
        &self,
        row: RoomParticipantId,
    ) -> Result<Option<(RoomState, participant::Model)>> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let Some(pending) = participant::Entity::find_by_id(row).one(tx).await? else {
                    return Ok(None);
                };
                if pending.answered() {
                    return Ok(None);
                }
                pending.clone().delete(tx).await?;
                Ok(Some((load(tx, pending.room_id).await?, pending)))
            })
        })
        .await
    }

    pub async fn join_room(
        &self,
        room_id: RoomId,
        user: UserId,
        connection: ConnectionId,
    ) -> Result<RoomState> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let row = row_of(tx, user)
                    .await?
                    .filter(|row| row.room_id == room_id && !row.answered())
                    .ok_or_else(|| {
                        Error::forbidden(format!(
                            "you were not called to room {room_id}, or the call ended"
                        ))
                    })?;
                let state = load(tx, room_id).await?;
                let answered: Vec<_> = state.answered().cloned().collect();
                let mut active: participant::ActiveModel = row.into();
                active.answering_connection_id = Set(Some(connection.id as i32));
                active.answering_connection_server_id = Set(Some(connection.server_id as i32));
                active.answering_connection_lost = Set(false);
                active.participant_index = Set(Some(free_index(&answered)));
                active.update(tx).await?;
                load(tx, room_id).await
            })
        })
        .await
    }

    /// Moves `user`'s place in `room_id` to `connection`, if the old connection is lost
    /// (or `old_is_gone` says it no longer exists).
    pub async fn rejoin_room(
        &self,
        room_id: RoomId,
        user: UserId,
        connection: ConnectionId,
        old_is_gone: std::sync::Arc<dyn Fn(ConnectionId) -> bool + Send + Sync>,
    ) -> Result<RoomState> {
        self.transaction(move |tx| {
            let old_is_gone = old_is_gone.clone();
            Box::pin(async move {
                let row = row_of(tx, user)
                    .await?
                    .filter(|row| row.room_id == room_id && row.answered())
                    .ok_or_else(|| {
                        Error::forbidden(format!("you have no place in room {room_id} to rejoin"))
                    })?;
                let old = ConnectionId {
                    server_id: row.answering_connection_server_id.unwrap_or_default() as u32,
                    id: row.answering_connection_id.unwrap_or_default() as u32,
                };
                if !row.answering_connection_lost && !old_is_gone(old) {
                    return Err(Error::conflict(
                        "your place in this room is held by a live connection",
                    ));
                }
                let mut active: participant::ActiveModel = row.into();
                active.answering_connection_id = Set(Some(connection.id as i32));
                active.answering_connection_server_id = Set(Some(connection.server_id as i32));
                active.answering_connection_lost = Set(false);
                active.update(tx).await?;
                load(tx, room_id).await
            })
        })
        .await
    }

    /// Removes the pending call to `user` in `room_id`; returns the room and the caller.
    pub async fn decline_call(&self, room_id: RoomId, user: UserId) -> Result<(RoomState, UserId)> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let row = row_of(tx, user)
                    .await?
                    .filter(|row| row.room_id == room_id && !row.answered())
                    .ok_or_else(|| {
                        Error::not_found(format!("no call to room {room_id} is waiting for you"))
                    })?;
                let caller = row.calling_user_id;
                row.delete(tx).await?;
                Ok((load(tx, room_id).await?, caller))
            })
        })
        .await
    }

    pub async fn cancel_call(
        &self,
        room_id: RoomId,
        caller: ConnectionId,
        callee: UserId,
    ) -> Result<RoomState> {
        self.transaction(move |tx| {
            Box::pin(async move {
                require_participant(tx, room_id, caller).await?;
                let row = row_of(tx, callee)
                    .await?
                    .filter(|row| row.room_id == room_id && !row.answered())
                    .ok_or_else(|| {
                        Error::not_found(format!(
                            "user {callee} is not being called into this room"
                        ))
                    })?;
                row.delete(tx).await?;
                load(tx, room_id).await
            })
        })
        .await
    }

    /// The room `connection` answered in, if any.
    pub async fn room_of_connection(
        &self,
        connection: ConnectionId,
    ) -> Result<Option<participant::Model>> {
        Ok(participant::Entity::find()
            .filter(connection_filter(connection))
            .one(&self.conn)
            .await?)
    }

    /// Removes the participant answering on `connection`, the calls they made that still
    /// ring, and the room itself once nobody answered is left.
    pub async fn leave_room(&self, connection: ConnectionId) -> Result<Option<Left>> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let Some(row) = participant::Entity::find()
                    .filter(connection_filter(connection))
                    .one(tx)
                    .await?
                else {
                    return Ok(None);
                };
                let (user, room_id) = (row.user_id, row.room_id);
                row.delete(tx).await?;
                let state = load(tx, room_id).await?;
                let room_deleted = state.answered().next().is_none();
                let mut canceled_callees = Vec::new();
                for pending in state.participants.iter().filter(|p| !p.answered()) {
                    if room_deleted || pending.calling_user_id == user {
                        pending.clone().delete(tx).await?;
                        canceled_callees.push(pending.user_id);
                    }
                }
                if room_deleted {
                    state.room.clone().delete(tx).await?;
                } else if !state
                    .answered()
                    .any(|p| p.role == ParticipantRole::Admin as i16)
                {
                    // The last admin left: the longest-present participant takes over, so
                    // roles can still be managed.
                    // In a channel's room, a channel guest never becomes its admin.
                    let heir = state
                        .answered()
                        .filter(|p| {
                            state.room.channel_id.is_none()
                                || p.role != ParticipantRole::Guest as i16
                        })
                        .min_by_key(|p| p.id);
                    if let Some(heir) = heir {
                        let mut active: participant::ActiveModel = heir.clone().into();
                        active.role = Set(ParticipantRole::Admin as i16);
                        active.update(tx).await?;
                    }
                }
                let room = if room_deleted {
                    RoomState {
                        room: state.room,
                        participants: Vec::new(),
                        projects: Vec::new(),
                    }
                } else {
                    load(tx, room_id).await?
                };
                Ok(Some(Left {
                    user,
                    room,
                    canceled_callees,
                    room_deleted,
                }))
            })
        })
        .await
    }

    /// Marks the participant answering on `connection` as lost; returns the room.
    pub async fn connection_lost(&self, connection: ConnectionId) -> Result<Option<RoomState>> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let Some(row) = participant::Entity::find()
                    .filter(connection_filter(connection))
                    .one(tx)
                    .await?
                else {
                    return Ok(None);
                };
                let room_id = row.room_id;
                let mut active: participant::ActiveModel = row.into();
                active.answering_connection_lost = Set(true);
                active.update(tx).await?;
                Ok(Some(load(tx, room_id).await?))
            })
        })
        .await
    }

    pub async fn set_participant_location(
        &self,
        room_id: RoomId,
        connection: ConnectionId,
        kind: i16,
        project_id: Option<i64>,
    ) -> Result<RoomState> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let row = require_participant(tx, room_id, connection).await?;
                if let Some(id) = project_id {
                    let shared_here = project::Entity::find_by_id(ProjectId(id as i32))
                        .one(tx)
                        .await?
                        .is_some_and(|p| p.room_id == room_id);
                    if !shared_here {
                        return Err(Error::not_found(format!(
                            "project {id} is not shared in room {room_id}"
                        )));
                    }
                }
                let mut active: participant::ActiveModel = row.into();
                active.location_kind = Set(kind);
                active.location_project_id = Set(project_id);
                active.update(tx).await?;
                load(tx, room_id).await
            })
        })
        .await
    }

    pub async fn set_participant_role(
        &self,
        room_id: RoomId,
        admin: ConnectionId,
        target: UserId,
        role: ParticipantRole,
    ) -> Result<RoomState> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let admin_row = require_participant(tx, room_id, admin).await?;
                if admin_row.role != ParticipantRole::Admin as i16 {
                    return Err(Error::forbidden("only room admins may change roles"));
                }
                let row = row_of(tx, target)
                    .await?
                    .filter(|row| row.room_id == room_id && row.answered())
                    .ok_or_else(|| {
                        Error::not_found(format!("user {target} is not a participant of this room"))
                    })?;
                let state = load(tx, room_id).await?;
                let admins = state
                    .answered()
                    .filter(|p| p.role == ParticipantRole::Admin as i16)
                    .count();
                if row.role == ParticipantRole::Admin as i16
                    && role != ParticipantRole::Admin
                    && admins == 1
                {
                    return Err(Error::forbidden(
                        "a room keeps at least one admin: promote someone else first",
                    ));
                }
                let mut active: participant::ActiveModel = row.into();
                active.role = Set(role as i16);
                active.update(tx).await?;
                load(tx, room_id).await
            })
        })
        .await
    }
}

/// The ids of servers other than `this` that stopped before `stopped_before` or whose last
/// heartbeat is older than `heartbeat_before`.
pub(super) async fn gone_servers(
    tx: &impl ConnectionTrait,
    this: i32,
    stopped_before: chrono::DateTime<Utc>,
    heartbeat_before: chrono::DateTime<Utc>,
) -> Result<Vec<i32>> {
    use super::super::entities::server;
    Ok(server::Entity::find()
        .filter(server::Column::Id.ne(this))
        .filter(
            sea_orm::Condition::any()
                .add(server::Column::StoppedAt.lt(stopped_before))
                .add(server::Column::HeartbeatAt.lt(heartbeat_before)),
        )
        .all(tx)
        .await?
        .into_iter()
        .map(|server| server.id.0)
        .collect())
}

/// What a sweep of gone servers changed.
#[derive(Debug, Default)]
pub struct Swept {
    /// Rooms whose participants changed (to broadcast).
    pub rooms: Vec<RoomId>,
    /// LiveKit rooms of rooms that were deleted.
    pub deleted_livekit_rooms: Vec<String>,
}

impl Database {
    /// Room state held by connections of servers that are gone (stopped, or silent past
    /// `alive_since`): their answered participants are marked lost at once, so they can
    /// `RejoinRoom` elsewhere; those gone since before `expired_since` (the reconnect
    /// grace) are removed with the calls they made, and rooms left with nobody are
    /// deleted.
    pub async fn sweep_gone_servers(
        &self,
        this: crate::db::ServerId,
        alive_since: chrono::DateTime<Utc>,
        expired_since: chrono::DateTime<Utc>,
    ) -> Result<Swept> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let now = Utc::now();
                let mut swept = Swept::default();
                let gone = gone_servers(tx, this.0, now, alive_since).await?;
                if gone.is_empty() {
                    return Ok(swept);
                }
                let on_gone = participant::Column::AnsweringConnectionServerId.is_in(gone.clone());
                for row in participant::Entity::find()
                    .filter(on_gone)
                    .filter(participant::Column::AnsweringConnectionLost.eq(false))
                    .all(tx)
                    .await?
                {
                    swept.rooms.push(row.room_id);
                    let mut active: participant::ActiveModel = row.into();
                    active.answering_connection_lost = Set(true);
                    active.update(tx).await?;
                }
                let expired = gone_servers(tx, this.0, expired_since, expired_since).await?;
                let stale = participant::Entity::find()
                    .filter(
                        sea_orm::Condition::any()
                            .add(
                                participant::Column::AnsweringConnectionServerId
                                    .is_in(expired.clone()),
                            )
                            .add(
                                sea_orm::Condition::all()
                                    .add(participant::Column::AnsweringConnectionId.is_null())
                                    .add(
                                        participant::Column::CallingConnectionServerId
                                            .is_in(expired),
                                    ),
                            ),
                    )
                    .all(tx)
                    .await?;
                for row in stale {
                    swept.rooms.push(row.room_id);
                    row.delete(tx).await?;
                }
                swept.rooms.sort_unstable();
                swept.rooms.dedup();
                for room_id in swept.rooms.clone() {
                    let state = load(tx, room_id).await?;
                    if state.answered().next().is_none() {
                        for pending in &state.participants {
                            pending.clone().delete(tx).await?;
                        }
                        swept
                            .deleted_livekit_rooms
                            .push(state.room.livekit_room.clone());
                        state.room.delete(tx).await?;
                    }
                }
                Ok(swept)
            })
        })
        .await
    }

    /// Whether server `id` is gone: stopped, or silent since before `alive_since`.
    pub async fn server_is_gone(
        &self,
        id: i32,
        alive_since: chrono::DateTime<Utc>,
    ) -> Result<bool> {
        use super::super::entities::server;
        Ok(server::Entity::find_by_id(crate::db::ServerId(id))
            .one(&self.conn)
            .await?
            .is_none_or(|server| server.stopped_at.is_some() || server.heartbeat_at < alive_since))
    }
}
