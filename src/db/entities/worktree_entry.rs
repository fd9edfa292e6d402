use sea_orm::entity::prelude::*;

use crate::db::ProjectId;

/// A file or directory of a worktree: metadata only, never contents.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "worktree_entries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub project_id: ProjectId,
    #[sea_orm(primary_key, auto_increment = false)]
    pub worktree_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub path: String,
    pub is_dir: bool,
    pub mtime_ms: i64,
    pub size: i64,
    pub is_ignored: bool,
    /// The scan that last changed this entry.
    pub scan_id: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
