//! The channel model in memory: a `Forest` is one or more whole channel trees (or one
//! channel's path from its root) with their memberships, loaded in a transaction. Roles
//! and visibility are computed from it, so a change's effect on every user's view is the
//! difference between the forest before and after it.
//!
//! - Effective role: the user's accepted memberships on the channel and its ancestors;
//!   `Banned` anywhere wins, else the highest (admin > member > guest).
//! - Visible: admins and members see the channel; a guest sees it if it is public or if
//!   the guest's own membership is on it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    QueryFilter,
};

use super::super::{
    ChannelId, UserId,
    entities::{channel, channel_member},
};
use crate::{
    error::{Error, Result},
    rpc::proto::{self, ChannelRole as Role},
};

#[derive(Clone, Debug, Default)]
pub struct Forest {
    pub channels: BTreeMap<ChannelId, channel::Model>,
    pub members: Vec<channel_member::Model>,
}

/// What one user sees of a forest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct View {
    pub channels: BTreeMap<ChannelId, (channel::Model, Role)>,
    /// Pending invitations to the user.
    pub invitations: BTreeMap<ChannelId, channel::Model>,
}

/// How strong a role is, for "the highest along the path".
fn rank(role: Role) -> u8 {
    match role {
        Role::Admin => 3,
        Role::Member => 2,
        Role::Guest => 1,
        Role::None | Role::Banned => 0,
    }
}

pub fn role_of(value: i16) -> Role {
    Role::try_from(value as i32).unwrap_or(Role::None)
}

impl Forest {
    pub fn channel(&self, id: ChannelId) -> Result<&channel::Model> {
        self.channels
            .get(&id)
            .ok_or_else(|| Error::not_found(format!("no channel {id}")))
    }

    /// The channel and its ancestors, root first.
    fn path(&self, id: ChannelId) -> Vec<ChannelId> {
        match self.channels.get(&id) {
            Some(channel) => {
                let mut path = channel.ancestors();
                path.push(id);
                path
            }
            None => Vec::new(),
        }
    }

    pub fn role(&self, user: UserId, id: ChannelId) -> Role {
        self.role_among(&self.rows_of(user), id)
    }

    pub fn can_see(&self, user: UserId, id: ChannelId) -> bool {
        self.can_see_among(&self.rows_of(user), id)
    }

    /// One user's membership rows: computing a view or an audience filters them once,
    /// not once per channel.
    fn rows_of(&self, user: UserId) -> Vec<&channel_member::Model> {
        self.members
            .iter()
            .filter(|row| row.user_id == user)
            .collect()
    }

    /// The role given by `rows` (one user's) in channel `id`.
    fn role_among(&self, rows: &[&channel_member::Model], id: ChannelId) -> Role {
        let path = self.path(id);
        let mut best = Role::None;
        for row in rows {
            if !row.accepted || !path.contains(&row.channel_id) {
                continue;
            }
            let role = role_of(row.role);
            if role == Role::Banned {
                return Role::Banned;
            }
            if rank(role) > rank(best) {
                best = role;
            }
        }
        best
    }

    fn can_see_among(&self, rows: &[&channel_member::Model], id: ChannelId) -> bool {
        match self.role_among(rows, id) {
            Role::Admin | Role::Member => true,
            Role::Guest => {
                self.channels.get(&id).is_some_and(|c| c.is_public())
                    || rows.iter().any(|row| row.accepted && row.channel_id == id)
            }
            Role::None | Role::Banned => false,
        }
    }

    /// The caller's role, or `Forbidden` unless it is at least `needed`.
    pub fn require(&self, user: UserId, id: ChannelId, needed: Role, what: &str) -> Result<Role> {
        self.channel(id)?;
        let role = self.role(user, id);
        if role == Role::Banned {
            return Err(Error::forbidden(format!(
                "you are banned from channel {id}"
            )));
        }
        if rank(role) < rank(needed) || (needed == Role::Guest && !self.can_see(user, id)) {
            return Err(Error::forbidden(format!(
                "{what} needs the {} role in channel {id}",
                needed
                    .as_str_name()
                    .trim_start_matches("CHANNEL_ROLE_")
                    .to_lowercase()
            )));
        }
        Ok(role)
    }

    pub fn view(&self, user: UserId) -> View {
        let mut view = View::default();
        let rows = self.rows_of(user);
        if rows.is_empty() {
            return view;
        }
        for (id, channel) in &self.channels {
            if self.can_see_among(&rows, *id) {
                view.channels
                    .insert(*id, (channel.clone(), self.role_among(&rows, *id)));
            }
        }
        for row in &self.members {
            if row.user_id == user
                && !row.accepted
                && role_of(row.role) != Role::Banned
                && let Some(channel) = self.channels.get(&row.channel_id)
            {
                view.invitations.insert(row.channel_id, channel.clone());
            }
        }
        view
    }

    /// Everyone with a membership row (pending or not) in the forest.
    pub fn users(&self) -> BTreeSet<UserId> {
        self.members.iter().map(|row| row.user_id).collect()
    }

    /// The channel and all its descendants.
    pub fn subtree(&self, id: ChannelId) -> Vec<ChannelId> {
        let Some(channel) = self.channels.get(&id) else {
            return Vec::new();
        };
        let prefix = channel.child_path();
        std::iter::once(id)
            .chain(
                self.channels
                    .values()
                    .filter(|c| c.parent_path.starts_with(&prefix))
                    .map(|c| c.id),
            )
            .collect()
    }

