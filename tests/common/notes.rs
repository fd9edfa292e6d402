//! Helpers for channel stories (notes and chat): a root channel with an admin and
//! members (invited and accepted over RPC), a yrs document standing in for an editor of
//! the channel's notes, awareness updates, and chat shortcuts.
//!
//! Every wait is bounded by `WAIT`; nothing here sleeps.

use std::collections::HashMap;

use collab::{
    client::Client,
    db::entities::{document, document_snapshot},
    rpc::proto::{self, ChannelRole, ChannelVisibility},
};
use sea_orm::EntityTrait;
use yrs::{
    ClientID, Doc, GetString, ReadTxn, StateVector, Text, TextRef, Transact, Update,
    sync::{Awareness, AwarenessUpdate},
    updates::{decoder::Decode, encoder::Encode},
};

use super::{TestServer, within, yjs::TEXT};

// ---------------------------------------------------------------------------------------
// Channels and members
// ---------------------------------------------------------------------------------------

/// Creates a root channel as `admin` (who becomes its admin); returns its id.
pub async fn create_root_channel(admin: &Client, name: &str, visibility: ChannelVisibility) -> u64 {
    let channel = admin
        .request(proto::CreateChannel {
            name: name.to_string(),
            parent_id: 0,
            visibility: visibility as i32,
        })
        .await
        .unwrap_or_else(|error| panic!("creating channel {name:?}: {error}"))
        .channel
        .expect("CreateChannelResponse carries the channel");
    assert_eq!(channel.name, name);
    assert!(channel.parent_path.is_empty(), "{channel:?}");
    channel.id
}

/// The next notification pushed to `client` (AddNotification) that `pick` accepts; the
/// ones before it are skipped.
pub async fn notification_until(
    client: &Client,
    what: &str,
    pick: impl Fn(&proto::Notification) -> bool,
) -> proto::Notification {
    within(what, async {
        loop {
            let notification = client
                .recv::<proto::AddNotification>()
                .await
                .expect("the connection is open")
                .payload
                .notification
                .expect("AddNotification carries the notification");
            if pick(&notification) {
                return notification;
            }
        }
    })
    .await
}

/// The next UpdateNotification pushed to `client` for notification `id`.
pub async fn notification_update(client: &Client, id: u64) -> proto::Notification {
    within(&format!("an UpdateNotification for {id}"), async {
        loop {
            let notification = client
                .recv::<proto::UpdateNotification>()
                .await
                .expect("the connection is open")
                .payload
                .notification
                .expect("UpdateNotification carries the notification");
            if notification.id == id {
                return notification;
            }
        }
    })
    .await
}

/// `admin` invites `member`'s user with `role`, and `member` accepts. The invitation's
/// notification and its update are taken from `member`'s inbox here, so stories start
/// with empty notification inboxes.
pub async fn add_member(admin: &Client, channel_id: u64, member: &Client, role: ChannelRole) {
    admin
        .request(proto::InviteChannelMember {
            channel_id,
            user_id: member.user_id(),
            role: role as i32,
        })
        .await
        .unwrap_or_else(|error| panic!("inviting user {}: {error}", member.user_id()));
    let invitation = notification_until(member, "the channel invitation", |n| {
        n.kind == "ChannelInvitation" && n.entity_id == channel_id
    })
    .await;
    member
        .request(proto::RespondToChannelInvite {
            channel_id,
            accept: true,
        })
        .await
        .unwrap_or_else(|error| panic!("user {} accepts: {error}", member.user_id()));
    let answered = notification_update(member, invitation.id).await;
    assert_eq!(answered.response, Some(true), "{answered:?}");
}

/// A root channel `name` whose admin is `admin`'s user, with each of `members` invited
/// with its role and accepted. Returns the channel id.
pub async fn channel_with(
    admin: &Client,
    name: &str,
    visibility: ChannelVisibility,
    members: &[(&Client, ChannelRole)],
) -> u64 {
    let channel_id = create_root_channel(admin, name, visibility).await;
    for (member, role) in members {
        add_member(admin, channel_id, member, *role).await;
    }
    channel_id
}

/// Subscribes `client` to channel updates (needed to receive chat pushes).
pub async fn subscribe(client: &Client) -> proto::UpdateChannels {
    client
        .request(proto::SubscribeToChannels {})
        .await
        .expect("SubscribeToChannels")
        .state
        .expect("SubscribeToChannelsResponse carries the state")
}

/// The name of a channel's notes document (also its y-websocket path).
pub fn notes_name(channel_id: u64) -> String {
    format!("channel/{channel_id}/notes")
}

// ---------------------------------------------------------------------------------------
// Notes over RPC
// ---------------------------------------------------------------------------------------

/// An editor's copy of the notes: a yrs document whose root text is `TEXT` (as in the
/// y-websocket client).
pub struct NotesDoc {
    pub doc: Doc,
    pub text: TextRef,
}

impl Default for NotesDoc {
    fn default() -> Self {
        Self::new()
    }
}

