//! The document store shared by channel notes and the Yjs endpoint: one row per
//! document, its append-only update log (Yjs v1 updates, with author and transport),
//! its compacted snapshots (each a new epoch) and its named versions.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Documents {
    Table,
    Id,
    Name,
    Epoch,
    CreatedAt,
}

#[derive(DeriveIden)]
enum DocumentUpdates {
    Table,
    Id,
    DocumentId,
    Data,
    AuthorId,
    Transport,
    CreatedAt,
}

#[derive(DeriveIden)]
enum DocumentSnapshots {
    Table,
    DocumentId,
    Epoch,
    State,
    StateVector,
    UpToUpdateId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum DocumentVersions {
    Table,
    DocumentId,
    Version,
    Name,
    State,
    AuthorId,
    CreatedAt,
}

fn of_document<T: IntoIden + 'static>(
    table: T,
    column: impl IntoIden,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, column)
        .to(Documents::Table, Documents::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

fn by_author<T: IntoIden + 'static>(table: T, column: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, column)
        .to(Users::Table, Users::Id)
        .on_delete(ForeignKeyAction::SetNull)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Documents::Table)
                    .col(pk_auto(Documents::Id))
                    .col(text_uniq(Documents::Name))
                    .col(integer(Documents::Epoch).default(0))
                    .col(timestamp_with_time_zone(Documents::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DocumentUpdates::Table)
                    .col(big_pk_auto(DocumentUpdates::Id))
                    .col(integer(DocumentUpdates::DocumentId))
                    .col(blob(DocumentUpdates::Data))
                    .col(integer_null(DocumentUpdates::AuthorId))
                    .col(small_integer(DocumentUpdates::Transport))
                    .col(timestamp_with_time_zone(DocumentUpdates::CreatedAt))
                    .foreign_key(&mut of_document(
                        DocumentUpdates::Table,
                        DocumentUpdates::DocumentId,
                    ))
                    .foreign_key(&mut by_author(
                        DocumentUpdates::Table,
                        DocumentUpdates::AuthorId,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("document_updates_document")
                    .table(DocumentUpdates::Table)
                    .col(DocumentUpdates::DocumentId)
                    .col(DocumentUpdates::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DocumentSnapshots::Table)
                    .col(integer(DocumentSnapshots::DocumentId))
                    .col(integer(DocumentSnapshots::Epoch))
                    .col(blob(DocumentSnapshots::State))
                    .col(blob(DocumentSnapshots::StateVector))
                    .col(big_integer(DocumentSnapshots::UpToUpdateId))
                    .col(timestamp_with_time_zone(DocumentSnapshots::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(DocumentSnapshots::DocumentId)
                            .col(DocumentSnapshots::Epoch),
                    )
                    .foreign_key(&mut of_document(
                        DocumentSnapshots::Table,
                        DocumentSnapshots::DocumentId,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DocumentVersions::Table)
                    .col(integer(DocumentVersions::DocumentId))
                    .col(integer(DocumentVersions::Version))
                    .col(text(DocumentVersions::Name))
                    .col(blob(DocumentVersions::State))
                    .col(integer_null(DocumentVersions::AuthorId))
                    .col(timestamp_with_time_zone(DocumentVersions::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(DocumentVersions::DocumentId)
                            .col(DocumentVersions::Version),
                    )
                    .foreign_key(&mut of_document(
                        DocumentVersions::Table,
                        DocumentVersions::DocumentId,
                    ))
                    .foreign_key(&mut by_author(
                        DocumentVersions::Table,
                        DocumentVersions::AuthorId,
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            DocumentVersions::Table.into_iden(),
            DocumentSnapshots::Table.into_iden(),
            DocumentUpdates::Table.into_iden(),
            Documents::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
