//! Channels: the channel tree (a materialized `parent_path` of ancestor ids, root first,
//! each followed by `/`), memberships with roles, chat (messages, mentions, reactions,
//! each user's observed-up-to marker), notifications, and the link from a room to the
//! channel whose call it carries. Notes live in the document store (migration 4) under
//! the name `channel/<id>/notes`.

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
    ChannelId,
}

#[derive(DeriveIden)]
enum Channels {
    Table,
    Id,
    Name,
    ParentPath,
    Visibility,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ChannelMembers {
    Table,
    Id,
    ChannelId,
    UserId,
    Role,
    Accepted,
    InviterId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ChannelMessages {
    Table,
    Id,
    ChannelId,
    SenderId,
    Body,
    Kind,
    ReplyTo,
    Nonce,
    SentAt,
    EditedAt,
    DeletedAt,
    AnchorPath,
    AnchorLine,
    AnchorSnippet,
}

#[derive(DeriveIden)]
enum ChannelMessageMentions {
    Table,
    MessageId,
    StartOffset,
    EndOffset,
    UserId,
}

#[derive(DeriveIden)]
enum ChannelMessageReactions {
    Table,
    MessageId,
    UserId,
    Emoji,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ObservedChannelMessages {
    Table,
    UserId,
    ChannelId,
    MessageId,
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    Id,
    RecipientId,
    Kind,
    EntityId,
    Content,
    IsRead,
    Response,
    CreatedAt,
}

fn cascade<T: IntoIden + 'static, U: IntoIden + 'static>(
    from: (T, impl IntoIden),
    to: (U, impl IntoIden),
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

fn index(name: &str, table: impl IntoIden, columns: &[&str], unique: bool) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(table);
    for column in columns {
        index.col(Alias::new(*column));
    }
    if unique {
        index.unique();
    }
    index.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Channels::Table)
                    .col(pk_auto(Channels::Id))
                    .col(text(Channels::Name))
                    .col(text(Channels::ParentPath))
                    .col(small_integer(Channels::Visibility))
                    .col(timestamp_with_time_zone(Channels::CreatedAt))
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DbBackend::Postgres {
            // Subtrees are found by prefix (`LIKE '1/5/%'`); only a pattern-ops index
            // serves that under a non-C collation.
            manager
                .get_connection()
                .execute_unprepared(
                    "CREATE INDEX channels_parent_path ON channels (parent_path text_pattern_ops)",
                )
                .await?;
        } else {
            manager
                .create_index(index(
                    "channels_parent_path",
                    Channels::Table,
                    &["parent_path"],
                    false,
                ))
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(ChannelMembers::Table)
                    .col(pk_auto(ChannelMembers::Id))
                    .col(integer(ChannelMembers::ChannelId))
                    .col(integer(ChannelMembers::UserId))
                    .col(small_integer(ChannelMembers::Role))
                    .col(boolean(ChannelMembers::Accepted))
                    .col(integer_null(ChannelMembers::InviterId))
                    .col(timestamp_with_time_zone(ChannelMembers::CreatedAt))
                    .foreign_key(&mut cascade(
                        (ChannelMembers::Table, ChannelMembers::ChannelId),
                        (Channels::Table, Channels::Id),
                    ))
                    .foreign_key(&mut cascade(
                        (ChannelMembers::Table, ChannelMembers::UserId),
                        (Users::Table, Users::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "channel_members_channel_user",
                ChannelMembers::Table,
                &["channel_id", "user_id"],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "channel_members_user",
                ChannelMembers::Table,
                &["user_id"],
                false,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ChannelMessages::Table)
                    .col(pk_auto(ChannelMessages::Id))
                    .col(integer(ChannelMessages::ChannelId))
                    .col(integer(ChannelMessages::SenderId))
                    .col(text(ChannelMessages::Body))
                    .col(small_integer(ChannelMessages::Kind))
                    .col(integer_null(ChannelMessages::ReplyTo))
                    .col(text(ChannelMessages::Nonce))
                    .col(timestamp_with_time_zone(ChannelMessages::SentAt))
                    .col(timestamp_with_time_zone_null(ChannelMessages::EditedAt))
                    .col(timestamp_with_time_zone_null(ChannelMessages::DeletedAt))
                    .col(text_null(ChannelMessages::AnchorPath))
                    .col(integer_null(ChannelMessages::AnchorLine))
                    .col(text_null(ChannelMessages::AnchorSnippet))
                    .foreign_key(&mut cascade(
                        (ChannelMessages::Table, ChannelMessages::ChannelId),
                        (Channels::Table, Channels::Id),
                    ))
                    .foreign_key(&mut cascade(
                        (ChannelMessages::Table, ChannelMessages::SenderId),
                        (Users::Table, Users::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "channel_messages_sender_nonce",
                ChannelMessages::Table,
                &["sender_id", "nonce"],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "channel_messages_channel",
                ChannelMessages::Table,
                &["channel_id", "id"],
                false,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ChannelMessageMentions::Table)
                    .col(integer(ChannelMessageMentions::MessageId))
                    .col(integer(ChannelMessageMentions::StartOffset))
                    .col(integer(ChannelMessageMentions::EndOffset))
                    .col(integer(ChannelMessageMentions::UserId))
                    .primary_key(
                        Index::create()
                            .col(ChannelMessageMentions::MessageId)
                            .col(ChannelMessageMentions::StartOffset),
                    )
                    .foreign_key(&mut cascade(
                        (
                            ChannelMessageMentions::Table,
                            ChannelMessageMentions::MessageId,
                        ),
                        (ChannelMessages::Table, ChannelMessages::Id),
                    ))
                    .foreign_key(&mut cascade(
                        (
                            ChannelMessageMentions::Table,
                            ChannelMessageMentions::UserId,
                        ),
                        (Users::Table, Users::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ChannelMessageReactions::Table)
                    .col(integer(ChannelMessageReactions::MessageId))
                    .col(integer(ChannelMessageReactions::UserId))
                    .col(text(ChannelMessageReactions::Emoji))
                    .col(timestamp_with_time_zone(ChannelMessageReactions::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(ChannelMessageReactions::MessageId)
                            .col(ChannelMessageReactions::UserId)
                            .col(ChannelMessageReactions::Emoji),
                    )
                    .foreign_key(&mut cascade(
                        (
                            ChannelMessageReactions::Table,
                            ChannelMessageReactions::MessageId,
                        ),
                        (ChannelMessages::Table, ChannelMessages::Id),
                    ))
                    .foreign_key(&mut cascade(
                        (
                            ChannelMessageReactions::Table,
                            ChannelMessageReactions::UserId,
                        ),
                        (Users::Table, Users::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ObservedChannelMessages::Table)
                    .col(integer(ObservedChannelMessages::UserId))
                    .col(integer(ObservedChannelMessages::ChannelId))
                    .col(integer(ObservedChannelMessages::MessageId))
                    .primary_key(
                        Index::create()
                            .col(ObservedChannelMessages::UserId)
                            .col(ObservedChannelMessages::ChannelId),
                    )
                    .foreign_key(&mut cascade(
                        (
                            ObservedChannelMessages::Table,
                            ObservedChannelMessages::UserId,
                        ),
                        (Users::Table, Users::Id),
                    ))
                    .foreign_key(&mut cascade(
                        (
                            ObservedChannelMessages::Table,
                            ObservedChannelMessages::ChannelId,
                        ),
                        (Channels::Table, Channels::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .col(pk_auto(Notifications::Id))
                    .col(integer(Notifications::RecipientId))
                    .col(text(Notifications::Kind))
                    .col(integer_null(Notifications::EntityId))
                    .col(text(Notifications::Content))
                    .col(boolean(Notifications::IsRead))
                    .col(boolean_null(Notifications::Response))
                    .col(timestamp_with_time_zone(Notifications::CreatedAt))
                    .foreign_key(&mut cascade(
                        (Notifications::Table, Notifications::RecipientId),
                        (Users::Table, Users::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "notifications_recipient",
                Notifications::Table,
                &["recipient_id", "id"],
                false,
            ))
            .await?;
        // A room carries at most one channel's call. No foreign key: SQLite cannot add
        // one to an existing table; deleting a channel clears the link itself.
        manager
            .alter_table(
                Table::alter()
                    .table(Rooms::Table)
                    .add_column(integer_null(Rooms::ChannelId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("rooms_channel", Rooms::Table, &["channel_id"], true))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("rooms_channel")
                    .table(Rooms::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Rooms::Table)
                    .drop_column(Rooms::ChannelId)
                    .to_owned(),
            )
            .await?;
        for table in [
            Notifications::Table.into_iden(),
            ObservedChannelMessages::Table.into_iden(),
            ChannelMessageReactions::Table.into_iden(),
            ChannelMessageMentions::Table.into_iden(),
            ChannelMessages::Table.into_iden(),
            ChannelMembers::Table.into_iden(),
            Channels::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
