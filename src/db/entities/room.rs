use sea_orm::entity::prelude::*;

use crate::db::{ChannelId, RoomId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "rooms")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: RoomId,
    /// The LiveKit room that carries this room's audio and video.
    #[sea_orm(unique)]
    pub livekit_room: String,
    pub created_at: DateTimeUtc,
    /// Set when the room carries a channel's call.
    #[sea_orm(unique)]
    pub channel_id: Option<ChannelId>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
