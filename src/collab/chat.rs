//! Channel chat: send (checked, rate-limited, idempotent by nonce), edit, soft delete,
//! reactions, paging and read markers. Every change is committed before it is answered
//! and then pushed to the subscribed connections (`SubscribeToChannels`) of everyone who
//! can see the channel; mentions notify the mentioned users.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use super::{Session, channels::channel_id, channels::subscribed, notifications};
use crate::{
    AppState,
    db::{
        ChannelMessageId, UserId,
        queries::chat::{ChatChange, ChatMessage, MAX_MESSAGES_PAGE, MentionRequest, NewMessage},
    },
    error::{Error, Result},
    rpc::{ConnectionId, Response, proto},
};

const MAX_NONCE_BYTES: usize = 128;
const MAX_EMOJI_BYTES: usize = 32;
const MAX_ANCHOR_PATH_BYTES: usize = 4096;
/// Idle buckets are pruned once the map holds this many users.
const PRUNE_AT: usize = 10_000;

/// A token bucket per user: `limit` messages at once, refilled evenly over a minute.
pub struct RateLimiter {
    limit: f64,
    buckets: Mutex<HashMap<UserId, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            limit: f64::from(per_minute.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token, or says how long until one is there.
    pub fn take(&self, user: UserId) -> Result<(), Duration> {
        let per_second = self.limit / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        if buckets.len() >= PRUNE_AT {
            let limit = self.limit;
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_second < limit
            });
        }
        let (tokens, at) = buckets.entry(user).or_insert((self.limit, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_second).min(self.limit);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / per_second))
        }
    }
}

fn message_id(value: u64, field: &str) -> Result<ChannelMessageId> {
    ChannelMessageId::from_proto(value)
        .ok_or_else(|| Error::invalid(format!("{field} is not a message id")))
}

fn millis(time: Option<chrono::DateTime<chrono::Utc>>) -> u64 {
    time.map_or(0, |t| t.timestamp_millis().max(0) as u64)
}

fn to_proto(chat: &ChatMessage) -> proto::ChannelMessage {
    let row = &chat.message;
    let deleted = row.deleted_at.is_some();
    let mut reactions: Vec<proto::ChatReaction> = Vec::new();
    for reaction in &chat.reactions {
        match reactions.iter_mut().find(|r| r.emoji == reaction.emoji) {
            Some(entry) => entry.user_ids.push(reaction.user_id.to_proto()),
            None => reactions.push(proto::ChatReaction {
                emoji: reaction.emoji.clone(),
                user_ids: vec![reaction.user_id.to_proto()],
            }),
        }
    }
    proto::ChannelMessage {
        id: row.id.to_proto(),
        channel_id: row.channel_id.to_proto(),
        sender_id: row.sender_id.to_proto(),
        // A deleted message keeps its place (threads, paging) but not its words.
        body: if deleted {
            String::new()
        } else {
            row.body.clone()
        },
        kind: i32::from(row.kind),
        reply_to: row.reply_to.map_or(0, |id| id.to_proto()),
        nonce: row.nonce.clone(),
        sent_at: millis(Some(row.sent_at)),
        edited_at: millis(row.edited_at),
        deleted_at: millis(row.deleted_at),
        anchor: row
            .anchor_path
            .as_ref()
            .filter(|_| !deleted)
            .map(|path| proto::CodeAnchor {
                path: path.clone(),
                line: row.anchor_line.unwrap_or_default().max(0) as u32,
                snippet: row.anchor_snippet.clone().unwrap_or_default(),
            }),
        mentions: if deleted {
            Vec::new()
        } else {
            chat.mentions
                .iter()
                .map(|m| proto::ChatMention {
                    start: m.start_offset as u32,
                    end: m.end_offset as u32,
                    user_id: m.user_id.to_proto(),
                })
                .collect()
        },
        reactions,
    }
}

