use sea_orm::entity::prelude::*;

use crate::db::ChannelId;

/// A channel. `parent_path` holds the ancestors' ids, root first, each followed by `/`
/// (`""` for a root, `"1/5/"` for a grandchild of 1), so a subtree is one prefix match.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "channels")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: ChannelId,
    pub name: String,
    pub parent_path: String,
    /// `proto::ChannelVisibility` as a number.
    pub visibility: i16,
    pub created_at: DateTimeUtc,
}

impl Model {
    /// The ancestors, root first.
    pub fn ancestors(&self) -> Vec<ChannelId> {
        self.parent_path
            .split('/')
            .filter_map(|part| part.parse().ok().map(ChannelId))
            .collect()
    }

    pub fn root(&self) -> ChannelId {
        self.ancestors().first().copied().unwrap_or(self.id)
    }

    /// The `parent_path` of this channel's children.
    pub fn child_path(&self) -> String {
        format!("{}{}/", self.parent_path, self.id)
    }

    pub fn is_public(&self) -> bool {
        self.visibility == crate::rpc::proto::ChannelVisibility::Public as i16
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
