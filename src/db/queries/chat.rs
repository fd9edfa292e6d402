//! Channel chat: messages (idempotent per sender nonce, soft-deleted), mentions with their
//! notifications (in the message's transaction), reactions, paging backwards, and each
//! user's observed-up-to marker. Every call checks the caller's role in the transaction
//! and returns who can see the channel, for the push.

use std::collections::{BTreeSet, HashMap};

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};

use super::{
    super::{
        ChannelId, ChannelMessageId, Database, UserId,
        entities::{
            channel_message as message, channel_message_mention as mention,
            channel_message_reaction as reaction, notification, observed_channel_message, user,
        },
    },
    channel_tree::{Forest, load_path},
    notifications::{MENTION, insert_notification},
};
use crate::{
    error::{Error, Result},
    rpc::proto::{ChannelMessageKind as Kind, ChannelRole as Role},
};

pub const MAX_MESSAGES_PAGE: u64 = 100;

/// A message with its mentions and reactions.
#[derive(Clone, Debug)]
pub struct ChatMessage {
    pub message: message::Model,
    pub mentions: Vec<mention::Model>,
    pub reactions: Vec<reaction::Model>,
}

/// A mention as asked for: by user id, or by login (from `@login` in the body).
#[derive(Clone, Debug)]
pub struct MentionRequest {
    pub start: i32,
    pub end: i32,
    pub user: Option<UserId>,
    pub login: Option<String>,
}

#[derive(Clone, Debug)]
pub struct NewMessage {
    pub body: String,
    pub nonce: String,
    pub kind: Kind,
    pub reply_to: Option<ChannelMessageId>,
    pub anchor: Option<(String, i32, String)>,
    pub mentions: Vec<MentionRequest>,
}

/// What a chat change did: the message as it now is, the users who can see it, and the
/// notifications it created.
#[derive(Debug)]
pub struct ChatChange {
    pub message: ChatMessage,
    pub audience: Vec<UserId>,
    pub notifications: Vec<notification::Model>,
    /// False when a re-sent nonce returned the original message.
    pub is_new: bool,
}

/// The caller may post in `channel`: admins and members, and guests of public channels.
fn require_poster(path: &Forest, user: UserId, channel: ChannelId) -> Result<()> {
    let role = path.require(user, channel, Role::Guest, "chat")?;
    if role == Role::Guest && !path.channel(channel)?.is_public() {
        return Err(Error::forbidden(
            "guests cannot post in a members-only channel",
        ));
    }
    Ok(())
}

async fn with_details(
    tx: &impl ConnectionTrait,
    messages: Vec<message::Model>,
) -> Result<Vec<ChatMessage>> {
    let ids: Vec<_> = messages.iter().map(|m| m.id).collect();
    let mut mentions: HashMap<ChannelMessageId, Vec<mention::Model>> = HashMap::new();
    for row in mention::Entity::find()
        .filter(mention::Column::MessageId.is_in(ids.clone()))
        .order_by_asc(mention::Column::StartOffset)
        .all(tx)
        .await?
    {
        mentions.entry(row.message_id).or_default().push(row);
    }
    let mut reactions: HashMap<ChannelMessageId, Vec<reaction::Model>> = HashMap::new();
    for row in reaction::Entity::find()
        .filter(reaction::Column::MessageId.is_in(ids))
        .order_by_asc(reaction::Column::CreatedAt)
        .all(tx)
        .await?
    {
        reactions.entry(row.message_id).or_default().push(row);
    }
    Ok(messages
        .into_iter()
        .map(|message| ChatMessage {
            mentions: mentions.remove(&message.id).unwrap_or_default(),
            reactions: reactions.remove(&message.id).unwrap_or_default(),
            message,
        })
        .collect())
}

async fn one(tx: &impl ConnectionTrait, row: message::Model) -> Result<ChatMessage> {
    Ok(with_details(tx, vec![row]).await?.remove(0))
}

/// The live message `id` of `channel`.
async fn find_message(
    tx: &impl ConnectionTrait,
    channel: ChannelId,
    id: ChannelMessageId,
) -> Result<message::Model> {
    message::Entity::find_by_id(id)
        .one(tx)
        .await?
        .filter(|m| m.channel_id == channel)
        .ok_or_else(|| Error::not_found(format!("no message {id} in channel {channel}")))
}

