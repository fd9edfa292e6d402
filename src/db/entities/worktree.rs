use sea_orm::entity::prelude::*;

use crate::db::ProjectId;

/// One worktree (a root folder) of a shared project; its id is chosen by the host.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "worktrees")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub project_id: ProjectId,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i64,
    pub root_name: String,
    pub visible: bool,
    /// The newest scan the server holds entries of.
    pub scan_id: i64,
    /// The newest scan whose last chunk arrived.
    pub completed_scan_id: i64,
    /// Entries stored (bounded by `--max-worktree-entries`).
    pub entry_count: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
