//! Snapshots in parts: a document's snapshot state may continue in rows of its own, each
//! written by a short transaction before the snapshot row that makes them current, so
//! that saving a snapshot of megabytes never holds SQLite's only writer for long. A
//! snapshot's state is its `state` column followed by its parts in order (none for the
//! snapshots written before this step).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Documents {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum DocumentSnapshotParts {
    Table,
    DocumentId,
    Epoch,
    Part,
    Data,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DocumentSnapshotParts::Table)
                    .col(integer(DocumentSnapshotParts::DocumentId))
                    .col(integer(DocumentSnapshotParts::Epoch))
                    .col(integer(DocumentSnapshotParts::Part))
                    .col(blob(DocumentSnapshotParts::Data))
                    .primary_key(
                        Index::create()
                            .col(DocumentSnapshotParts::DocumentId)
                            .col(DocumentSnapshotParts::Epoch)
                            .col(DocumentSnapshotParts::Part),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                DocumentSnapshotParts::Table,
                                DocumentSnapshotParts::DocumentId,
                            )
                            .to(Documents::Table, Documents::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DocumentSnapshotParts::Table).to_owned())
            .await
    }
}
