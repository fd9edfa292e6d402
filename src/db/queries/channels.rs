//! Channel tree changes. Each runs in one transaction, checks the caller's role there,
//! and returns the affected trees before and after the change (`Changed`), so the caller
//! can push every user exactly the difference in what they see.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, sea_query::Expr,
};

use super::{
    super::{
        ChannelId, Database, UserId,
        entities::{channel, channel_member, document, room},
    },
    channel_tree::{Forest, ensure_admin, insert_member, load_path, load_trees, roots_of_user},
};
use crate::{
    error::{Error, Result},
    rpc::proto::{ChannelRole as Role, ChannelVisibility},
};

/// A committed change: the trees it touched, before and after, and its result.
#[derive(Debug)]
pub struct Changed<T> {
    pub before: Forest,
    pub after: Forest,
    pub value: T,
}

pub const MAX_CHANNEL_NAME_CHARS: usize = 64;
/// Channels in one tree (a root and all its descendants).
pub const MAX_CHANNELS_PER_TREE: usize = 1000;
/// Root channels one user may administer (creating more is refused).
pub const MAX_ROOTS_PER_ADMIN: u64 = 100;

fn tree_full(count: usize) -> Result<()> {
    if count >= MAX_CHANNELS_PER_TREE {
        return Err(Error::conflict(format!(
            "a channel tree holds at most {MAX_CHANNELS_PER_TREE} channels"
        )));
    }
    Ok(())
}

/// The name of a channel's notes in the document store.
pub fn notes_document_name(channel: ChannelId) -> String {
    format!("channel/{channel}/notes")
}

