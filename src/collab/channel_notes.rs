//! Channel notes: each channel's notes are the document `channel/<id>/notes` of the
//! shared document store, edited here over RPC and by y-websocket clients at
//! `/yjs/channel/<id>/notes`; both see each other's committed updates and awareness.
//!
//! - `JoinChannelNotes` subscribes the connection and returns the whole state;
//!   `RejoinChannelNotes` returns only what the client's state vector lacks.
//! - `UpdateChannelNotes` is acknowledged only after the update's commit (group commit
//!   in the store's writer); the store relays it to the other subscribers after the
//!   commit too.
//! - Awareness is relayed, never stored. Leaving (or disconnecting) removes the
//!   connection's awareness states for everyone.
//! - A tree change re-checks every session of the channels it touched: editing rights
//!   follow the role, and a user who can no longer see the channel is dropped with
//!   `ChannelNotesClosed`.

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;
use parking_lot::Mutex;
use yrs::{
    StateVector, sync::awareness::AwarenessUpdate, updates::decoder::Decode,
    updates::encoder::Encode,
};

use super::{Session, channels::channel_id};
use crate::{
    AppState,
    cluster::Cluster,
    db::{
        ChannelId, UserId,
        queries::{channel_tree::Forest, channels::notes_document_name, documents::Transport},
    },
    documents::{DocEvent, DocHandle, Subscriber, SubscriberId},
    error::{Error, Result},
    rpc::{ConnectionId, Response, proto},
};

/// An awareness update larger than this is refused (as on the Yjs endpoint).
const MAX_AWARENESS_BYTES: usize = 64 * 1024;

struct NotesSession {
    doc: Arc<DocHandle>,
    subscriber: SubscriberId,
    user: UserId,
    can_edit: bool,
}

/// Which connection has joined which channel's notes.
type SessionMap = Mutex<HashMap<(ConnectionId, ChannelId), NotesSession>>;

/// A y-websocket connection to a channel's notes, watched so that losing access (or
/// editing rights) closes it.
struct WatchedSocket {
    channel: ChannelId,
    user: UserId,
    writable: bool,
    revoke: Box<dyn Fn() + Send + Sync>,
}

type SocketMap = Mutex<HashMap<u64, WatchedSocket>>;

#[derive(Default)]
pub struct NotesSessions {
    sessions: Arc<SessionMap>,
    sockets: Arc<SocketMap>,
    next_socket: std::sync::atomic::AtomicU64,
}

/// Keeps a y-websocket connection watched; dropping it stops the watch.
pub struct SocketWatch {
    sockets: Arc<SocketMap>,
    id: u64,
}

impl Drop for SocketWatch {
    fn drop(&mut self) {
        self.sockets.lock().remove(&self.id);
    }
}

/// An RPC editor as a subscriber of the document: events become pushed messages.
struct RpcEditor {
    cluster: Cluster,
    connection: ConnectionId,
    channel: ChannelId,
    /// To drop this session when its document closes (it would keep the closed
    /// document in memory, and the editor in the collaborators, until a rejoin).
    sessions: std::sync::Weak<SessionMap>,
    gauge: prometheus::IntGauge,
}

impl Subscriber for RpcEditor {
    fn deliver(&self, me: SubscriberId, event: &DocEvent) {
        let channel_id = self.channel.to_proto();
        let sent = match event {
            DocEvent::Updates(updates) => DocEvent::updates_for(updates, me).try_for_each(|c| {
                self.cluster.send(
                    self.connection,
                    proto::ChannelNotesUpdated {
                        channel_id,
                        update: c.update.clone(),
                    },
                )
            }),
            DocEvent::Awareness { update, .. } => self.cluster.send(
                self.connection,
                proto::ChannelNotesAwareness {
                    channel_id,
                    update: update.clone(),
                },
            ),
            DocEvent::Closed(reason) => {
                let key = (self.connection, self.channel);
                if let Some(sessions) = self.sessions.upgrade() {
                    let removed = sessions.lock().remove(&key);
                    if removed.is_some() {
                        self.gauge.dec();
                    }
                }
                self.cluster.send(
                    self.connection,
                    proto::ChannelNotesClosed {
                        channel_id,
                        reason: reason.to_string(),
                    },
                )
            }
        };
        // A full queue has already cut the connection; a closed one is leaving.
        let _ = sent;
    }
}

