//! Rooms and calls: create, call (ringing every device of a contact), answer, decline,
//! cancel, leave, locations, roles, rejoin after a lost connection, and LiveKit.
//!
//! Connection loss, rejoin timing, ring timers and the sweep of gone servers are in
//! `room_lifecycle`.
//!
//! Every change runs under the room's lock from its transaction until `RoomUpdated` is
//! queued for every participant, so all of them see the room's changes in commit order.

use std::sync::Arc;

use rand::{Rng, distr::Alphanumeric};

use super::Session;
use crate::{
    AppState,
    db::{
        RoomId, UserId,
        entities::room_participant,
        queries::rooms::{Left, RoomState},
    },
    error::{Error, Result},
    rpc::{ConnectionId, Response, proto},
};

pub(super) fn room_id(value: u64) -> Result<RoomId> {
    RoomId::from_proto(value).ok_or_else(|| Error::invalid("room_id is not a valid room id"))
}

pub(super) fn user_id(value: u64, field: &str) -> Result<UserId> {
    UserId::from_proto(value)
        .ok_or_else(|| Error::invalid(format!("{field} is not a valid user id")))
}

fn participant_to_proto(state: &RoomState, row: &room_participant::Model) -> proto::Participant {
    let peer_id = proto::PeerId {
        server_id: row.answering_connection_server_id.unwrap_or_default() as u32,
        id: row.answering_connection_id.unwrap_or_default() as u32,
    };
    proto::Participant {
        user_id: row.user_id.to_proto(),
        peer_id: Some(peer_id),
        location: Some(proto::ParticipantLocation {
            kind: row.location_kind as i32,
            project_id: row.location_project_id.unwrap_or_default() as u64,
        }),
        role: row.role as i32,
        participant_index: row.participant_index.unwrap_or_default() as u32,
        connection_lost: row.answering_connection_lost,
        projects: state
            .projects
            .iter()
            .filter(|project| project.host_user_id == row.user_id)
            .map(|project| proto::ParticipantProject {
                id: project.id.to_proto(),
                worktree_root_names: project.worktree_root_names.clone(),
            })
            .collect(),
    }
}

pub fn room_to_proto(state: &RoomState) -> proto::Room {
    proto::Room {
        id: state.room.id.to_proto(),
        livekit_room: state.room.livekit_room.clone(),
        participants: state
            .answered()
            .map(|row| participant_to_proto(state, row))
            .collect(),
        pending_participants: state
            .participants
            .iter()
            .filter(|row| !row.answered())
            .map(|row| proto::PendingParticipant {
                user_id: row.user_id.to_proto(),
                calling_user_id: row.calling_user_id.to_proto(),
            })
            .collect(),
    }
}

pub(super) fn answering_connection(row: &room_participant::Model) -> Option<ConnectionId> {
    Some(ConnectionId {
        server_id: row.answering_connection_server_id? as u32,
        id: row.answering_connection_id? as u32,
    })
}

/// `RoomUpdated` to every participant whose connection is live. Call it while holding
/// the room's lock.
pub(super) fn room_updated(app: &AppState, state: &RoomState) {
    let message = proto::RoomUpdated {
        room: Some(room_to_proto(state)),
    };
    let receivers = state
        .answered()
        .filter(|row| !row.answering_connection_lost)
        .filter_map(answering_connection);
    app.cluster.broadcast(receivers, &message);
}

fn to_user(
    app: &AppState,
    user: UserId,
    message: &impl crate::rpc::EnvelopedMessage,
    except: Option<ConnectionId>,
) {
    let receivers = app
        .pool
        .user_connections(user)
        .into_iter()
        .filter(|c| Some(*c) != except);
    app.cluster.broadcast(receivers, message);
}

pub(super) fn call_canceled(
    app: &AppState,
    room: RoomId,
    callee: UserId,
    except: Option<ConnectionId>,
) {
    to_user(
        app,
        callee,
        &proto::CallCanceled {
            room_id: room.to_proto(),
        },
        except,
    );
}

pub(super) fn call_ended(
    app: &AppState,
    room: RoomId,
    caller: UserId,
    callee: UserId,
    reason: proto::call_ended::Reason,
) {
    let message = proto::CallEnded {
        room_id: room.to_proto(),
        callee_user_id: callee.to_proto(),
        reason: reason as i32,
    };
    to_user(app, caller, &message, None);
}

