//! Requests a guest sends to a project's host through the server, and following. Both
//! are served from the in-memory `ProjectRelay`, without database access: the server
//! checks the sender's role, forwards with `forward_request` and relays the answer —
//! or the error — back.

use super::{
    Session,
    project_relay::{not_joined, project_id},
};
use crate::{
    error::{Error, Result},
    rpc::{ConnectionId, RequestMessage, Response, proto},
};

/// A request a guest sends to the project's host through the server, declared once as
/// read-only (anyone in the project) or mutating (editors and the host).
pub trait ProjectRequest: RequestMessage {
    const MUTATING: bool;
    fn project_id(&self) -> u64;
}

macro_rules! project_requests {
    (read_only: $($read:ident),* ; mutating: $($write:ident),* $(,)?) => {
        $(impl ProjectRequest for proto::$read {
            const MUTATING: bool = false;
            fn project_id(&self) -> u64 { self.project_id }
        })*
        $(impl ProjectRequest for proto::$write {
            const MUTATING: bool = true;
            fn project_id(&self) -> u64 { self.project_id }
        })*
    };
}

project_requests! {
    read_only: OpenBufferByPath, OpenBufferById, SearchProject, GetHover;
    mutating: SaveBuffer, CreateProjectEntry,
}

/// Forwards `request` to the project's host and relays its answer or error back.
pub async fn forward<M: ProjectRequest>(
    request: M,
    response: Response<M>,
    session: Session,
) -> Result<()> {
    let project = project_id(request.project_id())?;
    let app = &session.state;
    let (sender, host) = app.projects.host_of(project, session.connection_id)?;
    if M::MUTATING && !sender.may_edit() {
        return Err(Error::forbidden(format!(
            "viewers may not send {}",
            M::NAME
        )));
    }
    if host == session.connection_id {
        return Err(Error::invalid("the host answers its own requests"));
    }
    let answer = app
        .cluster
        .forward_request(session.connection_id, host, request)
        .await;
    let outcome = match &answer {
        Ok(_) => "ok",
        Err(error) => error.code.as_str_name(),
    };
    app.metrics
        .forwarded_requests
        .with_label_values(&[M::NAME, outcome])
        .inc();
    response.send(answer?)?;
    Ok(())
}

fn peer_id(value: Option<proto::PeerId>, field: &str) -> Result<ConnectionId> {
    value
        .map(ConnectionId::from)
        .ok_or_else(|| Error::invalid(format!("{field} is required")))
}

/// Follows a collaborator: the request goes to the leader, whose view comes back; from
/// then on the leader's `UpdateFollowers` reach this connection.
pub async fn follow(
    request: proto::Follow,
    response: Response<proto::Follow>,
    session: Session,
) -> Result<()> {
    let project = project_id(request.project_id)?;
    let leader = peer_id(request.leader_id, "leader_id")?;
    let app = &session.state;
    let follower = session.connection_id;
    if app.projects.member(project, follower).is_none() {
        return Err(not_joined(project));
    }
    if leader == follower {
        return Err(Error::invalid("you cannot follow yourself"));
    }
    if app.projects.member(project, leader).is_none() {
        return Err(Error::not_found(format!(
            "{leader} is not a collaborator of project {project}"
        )));
    }
    let view = app
        .cluster
        .forward_request(follower, leader, request)
        .await?;
    // Both may have left while the leader answered.
    if app.projects.member(project, leader).is_some()
        && app.projects.member(project, follower).is_some()
    {
        app.projects.follow(project, leader, follower);
    }
    response.send(view)?;
    Ok(())
}

pub async fn unfollow(
    request: proto::Unfollow,
    response: Response<proto::Unfollow>,
    session: Session,
) -> Result<()> {
    let project = project_id(request.project_id)?;
    let leader = peer_id(request.leader_id, "leader_id")?;
    if !session
        .state
        .projects
        .unfollow(project, leader, session.connection_id)
    {
        return Err(Error::not_found("you are not following that collaborator"));
    }
    response.send(proto::Ack {})?;
    Ok(())
}

/// The leader's view, relayed to its followers in the project.
pub fn update_followers(update: proto::UpdateFollowers, session: &Session) -> Result<()> {
    let project = project_id(update.project_id)?;
    let app = &session.state;
    for follower in app.projects.followers(project, session.connection_id) {
        if let Err(error) =
            app.cluster
                .forward_send(session.connection_id, follower, update.clone())
        {
            tracing::debug!(%follower, %error, "UpdateFollowers skipped a follower");
        }
    }
    Ok(())
}
