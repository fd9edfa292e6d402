use sea_orm::entity::prelude::*;

use crate::db::DocumentId;

/// A collaborative (Yjs) document, by its unique name (e.g. `channel/7/notes`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "documents")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: DocumentId,
    #[sea_orm(unique)]
    pub name: String,
    /// The epoch of the latest snapshot (0: none yet).
    pub epoch: i32,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