/// LiveKit credentials for `session`'s user in `state`, when LiveKit is configured.
pub(super) fn livekit_info(
    session: &Session,
    state: &RoomState,
) -> Option<proto::LiveKitConnectionInfo> {
    let livekit = session.state.livekit.as_ref()?;
    let user = session.principal.user();
    let can_publish = state
        .participant(user.id)
        .is_some_and(|row| row.role != proto::ParticipantRole::Guest as i16);
    match livekit.connection_info(
        &state.room.livekit_room,
        &user.id.to_string(),
        &user.login,
        can_publish,
    ) {
        Ok(info) => Some(info),
        Err(error) => {
            tracing::error!(%error, "could not mint a LiveKit token");
            None
        }
    }
}

/// The answer to `JoinRoom` and `RejoinRoom`.
pub(super) fn joined(session: &Session, state: &RoomState) -> proto::JoinRoomResponse {
    proto::JoinRoomResponse {
        room: Some(room_to_proto(state)),
        live_kit_connection_info: livekit_info(session, state),
    }
}

/// Servers silent since before this (three missed heartbeats) are gone.
pub(super) fn alive_since(app: &AppState) -> chrono::DateTime<chrono::Utc> {
    let silence = chrono::Duration::from_std(app.config.heartbeat_interval * 3)
        .unwrap_or(chrono::Duration::MAX);
    chrono::Utc::now()
        .checked_sub_signed(silence)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

/// A fresh LiveKit room name (30 random alphanumerics).
pub(super) fn random_name() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(30)
        .map(char::from)
        .collect()
}

pub async fn create_room(
    _: proto::CreateRoom,
    response: Response<proto::CreateRoom>,
    session: Session,
) -> Result<()> {
    let livekit_room = random_name();
    let state = session
        .db()
        .create_room(session.user_id(), session.connection_id, livekit_room)
        .await?;
    session
        .state
        .rooms
        .join(session.connection_id, state.room.id, session.user_id());
    let live_kit_connection_info = livekit_info(&session, &state);
    response.send(proto::CreateRoomResponse {
        room: Some(room_to_proto(&state)),
        live_kit_connection_info,
    })?;
    Ok(())
}

pub async fn call(
    request: proto::Call,
    response: Response<proto::Call>,
    session: Session,
) -> Result<()> {
    let room = room_id(request.room_id)?;
    let callee = user_id(request.callee_user_id, "callee_user_id")?;
    let caller = session.user_id();
    if callee == caller {
        return Err(Error::invalid("you cannot call yourself"));
    }
    if !session.db().are_contacts(caller, callee).await?
        && !session.db().share_a_channel(caller, callee).await?
    {
        return Err(Error::forbidden(
            "you can only call your contacts and members of your channels",
        ));
    }
    let app = &session.state;
    // (A room that does not exist is refused below, as before.)
    if let Ok(state) = app.db.get_room(room).await
        && state.room.channel_id.is_some()
    {
        return Err(Error::forbidden(
            "a channel's call is joined with JoinChannel, not by being called",
        ));
    }
    let _order = app.room_locks.lock(room).await;
    let (state, row) = app
        .db
        .call(room, caller, session.connection_id, callee)
        .await?;
    room_updated(app, &state);
    let devices = app.pool.user_connections(callee);
    if devices.is_empty() {
        if let Some((state, _)) = app.db.end_pending_call(row).await? {
            room_updated(app, &state);
        }
        return Err(Error::unavailable("that user is not online"));
    }
    let incoming = proto::IncomingCall {
        room_id: room.to_proto(),
        calling_user_id: caller.to_proto(),
        participant_user_ids: state.answered().map(|row| row.user_id.to_proto()).collect(),
    };
    app.cluster.broadcast(devices, &incoming);

    // Ring for at most the call timeout; answering, declining or cancelling stops it.
    let (timer_app, timeout) = (app.clone(), app.config.call_timeout);
    let timer = tokio::spawn(async move {
        let app = timer_app;
        // A server that stops leaves the call to the sweep of the next one.
        tokio::select! {
            _ = tokio::time::sleep(timeout) => {}
            _ = app.shutdown.cancelled() => return,
        }
        let _order = app.room_locks.lock(room).await;
        app.call_timers.finished(callee, row);
        match app.db.end_pending_call(row).await {
            Ok(Some((state, pending))) => {
                room_updated(&app, &state);
                call_canceled(&app, room, pending.user_id, None);
                call_ended(
                    &app,
                    room,
                    pending.calling_user_id,
                    pending.user_id,
                    proto::call_ended::Reason::TimedOut,
                );
            }
            Ok(None) => {}
            Err(error) => tracing::error!(%error, "could not end a timed-out call"),
        }
    });
    app.call_timers.start(callee, row, timer.abort_handle());
    response.send(proto::Ack {})?;
    Ok(())
}

