//! Channel memberships: invitations (with their notification, in the same transaction),
//! answers, removal, roles, the member list, and whether two users share a channel tree
//! (which lets them call each other).

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, ModelTrait,
    PaginatorTrait, QueryFilter,
};

use super::{
    super::{
        ChannelId, Database, UserId,
        entities::{channel, channel_member, notification, user},
    },
    channel_tree::{Forest, insert_member, load_trees, role_of, roots_of_user},
    channels::Changed,
    notifications::{INVITATION, insert_notification},
};
use crate::{
    error::{Error, Result},
    rpc::proto::ChannelRole as Role,
};

/// Invitations one user may have pending at once.
pub const MAX_PENDING_INVITATIONS: u64 = 100;

async fn tree_of(tx: &impl ConnectionTrait, id: ChannelId) -> Result<Forest> {
    let channel = channel::Entity::find_by_id(id)
        .one(tx)
        .await?
        .ok_or_else(|| Error::not_found(format!("no channel {id}")))?;
    load_trees(tx, &[channel.root()]).await
}

fn row_on(forest: &Forest, id: ChannelId, user: UserId) -> Option<&channel_member::Model> {
    forest
        .members
        .iter()
        .find(|row| row.channel_id == id && row.user_id == user)
}

/// Refuses to leave a root channel without an accepted admin.
fn keeps_an_admin(forest: &Forest, id: ChannelId, leaving: &channel_member::Model) -> Result<()> {
    let is_root = forest.channel(id)?.parent_path.is_empty();
    let admins = forest
        .members
        .iter()
        .filter(|row| row.channel_id == id && row.accepted && role_of(row.role) == Role::Admin)
        .count();
    if is_root && leaving.accepted && role_of(leaving.role) == Role::Admin && admins <= 1 {
        return Err(Error::conflict(
            "a root channel keeps at least one admin: make someone else admin first",
        ));
    }
    Ok(())
}

impl Database {
    /// A pending membership for `invitee`, and their `ChannelInvitation` notification.
    pub async fn invite_channel_member(
        &self,
        inviter: UserId,
        id: ChannelId,
        invitee: UserId,
        role: Role,
    ) -> Result<Changed<notification::Model>> {
        if !matches!(role, Role::Admin | Role::Member | Role::Guest) {
            return Err(Error::invalid("invite as admin, member or guest"));
        }
        self.transaction(move |tx| {
            Box::pin(async move {
                let before = tree_of(tx, id).await?;
                before.require(inviter, id, Role::Admin, "inviting members")?;
                user::Entity::find_by_id(invitee)
                    .one(tx)
                    .await?
                    .ok_or_else(|| Error::not_found(format!("no user {invitee}")))?;
                let pending = channel_member::Entity::find()
                    .filter(channel_member::Column::UserId.eq(invitee))
                    .filter(channel_member::Column::Accepted.eq(false))
                    .count(tx)
                    .await?;
                if pending >= MAX_PENDING_INVITATIONS {
                    return Err(Error::conflict(format!(
                        "that user has {MAX_PENDING_INVITATIONS} pending invitations already"
                    )));
                }
                if row_on(&before, id, invitee).is_some() {
                    return Err(Error::conflict(
                        "that user is already a member of, or invited to, this channel",
                    ));
                }
                insert_member(tx, id, invitee, role, false, Some(inviter)).await?;
                let channel = before.channel(id)?;
                let content = serde_json::json!({
                    "channel_id": id.0,
                    "channel_name": channel.name,
                    "inviter_id": inviter.0,
                    "role": role.as_str_name(),
                });
                let note =
                    insert_notification(tx, invitee, INVITATION, Some(id.0), content).await?;
                let after = tree_of(tx, id).await?;
                Ok(Changed {
                    before,
                    after,
                    value: note,
                })
            })
        })
        .await
    }