/// `@login` mentions in `body` (a login is `[A-Za-z0-9_-]+`, after the start or a
/// character that is not part of a word), plus the explicit ones, checked and sorted.
fn mentions(body: &str, explicit: &[proto::ChatMention]) -> Result<Vec<MentionRequest>> {
    let is_login = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut found = Vec::new();
    for (start, _) in body.match_indices('@') {
        let before = body[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &body[start + 1..];
        let len = rest.find(|c: char| !is_login(c)).unwrap_or(rest.len());
        if len > 0 {
            found.push(MentionRequest {
                start: start as i32,
                end: (start + 1 + len) as i32,
                user: None,
                login: Some(rest[..len].to_string()),
            });
        }
    }
    for mention in explicit {
        let (start, end) = (mention.start as usize, mention.end as usize);
        if start >= end
            || end > body.len()
            || !body.is_char_boundary(start)
            || !body.is_char_boundary(end)
        {
            return Err(Error::invalid(
                "a mention's offsets must be a non-empty range of whole characters in the body",
            ));
        }
        let user = super::rooms::user_id(mention.user_id, "mentions.user_id")?;
        // An explicit mention at the same place as an `@login` replaces it.
        found.retain(|m| m.start != start as i32);
        found.push(MentionRequest {
            start: start as i32,
            end: end as i32,
            user: Some(user),
            login: None,
        });
    }
    found.sort_by_key(|m| m.start);
    if found.windows(2).any(|pair| pair[0].end > pair[1].start) {
        return Err(Error::invalid("mentions overlap"));
    }
    Ok(found)
}

fn check_body(app: &AppState, body: &str) -> Result<()> {
    if body.is_empty() {
        return Err(Error::invalid("a message needs a body"));
    }
    let max = app.config.max_chat_message_bytes;
    if body.len() as u64 > max {
        return Err(Error::new(
            proto::ErrorCode::PayloadTooLarge,
            format!("a message body has at most {max} bytes (--max-chat-message-bytes)"),
        ));
    }
    Ok(())
}

/// Pushes a committed change to everyone who can see the channel (but `except`), and
/// its notifications to their recipients.
fn push(app: &AppState, change: &ChatChange, sent: bool, except: ConnectionId) {
    let message = to_proto(&change.message);
    let receivers: Vec<ConnectionId> = change
        .audience
        .iter()
        .flat_map(|user| subscribed(app, *user))
        .filter(|c| *c != except)
        .collect();
    if sent {
        let pushed = proto::ChannelMessageSent {
            message: Some(message),
        };
        app.cluster.broadcast(receivers, &pushed);
    } else {
        let pushed = proto::ChannelMessageUpdated {
            message: Some(message),
        };
        app.cluster.broadcast(receivers, &pushed);
    }
    for row in &change.notifications {
        notifications::added(app, row);
    }
}

pub async fn send_channel_message(
    request: proto::SendChannelMessage,
    response: Response<proto::SendChannelMessage>,
    session: Session,
) -> Result<()> {
    let channel = channel_id(request.channel_id)?;
    let app = &session.state;
    check_body(app, &request.body)?;
    if request.nonce.is_empty() || request.nonce.len() > MAX_NONCE_BYTES {
        return Err(Error::invalid(format!(
            "a nonce has 1 to {MAX_NONCE_BYTES} bytes"
        )));
    }
    let kind = proto::ChannelMessageKind::try_from(request.kind)
        .map_err(|_| Error::invalid("unknown message kind"))?;
    let anchor = match (kind, request.anchor) {
        (proto::ChannelMessageKind::System, _) => {
            return Err(Error::invalid("only the server writes system messages"));
        }
        (proto::ChannelMessageKind::Comment, None) => {
            return Err(Error::invalid("a code comment needs an anchor"));
        }
        (_, Some(anchor)) => {
            if anchor.path.is_empty() || anchor.path.len() > MAX_ANCHOR_PATH_BYTES {
                return Err(Error::invalid("an anchor needs a path of at most 4 KiB"));
            }
            if anchor.snippet.len() as u64 > app.config.max_chat_message_bytes {
                return Err(Error::invalid("the anchor's snippet is too long"));
            }
            let line = i32::try_from(anchor.line)
                .map_err(|_| Error::invalid("the anchor's line is out of range"))?;
            Some((anchor.path, line, anchor.snippet))
        }
        (_, None) => None,
    };
    let reply_to = match request.reply_to {
        0 => None,
        id => Some(message_id(id, "reply_to")?),
    };
    let new = NewMessage {
        mentions: mentions(&request.body, &request.mentions)?,
        body: request.body,
        nonce: request.nonce,
        kind,
        reply_to,
        anchor,
    };
    // A re-sent nonce returns the original without counting against the rate limit.
    let resent = match app.db.nonce_channel(session.user_id(), &new.nonce).await? {
        Some(used) if used != channel => {
            return Err(Error::conflict(
                "this nonce was already used for a message in another channel",
            ));
        }
        used => used.is_some(),
    };
    if !resent && let Err(wait) = app.channels.chat_limiter.take(session.user_id()) {
        app.metrics.chat_rate_limited.inc();
        let error = crate::rpc::RpcError::new(
            proto::ErrorCode::RateLimited,
            format!(
                "at most {} messages a minute (--chat-rate-limit)",
                app.config.chat_rate_limit
            ),
        )
        .with_tag("retry_after_ms", wait.as_millis().max(1));
        return Err(error.into());
    }
    let user = session.user_id();
    let change = match app
        .db
        .send_channel_message(user, channel, new.clone())
        .await
    {
        // The same nonce raced in from another connection: the retry finds it.
        Err(Error::Database(error)) if crate::db::is_unique_violation(&error) => {
            app.db.send_channel_message(user, channel, new).await?
        }
        result => result?,
    };
    if change.is_new {
        app.metrics.chat_messages.inc();
        push(app, &change, true, session.connection_id);
    }
    response.send(proto::ChannelMessageResponse {
        message: Some(to_proto(&change.message)),
    })?;
    Ok(())
}

pub async fn edit_channel_message(
    request: proto::EditChannelMessage,
    response: Response<proto::EditChannelMessage>,
    session: Session,
) -> Result<()> {
    let channel = channel_id(request.channel_id)?;
    let id = message_id(request.message_id, "message_id")?;
    let app = &session.state;
    check_body(app, &request.body)?;
    let mentions = mentions(&request.body, &request.mentions)?;
    let change = app
        .db
        .edit_channel_message(session.user_id(), channel, id, request.body, mentions)
        .await?;
    push(app, &change, false, session.connection_id);
    response.send(proto::ChannelMessageResponse {
        message: Some(to_proto(&change.message)),
    })?;
    Ok(())
}

pub async fn delete_channel_message(
    request: proto::DeleteChannelMessage,
    response: Response<proto::DeleteChannelMessage>,
    session: Session,
) -> Result<()> {
    let channel = channel_id(request.channel_id)?;
    let id = message_id(request.message_id, "message_id")?;
    let app = &session.state;
    let change = app
        .db
        .delete_channel_message(session.user_id(), channel, id)
        .await?;
    if change.is_new {
        push(app, &change, false, session.connection_id);
    }
    response.send(proto::Ack {})?;
    Ok(())
}

async fn react(
    session: &Session,
    channel: u64,
    message: u64,
    emoji: String,
    add: bool,
) -> Result<()> {
    let channel = channel_id(channel)?;
    let id = message_id(message, "message_id")?;
    if emoji.is_empty() || emoji.len() > MAX_EMOJI_BYTES {
        return Err(Error::invalid(format!(
            "a reaction has 1 to {MAX_EMOJI_BYTES} bytes"
        )));
    }
    let app = &session.state;
    let change = app
        .db
        .react_to_channel_message(session.user_id(), channel, id, emoji, add)
        .await?;
    if change.is_new {
        push(app, &change, false, session.connection_id);
    }
    Ok(())
}

pub async fn add_reaction(
    request: proto::AddReaction,
    response: Response<proto::AddReaction>,
    session: Session,
) -> Result<()> {
    react(
        &session,
        request.channel_id,
        request.message_id,
        request.emoji,
        true,
    )
    .await?;
    response.send(proto::Ack {})?;
    Ok(())
}

pub async fn remove_reaction(
    request: proto::RemoveReaction,
    response: Response<proto::RemoveReaction>,
    session: Session,
) -> Result<()> {
    react(
        &session,
        request.channel_id,
        request.message_id,
        request.emoji,
        false,
    )
    .await?;
    response.send(proto::Ack {})?;
    Ok(())
}

pub async fn get_channel_messages(
    request: proto::GetChannelMessages,
    response: Response<proto::GetChannelMessages>,
    session: Session,
) -> Result<()> {
    let channel = channel_id(request.channel_id)?;
    let before = match request.before_message_id {
        0 => None,
        id => Some(message_id(id, "before_message_id")?),
    };
    let limit = match request.limit {
        0 => MAX_MESSAGES_PAGE,
        limit => u64::from(limit),
    };
    let (messages, done) = session
        .db()
        .channel_messages(session.user_id(), channel, before, limit)
        .await?;
    response.send(proto::GetChannelMessagesResponse {
        messages: messages.iter().map(to_proto).collect(),
        done,
    })?;
    Ok(())
}

pub async fn ack_channel_message(
    request: proto::AckChannelMessage,
    response: Response<proto::AckChannelMessage>,
    session: Session,
) -> Result<()> {
    let channel = channel_id(request.channel_id)?;
    let id = message_id(request.message_id, "message_id")?;
    session
        .db()
        .ack_channel_message(session.user_id(), channel, id)
        .await?;
    response.send(proto::Ack {})?;
    Ok(())
}
