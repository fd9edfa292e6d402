//! Shared projects: share, unshare, join (with the worktree stream), leave, reshare
//! after a reconnect, the worktree list, roles. What happens to projects when their
//! connections leave the room, drop, or never come back is in `project_lifecycle`.
//!
//! Locks: a change takes the room's lock (when the room's `RoomUpdated` changes) and
//! then the project's, from its transaction until its messages are queued, so every
//! collaborator sees the project's changes in commit order and a joiner's stream is
//! never overtaken by a later update. After each commit the in-memory relay
//! (`project_relay`) takes the committed state.

use std::sync::Arc;

use super::{
    Session,
    project_relay::project_id,
    rooms::{alive_since, room_updated},
    worktrees::stream_to_joiner,
};
use crate::{
    AppState,
    db::{
        ProjectId,
        entities::{project_collaborator, worktree},
        queries::projects::{NewWorktree, ProjectState, collaborator_connection},
    },
    error::{Error, Result},
    rpc::{ConnectionId, Response, proto},
};

pub fn collaborator_to_proto(row: &project_collaborator::Model) -> proto::Collaborator {
    proto::Collaborator {
        peer_id: Some(collaborator_connection(row).into()),
        replica_id: row.replica_id as u32,
        user_id: row.user_id.to_proto(),
        is_host: row.is_host,
        role: row.role as i32,
    }
}

pub fn worktree_to_proto(row: &worktree::Model) -> proto::WorktreeMetadata {
    proto::WorktreeMetadata {
        id: row.id as u64,
        root_name: row.root_name.clone(),
        visible: row.visible,
        scan_id: row.scan_id as u64,
        completed_scan_id: row.completed_scan_id as u64,
    }
}

/// The host's worktree list, checked: unique ids that fit the database, named roots,
/// at most `--max-worktrees-per-project`.
fn new_worktrees(app: &AppState, list: Vec<proto::WorktreeMetadata>) -> Result<Vec<NewWorktree>> {
    let max = app.config.max_worktrees_per_project as usize;
    if list.len() > max {
        return Err(Error::invalid(format!(
            "a project may have at most {max} worktrees"
        )));
    }
    let mut worktrees: Vec<NewWorktree> = Vec::with_capacity(list.len());
    for tree in list {
        let id = i64::try_from(tree.id)
            .map_err(|_| Error::invalid(format!("worktree id {} is too large", tree.id)))?;
        if worktrees.iter().any(|w| w.id == id) {
            return Err(Error::invalid(format!("worktree id {id} appears twice")));
        }
        if tree.root_name.is_empty() || tree.root_name.len() > 255 {
            return Err(Error::invalid(
                "a worktree's root name must be 1 to 255 bytes",
            ));
        }
        worktrees.push(NewWorktree {
            id,
            root_name: tree.root_name,
            visible: tree.visible,
        });
    }
    Ok(worktrees)
}

pub(super) fn others(
    state: &ProjectState,
    except: ConnectionId,
) -> impl Iterator<Item = ConnectionId> + '_ {
    state
        .collaborators
        .iter()
        .map(collaborator_connection)
        .filter(move |c| *c != except)
}

pub async fn share_project(
    request: proto::ShareProject,
    response: Response<proto::ShareProject>,
    session: Session,
) -> Result<()> {
    let room = super::rooms::room_id(request.room_id)?;
    let app = &session.state;
    let worktrees = new_worktrees(app, request.worktrees)?;
    let _order = app.room_locks.lock(room).await;
    let (project, room_state) = app
        .db
        .share_project(
            room,
            session.connection_id,
            worktrees,
            app.config.max_projects_per_connection as usize,
        )
        .await?;
    app.projects.mirror(&project);
    room_updated(app, &room_state);
    response.send(proto::ShareProjectResponse {
        project_id: project.project.id.to_proto(),
    })?;
    Ok(())
}

pub async fn unshare_project(
    request: proto::UnshareProject,
    response: Response<proto::UnshareProject>,
    session: Session,
) -> Result<()> {
    let project = project_id(request.project_id)?;
    let app = &session.state;
    let room = app.db.get_project(project).await?.project.room_id;
    let _order = app.room_locks.lock(room).await;
    let reason = proto::project_unshared::Reason::Unshared;
    let room_state = unshare(app, project, Some(session.connection_id), reason).await?;
    room_updated(app, &room_state);
    response.send(proto::Ack {})?;
    Ok(())
}

