use sea_orm::entity::prelude::*;

use crate::db::DocumentId;

/// A document's updates up to `up_to_update_id`, merged into one state (an epoch).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "document_snapshots")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub document_id: DocumentId,
    #[sea_orm(primary_key, auto_increment = false)]
    pub epoch: i32,
    pub state: Vec<u8>,
    pub state_vector: Vec<u8>,
    pub up_to_update_id: i64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
