//! Contacts: one row per pair of users (`user_id_a < user_id_b`), pending until the
//! responder accepts.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    ModelTrait, QueryFilter,
};

use super::super::{Database, UserId, entities::contact};
use crate::error::{Error, Result};

/// Where another user stands relative to you.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactState {
    Accepted,
    /// You asked them.
    Outgoing,
    /// They asked you.
    Incoming,
}

/// What a `request_contact` call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    Requested,
    /// They had already asked you, so your request accepted theirs.
    AcceptedTheirs,
}

fn ordered(a: UserId, b: UserId) -> (UserId, UserId) {
    if a < b { (a, b) } else { (b, a) }
}

async fn find_pair(
    tx: &impl ConnectionTrait,
    a: UserId,
    b: UserId,
) -> Result<Option<contact::Model>> {
    let (a, b) = ordered(a, b);
    Ok(contact::Entity::find()
        .filter(contact::Column::UserIdA.eq(a))
        .filter(contact::Column::UserIdB.eq(b))
        .one(tx)
        .await?)
}

/// `row`'s state as seen by `user`.
fn state_for(row: &contact::Model, user: UserId) -> ContactState {
    if row.accepted {
        ContactState::Accepted
    } else if (row.user_id_a == user) == row.a_to_b {
        ContactState::Outgoing
    } else {
        ContactState::Incoming
    }
}

impl Database {
    /// Everyone `user` has a contact or a pending request with.
    pub async fn get_contacts(&self, user: UserId) -> Result<Vec<(UserId, ContactState)>> {
        let rows = contact::Entity::find()
            .filter(
                Condition::any()
                    .add(contact::Column::UserIdA.eq(user))
                    .add(contact::Column::UserIdB.eq(user)),
            )
            .all(&self.conn)
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let other = if row.user_id_a == user {
                    row.user_id_b
                } else {
                    row.user_id_a
                };
                (other, state_for(row, user))
            })
            .collect())
    }

    pub async fn are_contacts(&self, a: UserId, b: UserId) -> Result<bool> {
        Ok(find_pair(&self.conn, a, b)
            .await?
            .is_some_and(|row| row.accepted))
    }

    pub async fn request_contact(
        &self,
        requester: UserId,
        responder: UserId,
    ) -> Result<RequestOutcome> {
        if requester == responder {
            return Err(Error::invalid("you cannot add yourself as a contact"));
        }
        self.get_user(responder)
            .await?
            .ok_or_else(|| Error::not_found(format!("no user {responder}")))?;
        self.transaction(move |tx| {
            Box::pin(async move {
                match find_pair(tx, requester, responder).await? {
                    None => {
                        let (a, b) = ordered(requester, responder);
                        contact::ActiveModel {
                            user_id_a: Set(a),
                            user_id_b: Set(b),
                            a_to_b: Set(requester == a),
                            accepted: Set(false),
                            created_at: Set(chrono::Utc::now()),
                            ..Default::default()
                        }
                        .insert(tx)
                        .await?;
                        Ok(RequestOutcome::Requested)
                    }
                    Some(row) => match state_for(&row, requester) {
                        ContactState::Accepted => Err(Error::conflict("already contacts")),
                        ContactState::Outgoing => {
                            Err(Error::conflict("contact request already sent"))
                        }
                        ContactState::Incoming => {
                            let mut active: contact::ActiveModel = row.into();
                            active.accepted = Set(true);
                            active.update(tx).await?;
                            Ok(RequestOutcome::AcceptedTheirs)
                        }
                    },
                }
            })
        })
        .await
        .map_err(|error| match error {
            // Both users asked each other at the same instant: one insert lost the race.
            Error::Database(ref db_error) if crate::db::is_unique_violation(db_error) => {
                Error::conflict("a contact request between you already exists; retry")
            }
            error => error,
        })
    }

    /// Accepts or declines the pending request `requester` sent `responder`.
    pub async fn respond_to_contact_request(
        &self,
        responder: UserId,
        requester: UserId,
        accept: bool,
    ) -> Result<()> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let row = find_pair(tx, requester, responder)
                    .await?
                    .filter(|row| state_for(row, responder) == ContactState::Incoming)
                    .ok_or_else(|| {
                        Error::not_found(format!("no contact request from user {requester}"))
                    })?;
                if accept {
                    let mut active: contact::ActiveModel = row.into();
                    active.accepted = Set(true);
                    active.update(tx).await?;
                } else {
                    row.delete(tx).await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Removes a contact or a pending request in either direction; returns what it was,
    /// as seen by `user`.
    pub async fn remove_contact(&self, user: UserId, other: UserId) -> Result<ContactState> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let row = find_pair(tx, user, other)
                    .await?
                    .ok_or_else(|| Error::not_found(format!("user {other} is not a contact")))?;
                let state = state_for(&row, user);
                row.delete(tx).await?;
                Ok(state)
            })
        })
        .await
    }
}
