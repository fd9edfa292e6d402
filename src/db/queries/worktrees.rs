//! The mirror of a shared project's worktrees: the worktree list, entries (metadata,
//! never contents) and diagnostic summaries. Only the host's live connection writes
//! them; joiners read them back in pages.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait, sea_query::OnConflict,
};

use super::{
    super::{
        Database, ProjectId,
        entities::{worktree, worktree_diagnostic_summary as summary, worktree_entry as entry},
    },
    projects::{NewWorktree, insert_worktrees, require_host},
};
use crate::error::{Error, Result};

/// One validated chunk of a worktree's entries.
#[derive(Clone, Debug)]
pub struct WorktreeChunk {
    pub worktree_id: i64,
    pub updated: Vec<entry::Model>,
    pub removed: Vec<String>,
    pub scan_id: i64,
    pub is_last_update: bool,
}

async fn worktree_of(
    tx: &impl ConnectionTrait,
    project: ProjectId,
    worktree_id: i64,
) -> Result<worktree::Model> {
    worktree::Entity::find_by_id((project, worktree_id))
        .one(tx)
        .await?
        .ok_or_else(|| Error::not_found(format!("the project has no worktree {worktree_id}")))
}

impl Database {
    pub async fn worktrees(&self, project: ProjectId) -> Result<Vec<worktree::Model>> {
        Ok(worktree::Entity::find()
            .filter(worktree::Column::ProjectId.eq(project))
            .order_by_asc(worktree::Column::Id)
            .all(&self.conn)
            .await?)
    }

    /// Replaces the project's worktree list (host only). Returns the list after.
    pub async fn update_project_worktrees(
        &self,
        project: ProjectId,
        host: crate::rpc::ConnectionId,
        worktrees: Vec<NewWorktree>,
    ) -> Result<Vec<worktree::Model>> {
        self.transaction(move |tx| {
            let worktrees = worktrees.clone();
            Box::pin(async move {
                require_host(tx, project, host).await?;
                let ids: Vec<i64> = worktrees.iter().map(|w| w.id).collect();
                worktree::Entity::delete_many()
                    .filter(worktree::Column::ProjectId.eq(project))
                    .filter(worktree::Column::Id.is_not_in(ids))
                    .exec(tx)
                    .await?;
                let existing = worktree::Entity::find()
                    .filter(worktree::Column::ProjectId.eq(project))
                    .all(tx)
                    .await?;
                let mut added = Vec::new();
                for new in worktrees {
                    match existing.iter().find(|w| w.id == new.id) {
                        Some(old)
                            if old.root_name != new.root_name || old.visible != new.visible =>
                        {
                            let mut active: worktree::ActiveModel = old.clone().into();
                            active.root_name = Set(new.root_name);
                            active.visible = Set(new.visible);
                            active.update(tx).await?;
                        }
                        Some(_) => {}
                        None => added.push(new),
                    }
                }
                insert_worktrees(tx, project, &added).await?;
                Ok(worktree::Entity::find()
                    .filter(worktree::Column::ProjectId.eq(project))
                    .order_by_asc(worktree::Column::Id)
                    .all(tx)
                    .await?)
            })
        })
        .await
    }

    /// Applies one chunk of a worktree scan (host only). A scan id below the stored one,
    /// or equal to a completed scan, is refused with `Conflict` (a replay or a reorder),
    /// and a worktree that would hold more than `max_entries` with `InvalidRequest`;
    /// either way nothing changes. Returns the worktree after.
    pub async fn update_worktree(
        &self,
        project: ProjectId,
        host: crate::rpc::ConnectionId,
        chunk: WorktreeChunk,
        max_entries: u64,
    ) -> Result<worktree::Model> {
        self.transaction(move |tx| {
            let chunk = chunk.clone();
            Box::pin(async move {
                require_host(tx, project, host).await?;
                let tree = worktree_of(tx, project, chunk.worktree_id).await?;
                if chunk.scan_id < tree.scan_id {
                    return Err(Error::conflict(format!(
                        "scan {} is older than the worktree's scan {}",
                        chunk.scan_id, tree.scan_id
                    )));
                }
                if chunk.scan_id == tree.completed_scan_id {
                    return Err(Error::conflict(format!(
                        "scan {} is already complete; a new scan needs a higher scan id (they start at 1)",
                        chunk.scan_id
                    )));
                }
                let of_tree = || {
                    sea_orm::Condition::all()
                        .add(entry::Column::ProjectId.eq(project))
                        .add(entry::Column::WorktreeId.eq(chunk.worktree_id))
                };
                let mut count = tree.entry_count;
                if !chunk.removed.is_empty() {
                    let deleted = entry::Entity::delete_many()
                        .filter(of_tree())
                        .filter(entry::Column::Path.is_in(chunk.removed.clone()))
                        .exec(tx)
                        .await?;
                    count -= deleted.rows_affected as i64;
                }
                if !chunk.updated.is_empty() {
                    let existing = entry::Entity::find()
                        .filter(of_tree())
                        .filter(
                            entry::Column::Path
                                .is_in(chunk.updated.iter().map(|row| row.path.clone())),
                        )
                        .count(tx)
                        .await?;
                    count += chunk.updated.len() as i64 - existing as i64;
                    if count as u64 > max_entries {
                        return Err(Error::invalid(format!(
                            "the worktree would hold {count} entries; the limit is {max_entries} (--max-worktree-entries)"
                        )));
                    }
                    let rows = chunk.updated.iter().cloned().map(|mut row| {
                        row.project_id = project;
                        row.worktree_id = chunk.worktree_id;
                        row.scan_id = chunk.scan_id;
                        entry::ActiveModel::from(row)
                    });
                    entry::Entity::insert_many(rows)
                        .on_conflict(
                            OnConflict::columns([
                                entry::Column::ProjectId,
                                entry::Column::WorktreeId,
                                entry::Column::Path,
                            ])
                            .update_columns([
                                entry::Column::IsDir,
                                entry::Column::MtimeMs,
                                entry::Column::Size,
                                entry::Column::IsIgnored,
                                entry::Column::ScanId,
                            ])
                            .to_owned(),
                        )
                        .exec(tx)
                        .await?;
                }
                let mut active: worktree::ActiveModel = tree.into();
                active.entry_count = Set(count.max(0));
                active.scan_id = Set(chunk.scan_id);
                if chunk.is_last_update {
                    active.completed_scan_id = Set(chunk.scan_id);
                }
                Ok(active.update(tx).await?)
            })
        })
        .await
    }

