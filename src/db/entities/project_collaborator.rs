use sea_orm::entity::prelude::*;

use crate::db::{ProjectCollaboratorId, ProjectId, UserId};

/// A connection that has joined a project (the host's included).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "project_collaborators")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: ProjectCollaboratorId,
    pub project_id: ProjectId,
    pub connection_id: i32,
    pub connection_server_id: i32,
    pub user_id: UserId,
    /// Unique within the project; the host's is 0.
    pub replica_id: i32,
    pub is_host: bool,
    /// `ProjectRole` as its wire number.
    pub role: i16,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