/// A trimmed, non-empty name of at most 64 characters, without control characters.
pub fn channel_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_CHANNEL_NAME_CHARS {
        return Err(Error::invalid(format!(
            "a channel name has 1 to {MAX_CHANNEL_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid("a channel name has no control characters"));
    }
    Ok(name.to_string())
}

fn public_needs_public_parent(parent: Option<&channel::Model>) -> Result<()> {
    if parent.is_some_and(|p| !p.is_public()) {
        return Err(Error::invalid(
            "a public channel needs a public parent channel",
        ));
    }
    Ok(())
}

async fn root_of(tx: &impl ConnectionTrait, id: ChannelId) -> Result<ChannelId> {
    Ok(channel::Entity::find_by_id(id)
        .one(tx)
        .await?
        .ok_or_else(|| Error::not_found(format!("no channel {id}")))?
        .root())
}

impl Database {
    /// Every tree where `user` has a membership (for their whole view).
    pub async fn channels_of_user(&self, user: UserId) -> Result<Forest> {
        let roots = roots_of_user(&self.conn, user).await?;
        load_trees(&self.conn, &roots).await
    }

    /// Channel `id` and its ancestors with their memberships (to check access).
    pub async fn channel_path(&self, id: ChannelId) -> Result<Forest> {
        load_path(&self.conn, id).await
    }

    pub async fn channel_tree(&self, id: ChannelId) -> Result<Forest> {
        let root = root_of(&self.conn, id).await?;
        load_trees(&self.conn, &[root]).await
    }

    pub async fn create_channel(
        &self,
        user: UserId,
        name: &str,
        parent: Option<ChannelId>,
        visibility: ChannelVisibility,
    ) -> Result<Changed<channel::Model>> {
        let name = channel_name(name)?;
        self.transaction(move |tx| {
            let name = name.clone();
            Box::pin(async move {
                let (before, parent_path) = match parent {
                    None => {
                        let admin_of = channel_member::Entity::find()
                            .filter(channel_member::Column::UserId.eq(user))
                            .filter(channel_member::Column::Role.eq(Role::Admin as i16))
                            .all(tx)
                            .await?;
                        let administered = channel::Entity::find()
                            .filter(channel::Column::Id.is_in(admin_of.iter().map(|r| r.channel_id)))
                            .filter(channel::Column::ParentPath.eq(""))
                            .count(tx)
                            .await?;
                        if administered >= MAX_ROOTS_PER_ADMIN {
                            return Err(Error::conflict(format!(
                                "you administer {MAX_ROOTS_PER_ADMIN} root channels, the most one user may"
                            )));
                        }
                        (Forest::default(), String::new())
                    }
                    Some(parent) => {
                        let before = load_trees(tx, &[root_of(tx, parent).await?]).await?;
                        before.require(user, parent, Role::Admin, "creating a sub-channel")?;
                        tree_full(before.channels.len())?;
                        let parent = before.channel(parent)?;
                        if visibility == ChannelVisibility::Public {
                            public_needs_public_parent(Some(parent))?;
                        }
                        (before.clone(), parent.child_path())
                    }
                };
                let created = channel::ActiveModel {
                    name: Set(name),
                    parent_path: Set(parent_path),
                    visibility: Set(visibility as i16),
                    created_at: Set(Utc::now()),
                    ..Default::default()
                }
                .insert(tx)
                .await?;
                if parent.is_none() {
                    insert_member(tx, created.id, user, Role::Admin, true, None).await?;
                }
                let after = load_trees(tx, &[created.root()]).await?;
                Ok(Changed {
                    before,
                    after,
                    value: created,
                })
            })
        })
        .await
    }

    pub async fn rename_channel(
        &self,
        user: UserId,
        id: ChannelId,
        name: &str,
    ) -> Result<Changed<()>> {
        let name = channel_name(name)?;
        self.transaction(move |tx| {
            let name = name.clone();
            Box::pin(async move {
                let root = root_of(tx, id).await?;
                let before = load_trees(tx, &[root]).await?;
                before.require(user, id, Role::Admin, "renaming a channel")?;
                let mut active: channel::ActiveModel = before.channel(id)?.clone().into();
                active.name = Set(name);
                active.update(tx).await?;
                let after = load_trees(tx, &[root]).await?;
                Ok(Changed {
                    before,
                    after,
                    value: (),
                })
            })
        })
        .await
    }

    /// Moves `id` with its subtree under `to` (`None`: it becomes a root).
    pub async fn move_channel(
        &self,
        user: UserId,
        id: ChannelId,
        to: Option<ChannelId>,
    ) -> Result<Changed<()>> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let mut roots = vec![root_of(tx, id).await?];
                if let Some(to) = to {
                    roots.push(root_of(tx, to).await?);
                    roots.dedup();
                }
                let before = load_trees(tx, &roots).await?;
                before.require(user, id, Role::Admin, "moving a channel")?;
                let moved = before.channel(id)?.clone();
                let new_path = match to {
                    None if moved.parent_path.is_empty() => {
                        return Err(Error::invalid("the channel is already a root"));
                    }
                    None => String::new(),
                    Some(to) => {
                        before.require(user, to, Role::Admin, "moving a channel there")?;
                        if before.subtree(id).contains(&to) {
                            return Err(Error::invalid(
                                "a channel cannot move under itself or its sub-channels",
                            ));
                        }
                        let target = before.channel(to)?;
                        if target.root() != moved.root() {
                            tree_full(before.channels.len())?;
                        }
                        if moved.ancestors().last() == Some(&to) {
                            return Err(Error::invalid("the channel is already there"));
                        }
                        if moved.is_public() {
                            public_needs_public_parent(Some(target))?;
                        }
                        target.child_path()
                    }
                };
                let old_prefix = moved.child_path();
                let new_prefix = format!("{new_path}{id}/");
                for descendant in before.subtree(id) {
                    let row = before.channel(descendant)?.clone();
                    let path = if descendant == id {
                        new_path.clone()
                    } else {
                        format!("{new_prefix}{}", &row.parent_path[old_prefix.len()..])
                    };
                    let mut active: channel::ActiveModel = row.into();
                    active.parent_path = Set(path);
                    active.update(tx).await?;
                }
                // A channel moved to the top is a root of its own now, and a root keeps
                // an admin: the mover (who may have been admin through an ancestor).
                let mut after_roots = roots.clone();
                if to.is_none() {
                    after_roots.push(id);
                    let own = before
                        .members
                        .iter()
                        .find(|row| row.channel_id == id && row.user_id == user)
                        .cloned();
                    ensure_admin(tx, id, user, own).await?;
                }
                let after = load_trees(tx, &after_roots).await?;
                Ok(Changed {
                    before,
                    after,
                    value: (),
                })
            })
        })
        .await
    }

    /// Deletes `id` and its sub-channels with everything in them; returns their ids.
    pub async fn delete_channel(
        &self,
        user: UserId,
        id: ChannelId,
    ) -> Result<Changed<Vec<ChannelId>>> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let root = root_of(tx, id).await?;
                let before = load_trees(tx, &[root]).await?;
                before.require(user, id, Role::Admin, "deleting a channel")?;
                let doomed = before.subtree(id);
                document::Entity::delete_many()
                    .filter(
                        document::Column::Name
                            .is_in(doomed.iter().map(|c| notes_document_name(*c))),
                    )
                    .exec(tx)
                    .await?;
                room::Entity::update_many()
                    .col_expr(room::Column::ChannelId, Expr::value(None::<i32>))
                    .filter(room::Column::ChannelId.is_in(doomed.iter().copied()))
                    .exec(tx)
                    .await?;
                channel::Entity::delete_many()
                    .filter(channel::Column::Id.is_in(doomed.iter().copied()))
                    .exec(tx)
                    .await?;
                let after = if doomed.contains(&root) {
                    Forest::default()
                } else {
                    load_trees(tx, &[root]).await?
                };
                Ok(Changed {
                    before,
                    after,
                    value: doomed,
                })
            })
        })
        .await
    }

    pub async fn set_channel_visibility(
        &self,
        user: UserId,
        id: ChannelId,
        visibility: ChannelVisibility,
    ) -> Result<Changed<()>> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let root = root_of(tx, id).await?;
                let before = load_trees(tx, &[root]).await?;
                before.require(user, id, Role::Admin, "changing a channel's visibility")?;
                let row = before.channel(id)?.clone();
                match visibility {
                    ChannelVisibility::Public => {
                        let parent = row.ancestors().last().copied();
                        public_needs_public_parent(parent.and_then(|p| before.channels.get(&p)))?;
                    }
                    ChannelVisibility::Members => {
                        let public_child = before
                            .subtree(id)
                            .into_iter()
                            .any(|c| c != id && before.channels[&c].is_public());
                        if public_child {
                            return Err(Error::invalid(
                                "a channel with public sub-channels must stay public",
                            ));
                        }
                    }
                }
                let mut active: channel::ActiveModel = row.into();
                active.visibility = Set(visibility as i16);
                active.update(tx).await?;
                let after = load_trees(tx, &[root]).await?;
                Ok(Changed {
                    before,
                    after,
                    value: (),
                })
            })
        })
        .await
    }

    /// A members-only root channel named `name` (created if no root has that name) with
    /// each of `admins` as an accepted admin; returns whether it was created.
    pub async fn seed_channel(&self, name: &str, admins: &[UserId]) -> Result<bool> {
        let name = channel_name(name)?;
        if admins.is_empty() {
            return Err(Error::invalid(
                "a seeded channel needs at least one seed admin",
            ));
        }
        let admins = admins.to_vec();
        self.transaction(move |tx| {
            let (name, admins) = (name.clone(), admins.clone());
            Box::pin(async move {
                let existing = channel::Entity::find()
                    .filter(channel::Column::ParentPath.eq(""))
                    .filter(channel::Column::Name.eq(name.as_str()))
                    .order_by_asc(channel::Column::Id)
                    .one(tx)
                    .await?;
                let (channel, created) = match existing {
                    Some(channel) => (channel, false),
                    None => {
                        let channel = channel::ActiveModel {
                            name: Set(name),
                            parent_path: Set(String::new()),
                            visibility: Set(ChannelVisibility::Members as i16),
                            created_at: Set(Utc::now()),
                            ..Default::default()
                        }
                        .insert(tx)
                        .await?;
                        (channel, true)
                    }
                };
                for admin in admins {
                    let row = channel_member::Entity::find()
                        .filter(channel_member::Column::ChannelId.eq(channel.id))
                        .filter(channel_member::Column::UserId.eq(admin))
                        .one(tx)
                        .await?;
                    ensure_admin(tx, channel.id, admin, row).await?;
                }
                Ok(created)
            })
        })
        .await
    }
}
