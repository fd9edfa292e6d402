//! Users, access tokens, servers and contacts.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Login,
    Name,
    IsAdmin,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AccessTokens {
    Table,
    Jti,
    UserId,
    ImpersonatedUserId,
    IsAdmin,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Servers {
    Table,
    Id,
    Hostname,
    Version,
    StartedAt,
    HeartbeatAt,
    StoppedAt,
}

#[derive(DeriveIden)]
enum Contacts {
    Table,
    Id,
    UserIdA,
    UserIdB,
    AToB,
    Accepted,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(pk_auto(Users::Id))
                    .col(string_uniq(Users::Login))
                    .col(string(Users::Name))
                    .col(boolean(Users::IsAdmin).default(false))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AccessTokens::Table)
                    .col(string(AccessTokens::Jti).primary_key())
                    .col(integer(AccessTokens::UserId))
                    .col(integer_null(AccessTokens::ImpersonatedUserId))
                    .col(boolean(AccessTokens::IsAdmin))
                    .col(timestamp_with_time_zone(AccessTokens::CreatedAt))
                    .col(timestamp_with_time_zone(AccessTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(AccessTokens::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(AccessTokens::Table, AccessTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(AccessTokens::Table, AccessTokens::ImpersonatedUserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("access_tokens_user_id")
                    .table(AccessTokens::Table)
                    .col(AccessTokens::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Servers::Table)
                    .col(pk_auto(Servers::Id))
                    .col(string(Servers::Hostname))
                    .col(string(Servers::Version))
                    .col(timestamp_with_time_zone(Servers::StartedAt))
                    .col(timestamp_with_time_zone(Servers::HeartbeatAt))
                    .col(timestamp_with_time_zone_null(Servers::StoppedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Contacts::Table)
                    .col(pk_auto(Contacts::Id))
                    .col(integer(Contacts::UserIdA))
                    .col(integer(Contacts::UserIdB))
                    .col(boolean(Contacts::AToB))
                    .col(boolean(Contacts::Accepted))
                    .col(timestamp_with_time_zone(Contacts::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Contacts::Table, Contacts::UserIdA)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Contacts::Table, Contacts::UserIdB)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .check(Expr::col(Contacts::UserIdA).lt(Expr::col(Contacts::UserIdB)))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("contacts_pair")
                    .table(Contacts::Table)
                    .col(Contacts::UserIdA)
                    .col(Contacts::UserIdB)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("contacts_user_id_b")
                    .table(Contacts::Table)
                    .col(Contacts::UserIdB)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Contacts::Table.into_iden(),
            Servers::Table.into_iden(),
            AccessTokens::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
