//! Contacts: request, accept, decline, remove, and online status.
//!
//! Every change is committed, then pushed as an `UpdateContacts` delta to every device
//! of both users, holding both users' locks (`UserLocks`) so devices see deltas in
//! commit order. A user's first connection makes them online for their contacts; their
//! last one leaving makes them offline.

use super::Session;
use crate::{
    AppState,
    db::{
        UserId,
        queries::contacts::{ContactState, RequestOutcome},
    },
    error::{Error, Result},
    rpc::{ConnectionId, Response, proto},
};

fn user_id(value: u64, field: &str) -> Result<UserId> {
    UserId::from_proto(value)
        .ok_or_else(|| Error::invalid(format!("{field} is not a valid user id")))
}

fn send_to_user(state: &AppState, user: UserId, update: &proto::UpdateContacts) {
    state
        .cluster
        .broadcast(state.pool.user_connections(user), update);
}

fn contact(state: &AppState, user: UserId) -> proto::Contact {
    proto::Contact {
        user_id: user.to_proto(),
        online: state.pool.is_online(user),
    }
}

/// Tells both users that `requester`'s request to `responder` became a contact.
fn announce_accepted(state: &AppState, requester: UserId, responder: UserId) {
    send_to_user(
        state,
        requester,
        &proto::UpdateContacts {
            contacts: vec![contact(state, responder)],
            remove_outgoing_requests: vec![responder.to_proto()],
            ..Default::default()
        },
    );
    send_to_user(
        state,
        responder,
        &proto::UpdateContacts {
            contacts: vec![contact(state, requester)],
            remove_incoming_requests: vec![requester.to_proto()],
            ..Default::default()
        },
    );
}

/// Tells both users that `requester`'s request to `responder` is gone (declined or
/// withdrawn).
fn announce_request_gone(state: &AppState, requester: UserId, responder: UserId) {
    let outgoing = proto::UpdateContacts {
        remove_outgoing_requests: vec![responder.to_proto()],
        ..Default::default()
    };
    let incoming = proto::UpdateContacts {
        remove_incoming_requests: vec![requester.to_proto()],
        ..Default::default()
    };
    send_to_user(state, requester, &outgoing);
    send_to_user(state, responder, &incoming);
}

pub async fn request_contact(
    request: proto::RequestContact,
    response: Response<proto::RequestContact>,
    session: Session,
) -> Result<()> {
    let requester = session.user_id();
    let responder = user_id(request.responder_id, "responder_id")?;
    let state = &session.state;
    let _order = state.user_locks.lock_pair(requester, responder).await;
    match state.db.request_contact(requester, responder).await? {
        RequestOutcome::Requested => {
            let (requester_id, responder_id) = (requester.to_proto(), responder.to_proto());
            let outgoing = proto::UpdateContacts {
                outgoing_requests: vec![responder_id],
                ..Default::default()
            };
            let incoming = proto::UpdateContacts {
                incoming_requests: vec![requester_id],
                ..Default::default()
            };
            send_to_user(state, requester, &outgoing);
            send_to_user(state, responder, &incoming);
        }
        RequestOutcome::AcceptedTheirs => announce_accepted(state, responder, requester),
    }
    response.send(proto::Ack {})?;
    Ok(())
}

pub async fn respond_to_contact_request(
    request: proto::RespondToContactRequest,
    response: Response<proto::RespondToContactRequest>,
    session: Session,
) -> Result<()> {
    let responder = session.user_id();
    let requester = user_id(request.requester_id, "requester_id")?;
    let accept = match proto::ContactRequestResponse::try_from(request.response) {
        Ok(proto::ContactRequestResponse::Accept) => true,
        Ok(proto::ContactRequestResponse::Decline) => false,
        Err(_) => {
            return Err(Error::invalid(format!(
                "unknown response {}",
                request.response
            )));
        }
    };
    let state = &session.state;
    let _order = state.user_locks.lock_pair(requester, responder).await;
    state
        .db
        .respond_to_contact_request(responder, requester, accept)
        .await?;
    if accept {
        announce_accepted(state, requester, responder);
    } else {
        announce_request_gone(state, requester, responder);
    }
    response.send(proto::Ack {})?;
    Ok(())
}

pub async fn remove_contact(
    request: proto::RemoveContact,
    response: Response<proto::RemoveContact>,
    session: Session,
) -> Result<()> {
    let user = session.user_id();
    let other = user_id(request.user_id, "user_id")?;
    let state = &session.state;
    let _order = state.user_locks.lock_pair(user, other).await;
    let removed = state.db.remove_contact(user, other).await?;
    match removed {
        ContactState::Accepted => {
            let gone = |id: UserId| proto::UpdateContacts {
                remove_contacts: vec![id.to_proto()],
                ..Default::default()
            };
            send_to_user(state, user, &gone(other));
            send_to_user(state, other, &gone(user));
        }
        ContactState::Outgoing => announce_request_gone(state, user, other),
        ContactState::Incoming => announce_request_gone(state, other, user),
    }
    response.send(proto::Ack {})?;
    Ok(())
}

/// A new connection: send it the full contact state, and if it is the user's first,
/// tell their contacts they are online.
pub async fn connection_added(
    state: &AppState,
    connection: ConnectionId,
    user: UserId,
    token_id: &str,
) -> Result<()> {
    let (first, contacts) = {
        // Under the user's lock, no delta can be queued between joining the pool and the
        // full state, so the full state is never overtaken by an older change.
        let _order = state.user_locks.lock(user).await;
        let first = state.pool.add(connection, user, token_id);
        state
            .metrics
            .users_online
            .set(state.pool.users_online() as i64);
        let contacts = state.db.get_contacts(user).await?;
        let mut full = proto::UpdateContacts::default();
        for (other, contact_state) in &contacts {
            match contact_state {
                ContactState::Accepted => full.contacts.push(contact(state, *other)),
                ContactState::Outgoing => full.outgoing_requests.push(other.to_proto()),
                ContactState::Incoming => full.incoming_requests.push(other.to_proto()),
            }
        }
        state.cluster.send(connection, full)?;
        (first, contacts)
    };
    if first {
        announce_status(state, user, &contacts).await;
    }
    Ok(())
}

/// A connection ended: if it was the user's last, tell their contacts they are offline.
pub async fn connection_removed(state: &AppState, connection: ConnectionId) -> Result<()> {
    let Some((user, last)) = state.pool.remove(connection) else {
        return Ok(());
    };
    state
        .metrics
        .users_online
        .set(state.pool.users_online() as i64);
    if last {
        let contacts = state.db.get_contacts(user).await?;
        announce_status(state, user, &contacts).await;
    }
    Ok(())
}

/// Tells each contact whether `user` is online. The status is read under the contact's
/// lock at the moment it is sent, so when announcements race, the last one sent is the
/// truth.
async fn announce_status(state: &AppState, user: UserId, contacts: &[(UserId, ContactState)]) {
    for (other, contact_state) in contacts {
        if *contact_state == ContactState::Accepted {
            let _order = state.user_locks.lock(*other).await;
            let update = proto::UpdateContacts {
                contacts: vec![contact(state, user)],
                ..Default::default()
            };
            send_to_user(state, *other, &update);
        }
    }
}
