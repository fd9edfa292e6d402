use sea_orm::entity::prelude::*;

use crate::db::{DocumentId, UserId};

/// One accepted Yjs v1 update, in commit order (`id` is the sequence).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "document_updates")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub document_id: DocumentId,
    pub data: Vec<u8>,
    pub author_id: Option<UserId>,
    /// `Transport` as its number: 0 ws, 1 rpc, 2 http.
    pub transport: i16,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