fn alive(row: &message::Model, what: &str) -> Result<()> {
    if row.deleted_at.is_some() {
        return Err(Error::invalid(format!("{what} a deleted message")));
    }
    Ok(())
}

/// Stores the mentions of `id` (resolving logins) and notifies each mentioned user who
/// can see the channel and was not already mentioned (`known`).
async fn store_mentions(
    tx: &impl ConnectionTrait,
    path: &Forest,
    row: &message::Model,
    requests: &[MentionRequest],
    known: &BTreeSet<UserId>,
) -> Result<Vec<notification::Model>> {
    let logins: Vec<String> = requests.iter().filter_map(|m| m.login.clone()).collect();
    let by_login: HashMap<String, UserId> = user::Entity::find()
        .filter(user::Column::Login.is_in(logins))
        .all(tx)
        .await?
        .into_iter()
        .map(|u| (u.login, u.id))
        .collect();
    let mut notified = known.clone();
    let mut notifications = Vec::new();
    for request in requests {
        let target = match (&request.user, &request.login) {
            (Some(user), _) => *user,
            (None, Some(login)) => match by_login.get(login) {
                Some(user) => *user,
                None => continue,
            },
            (None, None) => continue,
        };
        if user::Entity::find_by_id(target).one(tx).await?.is_none() {
            return Err(Error::invalid(format!(
                "mentioned user {target} does not exist"
            )));
        }
        mention::Entity::insert(mention::ActiveModel {
            message_id: Set(row.id),
            start_offset: Set(request.start),
            end_offset: Set(request.end),
            user_id: Set(target),
        })
        .exec(tx)
        .await?;
        if target != row.sender_id
            && path.can_see(target, row.channel_id)
            && notified.insert(target)
        {
            let content = serde_json::json!({
                "channel_id": row.channel_id.0,
                "message_id": row.id.0,
                "sender_id": row.sender_id.0,
            });
            notifications
                .push(insert_notification(tx, target, MENTION, Some(row.id.0), content).await?);
        }
    }
    Ok(notifications)
}

impl Database {
    /// The channel of `sender`'s message with this nonce, if there is one.
    pub async fn nonce_channel(&self, sender: UserId, nonce: &str) -> Result<Option<ChannelId>> {
        Ok(message::Entity::find()
            .filter(message::Column::SenderId.eq(sender))
            .filter(message::Column::Nonce.eq(nonce))
            .one(&self.conn)
            .await?
            .map(|m| m.channel_id))
    }

    pub async fn send_channel_message(
        &self,
        sender: UserId,
        channel: ChannelId,
        new: NewMessage,
    ) -> Result<ChatChange> {
        self.transaction(move |tx| {
            let new = new.clone();
            Box::pin(async move {
                let path = load_path(tx, channel).await?;
                require_poster(&path, sender, channel)?;
                let audience = path.audience(channel);
                if let Some(existing) = message::Entity::find()
                    .filter(message::Column::SenderId.eq(sender))
                    .filter(message::Column::Nonce.eq(new.nonce.as_str()))
                    .one(tx)
                    .await?
                {
                    return Ok(ChatChange {
                        message: one(tx, existing).await?,
                        audience,
                        notifications: Vec::new(),
                        is_new: false,
                    });
                }
                if let Some(reply_to) = new.reply_to {
                    let parent = find_message(tx, channel, reply_to)
                        .await
                        .map_err(|_| Error::invalid("reply_to is not a message of this channel"))?;
                    alive(&parent, "cannot reply to")?;
                }
                let (anchor_path, anchor_line, anchor_snippet) = match new.anchor {
                    Some((path, line, snippet)) => (Some(path), Some(line), Some(snippet)),
                    None => (None, None, None),
                };
                let row = message::ActiveModel {
                    channel_id: Set(channel),
                    sender_id: Set(sender),
                    body: Set(new.body),
                    kind: Set(new.kind as i16),
                    reply_to: Set(new.reply_to),
                    nonce: Set(new.nonce),
                    sent_at: Set(Utc::now()),
                    edited_at: Set(None),
                    deleted_at: Set(None),
                    anchor_path: Set(anchor_path),
                    anchor_line: Set(anchor_line),
                    anchor_snippet: Set(anchor_snippet),
                    ..Default::default()
                }
                .insert(tx)
                .await?;
                let notifications =
                    store_mentions(tx, &path, &row, &new.mentions, &BTreeSet::new()).await?;
                Ok(ChatChange {
                    message: one(tx, row).await?,
                    audience,
                    notifications,
                    is_new: true,
                })
            })
        })
        .await
    }

