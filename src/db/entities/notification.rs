use sea_orm::entity::prelude::*;

use crate::db::{NotificationId, UserId};

/// Something a user should see (an invitation, a mention); `content` is a JSON object.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: NotificationId,
    pub recipient_id: UserId,
    pub kind: String,
    pub entity_id: Option<i32>,
    pub content: String,
    pub is_read: bool,
    pub response: Option<bool>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