/// Deletes the project and tells its guests why. With `host`, only while that
/// connection (live or lost) hosts it. The caller holds the room's lock and sends the
/// returned room's `RoomUpdated`.
pub(super) async fn unshare(
    app: &AppState,
    project: ProjectId,
    host: Option<ConnectionId>,
    reason: proto::project_unshared::Reason,
) -> Result<crate::db::queries::rooms::RoomState> {
    let _order = app.project_locks.lock(project).await;
    let (state, room) = app.db.unshare_project(project, host).await?;
    app.projects.remove(project);
    let guests = state
        .collaborators
        .iter()
        .filter(|c| !c.is_host)
        .map(collaborator_connection);
    let message = proto::ProjectUnshared {
        project_id: project.to_proto(),
        reason: reason as i32,
    };
    app.cluster.broadcast(guests, &message);
    Ok(room)
}

/// Join streams that may run at once: each holds a database snapshot (a pooled
/// connection) while it sends; more joiners wait for a turn.
pub const MAX_JOIN_STREAMS: usize = 4;

pub async fn join_project(
    request: proto::JoinProject,
    response: Response<proto::JoinProject>,
    session: Session,
) -> Result<()> {
    let project = project_id(request.project_id)?;
    let app = &session.state;
    let joiner = session.connection_id;
    let room = app.db.get_project(project).await?.project.room_id;
    let _turn = app
        .join_streams
        .acquire()
        .await
        .map_err(|_| Error::unavailable("the server is shutting down"))?;
    // The room's lock too: a LeaveRoom of this connection cannot slip between the
    // membership check and the new collaborator row.
    let room_order = app.room_locks.lock(room).await;
    let order = app.project_locks.lock(project).await;
    let (state, row, worktrees) = app.db.join_project(project, joiner).await?;
    // Every writer of the mirror takes the project's lock, so this snapshot is exactly
    // the committed state the relays below start from.
    let snapshot = app.db.begin_snapshot().await;
    let catch_up = app.projects.mirror_joining(&state, Some(joiner));
    let added = proto::AddProjectCollaborator {
        project_id: project.to_proto(),
        collaborator: Some(collaborator_to_proto(&row)),
    };
    app.cluster.broadcast(others(&state, joiner), &added);
    drop(order);
    drop(room_order);
    let answered = response.send(proto::JoinProjectResponse {
        project_id: project.to_proto(),
        replica_id: row.replica_id as u32,
        role: row.role as i32,
        collaborators: state
            .collaborators
            .iter()
            .filter(|c| c.id != row.id)
            .map(collaborator_to_proto)
            .collect(),
        worktrees: worktrees.iter().map(worktree_to_proto).collect(),
    });
    // The stream runs without the locks: relays meanwhile wait in `catch_up` and go
    // out after it.
    let streamed = match (answered, snapshot) {
        (Ok(()), Ok(snapshot)) => {
            let catch_up = catch_up.as_deref();
            stream_to_joiner(app, &snapshot, joiner, project, &worktrees, catch_up).await
        }
        (Err(error), _) => Err(error.into()),
        (_, Err(error)) => Err(error),
    }
    .and_then(|()| app.projects.finish_catch_up(project, joiner, &app.cluster));
    if let Err(error) = streamed {
        // A joiner with half a project would show a wrong tree: end its session, as
        // for any consumer that cannot keep up; it joins again after reconnecting.
        tracing::warn!(%error, %joiner, "could not stream a project to its joiner");
        app.peer
            .disconnect(joiner, "could not stream the project to this connection");
    }
    Ok(())
}

pub async fn leave_project(
    request: proto::LeaveProject,
    response: Response<proto::LeaveProject>,
    session: Session,
) -> Result<()> {
    let project = project_id(request.project_id)?;
    remove_guest(&session.state, project, session.connection_id).await?;
    response.send(proto::Ack {})?;
    Ok(())
}

/// Removes a guest connection from a project and tells the others.
pub(super) async fn remove_guest(
    app: &AppState,
    project: ProjectId,
    guest: ConnectionId,
) -> Result<()> {
    let _order = app.project_locks.lock(project).await;
    let (state, row) = app.db.leave_project(project, guest).await?;
    app.projects.mirror(&state);
    let removed = proto::RemoveProjectCollaborator {
        project_id: project.to_proto(),
        peer_id: Some(collaborator_connection(&row).into()),
    };
    app.cluster.broadcast(others(&state, guest), &removed);
    Ok(())
}