    /// The author replaces the body (and mentions); newly mentioned users are notified.
    pub async fn edit_channel_message(
        &self,
        user: UserId,
        channel: ChannelId,
        id: ChannelMessageId,
        body: String,
        mentions: Vec<MentionRequest>,
    ) -> Result<ChatChange> {
        self.transaction(move |tx| {
            let (body, mentions) = (body.clone(), mentions.clone());
            Box::pin(async move {
                let path = load_path(tx, channel).await?;
                require_poster(&path, user, channel)?;
                let row = find_message(tx, channel, id).await?;
                if row.sender_id != user {
                    return Err(Error::forbidden("only the author edits a message"));
                }
                alive(&row, "cannot edit")?;
                let known: BTreeSet<UserId> = mention::Entity::find()
                    .filter(mention::Column::MessageId.eq(id))
                    .all(tx)
                    .await?
                    .into_iter()
                    .map(|m| m.user_id)
                    .collect();
                mention::Entity::delete_many()
                    .filter(mention::Column::MessageId.eq(id))
                    .exec(tx)
                    .await?;
                let mut active: message::ActiveModel = row.into();
                active.body = Set(body);
                active.edited_at = Set(Some(Utc::now()));
                let row = active.update(tx).await?;
                let notifications = store_mentions(tx, &path, &row, &mentions, &known).await?;
                Ok(ChatChange {
                    message: one(tx, row).await?,
                    audience: path.audience(channel),
                    notifications,
                    is_new: true,
                })
            })
        })
        .await
    }

