use sea_orm::entity::prelude::*;

use crate::db::{ProjectId, RoomId, UserId};

/// A project shared into a room by its host.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "projects")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: ProjectId,
    pub room_id: RoomId,
    pub host_user_id: UserId,
    /// The host's connection; it changes when the host reshares after a reconnect.
    pub host_connection_id: Option<i32>,
    pub host_connection_server_id: Option<i32>,
    /// The host's connection dropped; the project waits out the reconnect grace.
    pub host_connection_lost: bool,
    /// When the host's connection was found lost; after the reconnect grace the sweep
    /// unshares the project.
    pub host_lost_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
