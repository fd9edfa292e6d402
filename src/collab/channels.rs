//! Channels: the tree (create, rename, move, delete, visibility), subscriptions to it,
//! and joining a channel's call room. Members and invitations are in
//! `channel_members`, notes in `channel_notes`, chat in `chat`.
//!
//! Every tree change runs under one lock from its transaction until its `UpdateChannels`
//! deltas are queued, and a subscription takes the same lock while it reads and sends
//! the full state, so each subscriber sees the tree's changes in commit order and never
//! a delta older than its snapshot. Each delta is the difference between what that
//! user saw before and after the change.

use std::{collections::HashSet, sync::Arc};

use parking_lot::Mutex;

use super::{Session, channel_notes::NotesSessions, chat::RateLimiter, rooms::room_updated};
use crate::{
    AppState,
    db::{
        ChannelId, UserId,
        queries::{
            channel_tree::{Forest, diff},
            channels::Changed,
        },
    },
    error::{Error, Result},
    rpc::{ConnectionId, Response, proto},
};

/// Channel state held in memory by this server.
pub struct ChannelsState {
    /// Held from a tree change's transaction until its deltas are queued.
    pub lock: tokio::sync::Mutex<()>,
    subscribers: Mutex<HashSet<ConnectionId>>,
    pub notes: NotesSessions,
    pub chat_limiter: RateLimiter,
}

impl ChannelsState {
    pub fn new(chat_rate_limit: u32) -> Self {
        ChannelsState {
            lock: Default::default(),
            subscribers: Default::default(),
            notes: Default::default(),
            chat_limiter: RateLimiter::new(chat_rate_limit),
        }
    }
}

pub(super) fn channel_id(value: u64) -> Result<ChannelId> {
    ChannelId::from_proto(value)
        .ok_or_else(|| Error::invalid("channel_id is not a valid channel id"))
}

pub(super) fn visibility(value: i32) -> Result<proto::ChannelVisibility> {
    proto::ChannelVisibility::try_from(value)
        .map_err(|_| Error::invalid("unknown channel visibility"))
}

pub(super) fn role(value: i32) -> Result<proto::ChannelRole> {
    proto::ChannelRole::try_from(value).map_err(|_| Error::invalid("unknown channel role"))
}

/// `user`'s connections that subscribed to channel updates.
pub(super) fn subscribed(app: &AppState, user: UserId) -> Vec<ConnectionId> {
    let subscribers = app.channels.subscribers.lock();
    app.pool
        .user_connections(user)
        .into_iter()
        .filter(|c| subscribers.contains(c))
        .collect()
}

/// Pushes each affected user what changed in their view, and applies the change to
/// notes sessions (editing rights, lost access). Call it holding the channel lock.
pub(super) fn publish(app: &Arc<AppState>, before: &Forest, after: &Forest) {
    let users: std::collections::BTreeSet<UserId> =
        before.users().union(&after.users()).copied().collect();
    let mut lost = Vec::new();
    for user in users {
        let (was, is) = (before.view(user), after.view(user));
        let gone: Vec<ChannelId> = was
            .channels
            .keys()
            .filter(|c| !is.channels.contains_key(c))
            .copied()
            .collect();
        if !gone.is_empty() {
            lost.push((user, gone));
        }
        let connections = subscribed(app, user);
        if connections.is_empty() {
            continue;
        }
        if let Some(update) = diff(&was, &is) {
            app.cluster.broadcast(connections, &update);
        }
    }
    let touched: Vec<ChannelId> = before.channels.keys().copied().collect();
    app.channels.notes.recheck(app, &touched, after);
    if !lost.is_empty() {
        tokio::spawn(leave_lost_calls(app.clone(), lost));
    }
}

/// Users who lost sight of channels leave those channels' call rooms (after the
/// change is published: leaving takes the room's lock, never under the channel lock).
async fn leave_lost_calls(app: Arc<AppState>, lost: Vec<(UserId, Vec<ChannelId>)>) {
    for (user, channels) in lost {
        let outcome: Result<()> = async {
            let Some(row) = app.db.participant_of(user).await? else {
                return Ok(());
            };
            let Some(connection) = super::rooms::answering_connection(&row) else {
                return Ok(());
            };
            let room = app.db.get_room(row.room_id).await?;
            if !room.room.channel_id.is_some_and(|c| channels.contains(&c)) {
                return Ok(());
            }
            let reason = proto::project_unshared::Reason::HostLeft;
            if let Some(left) = super::rooms::leave(&app, connection, reason).await? {
                // The leaver learns it from the room without them.
                let _ = app.cluster.send(
                    connection,
                    proto::RoomUpdated {
                        room: Some(super::rooms::room_to_proto(&left.room)),
                    },
                );
            }
            Ok(())
        }
        .await;
        if let Err(error) = outcome {
            tracing::warn!(%error, user = %user, "could not remove a user from a channel call");
        }
    }
}

/// Publishes a committed change and returns its value.
fn published<T>(app: &Arc<AppState>, changed: Changed<T>) -> T {
    publish(app, &changed.before, &changed.after);
    changed.value
}

