//! Rooms and participants. Every function runs in one transaction and returns the room
//! as it is after the change, so the caller can broadcast exactly what was committed.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, ModelTrait,
    QueryFilter, QueryOrder,
};

use super::super::{
    Database, RoomId, RoomParticipantId, UserId,
    entities::{room, room_participant as participant},
};
use crate::{
    error::{Error, Result},
    rpc::{ConnectionId, proto::ParticipantRole},
};

/// A room and all its rows, answered and pending.
#[derive(Clone, Debug)]
pub struct RoomState {
    pub room: room::Model,
    pub participants: Vec<participant::Model>,
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

fn connection_filter(connection: ConnectionId) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(participant::Column::AnsweringConnectionServerId.eq(connection.server_id as i32))
        .add(participant::Column::AnsweringConnectionId.eq(connection.id as i32))
}

async fn load(tx: &impl ConnectionTrait, room_id: RoomId) -> Result<RoomState> {
    let room = room::Entity::find_by_id(room_id)
        .one(tx)
        .await?
        .ok_or_else(|| Error::not_found(format!("no room {room_id}")))?;
    let participants = participant::Entity::find()
        .filter(participant::Column::RoomId.eq(room_id))
        .order_by_asc(participant::Column::Id)
        .all(tx)
        .await?;
    Ok(RoomState { room, participants })
}

async fn row_of(tx: &impl ConnectionTrait, user: UserId) -> Result<Option<participant::Model>> {
    Ok(participant::Entity::find()
        .filter(participant::Column::UserId.eq(user))
        .one(tx)
        .await?)
}

/// The caller's answered row in `room_id`, or `Forbidden`.
async fn require_participant(
    tx: &impl ConnectionTrait,
    room_id: RoomId,
    user: UserId,
) -> Result<participant::Model> {
    row_of(tx, user)
        .await?
        .filter(|row| row.room_id == room_id && row.answered())
        .ok_or_else(|| Error::forbidden(format!("you are not a participant of room {room_id}")))
}

/// The smallest index no answered participant holds.
fn free_index(rows: &[participant::Model]) -> i32 {
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
                let caller_row = require_participant(tx, room_id, caller).await?;
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
                        Error::not_found(format!("no call to room {room_id} is waiting for you"))
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
                        Error::not_found(format!("you have no place in room {room_id} to rejoin"))
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
        caller: UserId,
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
                }
                let room = if room_deleted {
                    RoomState {
                        room: state.room,
                        participants: Vec::new(),
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
        user: UserId,
        kind: i16,
        project_id: Option<i64>,
    ) -> Result<RoomState> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let row = require_participant(tx, room_id, user).await?;
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
        admin: UserId,
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
                let mut active: participant::ActiveModel = row.into();
                active.role = Set(role as i16);
                active.update(tx).await?;
                load(tx, room_id).await
            })
        })
        .await
    }
}

impl Database {
    /// Clears room state left by servers that stopped or stopped sending heartbeats
    /// (crashed): their participants' connections are gone for good. Rooms left with no
    /// answered participant are deleted. Returns how many participants were removed.
    pub async fn clear_stale_rooms(&self, alive_since: chrono::DateTime<Utc>) -> Result<u64> {
        use super::super::entities::server;
        self.transaction(move |tx| {
            Box::pin(async move {
                let stale: Vec<i32> = server::Entity::find()
                    .filter(
                        sea_orm::Condition::any()
                            .add(server::Column::StoppedAt.is_not_null())
                            .add(server::Column::HeartbeatAt.lt(alive_since)),
                    )
                    .all(tx)
                    .await?
                    .into_iter()
                    .map(|server| server.id.0)
                    .collect();
                if stale.is_empty() {
                    return Ok(0);
                }
                let removed = participant::Entity::delete_many()
                    .filter(
                        sea_orm::Condition::any()
                            .add(
                                participant::Column::AnsweringConnectionServerId
                                    .is_in(stale.clone()),
                            )
                            .add(
                                sea_orm::Condition::all()
                                    .add(participant::Column::AnsweringConnectionId.is_null())
                                    .add(
                                        participant::Column::CallingConnectionServerId.is_in(stale),
                                    ),
                            ),
                    )
                    .exec(tx)
                    .await?
                    .rows_affected;
                for room in room::Entity::find().all(tx).await? {
                    let answered = participant::Entity::find()
                        .filter(participant::Column::RoomId.eq(room.id))
                        .filter(participant::Column::AnsweringConnectionId.is_not_null())
                        .one(tx)
                        .await?;
                    if answered.is_none() {
                        room.delete(tx).await?;
                    }
                }
                Ok(removed)
            })
        })
        .await
    }
}