    /// Upserts diagnostic summaries of one worktree (host only); a summary with no
    /// errors and no warnings deletes the path's.
    pub async fn update_diagnostic_summaries(
        &self,
        project: ProjectId,
        host: crate::rpc::ConnectionId,
        worktree_id: i64,
        summaries: Vec<summary::Model>,
        max_summaries: u64,
    ) -> Result<()> {
        self.transaction(move |tx| {
            let summaries = summaries.clone();
            Box::pin(async move {
                require_host(tx, project, host).await?;
                worktree_of(tx, project, worktree_id).await?;
                let (cleared, kept): (Vec<_>, Vec<_>) = summaries
                    .into_iter()
                    .partition(|s| s.error_count == 0 && s.warning_count == 0);
                if !cleared.is_empty() {
                    summary::Entity::delete_many()
                        .filter(summary::Column::ProjectId.eq(project))
                        .filter(summary::Column::WorktreeId.eq(worktree_id))
                        .filter(summary::Column::Path.is_in(cleared.into_iter().map(|s| s.path)))
                        .exec(tx)
                        .await?;
                }
                if !kept.is_empty() {
                    let rows = kept.into_iter().map(|mut row| {
                        row.project_id = project;
                        row.worktree_id = worktree_id;
                        summary::ActiveModel::from(row)
                    });
                    summary::Entity::insert_many(rows)
                        .on_conflict(
                            OnConflict::columns([
                                summary::Column::ProjectId,
                                summary::Column::WorktreeId,
                                summary::Column::Path,
                            ])
                            .update_columns([
                                summary::Column::LanguageServerId,
                                summary::Column::ErrorCount,
                                summary::Column::WarningCount,
                            ])
                            .to_owned(),
                        )
                        .exec(tx)
                        .await?;
                    let count = summary::Entity::find()
                        .filter(summary::Column::ProjectId.eq(project))
                        .filter(summary::Column::WorktreeId.eq(worktree_id))
                        .count(tx)
                        .await?;
                    if count > max_summaries {
                        return Err(Error::invalid(format!(
                            "the worktree would hold {count} diagnostic summaries; the limit is {max_summaries} (--max-worktree-entries)"
                        )));
                    }
                }
                Ok(())
            })
        })
        .await
    }

    /// A read-only transaction whose snapshot is taken now: the join stream reads the
    /// mirror from it after the project's lock is released, while updates go on.
    pub async fn begin_snapshot(&self) -> Result<sea_orm::DatabaseTransaction> {
        let tx = match self.backend() {
            sea_orm::DbBackend::Postgres => {
                self.conn
                    .begin_with_config(
                        Some(sea_orm::IsolationLevel::RepeatableRead),
                        Some(sea_orm::AccessMode::ReadOnly),
                    )
                    .await?
            }
            _ => self.conn.begin().await?,
        };
        // Both databases take the snapshot at the first read, not at BEGIN.
        worktree::Entity::find().limit(1).all(&tx).await?;
        Ok(tx)
    }
}

/// Up to `limit` entries of a worktree in path order, after `after`.
pub async fn worktree_entries_page(
    conn: &impl ConnectionTrait,
    project: ProjectId,
    worktree_id: i64,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<entry::Model>> {
    let mut query = entry::Entity::find()
        .filter(entry::Column::ProjectId.eq(project))
        .filter(entry::Column::WorktreeId.eq(worktree_id));
    if let Some(after) = after {
        query = query.filter(entry::Column::Path.gt(after));
    }
    Ok(query
        .order_by_asc(entry::Column::Path)
        .limit(limit as u64)
        .all(conn)
        .await?)
}

/// Up to `limit` diagnostic summaries of the project, in (worktree, path) order, after
/// `after`.
pub async fn diagnostic_summaries_page(
    conn: &impl ConnectionTrait,
    project: ProjectId,
    after: Option<(i64, String)>,
    limit: usize,
) -> Result<Vec<summary::Model>> {
    let mut query = summary::Entity::find().filter(summary::Column::ProjectId.eq(project));
    if let Some((worktree_id, path)) = after {
        query = query.filter(
            sea_orm::Condition::any()
                .add(summary::Column::WorktreeId.gt(worktree_id))
                .add(
                    sea_orm::Condition::all()
                        .add(summary::Column::WorktreeId.eq(worktree_id))
                        .add(summary::Column::Path.gt(path)),
                ),
        );
    }
    Ok(query
        .order_by_asc(summary::Column::WorktreeId)
        .order_by_asc(summary::Column::Path)
        .limit(limit as u64)
        .all(conn)
        .await?)
}
