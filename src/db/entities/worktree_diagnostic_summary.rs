use sea_orm::entity::prelude::*;

use crate::db::ProjectId;

/// Error and warning counts of one path of a worktree, as the host's language server
/// reports them.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "worktree_diagnostic_summaries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub project_id: ProjectId,
    #[sea_orm(primary_key, auto_increment = false)]
    pub worktree_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub path: String,
    pub language_server_id: i64,
    pub error_count: i32,
    pub warning_count: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