pub async fn reshare_project(
    request: proto::ReshareProject,
    response: Response<proto::ReshareProject>,
    session: Session,
) -> Result<()> {
    let project = project_id(request.project_id)?;
    let app = &session.state;
    let peer = app.peer.clone();
    let old_server_gone = Arc::new(
        app.db
            .get_project(project)
            .await?
            .project
            .host_connection_server_id
            .filter(|server| *server as u32 != peer.server_id()),
    );
    let gone = match *old_server_gone {
        Some(server) => app.db.server_is_gone(server, alive_since(app)).await?,
        None => false,
    };
    let old_is_gone = Arc::new(move |old: ConnectionId| {
        if old.server_id == peer.server_id() {
            !peer.is_connected(old)
        } else {
            gone
        }
    });
    let _order = app.project_locks.lock(project).await;
    let (state, old, was_guest) = app
        .db
        .reshare_project(
            project,
            session.connection_id,
            session.user_id(),
            old_is_gone,
        )
        .await?;
    app.projects.mirror(&state);
    if was_guest {
        // Its guest place is now the host's.
        let removed = proto::RemoveProjectCollaborator {
            project_id: project.to_proto(),
            peer_id: Some(session.connection_id.into()),
        };
        app.cluster
            .broadcast(others(&state, session.connection_id), &removed);
    }
    if let Some(host) = state.collaborators.iter().find(|c| c.is_host) {
        let update = proto::UpdateProjectCollaborator {
            project_id: project.to_proto(),
            old_peer_id: Some(old.into()),
            collaborator: Some(collaborator_to_proto(host)),
        };
        app.cluster
            .broadcast(others(&state, session.connection_id), &update);
    }
    response.send(proto::Ack {})?;
    Ok(())
}

pub async fn update_project(
    request: proto::UpdateProject,
    response: Response<proto::UpdateProject>,
    session: Session,
) -> Result<()> {
    let project = project_id(request.project_id)?;
    let app = &session.state;
    let worktrees = new_worktrees(app, request.worktrees.clone())?;
    let room = app.db.get_project(project).await?.project.room_id;
    let _room_order = app.room_locks.lock(room).await;
    let _order = app.project_locks.lock(project).await;
    app.db
        .update_project_worktrees(project, session.connection_id, worktrees)
        .await?;
    app.projects
        .relay_to_others(&app.cluster, project, session.connection_id, &request)?;
    room_updated(app, &app.db.get_room(room).await?);
    response.send(proto::Ack {})?;
    Ok(())
}

pub async fn set_project_collaborator_role(
    request: proto::SetProjectCollaboratorRole,
    response: Response<proto::SetProjectCollaboratorRole>,
    session: Session,
) -> Result<()> {
    let project = project_id(request.project_id)?;
    let user = super::rooms::user_id(request.user_id, "user_id")?;
    let role = proto::ProjectRole::try_from(request.role)
        .ok()
        .filter(|role| *role != proto::ProjectRole::Host)
        .ok_or_else(|| Error::invalid("role must be EDITOR or VIEWER"))?;
    let app = &session.state;
    let _order = app.project_locks.lock(project).await;
    let (state, changed) = app
        .db
        .set_project_role(project, session.connection_id, user, role)
        .await?;
    app.projects.mirror(&state);
    role_changed(app, project, &state, &changed);
    response.send(proto::Ack {})?;
    Ok(())
}

/// `UpdateProjectCollaborator` for each changed row, to every collaborator.
pub(super) fn role_changed(
    app: &AppState,
    project: ProjectId,
    state: &ProjectState,
    changed: &[project_collaborator::Model],
) {
    let receivers: Vec<ConnectionId> = state
        .collaborators
        .iter()
        .map(collaborator_connection)
        .collect();
    for row in changed {
        let update = proto::UpdateProjectCollaborator {
            project_id: project.to_proto(),
            old_peer_id: Some(collaborator_connection(row).into()),
            collaborator: Some(collaborator_to_proto(row)),
        };
        app.cluster.broadcast(receivers.iter().copied(), &update);
    }
}
