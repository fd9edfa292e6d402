//! Shared projects beyond single requests: connections that leave their room, drop or
//! never come back (the reconnect grace), participants made room guests, and the sweep
//! of projects held by gone servers.
//!
//! Locks as in `projects`: the room's before the project's.

use super::{
    projects::{others, remove_guest, role_changed, unshare},
    rooms::{alive_since, room_updated},
};
use crate::{
    AppState,
    error::{Error, Result},
    rpc::{ConnectionId, proto},
};

/// `user` became a guest of `room` (the caller holds the room's lock): in the room's
/// projects they become viewers, and every collaborator hears of it.
pub(super) async fn demoted_to_guest(
    app: &AppState,
    room: crate::db::RoomId,
    user: crate::db::UserId,
) -> Result<()> {
    for project in app.db.projects_in_room(room).await? {
        let _order = app.project_locks.lock(project).await;
        let (state, changed) = match app.db.demote_to_viewer(project, user).await {
            Err(error) if error.code() == proto::ErrorCode::NotFound => continue,
            outcome => outcome?,
        };
        if changed.is_empty() {
            continue;
        }
        app.projects.mirror(&state);
        role_changed(app, project, &state, &changed);
    }
    Ok(())
}

/// `connection` is leaving its room (the caller holds the room's lock and sends the
/// room's update): the projects it hosts are unshared, the ones it joined are left.
pub(super) async fn left_room(
    app: &AppState,
    connection: ConnectionId,
    reason: proto::project_unshared::Reason,
) -> Result<()> {
    let (hosted, joined) = app.db.projects_of_connection(connection).await?;
    for project in hosted {
        already_done(
            unshare(app, project, Some(connection), reason)
                .await
                .map(drop),
        )?;
    }
    for project in joined {
        already_done(remove_guest(app, project, connection).await)?;
    }
    Ok(())
}

/// A project that vanished meanwhile (unshared concurrently) needs no more cleanup.
fn already_done(outcome: Result<()>) -> Result<()> {
    match outcome {
        Err(error) if error.code() == proto::ErrorCode::NotFound => Ok(()),
        outcome => outcome,
    }
}

/// A connection ended: it leaves the projects it joined at once (a guest rejoins with a
/// fresh JoinProject); the projects it hosts wait out the reconnect grace without host.
pub async fn connection_lost(app: &AppState, connection: ConnectionId) -> Result<()> {
    let (hosted, joined) = app.db.projects_of_connection(connection).await?;
    for project in joined {
        already_done(remove_guest(app, project, connection).await)?;
    }
    for project in hosted {
        let _order = app.project_locks.lock(project).await;
        already_done(app.db.host_connection_lost(project, connection).await)?;
        match app.db.get_project(project).await {
            Ok(state) => app.projects.mirror(&state),
            Err(error) if error.code() == proto::ErrorCode::NotFound => {
                app.projects.remove(project)
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The reconnect grace of a lost host connection ended: the projects it still hosts
/// (not reshared from a new connection) are unshared.
pub async fn grace_ended(app: &AppState, connection: ConnectionId) -> Result<()> {
    let (hosted, _) = app.db.projects_of_connection(connection).await?;
    for project in hosted {
        let room = app.db.get_project(project).await?.project.room_id;
        let _order = app.room_locks.lock(room).await;
        let reason = proto::project_unshared::Reason::HostLost;
        match unshare(app, project, Some(connection), reason).await {
            Ok(room) => room_updated(app, &room),
            // Reshared meanwhile: the project lives on.
            Err(Error::Rpc(error)) if error.code == proto::ErrorCode::Forbidden => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Run by the sweep of gone servers: guests on those servers leave their projects,
/// their hosts show as lost, and projects whose host has been lost past the reconnect
/// grace — or is no longer in the room — are unshared. Relay entries of projects that
/// no longer exist (deleted with their room) are dropped.
pub async fn sweep_orphans(app: &AppState) -> Result<()> {
    let (removed, hostless) = app
        .db
        .sweep_gone_collaborators(app.server_id, alive_since(app))
        .await?;
    let changed = removed
        .iter()
        .map(|(project, _)| *project)
        .chain(hostless.iter().copied());
    for project in changed.collect::<std::collections::BTreeSet<_>>() {
        let _order = app.project_locks.lock(project).await;
        let Ok(state) = app.db.get_project(project).await else {
            continue;
        };
        app.projects.mirror(&state);
        for (_, guest) in removed.iter().filter(|(p, _)| *p == project) {
            let message = proto::RemoveProjectCollaborator {
                project_id: project.to_proto(),
                peer_id: Some((*guest).into()),
            };
            app.cluster.broadcast(others(&state, *guest), &message);
        }
    }
    let grace =
        chrono::Duration::from_std(app.config.reconnect_grace).unwrap_or(chrono::Duration::MAX);
    let expired_since = chrono::Utc::now()
        .checked_sub_signed(grace)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    for project in app.db.orphaned_projects(expired_since).await? {
        let Ok(state) = app.db.get_project(project).await else {
            continue;
        };
        let room = state.project.room_id;
        let _order = app.room_locks.lock(room).await;
        let reason = proto::project_unshared::Reason::HostLost;
        match unshare(app, project, None, reason).await {
            Ok(room) => room_updated(app, &room),
            Err(error) => tracing::debug!(%error, %project, "orphaned project already gone"),
        }
    }
    let existing: std::collections::HashSet<_> = app
        .db
        .existing_projects(app.projects.project_ids())
        .await?
        .into_iter()
        .collect();
    app.projects.retain(|id| existing.contains(&id));
    Ok(())
}
