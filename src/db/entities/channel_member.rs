use sea_orm::entity::prelude::*;

use crate::db::{ChannelId, ChannelMemberId, UserId};

/// A user's membership of a channel (and so of its sub-channels); pending until the
/// invitee accepts.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "channel_members")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: ChannelMemberId,
    pub channel_id: ChannelId,
    pub user_id: UserId,
    /// `proto::ChannelRole` as a number.
    pub role: i16,
    pub accepted: bool,
    pub inviter_id: Option<UserId>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