    /// Accepts or declines a pending invitation; returns the invitation notifications
    /// it answered.
    pub async fn respond_to_channel_invite(
        &self,
        user: UserId,
        id: ChannelId,
        accept: bool,
    ) -> Result<Changed<Vec<notification::Model>>> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let before = tree_of(tx, id).await?;
                if before.role(user, id) == Role::Banned {
                    return Err(Error::forbidden(format!(
                        "you are banned from channel {id}"
                    )));
                }
                let row = row_on(&before, id, user)
                    .filter(|row| !row.accepted)
                    .cloned()
                    .ok_or_else(|| Error::not_found(format!("no invitation to channel {id}")))?;
                if accept {
                    let mut active: channel_member::ActiveModel = row.into();
                    active.accepted = Set(true);
                    active.update(tx).await?;
                } else {
                    row.delete(tx).await?;
                }
                let mut answered = Vec::new();
                for note in notification::Entity::find()
                    .filter(notification::Column::RecipientId.eq(user))
                    .filter(notification::Column::Kind.eq(INVITATION))
                    .filter(notification::Column::EntityId.eq(id.0))
                    .filter(notification::Column::Response.is_null())
                    .all(tx)
                    .await?
                {
                    let mut active: notification::ActiveModel = note.into();
                    active.response = Set(Some(accept));
                    active.is_read = Set(true);
                    answered.push(active.update(tx).await?);
                }
                let after = tree_of(tx, id).await?;
                Ok(Changed {
                    before,
                    after,
                    value: answered,
                })
            })
        })
        .await
    }

    /// Removes `target`'s membership row on `id` (an admin's act, or one's own).
    pub async fn remove_channel_member(
        &self,
        actor: UserId,
        id: ChannelId,
        target: UserId,
    ) -> Result<Changed<()>> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let before = tree_of(tx, id).await?;
                before.channel(id)?;
                if actor != target {
                    before.require(actor, id, Role::Admin, "removing members")?;
                }
                let row = row_on(&before, id, target)
                    .cloned()
                    .ok_or_else(|| Error::not_found("that user has no membership here"))?;
                // Leaving is not a way out of a ban.
                if actor == target
                    && (role_of(row.role) == Role::Banned || before.role(actor, id) == Role::Banned)
                {
                    return Err(Error::forbidden(format!(
                        "you are banned from channel {id}"
                    )));
                }
                keeps_an_admin(&before, id, &row)?;
                row.delete(tx).await?;
                let after = tree_of(tx, id).await?;
                Ok(Changed {
                    before,
                    after,
                    value: (),
                })
            })
        })
        .await
    }

    /// Sets the role of `target`'s row on `id`; banning creates the row if needed.
    pub async fn set_channel_member_role(
        &self,
        actor: UserId,
        id: ChannelId,
        target: UserId,
        role: Role,
    ) -> Result<Changed<()>> {
        if role == Role::None {
            return Err(Error::invalid("set admin, member, guest or banned"));
        }
        self.transaction(move |tx| {
            Box::pin(async move {
                let before = tree_of(tx, id).await?;
                before.require(actor, id, Role::Admin, "changing roles")?;
                match row_on(&before, id, target).cloned() {
                    Some(row) => {
                        if role != Role::Admin {
                            keeps_an_admin(&before, id, &row)?;
                        }
                        let mut active: channel_member::ActiveModel = row.into();
                        active.role = Set(role as i16);
                        if role == Role::Banned {
                            // A ban holds at once, even over a pending invitation (which
                            // could otherwise be declined away or accepted by joining).
                            active.accepted = Set(true);
                        }
                        active.update(tx).await?;
                    }
                    None if role == Role::Banned => {
                        user::Entity::find_by_id(target)
                            .one(tx)
                            .await?
                            .ok_or_else(|| Error::not_found(format!("no user {target}")))?;
                        insert_member(tx, id, target, role, true, Some(actor)).await?;
                    }
                    None => return Err(Error::not_found("that user has no membership here")),
                }
                let after = tree_of(tx, id).await?;
                Ok(Changed {
                    before,
                    after,
                    value: (),
                })
            })
        })
        .await
    }

    /// The membership rows on `id` and its ancestors, for someone who can see it.
    pub async fn channel_members(
        &self,
        user: UserId,
        id: ChannelId,
    ) -> Result<Vec<channel_member::Model>> {
        let path = self.channel_path(id).await?;
        path.require(user, id, Role::Guest, "listing members")?;
        Ok(path.members)
    }

    /// Both users are admins or members somewhere in the same channel tree (a ban
    /// anywhere on a channel's path counts, as everywhere; guests do not count).
    pub async fn share_a_channel(&self, a: UserId, b: UserId) -> Result<bool> {
        let roots_a = roots_of_user(&self.conn, a).await?;
        let roots_b = roots_of_user(&self.conn, b).await?;
        let shared: Vec<ChannelId> = roots_a
            .into_iter()
            .filter(|r| roots_b.contains(r))
            .collect();
        let forest = load_trees(&self.conn, &shared).await?;
        let has_role = |user: UserId, root: ChannelId| {
            forest.members.iter().any(|row| {
                row.user_id == user
                    && row.accepted
                    && forest
                        .channels
                        .get(&row.channel_id)
                        .is_some_and(|c| c.root() == root)
                    && matches!(
                        forest.role(user, row.channel_id),
                        Role::Admin | Role::Member
                    )
            })
        };
        Ok(shared
            .into_iter()
            .any(|root| has_role(a, root) && has_role(b, root)))
    }
}