impl NotesSessions {
    fn collaborators(&self, channel: ChannelId) -> Vec<proto::NotesCollaborator> {
        let mut list: Vec<_> = self
            .sessions
            .lock()
            .iter()
            .filter(|((_, c), _)| *c == channel)
            .map(|((connection, _), session)| proto::NotesCollaborator {
                user_id: session.user.to_proto(),
                peer_id: Some((*connection).into()),
            })
            .collect();
        list.sort_by_key(|c| (c.user_id, c.peer_id.map(|p| (p.server_id, p.id))));
        list
    }

    /// Tells the channel's collaborators (but `except`) who is there now.
    fn announce(&self, app: &AppState, channel: ChannelId, except: Option<ConnectionId>) {
        let collaborators = self.collaborators(channel);
        let receivers: Vec<ConnectionId> = self
            .sessions
            .lock()
            .keys()
            .filter(|(connection, c)| *c == channel && Some(*connection) != except)
            .map(|(connection, _)| *connection)
            .collect();
        let message = proto::ChannelNotesCollaborators {
            channel_id: channel.to_proto(),
            collaborators,
        };
        app.cluster.broadcast(receivers, &message);
    }

    fn remove(&self, app: &AppState, connection: ConnectionId, channel: ChannelId) -> bool {
        let Some(session) = self.sessions.lock().remove(&(connection, channel)) else {
            return false;
        };
        app.metrics.notes_collaborators.dec();
        session.doc.unsubscribe(session.subscriber);
        if let Some(removal) = session.doc.release_awareness(session.subscriber) {
            session.doc.broadcast(&DocEvent::awareness(removal), None);
        }
        true
    }

    /// The connection leaves every channel's notes.
    pub fn leave_all(&self, app: &AppState, connection: ConnectionId) {
        let channels: Vec<ChannelId> = self
            .sessions
            .lock()
            .keys()
            .filter(|(c, _)| *c == connection)
            .map(|(_, channel)| *channel)
            .collect();
        for channel in channels {
            if self.remove(app, connection, channel) {
                self.announce(app, channel, None);
            }
        }
    }

    /// Watches a y-websocket connection to `channel`'s notes: `revoke` is called when
    /// `user` can no longer see the channel, or no longer edit it while `writable`.
    pub fn watch_socket(
        &self,
        channel: ChannelId,
        user: UserId,
        writable: bool,
        revoke: Box<dyn Fn() + Send + Sync>,
    ) -> SocketWatch {
        let id = self
            .next_socket
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.sockets.lock().insert(
            id,
            WatchedSocket {
                channel,
                user,
                writable,
                revoke,
            },
        );
        SocketWatch {
            sockets: self.sockets.clone(),
            id,
        }
    }

    /// After a tree change: sessions of `channels` follow the roles in `after`; those
    /// who lost sight of their channel are dropped and told. Watched y-websocket
    /// connections that lost access or editing rights are closed (they reconnect with
    /// what they have now).
    pub fn recheck(&self, app: &AppState, channels: &[ChannelId], after: &Forest) {
        self.sockets.lock().retain(|_, socket| {
            if !channels.contains(&socket.channel) {
                return true;
            }
            let keeps = after.can_see(socket.user, socket.channel)
                && (!socket.writable || can_edit(after.role(socket.user, socket.channel)));
            if !keeps {
                (socket.revoke)();
            }
            keeps
        });
        let mut lost = Vec::new();
        {
            let mut sessions = self.sessions.lock();
            for ((connection, channel), session) in sessions.iter_mut() {
                if !channels.contains(channel) {
                    continue;
                }
                if after.can_see(session.user, *channel) {
                    session.can_edit = can_edit(after.role(session.user, *channel));
                } else {
                    lost.push((*connection, *channel));
                }
            }
        }
        for (connection, channel) in lost {
            if self.remove(app, connection, channel) {
                let _ = app.cluster.send(
                    connection,
                    proto::ChannelNotesClosed {
                        channel_id: channel.to_proto(),
                        reason: "you no longer have access to this channel".into(),
                    },
                );
                self.announce(app, channel, None);
            }
        }
    }
}