    /// The users who can see channel `id` (with any membership on its path).
    pub fn audience(&self, id: ChannelId) -> Vec<UserId> {
        let mut by_user: BTreeMap<UserId, Vec<&channel_member::Model>> = BTreeMap::new();
        for row in &self.members {
            by_user.entry(row.user_id).or_default().push(row);
        }
        by_user
            .into_iter()
            .filter(|(_, rows)| self.can_see_among(rows, id))
            .map(|(user, _)| user)
            .collect()
    }
}

pub fn channel_to_proto(channel: &channel::Model) -> proto::Channel {
    proto::Channel {
        id: channel.id.to_proto(),
        name: channel.name.clone(),
        parent_path: channel.ancestors().iter().map(|id| id.to_proto()).collect(),
        visibility: channel.visibility as i32,
    }
}

/// What changed for one user between two views; `None` when nothing did.
pub fn diff(before: &View, after: &View) -> Option<proto::UpdateChannels> {
    let mut update = proto::UpdateChannels::default();
    for (id, (channel, role)) in &after.channels {
        let old = before.channels.get(id);
        if old.is_none_or(|(old, _)| old != channel) {
            update.channels.push(channel_to_proto(channel));
        }
        if old.is_none_or(|(_, old)| old != role) {
            update.roles.push(proto::ChannelMembership {
                channel_id: id.to_proto(),
                role: *role as i32,
            });
        }
    }
    update.removed_channels = before
        .channels
        .keys()
        .filter(|id| !after.channels.contains_key(id))
        .map(|id| id.to_proto())
        .collect();
    for (id, channel) in &after.invitations {
        if before.invitations.get(id) != Some(channel) {
            update.invitations.push(channel_to_proto(channel));
        }
    }
    update.removed_invitations = before
        .invitations
        .keys()
        .filter(|id| !after.invitations.contains_key(id))
        .map(|id| id.to_proto())
        .collect();
    let empty = update.channels.is_empty()
        && update.removed_channels.is_empty()
        && update.roles.is_empty()
        && update.invitations.is_empty()
        && update.removed_invitations.is_empty();
    (!empty).then_some(update)
}

/// Whole trees under `roots`.
pub(super) async fn load_trees(tx: &impl ConnectionTrait, roots: &[ChannelId]) -> Result<Forest> {
    if roots.is_empty() {
        return Ok(Forest::default());
    }
    let mut condition = Condition::any().add(channel::Column::Id.is_in(roots.iter().copied()));
    for root in roots {
        condition = condition.add(channel::Column::ParentPath.starts_with(format!("{root}/")));
    }
    let channels = channel::Entity::find().filter(condition).all(tx).await?;
    with_members(tx, channels).await
}

/// Channel `id` and its ancestors (enough to decide roles and visibility there).
pub(super) async fn load_path(tx: &impl ConnectionTrait, id: ChannelId) -> Result<Forest> {
    let channel = channel::Entity::find_by_id(id)
        .one(tx)
        .await?
        .ok_or_else(|| Error::not_found(format!("no channel {id}")))?;
    let mut ids = channel.ancestors();
    ids.push(id);
    let channels = channel::Entity::find()
        .filter(channel::Column::Id.is_in(ids))
        .all(tx)
        .await?;
    with_members(tx, channels).await
}

async fn with_members(tx: &impl ConnectionTrait, channels: Vec<channel::Model>) -> Result<Forest> {
    let members = channel_member::Entity::find()
        .filter(channel_member::Column::ChannelId.is_in(channels.iter().map(|c| c.id)))
        .all(tx)
        .await?;
    Ok(Forest {
        channels: channels.into_iter().map(|c| (c.id, c)).collect(),
        members,
    })
}

/// The roots of every tree where `user` has a membership row.
pub(super) async fn roots_of_user(
    tx: &impl ConnectionTrait,
    user: UserId,
) -> Result<Vec<ChannelId>> {
    let rows = channel_member::Entity::find()
        .filter(channel_member::Column::UserId.eq(user))
        .all(tx)
        .await?;
    let channels = channel::Entity::find()
        .filter(channel::Column::Id.is_in(rows.iter().map(|r| r.channel_id)))
        .all(tx)
        .await?;
    let roots: BTreeSet<ChannelId> = channels.iter().map(|c| c.root()).collect();
    Ok(roots.into_iter().collect())
}

/// Inserts `user`'s membership of `channel`.
pub(super) async fn insert_member(
    tx: &impl ConnectionTrait,
    channel: ChannelId,
    user: UserId,
    role: Role,
    accepted: bool,
    inviter: Option<UserId>,
) -> Result<channel_member::Model> {
    Ok(channel_member::ActiveModel {
        channel_id: Set(channel),
        user_id: Set(user),
        role: Set(role as i16),
        accepted: Set(accepted),
        inviter_id: Set(inviter),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(tx)
    .await?)
}

/// Makes `user` an accepted admin of `channel`: `row` (their membership there, if any)
/// is raised, or a membership is inserted.
pub(super) async fn ensure_admin(
    tx: &impl ConnectionTrait,
    channel: ChannelId,
    user: UserId,
    row: Option<channel_member::Model>,
) -> Result<()> {
    match row {
        Some(row) if row.accepted && role_of(row.role) == Role::Admin => {}
        Some(row) => {
            let mut active: channel_member::ActiveModel = row.into();
            active.role = Set(Role::Admin as i16);
            active.accepted = Set(true);
            active.update(tx).await?;
        }
        None => {
            insert_member(tx, channel, user, Role::Admin, true, None).await?;
        }
    }
    Ok(())
}