    /// Soft delete by the author or a channel admin; deleting again changes nothing.
    pub async fn delete_channel_message(
        &self,
        user: UserId,
        channel: ChannelId,
        id: ChannelMessageId,
    ) -> Result<ChatChange> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let path = load_path(tx, channel).await?;
                let role = path.require(user, channel, Role::Guest, "chat")?;
                let row = find_message(tx, channel, id).await?;
                if row.sender_id != user && role != Role::Admin {
                    return Err(Error::forbidden(
                        "only the author or a channel admin deletes a message",
                    ));
                }
                let is_new = row.deleted_at.is_none();
                let row = if is_new {
                    // Soft: the row keeps its place in the history and threads, but not
                    // its words.
                    let mut active: message::ActiveModel = row.into();
                    active.deleted_at = Set(Some(Utc::now()));
                    active.body = Set(String::new());
                    active.anchor_snippet = Set(None);
                    active.update(tx).await?
                } else {
                    row
                };
                Ok(ChatChange {
                    message: one(tx, row).await?,
                    audience: path.audience(channel),
                    notifications: Vec::new(),
                    is_new,
                })
            })
        })
        .await
    }

    /// Adds (or removes) `user`'s `emoji` on a live message; idempotent.
    pub async fn react_to_channel_message(
        &self,
        user: UserId,
        channel: ChannelId,
        id: ChannelMessageId,
        emoji: String,
        add: bool,
    ) -> Result<ChatChange> {
        self.transaction(move |tx| {
            let emoji = emoji.clone();
            Box::pin(async move {
                let path = load_path(tx, channel).await?;
                require_poster(&path, user, channel)?;
                let row = find_message(tx, channel, id).await?;
                alive(&row, "cannot react to")?;
                let key = Condition::all()
                    .add(reaction::Column::MessageId.eq(id))
                    .add(reaction::Column::UserId.eq(user))
                    .add(reaction::Column::Emoji.eq(emoji.as_str()));
                let existing = reaction::Entity::find().filter(key.clone()).one(tx).await?;
                let is_new = existing.is_some() != add;
                if add && existing.is_none() {
                    reaction::ActiveModel {
                        message_id: Set(id),
                        user_id: Set(user),
                        emoji: Set(emoji),
                        created_at: Set(Utc::now()),
                    }
                    .insert(tx)
                    .await?;
                } else if !add && existing.is_some() {
                    reaction::Entity::delete_many().filter(key).exec(tx).await?;
                }
                Ok(ChatChange {
                    message: one(tx, row).await?,
                    audience: path.audience(channel),
                    notifications: Vec::new(),
                    is_new,
                })
            })
        })
        .await
    }

    /// Up to `limit` (≤ 100) messages older than `before`, oldest first; and whether
    /// there are no older ones.
    pub async fn channel_messages(
        &self,
        user: UserId,
        channel: ChannelId,
        before: Option<ChannelMessageId>,
        limit: u64,
    ) -> Result<(Vec<ChatMessage>, bool)> {
        let path = self.channel_path(channel).await?;
        path.require(user, channel, Role::Guest, "reading chat")?;
        let limit = limit.clamp(1, MAX_MESSAGES_PAGE);
        let mut query = message::Entity::find()
            .filter(message::Column::ChannelId.eq(channel))
            .order_by_desc(message::Column::Id)
            .limit(limit + 1);
        if let Some(before) = before {
            query = query.filter(message::Column::Id.lt(before));
        }
        let mut rows = query.all(&self.conn).await?;
        let done = rows.len() as u64 <= limit;
        rows.truncate(limit as usize);
        rows.reverse();
        Ok((with_details(&self.conn, rows).await?, done))
    }

    /// Moves `user`'s read marker in `channel` forward to `id`.
    pub async fn ack_channel_message(
        &self,
        user: UserId,
        channel: ChannelId,
        id: ChannelMessageId,
    ) -> Result<()> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let path = load_path(tx, channel).await?;
                path.require(user, channel, Role::Guest, "reading chat")?;
                find_message(tx, channel, id).await?;
                let current = observed_channel_message::Entity::find_by_id((user, channel))
                    .one(tx)
                    .await?;
                match current {
                    Some(row) if row.message_id >= id => {}
                    Some(row) => {
                        let mut active: observed_channel_message::ActiveModel = row.into();
                        active.message_id = Set(id);
                        active.update(tx).await?;
                    }
                    None => {
                        observed_channel_message::ActiveModel {
                            user_id: Set(user),
                            channel_id: Set(channel),
                            message_id: Set(id),
                        }
                        .insert(tx)
                        .await?;
                    }
                }
                Ok(())
            })
        })
        .await
    }

    /// Per channel: the newest message id and `user`'s marker (0 when none).
    pub async fn chat_states(
        &self,
        user: UserId,
        channels: &[ChannelId],
    ) -> Result<Vec<(ChannelId, i32, i32)>> {
        // In chunks: an IN list has a parameter limit.
        let mut states = Vec::new();
        for chunk in channels.chunks(500) {
            states.extend(self.chat_states_of(user, chunk).await?);
        }
        Ok(states)
    }

    async fn chat_states_of(
        &self,
        user: UserId,
        channels: &[ChannelId],
    ) -> Result<Vec<(ChannelId, i32, i32)>> {
        let latest: Vec<(ChannelId, Option<i32>)> = message::Entity::find()
            .select_only()
            .column(message::Column::ChannelId)
            .column_as(message::Column::Id.max(), "latest")
            .filter(message::Column::ChannelId.is_in(channels.iter().copied()))
            .group_by(message::Column::ChannelId)
            .into_tuple()
            .all(&self.conn)
            .await?;
        let observed: HashMap<ChannelId, i32> = observed_channel_message::Entity::find()
            .filter(observed_channel_message::Column::UserId.eq(user))
            .filter(observed_channel_message::Column::ChannelId.is_in(channels.iter().copied()))
            .all(&self.conn)
            .await?
            .into_iter()
            .map(|row| (row.channel_id, row.message_id.0))
            .collect();
        Ok(latest
            .into_iter()
            .map(|(channel, latest)| {
                let seen = observed.get(&channel).copied().unwrap_or(0);
                (channel, latest.unwrap_or(0), seen)
            })
            .collect())
    }
}
