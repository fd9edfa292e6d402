use sea_orm::entity::prelude::*;

use crate::db::UserId;

/// One row per issued access token, keyed by the JWT's `jti`, so a token can be revoked
/// before it expires.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "access_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub jti: String,
    /// The token's owner (the admin, for an impersonation token).
    pub user_id: UserId,
    pub impersonated_user_id: Option<UserId>,
    pub is_admin: bool,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
