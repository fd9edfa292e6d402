use sea_orm::entity::prelude::*;

use crate::db::DocumentId;

/// A piece of a snapshot's state after its `state` column (see `save_snapshot`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "document_snapshot_parts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub document_id: DocumentId,
    #[sea_orm(primary_key, auto_increment = false)]
    pub epoch: i32,
    #[sea_orm(primary_key, auto_increment = false)]
    pub part: i32,
    pub data: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
