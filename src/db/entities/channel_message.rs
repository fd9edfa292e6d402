use sea_orm::entity::prelude::*;

use crate::db::{ChannelId, ChannelMessageId, UserId};

/// A chat message. Deleting is soft (`deleted_at`); `(sender_id, nonce)` is unique so a
/// re-sent message is recognised.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "channel_messages")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: ChannelMessageId,
    pub channel_id: ChannelId,
    pub sender_id: UserId,
    pub body: String,
    /// `proto::ChannelMessageKind` as a number.
    pub kind: i16,
    pub reply_to: Option<ChannelMessageId>,
    pub nonce: String,
    pub sent_at: DateTimeUtc,
    pub edited_at: Option<DateTimeUtc>,
    pub deleted_at: Option<DateTimeUtc>,
    pub anchor_path: Option<String>,
    pub anchor_line: Option<i32>,
    pub anchor_snippet: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