fn can_edit(role: proto::ChannelRole) -> bool {
    matches!(role, proto::ChannelRole::Admin | proto::ChannelRole::Member)
}

/// Checks access, opens the document and (re)subscribes the connection; returns the
/// document and whether the caller may edit.
async fn enter(session: &Session, channel: ChannelId) -> Result<(Arc<DocHandle>, bool)> {
    let app = &session.state;
    let path = app.db.channel_path(channel).await?;
    let role = path.require(
        session.user_id(),
        channel,
        proto::ChannelRole::Guest,
        "reading notes",
    )?;
    let editable = can_edit(role);
    let doc = Arc::new(app.documents.open(&notes_document_name(channel)).await?);
    let editor = Arc::new(RpcEditor {
        cluster: app.cluster.clone(),
        connection: session.connection_id,
        channel,
        sessions: Arc::downgrade(&app.channels.notes.sessions),
        gauge: app.metrics.notes_collaborators.clone(),
    });
    let subscriber = app.documents.subscribe(&doc, editor, None)?;
    let key = (session.connection_id, channel);
    let previous = app.channels.notes.sessions.lock().insert(
        key,
        NotesSession {
            doc: doc.clone(),
            subscriber,
            user: session.user_id(),
            can_edit: editable,
        },
    );
    match previous {
        // A rejoin replaces the old subscription (perhaps of a document that closed).
        Some(old) => {
            old.doc.unsubscribe(old.subscriber);
            if let Some(removal) = old.doc.release_awareness(old.subscriber) {
                old.doc.broadcast(&DocEvent::awareness(removal), None);
            }
        }
        None => {
            app.metrics.notes_collaborators.inc();
            app.channels
                .notes
                .announce(app, channel, Some(session.connection_id));
        }
    }
    // A ban or removal that committed while the document was opening happened before
    // this session existed, so its re-check could not see it: check again now.
    let current = app.db.channel_path(channel).await.and_then(|path| {
        path.require(
            session.user_id(),
            channel,
            proto::ChannelRole::Guest,
            "reading notes",
        )
    });
    match current {
        Ok(role) if can_edit(role) == editable => Ok((doc, editable)),
        Ok(role) => {
            if let Some(session) = app
                .channels
                .notes
                .sessions
                .lock()
                .get_mut(&(session.connection_id, channel))
            {
                session.can_edit = can_edit(role);
            }
            Ok((doc, can_edit(role)))
        }
        Err(error) => {
            if app
                .channels
                .notes
                .remove(app, session.connection_id, channel)
            {
                app.channels.notes.announce(app, channel, None);
            }
            Err(error)
        }
    }
}

fn session_of(
    app: &AppState,
    connection: ConnectionId,
    channel: ChannelId,
) -> Result<(Arc<DocHandle>, SubscriberId, bool)> {
    app.channels
        .notes
        .sessions
        .lock()
        .get(&(connection, channel))
        .map(|s| (s.doc.clone(), s.subscriber, s.can_edit))
        .ok_or_else(|| Error::forbidden("join the channel's notes first"))
}