pub async fn join_room(
    request: proto::JoinRoom,
    response: Response<proto::JoinRoom>,
    session: Session,
) -> Result<()> {
    let room = room_id(request.room_id)?;
    let app = &session.state;
    let _order = app.room_locks.lock(room).await;
    let state = app
        .db
        .join_room(room, session.user_id(), session.connection_id)
        .await?;
    app.rooms
        .join(session.connection_id, room, session.user_id());
    app.call_timers.stop(session.user_id());
    room_updated(app, &state);
    // The first device to answer wins: the others stop ringing.
    call_canceled(app, room, session.user_id(), Some(session.connection_id));
    response.send(joined(&session, &state))?;
    Ok(())
}

pub async fn rejoin_room(
    request: proto::RejoinRoom,
    response: Response<proto::RejoinRoom>,
    session: Session,
) -> Result<()> {
    let room = room_id(request.room_id)?;
    let app = &session.state;
    let _order = app.room_locks.lock(room).await;
    // The old connection counts as gone when it is ours and closed, even if the server
    // has not yet noticed the loss (a client that reconnects faster than the timeout).
    let peer = app.peer.clone();
    let old = app
        .db
        .participant_of(session.user_id())
        .await?
        .and_then(|row| answering_connection(&row));
    let old_server_gone = match old {
        Some(old) if old.server_id != peer.server_id() => {
            app.db
                .server_is_gone(old.server_id as i32, alive_since(app))
                .await?
        }
        _ => false,
    };
    let old_is_gone = Arc::new(move |old: ConnectionId| {
        if old.server_id == peer.server_id() {
            !peer.is_connected(old)
        } else {
            old_server_gone
        }
    });
    let state = app
        .db
        .rejoin_room(room, session.user_id(), session.connection_id, old_is_gone)
        .await?;
    app.rooms
        .join(session.connection_id, room, session.user_id());
    room_updated(app, &state);
    response.send(joined(&session, &state))?;
    Ok(())
}

pub async fn decline_call(
    request: proto::DeclineCall,
    response: Response<proto::DeclineCall>,
    session: Session,
) -> Result<()> {
    let room = room_id(request.room_id)?;
    let app = &session.state;
    let _order = app.room_locks.lock(room).await;
    let (state, caller) = app.db.decline_call(room, session.user_id()).await?;
    app.call_timers.stop(session.user_id());
    room_updated(app, &state);
    call_canceled(app, room, session.user_id(), Some(session.connection_id));
    call_ended(
        app,
        room,
        caller,
        session.user_id(),
        proto::call_ended::Reason::Declined,
    );
    response.send(proto::Ack {})?;
    Ok(())
}

pub async fn cancel_call(
    request: proto::CancelCall,
    response: Response<proto::CancelCall>,
    session: Session,
) -> Result<()> {
    let room = room_id(request.room_id)?;
    let callee = user_id(request.callee_user_id, "callee_user_id")?;
    let app = &session.state;
    let _order = app.room_locks.lock(room).await;
    let state = app
        .db
        .cancel_call(room, session.connection_id, callee)
        .await?;
    app.call_timers.stop(callee);
    room_updated(app, &state);
    call_canceled(app, room, callee, None);
    response.send(proto::Ack {})?;
    Ok(())
}

pub async fn leave_room(
    _: proto::LeaveRoom,
    response: Response<proto::LeaveRoom>,
    session: Session,
) -> Result<()> {
    let reason = proto::project_unshared::Reason::HostLeft;
    let left = leave(&session.state, session.connection_id, reason).await?;
    if left.is_none() {
        return Err(Error::not_found("this connection is not in a room"));
    }
    response.send(proto::Ack {})?;
    Ok(())
}

