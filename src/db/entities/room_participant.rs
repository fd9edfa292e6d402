use sea_orm::entity::prelude::*;

use crate::db::{RoomId, RoomParticipantId, UserId};

/// A user in a room (answered: the answering connection is set) or being called into
/// it (pending). A user has at most one row: one room at a time.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "room_participants")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: RoomParticipantId,
    pub room_id: RoomId,
    #[sea_orm(unique)]
    pub user_id: UserId,
    pub answering_connection_id: Option<i32>,
    /// The server that owns the answering connection.
    pub answering_connection_server_id: Option<i32>,
    /// The answering connection dropped; the participant waits out the reconnect grace.
    pub answering_connection_lost: bool,
    pub calling_user_id: UserId,
    pub calling_connection_id: i32,
    pub calling_connection_server_id: i32,
    /// `ParticipantLocation.Kind` as its wire number.
    pub location_kind: i16,
    pub location_project_id: Option<i64>,
    /// `ParticipantRole` as its wire number.
    pub role: i16,
    pub participant_index: Option<i32>,
    pub created_at: DateTimeUtc,
}

impl Model {
    pub fn answered(&self) -> bool {
        self.answering_connection_id.is_some()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
