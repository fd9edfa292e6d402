//! Rooms and their participants (answered and pending calls).

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
    LivekitRoom,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RoomParticipants {
    Table,
    Id,
    RoomId,
    UserId,
    AnsweringConnectionId,
    AnsweringConnectionServerId,
    AnsweringConnectionLost,
    CallingUserId,
    CallingConnectionId,
    CallingConnectionServerId,
    LocationKind,
    LocationProjectId,
    Role,
    ParticipantIndex,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Rooms::Table)
                    .col(pk_auto(Rooms::Id))
                    .col(string_uniq(Rooms::LivekitRoom))
                    .col(timestamp_with_time_zone(Rooms::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RoomParticipants::Table)
                    .col(pk_auto(RoomParticipants::Id))
                    .col(integer(RoomParticipants::RoomId))
                    .col(integer(RoomParticipants::UserId))
                    .col(integer_null(RoomParticipants::AnsweringConnectionId))
                    .col(integer_null(RoomParticipants::AnsweringConnectionServerId))
                    .col(boolean(RoomParticipants::AnsweringConnectionLost).default(false))
                    .col(integer(RoomParticipants::CallingUserId))
                    .col(integer(RoomParticipants::CallingConnectionId))
                    .col(integer(RoomParticipants::CallingConnectionServerId))
                    .col(small_integer(RoomParticipants::LocationKind).default(0))
                    .col(big_integer_null(RoomParticipants::LocationProjectId))
                    .col(small_integer(RoomParticipants::Role))
                    .col(integer_null(RoomParticipants::ParticipantIndex))
                    .col(timestamp_with_time_zone(RoomParticipants::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RoomParticipants::Table, RoomParticipants::RoomId)
                            .to(Rooms::Table, Rooms::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(RoomParticipants::Table, RoomParticipants::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(RoomParticipants::Table, RoomParticipants::CallingUserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // A user is in (or being called into) at most one room at a time.
        manager
            .create_index(
                Index::create()
                    .name("room_participants_user_id")
                    .table(RoomParticipants::Table)
                    .col(RoomParticipants::UserId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("room_participants_room_id")
                    .table(RoomParticipants::Table)
                    .col(RoomParticipants::RoomId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("room_participants_answering_connection")
                    .table(RoomParticipants::Table)
                    .col(RoomParticipants::AnsweringConnectionServerId)
                    .col(RoomParticipants::AnsweringConnectionId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RoomParticipants::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Rooms::Table).to_owned())
            .await
    }
}