impl NotesDoc {
    pub fn new() -> NotesDoc {
        let doc = Doc::new();
        let text = doc.get_or_insert_text(TEXT);
        NotesDoc { doc, text }
    }

    /// A document made from one update (e.g. the state of a JoinChannelNotesResponse).
    pub fn from_update(update: &[u8]) -> NotesDoc {
        let notes = NotesDoc::new();
        notes.apply(update);
        notes
    }

    /// Applies a Yjs v1 update, which must decode and apply.
    pub fn apply(&self, update: &[u8]) {
        let update = Update::decode_v1(update).expect("the update decodes");
        self.doc
            .transact_mut()
            .apply_update(update)
            .expect("the update applies");
    }

    /// Applies an update and says whether it brought anything new (the state vector
    /// moved): an echo of one's own edit brings nothing.
    pub fn apply_news(&self, update: &[u8]) -> bool {
        let before = self.state_vector();
        self.apply(update);
        self.state_vector() != before
    }

    pub fn text(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    pub fn len(&self) -> u32 {
        self.text.len(&self.doc.transact())
    }

    pub fn client_id(&self) -> ClientID {
        self.doc.client_id()
    }

    pub fn state_vector(&self) -> StateVector {
        self.doc.transact().state_vector()
    }

    /// The state vector, Yjs v1 encoded (as RejoinChannelNotes wants it).
    pub fn state_vector_bytes(&self) -> Vec<u8> {
        self.state_vector().encode_v1()
    }

    /// The whole document as one update.
    pub fn state(&self) -> Vec<u8> {
        self.doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    /// Inserts `chunk` at `index` (bytes; tests use ASCII); returns the update.
    pub fn insert(&self, index: u32, chunk: &str) -> Vec<u8> {
        let before = self.state_vector();
        {
            let mut txn = self.doc.transact_mut();
            self.text.insert(&mut txn, index, chunk);
        }
        self.doc.transact().encode_state_as_update_v1(&before)
    }

    /// Appends `chunk`; returns the update.
    pub fn push(&self, chunk: &str) -> Vec<u8> {
        let end = self.len();
        self.insert(end, chunk)
    }

    /// Removes `len` bytes at `index`; returns the update (its delete set).
    pub fn remove(&self, index: u32, len: u32) -> Vec<u8> {
        let before = self.state_vector();
        {
            let mut txn = self.doc.transact_mut();
            self.text.remove_range(&mut txn, index, len);
        }
        self.doc.transact().encode_state_as_update_v1(&before)
    }

    /// Whether this copy has every clock in `clocks` (client id → clock).
    pub fn covers(&self, clocks: &HashMap<ClientID, u32>) -> bool {
        let sv = self.state_vector();
        clocks.iter().all(|(id, clock)| sv.get(id) >= *clock)
    }
}

/// Decodes a Yjs v1 state vector.
pub fn decode_sv(bytes: &[u8]) -> StateVector {
    StateVector::decode_v1(bytes).expect("the state vector decodes")
}

pub async fn join_notes(client: &Client, channel_id: u64) -> proto::JoinChannelNotesResponse {
    client
        .request(proto::JoinChannelNotes { channel_id })
        .await
        .unwrap_or_else(|error| panic!("joining the notes of channel {channel_id}: {error}"))
}

/// Sends an update with UpdateChannelNotes; it must be acknowledged.
pub async fn update_notes(client: &Client, channel_id: u64, update: Vec<u8>) {
    client
        .request(proto::UpdateChannelNotes {
            channel_id,
            update: update.into(),
        })
        .await
        .unwrap_or_else(|error| panic!("the notes update is acknowledged: {error}"));
}

/// The next ChannelNotesUpdated pushed to `client` (which must be for `channel_id`):
/// its update.
pub async fn next_notes_update(client: &Client, channel_id: u64) -> Vec<u8> {
    let message = within(
        "a ChannelNotesUpdated",
        client.recv::<proto::ChannelNotesUpdated>(),
    )
    .await
    .expect("the connection is open")
    .payload;
    assert_eq!(message.channel_id, channel_id);
    message.update.to_vec()
}

/// A collaborator as (user id, server id, connection id), for comparisons.
pub type CollaboratorKey = (u64, u32, u32);

pub fn client_key(client: &Client) -> CollaboratorKey {
    let peer = proto::PeerId::from(client.peer_id());
    (client.user_id(), peer.server_id, peer.id)
}

/// The keys of these clients, sorted.
pub fn client_keys(clients: &[&Client]) -> Vec<CollaboratorKey> {
    let mut keys: Vec<_> = clients.iter().map(|c| client_key(c)).collect();
    keys.sort_unstable();
    keys
}

/// The keys of a collaborators list, sorted.
pub fn collaborator_keys(collaborators: &[proto::NotesCollaborator]) -> Vec<CollaboratorKey> {
    let mut keys: Vec<_> = collaborators
        .iter()
        .map(|c| {
            let peer = c.peer_id.as_ref().expect("a collaborator has a peer id");
            (c.user_id, peer.server_id, peer.id)
        })
        .collect();
    keys.sort_unstable();
    keys
}

/// Takes ChannelNotesCollaborators pushed to `client` until one for `channel_id` lists
/// exactly `expected` (earlier states may come first).
pub async fn collaborators_until(client: &Client, channel_id: u64, expected: &[&Client]) {
    let expected = client_keys(expected);
    within(
        &format!("the notes' collaborators to be {expected:?}"),
        async {
            loop {
                let message = client
                    .recv::<proto::ChannelNotesCollaborators>()
                    .await
                    .expect("the connection is open")
                    .payload;
                if message.channel_id == channel_id
                    && collaborator_keys(&message.collaborators) == expected
                {
                    return;
                }
            }
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Awareness
// ---------------------------------------------------------------------------------------

/// A y-protocols awareness update carrying `json` as the state of `doc`'s client id;
/// returns that id and the encoded update.
pub fn awareness_update(doc: &Doc, json: &str) -> (ClientID, Vec<u8>) {
    let mut awareness = Awareness::new(doc.clone());
    awareness.set_local_state_raw(json);
    let id = doc.client_id();
    let update = awareness
        .update_with_clients([id])
        .expect("the local state is known");
    (id, update.encode_v1())
}

/// The states (client id → JSON) of an encoded awareness update.
pub fn awareness_states(bytes: &[u8]) -> HashMap<ClientID, String> {
    let update = AwarenessUpdate::decode_v1(bytes).expect("the awareness update decodes");
    update
        .clients
        .into_iter()
        .map(|(id, entry)| (id, entry.json.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Storage
// ---------------------------------------------------------------------------------------

/// Whether the document `name` has a snapshot (compaction ran at least once).
pub async fn has_snapshot(server: &TestServer, name: &str) -> bool {
    let documents = document::Entity::find()
        .all(&server.state.db.conn)
        .await
        .expect("read documents");
    let Some(doc) = documents.into_iter().find(|d| d.name == name) else {
        return false;
    };
    document_snapshot::Entity::find()
        .all(&server.state.db.conn)
        .await
        .expect("read document_snapshots")
        .iter()
        .any(|snapshot| snapshot.document_id == doc.id)
}

// ---------------------------------------------------------------------------------------
// Chat
// ---------------------------------------------------------------------------------------

/// A fresh nonce.
pub fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A plain chat message with a fresh nonce.
pub fn chat(channel_id: u64, body: &str) -> proto::SendChannelMessage {
    proto::SendChannelMessage {
        channel_id,
        body: body.to_string(),
        nonce: nonce(),
        ..Default::default()
    }
}

/// Posts `body`; the message must be accepted. Returns it as stored.
pub async fn post(client: &Client, channel_id: u64, body: &str) -> proto::ChannelMessage {
    client
        .request(chat(channel_id, body))
        .await
        .unwrap_or_else(|error| panic!("posting {body:?}: {error}"))
        .message
        .expect("ChannelMessageResponse carries the message")
}

pub async fn history(
    client: &Client,
    channel_id: u64,
    before_message_id: u64,
    limit: u32,
) -> proto::GetChannelMessagesResponse {
    client
        .request(proto::GetChannelMessages {
            channel_id,
            before_message_id,
            limit,
        })
        .await
        .expect("GetChannelMessages")
}

/// The message `id` as GetChannelMessages returns it (from the newest 100).
pub async fn stored_message(client: &Client, channel_id: u64, id: u64) -> proto::ChannelMessage {
    history(client, channel_id, 0, 100)
        .await
        .messages
        .into_iter()
        .find(|m| m.id == id)
        .unwrap_or_else(|| panic!("message {id} is in the history"))
}

/// Reactions as (emoji, sorted user ids), sorted, without empty entries.
pub fn reactions(message: &proto::ChannelMessage) -> Vec<(String, Vec<u64>)> {
    let mut reactions: Vec<_> = message
        .reactions
        .iter()
        .filter(|r| !r.user_ids.is_empty())
        .map(|r| {
            let mut users = r.user_ids.clone();
            users.sort_unstable();
            (r.emoji.clone(), users)
        })
        .collect();
    reactions.sort();
    reactions
}

/// Takes ChannelMessageUpdated pushed to `client` until one whose message `pick` accepts.
pub async fn message_update_until(
    client: &Client,
    what: &str,
    pick: impl Fn(&proto::ChannelMessage) -> bool,
) -> proto::ChannelMessage {
    within(what, async {
        loop {
            let message = client
                .recv::<proto::ChannelMessageUpdated>()
                .await
                .expect("the connection is open")
                .payload
                .message
                .expect("ChannelMessageUpdated carries the message");
            if pick(&message) {
                return message;
            }
        }
    })
    .await
}

/// The next ChannelMessageSent pushed to `client`: its message.
pub async fn next_sent(client: &Client) -> proto::ChannelMessage {
    within(
        "a ChannelMessageSent",
        client.recv::<proto::ChannelMessageSent>(),
    )
    .await
    .expect("the connection is open")
    .payload
    .message
    .expect("ChannelMessageSent carries the message")
}
