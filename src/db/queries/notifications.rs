//! Notifications: one row per recipient and event, with a JSON `content`; paged newest
//! first.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::super::{Database, NotificationId, UserId, entities::notification};
use crate::error::{Error, Result};

pub const INVITATION: &str = "ChannelInvitation";
pub const MENTION: &str = "ChannelMessageMention";
pub const MAX_NOTIFICATIONS_PAGE: u64 = 50;

pub(super) async fn insert_notification(
    tx: &impl ConnectionTrait,
    recipient: UserId,
    kind: &str,
    entity: Option<i32>,
    content: serde_json::Value,
) -> Result<notification::Model> {
    Ok(notification::ActiveModel {
        recipient_id: Set(recipient),
        kind: Set(kind.to_string()),
        entity_id: Set(entity),
        content: Set(content.to_string()),
        is_read: Set(false),
        response: Set(None),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(tx)
    .await?)
}

impl Database {
    /// Up to `limit` (≤ 50) of `user`'s notifications older than `before`, newest first;
    /// and whether there are no more.
    pub async fn notifications(
        &self,
        user: UserId,
        before: Option<NotificationId>,
        limit: u64,
    ) -> Result<(Vec<notification::Model>, bool)> {
        let limit = limit.clamp(1, MAX_NOTIFICATIONS_PAGE);
        let mut query = notification::Entity::find()
            .filter(notification::Column::RecipientId.eq(user))
            .order_by_desc(notification::Column::Id)
            .limit(limit + 1);
        if let Some(before) = before {
            query = query.filter(notification::Column::Id.lt(before));
        }
        let mut rows = query.all(&self.conn).await?;
        let done = rows.len() as u64 <= limit;
        rows.truncate(limit as usize);
        Ok((rows, done))
    }

    pub async fn mark_notification_read(
        &self,
        user: UserId,
        id: NotificationId,
    ) -> Result<notification::Model> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let row = notification::Entity::find_by_id(id)
                    .one(tx)
                    .await?
                    .filter(|row| row.recipient_id == user)
                    .ok_or_else(|| Error::not_found(format!("no notification {id}")))?;
                if row.is_read {
                    return Ok(row);
                }
                let mut active: notification::ActiveModel = row.into();
                active.is_read = Set(true);
                Ok(active.update(tx).await?)
            })
        })
        .await
    }
}