/// Takes `connection` out of its room, with everything that follows from it: the
/// projects it hosts are unshared (guests learn `reason`), the ones it joined are left.
pub(super) async fn leave(
    app: &AppState,
    connection: ConnectionId,
    reason: proto::project_unshared::Reason,
) -> Result<Option<Left>> {
    let Some(row) = app.db.room_of_connection(connection).await? else {
        return Ok(None);
    };
    let room = row.room_id;
    let _order = app.room_locks.lock(room).await;
    super::project_lifecycle::left_room(app, connection, reason).await?;
    let Some(left) = app.db.leave_room(connection).await? else {
        return Ok(None);
    };
    app.rooms.leave(app, connection);
    if !left.room_deleted {
        room_updated(app, &left.room);
    }
    for callee in &left.canceled_callees {
        app.call_timers.stop(*callee);
        call_canceled(app, room, *callee, None);
    }
    if let Some(livekit) = &app.livekit {
        livekit.participant_left(
            left.room.room.livekit_room.clone(),
            left.user.to_string(),
            left.room_deleted,
        );
    }
    Ok(Some(left))
}

pub async fn update_participant_location(
    request: proto::UpdateParticipantLocation,
    response: Response<proto::UpdateParticipantLocation>,
    session: Session,
) -> Result<()> {
    let room = room_id(request.room_id)?;
    let location = request
        .location
        .ok_or_else(|| Error::invalid("location is required"))?;
    let kind = proto::participant_location::Kind::try_from(location.kind)
        .map_err(|_| Error::invalid(format!("unknown location kind {}", location.kind)))?;
    let project_id = match kind {
        proto::participant_location::Kind::SharedProject => Some(
            i32::try_from(location.project_id)
                .ok()
                .filter(|id| *id > 0)
                .map(i64::from)
                .ok_or_else(|| Error::invalid("a shared-project location needs a project_id"))?,
        ),
        _ => None,
    };
    let app = &session.state;
    let _order = app.room_locks.lock(room).await;
    let state = app
        .db
        .set_participant_location(room, session.connection_id, kind as i16, project_id)
        .await?;
    room_updated(app, &state);
    response.send(proto::Ack {})?;
    Ok(())
}

pub async fn set_room_participant_role(
    request: proto::SetRoomParticipantRole,
    response: Response<proto::SetRoomParticipantRole>,
    session: Session,
) -> Result<()> {
    let room = room_id(request.room_id)?;
    let target = user_id(request.user_id, "user_id")?;
    let role = proto::ParticipantRole::try_from(request.role)
        .map_err(|_| Error::invalid(format!("unknown role {}", request.role)))?;
    let app = &session.state;
    let _order = app.room_locks.lock(room).await;
    let state = app
        .db
        .set_participant_role(room, session.connection_id, target, role)
        .await?;
    room_updated(app, &state);
    if role == proto::ParticipantRole::Guest {
        super::project_lifecycle::demoted_to_guest(app, room, target).await?;
    }
    if let Some(livekit) = &app.livekit {
        let can_publish = role != proto::ParticipantRole::Guest;
        let livekit_room = state.room.livekit_room.clone();
        livekit.set_can_publish(livekit_room.clone(), target.to_string(), can_publish);
        // A token keeps the rights it was minted with: give the participant a new one,
        // so a LiveKit reconnect does not bring the old rights back.
        let row = state.participant(target).and_then(answering_connection);
        if let (Some(connection), Some(user)) = (row, app.db.get_user(target).await?) {
            match livekit.connection_info(
                &livekit_room,
                &target.to_string(),
                &user.login,
                can_publish,
            ) {
                Ok(info) => {
                    let update = proto::UpdateLiveKitCredentials {
                        room_id: room.to_proto(),
                        info: Some(info),
                    };
                    if let Err(error) = app.cluster.send(connection, update) {
                        tracing::debug!(%error, "could not send new LiveKit credentials");
                    }
                }
                Err(error) => tracing::error!(%error, "could not mint a LiveKit token"),
            }
        }
    }
    response.send(proto::Ack {})?;
    Ok(())
}

pub async fn update_presence(update: proto::UpdatePresence, session: Session) -> Result<()> {
    session
        .state
        .rooms
        .update(&session.state, session.connection_id, update);
    Ok(())
}