pub async fn join_channel_notes(
    request: proto::JoinChannelNotes,
    response: Response<proto::JoinChannelNotes>,
    session: Session,
) -> Result<()> {
    let channel = channel_id(request.channel_id)?;
    let (doc, can_edit) = enter(&session, channel).await?;
    // Encoded after subscribing: anything committed later is relayed, anything applied
    // earlier is in the state (an update in both is harmless to a CRDT).
    let state = doc.encode_since(&StateVector::default());
    let awareness = doc
        .with_awareness(|awareness| awareness.update().ok())
        .filter(|update| !update.clients.is_empty())
        .map(|update| update.encode_v1())
        .unwrap_or_default();
    response.send(proto::JoinChannelNotesResponse {
        state: state.into(),
        state_vector: doc.state_vector().encode_v1().into(),
        collaborators: session.state.channels.notes.collaborators(channel),
        awareness: awareness.into(),
        can_edit,
    })?;
    Ok(())
}

pub async fn rejoin_channel_notes(
    request: proto::RejoinChannelNotes,
    response: Response<proto::RejoinChannelNotes>,
    session: Session,
) -> Result<()> {
    let channel = channel_id(request.channel_id)?;
    let since = StateVector::decode_v1(&request.state_vector)
        .map_err(|error| Error::invalid(format!("the state vector does not decode: {error}")))?;
    let (doc, can_edit) = enter(&session, channel).await?;
    response.send(proto::RejoinChannelNotesResponse {
        update: doc.encode_since(&since).into(),
        state_vector: doc.state_vector().encode_v1().into(),
        collaborators: session.state.channels.notes.collaborators(channel),
        can_edit,
    })?;
    Ok(())
}

pub async fn leave_channel_notes(
    request: proto::LeaveChannelNotes,
    response: Response<proto::LeaveChannelNotes>,
    session: Session,
) -> Result<()> {
    let channel = channel_id(request.channel_id)?;
    let app = &session.state;
    if app
        .channels
        .notes
        .remove(app, session.connection_id, channel)
    {
        app.channels.notes.announce(app, channel, None);
    }
    response.send(proto::Ack {})?;
    Ok(())
}

/// Applies, commits, then acknowledges; the store relays after the commit.
pub async fn update_channel_notes(
    request: proto::UpdateChannelNotes,
    response: Response<proto::UpdateChannelNotes>,
    session: Session,
) -> Result<()> {
    let channel = channel_id(request.channel_id)?;
    let app = &session.state;
    let (doc, subscriber, can_edit) = session_of(app, session.connection_id, channel)?;
    if !can_edit {
        return Err(Error::forbidden("only admins and members edit the notes"));
    }
    if request.update.len() as u64 > app.config.max_message_bytes {
        return Err(Error::new(
            proto::ErrorCode::PayloadTooLarge,
            format!(
                "an update over {} bytes (--max-message-bytes)",
                app.config.max_message_bytes
            ),
        ));
    }
    app.documents
        .apply_update(
            &doc,
            request.update.to_vec(),
            Some(session.user_id()),
            Transport::Rpc,
            Some(subscriber),
        )
        .await?;
    response.send(proto::Ack {})?;
    Ok(())
}

/// Cursors: relayed to the other editors and Yjs sockets, never stored.
pub async fn channel_notes_awareness(
    message: proto::ChannelNotesAwareness,
    session: Session,
) -> Result<()> {
    let channel = channel_id(message.channel_id)?;
    let app = &session.state;
    let (doc, subscriber, _) = session_of(app, session.connection_id, channel)?;
    if message.update.len() > MAX_AWARENESS_BYTES {
        return Err(Error::invalid(format!(
            "an awareness update over {MAX_AWARENESS_BYTES} bytes"
        )));
    }
    let update = AwarenessUpdate::decode_v1(&message.update).map_err(|error| {
        Error::invalid(format!("the awareness update does not decode: {error}"))
    })?;
    doc.claim_awareness(update.clients.keys().copied(), subscriber);
    doc.with_awareness(|awareness| awareness.apply_update(update))
        .map_err(|error| Error::invalid(format!("the awareness update does not apply: {error}")))?;
    doc.broadcast(
        &DocEvent::awareness(Bytes::clone(&message.update)),
        Some(subscriber),
    );
    Ok(())
}
