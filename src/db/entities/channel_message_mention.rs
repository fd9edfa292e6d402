use sea_orm::entity::prelude::*;

use crate::db::{ChannelMessageId, UserId};

/// A mention of `user_id` at body bytes `[start_offset, end_offset)`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "channel_message_mentions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub message_id: ChannelMessageId,
    #[sea_orm(primary_key, auto_increment = false)]
    pub start_offset: i32,
    pub end_offset: i32,
    pub user_id: UserId,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