pub async fn subscribe_to_channels(
    _: proto::SubscribeToChannels,
    response: Response<proto::SubscribeToChannels>,
    session: Session,
) -> Result<()> {
    let app = &session.state;
    let user = session.user_id();
    let _order = app.channels.lock.lock().await;
    let forest = app.db.channels_of_user(user).await?;
    let view = forest.view(user);
    let mut state = diff(&Default::default(), &view).unwrap_or_default();
    let visible: Vec<ChannelId> = view.channels.keys().copied().collect();
    state.chat = app
        .db
        .chat_states(user, &visible)
        .await?
        .into_iter()
        .map(|(channel, latest, observed)| proto::ChannelChatState {
            channel_id: channel.to_proto(),
            latest_message_id: latest as u64,
            observed_message_id: observed as u64,
        })
        .collect();
    if app
        .channels
        .subscribers
        .lock()
        .insert(session.connection_id)
    {
        app.metrics.channel_subscribers.inc();
    }
    response.send(proto::SubscribeToChannelsResponse { state: Some(state) })?;
    Ok(())
}

pub async fn create_channel(
    request: proto::CreateChannel,
    response: Response<proto::CreateChannel>,
    session: Session,
) -> Result<()> {
    let parent = match request.parent_id {
        0 => None,
        id => Some(channel_id(id)?),
    };
    let visibility = visibility(request.visibility)?;
    let app = &session.state;
    let _order = app.channels.lock.lock().await;
    let changed = app
        .db
        .create_channel(session.user_id(), &request.name, parent, visibility)
        .await?;
    let channel = published(app, changed);
    response.send(proto::CreateChannelResponse {
        channel: Some(crate::db::queries::channel_tree::channel_to_proto(&channel)),
    })?;
    Ok(())
}

pub async fn rename_channel(
    request: proto::RenameChannel,
    response: Response<proto::RenameChannel>,
    session: Session,
) -> Result<()> {
    let id = channel_id(request.channel_id)?;
    let app = &session.state;
    let _order = app.channels.lock.lock().await;
    let changed = app
        .db
        .rename_channel(session.user_id(), id, &request.name)
        .await?;
    published(app, changed);
    response.send(proto::Ack {})?;
    Ok(())
}

pub async fn move_channel(
    request: proto::MoveChannel,
    response: Response<proto::MoveChannel>,
    session: Session,
) -> Result<()> {
    let id = channel_id(request.channel_id)?;
    let to = match request.to {
        0 => None,
        to => Some(channel_id(to)?),
    };
    let app = &session.state;
    let _order = app.channels.lock.lock().await;
    let changed = app.db.move_channel(session.user_id(), id, to).await?;
    published(app, changed);
    response.send(proto::Ack {})?;
    Ok(())
}

pub async fn delete_channel(
    request: proto::DeleteChannel,
    response: Response<proto::DeleteChannel>,
    session: Session,
) -> Result<()> {
    let id = channel_id(request.channel_id)?;
    let app = &session.state;
    let _order = app.channels.lock.lock().await;
    // The notes stop taking updates and their queued writes are committed before the
    // rows go: a write to a deleted document would fail its whole group commit.
    let tree = app.db.channel_tree(id).await?;
    tree.require(
        session.user_id(),
        id,
        proto::ChannelRole::Admin,
        "deleting a channel",
    )?;
    for channel in tree.subtree(id) {
        app.documents
            .deleted(&crate::db::queries::channels::notes_document_name(channel));
    }
    app.documents.flush().await;
    let changed = app.db.delete_channel(session.user_id(), id).await?;
    let deleted = published(app, changed);
    tracing::info!(channel = %id, channels = deleted.len(), "deleted channels");
    response.send(proto::Ack {})?;
    Ok(())
}

pub async fn set_channel_visibility(
    request: proto::SetChannelVisibility,
    response: Response<proto::SetChannelVisibility>,
    session: Session,
) -> Result<()> {
    let id = channel_id(request.channel_id)?;
    let visibility = visibility(request.visibility)?;
    let app = &session.state;
    let _order = app.channels.lock.lock().await;
    let changed = app
        .db
        .set_channel_visibility(session.user_id(), id, visibility)
        .await?;
    published(app, changed);
    response.send(proto::Ack {})?;
    Ok(())
}

/// Joins the channel's call room (creating it on first use). A public channel's
/// non-member becomes its guest.
pub async fn join_channel(
    request: proto::JoinChannel,
    response: Response<proto::JoinChannel>,
    session: Session,
) -> Result<()> {
    let id = channel_id(request.channel_id)?;
    let app = &session.state;
    let changed = {
        let _order = app.channels.lock.lock().await;
        let livekit_room = format!("channel-{}", super::rooms::random_name());
        let changed = app
            .db
            .join_channel_room(session.user_id(), session.connection_id, id, livekit_room)
            .await?;
        publish(app, &changed.before, &changed.after);
        changed.value
    };
    let room = changed.room.id;
    let _room_order = app.room_locks.lock(room).await;
    let state = app.db.get_room(room).await?;
    app.rooms
        .join(session.connection_id, room, session.user_id());
    room_updated(app, &state);
    response.send(super::rooms::joined(&session, &state))?;
    Ok(())
}

/// The connection closed: it no longer receives channel updates, and leaves every
/// channel's notes.
pub async fn connection_removed(app: &AppState, connection: ConnectionId) {
    if app.channels.subscribers.lock().remove(&connection) {
        app.metrics.channel_subscribers.dec();
    }
    app.channels.notes.leave_all(app, connection);
}
