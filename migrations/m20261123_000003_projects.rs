//! Shared projects: the project, its collaborators (one row per joined connection) and
//! the mirror of its worktrees' metadata — entries and diagnostic summaries, never file
//! contents. Everything hangs off `projects` with cascading deletes, so unsharing is one
//! delete.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Rooms {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
    RoomId,
    HostUserId,
    HostConnectionId,
    HostConnectionServerId,
    HostConnectionLost,
    HostLostAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ProjectCollaborators {
    Table,
    Id,
    ProjectId,
    ConnectionId,
    ConnectionServerId,
    UserId,
    ReplicaId,
    IsHost,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Worktrees {
    Table,
    ProjectId,
    Id,
    RootName,
    Visible,
    ScanId,
    CompletedScanId,
    EntryCount,
}

#[derive(DeriveIden)]
enum WorktreeEntries {
    Table,
    ProjectId,
    WorktreeId,
    Path,
    IsDir,
    MtimeMs,
    Size,
    IsIgnored,
    ScanId,
}

#[derive(DeriveIden)]
enum WorktreeDiagnosticSummaries {
    Table,
    ProjectId,
    WorktreeId,
    Path,
    LanguageServerId,
    ErrorCount,
    WarningCount,
}

/// The worktree a row of `table` belongs to; deleting the worktree deletes the row.
fn worktree_key<T: IntoIden + 'static>(
    table: T,
    project: impl IntoIden,
    worktree: impl IntoIden,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, (project, worktree))
        .to(Worktrees::Table, (Worktrees::ProjectId, Worktrees::Id))
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Projects::Table)
                    .col(pk_auto(Projects::Id))
                    .col(integer(Projects::RoomId))
                    .col(integer(Projects::HostUserId))
                    .col(integer_null(Projects::HostConnectionId))
                    .col(integer_null(Projects::HostConnectionServerId))
                    .col(boolean(Projects::HostConnectionLost).default(false))
                    .col(timestamp_with_time_zone_null(Projects::HostLostAt))
                    .col(timestamp_with_time_zone(Projects::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Projects::Table, Projects::RoomId)
                            .to(Rooms::Table, Rooms::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Projects::Table, Projects::HostUserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProjectCollaborators::Table)
                    .col(pk_auto(ProjectCollaborators::Id))
                    .col(integer(ProjectCollaborators::ProjectId))
                    .col(integer(ProjectCollaborators::ConnectionId))
                    .col(integer(ProjectCollaborators::ConnectionServerId))
                    .col(integer(ProjectCollaborators::UserId))
                    .col(integer(ProjectCollaborators::ReplicaId))
                    .col(boolean(ProjectCollaborators::IsHost))
                    .col(small_integer(ProjectCollaborators::Role))
                    .col(timestamp_with_time_zone(ProjectCollaborators::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ProjectCollaborators::Table, ProjectCollaborators::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ProjectCollaborators::Table, ProjectCollaborators::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("project_collaborators_replica")
                    .table(ProjectCollaborators::Table)
                    .col(ProjectCollaborators::ProjectId)
                    .col(ProjectCollaborators::ReplicaId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("project_collaborators_connection")
                    .table(ProjectCollaborators::Table)
                    .col(ProjectCollaborators::ConnectionServerId)
                    .col(ProjectCollaborators::ConnectionId)
                    .col(ProjectCollaborators::ProjectId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Worktrees::Table)
                    .col(integer(Worktrees::ProjectId))
                    .col(big_integer(Worktrees::Id))
                    .col(text(Worktrees::RootName))
                    .col(boolean(Worktrees::Visible))
                    .col(big_integer(Worktrees::ScanId))
                    .col(big_integer(Worktrees::CompletedScanId))
                    .col(big_integer(Worktrees::EntryCount).default(0))
                    .primary_key(Index::create().col(Worktrees::ProjectId).col(Worktrees::Id))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Worktrees::Table, Worktrees::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WorktreeEntries::Table)
                    .col(integer(WorktreeEntries::ProjectId))
                    .col(big_integer(WorktreeEntries::WorktreeId))
                    .col(text(WorktreeEntries::Path))
                    .col(boolean(WorktreeEntries::IsDir))
                    .col(big_integer(WorktreeEntries::MtimeMs))
                    .col(big_integer(WorktreeEntries::Size))
                    .col(boolean(WorktreeEntries::IsIgnored))
                    .col(big_integer(WorktreeEntries::ScanId))
                    .primary_key(
                        Index::create()
                            .col(WorktreeEntries::ProjectId)
                            .col(WorktreeEntries::WorktreeId)
                            .col(WorktreeEntries::Path),
                    )
                    .foreign_key(&mut worktree_key(
                        WorktreeEntries::Table,
                        WorktreeEntries::ProjectId,
                        WorktreeEntries::WorktreeId,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WorktreeDiagnosticSummaries::Table)
                    .col(integer(WorktreeDiagnosticSummaries::ProjectId))
                    .col(big_integer(WorktreeDiagnosticSummaries::WorktreeId))
                    .col(text(WorktreeDiagnosticSummaries::Path))
                    .col(big_integer(WorktreeDiagnosticSummaries::LanguageServerId))
                    .col(integer(WorktreeDiagnosticSummaries::ErrorCount))
                    .col(integer(WorktreeDiagnosticSummaries::WarningCount))
                    .primary_key(
                        Index::create()
                            .col(WorktreeDiagnosticSummaries::ProjectId)
                            .col(WorktreeDiagnosticSummaries::WorktreeId)
                            .col(WorktreeDiagnosticSummaries::Path),
                    )
                    .foreign_key(&mut worktree_key(
                        WorktreeDiagnosticSummaries::Table,
                        WorktreeDiagnosticSummaries::ProjectId,
                        WorktreeDiagnosticSummaries::WorktreeId,
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WorktreeDiagnosticSummaries::Table.into_iden(),
            WorktreeEntries::Table.into_iden(),
            Worktrees::Table.into_iden(),
            ProjectCollaborators::Table.into_iden(),
            Projects::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
