//! Shared projects and their collaborators. Every change runs in one transaction and
//! returns the project as committed, so the caller can update the in-memory relay and
//! broadcast exactly that. Worktree contents are in `worktrees`.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, ModelTrait,
    PaginatorTrait, QueryFilter, QueryOrder, sea_query::Expr,
};

use super::{
    super::{
        Database, ProjectId, RoomId, UserId,
        entities::{
            project, project_collaborator as collaborator, room_participant as participant,
            worktree,
        },
    },
    rooms::{RoomState, load as load_room, require_participant},
};
use crate::{
    error::{Error, Result},
    rpc::{
        ConnectionId,
        proto::{
            ErrorCode, ParticipantRole, ProjectRole,
            participant_location::Kind as ParticipantLocationKind,
        },
    },
};

/// A project and its collaborators (one row per joined connection, the host's first).
#[derive(Clone, Debug)]
pub struct ProjectState {
    pub project: project::Model,
    pub collaborators: Vec<collaborator::Model>,
}

impl ProjectState {
    pub fn host_connection(&self) -> Option<ConnectionId> {
        if self.project.host_connection_lost {
            return None;
        }
        Some(ConnectionId {
            server_id: self.project.host_connection_server_id? as u32,
            id: self.project.host_connection_id? as u32,
        })
    }
}

/// A worktree as the host declares it when sharing or updating the project.
#[derive(Clone, Debug)]
pub struct NewWorktree {
    pub id: i64,
    pub root_name: String,
    pub visible: bool,
}

pub fn collaborator_connection(row: &collaborator::Model) -> ConnectionId {
    ConnectionId {
        server_id: row.connection_server_id as u32,
        id: row.connection_id as u32,
    }
}

fn connection_filter(connection: ConnectionId) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(collaborator::Column::ConnectionServerId.eq(connection.server_id as i32))
        .add(collaborator::Column::ConnectionId.eq(connection.id as i32))
}

pub(super) async fn load(tx: &impl ConnectionTrait, id: ProjectId) -> Result<ProjectState> {
    let project = project::Entity::find_by_id(id)
        .one(tx)
        .await?
        .ok_or_else(|| Error::not_found(format!("no shared project {id}")))?;
    let collaborators = collaborator::Entity::find()
        .filter(collaborator::Column::ProjectId.eq(id))
        .order_by_asc(collaborator::Column::ReplicaId)
        .all(tx)
        .await?;
    Ok(ProjectState {
        project,
        collaborators,
    })
}

/// The project, if `connection` is its host's live connection; `Forbidden` otherwise.
pub(super) async fn require_host(
    tx: &impl ConnectionTrait,
    id: ProjectId,
    connection: ConnectionId,
) -> Result<ProjectState> {
    let state = load(tx, id).await?;
    if state.host_connection() != Some(connection) {
        return Err(Error::forbidden("only the project's host may do that"));
    }
    Ok(state)
}

pub(super) async fn insert_worktrees(
    tx: &impl ConnectionTrait,
    project: ProjectId,
    worktrees: &[NewWorktree],
) -> Result<()> {
    if worktrees.is_empty() {
        return Ok(());
    }
    worktree::Entity::insert_many(worktrees.iter().map(|w| worktree::ActiveModel {
        project_id: Set(project),
        id: Set(w.id),
        root_name: Set(w.root_name.clone()),
        visible: Set(w.visible),
        scan_id: Set(0),
        completed_scan_id: Set(0),
        entry_count: Set(0),
    }))
    .exec(tx)
    .await?;
    Ok(())
}

impl Database {
    pub async fn get_project(&self, id: ProjectId) -> Result<ProjectState> {
        load(&self.conn, id).await
    }

    /// Shares a project into `room_id` from `connection`, which must be a participant
    /// (not a guest) of the room. Returns the project and the room.
    pub async fn share_project(
        &self,
        room_id: RoomId,
        connection: ConnectionId,
        worktrees: Vec<NewWorktree>,
        max_per_connection: usize,
    ) -> Result<(ProjectState, RoomState)> {
        self.transaction(move |tx| {
            let worktrees = worktrees.clone();
            Box::pin(async move {
                let participant = require_participant(tx, room_id, connection).await?;
                if participant.role == ParticipantRole::Guest as i16 {
                    return Err(Error::forbidden("guests cannot share projects"));
                }
                let hosted = project::Entity::find()
                    .filter(project::Column::HostConnectionServerId.eq(connection.server_id as i32))
                    .filter(project::Column::HostConnectionId.eq(connection.id as i32))
                    .count(tx)
                    .await?;
                if hosted >= max_per_connection as u64 {
                    return Err(Error::invalid(format!(
                        "a connection may share at most {max_per_connection} projects at once"
                    )));
                }
                let project = project::ActiveModel {
                    room_id: Set(room_id),
                    host_user_id: Set(participant.user_id),
                    host_connection_id: Set(Some(connection.id as i32)),
                    host_connection_server_id: Set(Some(connection.server_id as i32)),
                    host_connection_lost: Set(false),
                    host_lost_at: Set(None),
                    created_at: Set(Utc::now()),
                    ..Default::default()
                }
                .insert(tx)
                .await?;
                insert_worktrees(tx, project.id, &worktrees).await?;
                collaborator::ActiveModel {
                    project_id: Set(project.id),
                    connection_id: Set(connection.id as i32),
                    connection_server_id: Set(connection.server_id as i32),
                    user_id: Set(participant.user_id),
                    replica_id: Set(0),
                    is_host: Set(true),
                    role: Set(ProjectRole::Host as i16),
                    created_at: Set(Utc::now()),
                    ..Default::default()
                }
                .insert(tx)
                .await?;
                Ok((load(tx, project.id).await?, load_room(tx, room_id).await?))
            })
        })
        .await
    }

    /// Deletes the project (with its collaborators and worktrees). With `host`, only
    /// while that connection (live or lost) hosts it; without, it is the server's own
    /// decision (the host is gone). Returns the project as it was and its room after.
    pub async fn unshare_project(
        &self,
        id: ProjectId,
        host: Option<ConnectionId>,
    ) -> Result<(ProjectState, RoomState)> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let state = load(tx, id).await?;
                let hosted_by = |host: ConnectionId| {
                    state.project.host_connection_id == Some(host.id as i32)
                        && state.project.host_connection_server_id == Some(host.server_id as i32)
                };
                if host.is_some_and(|host| !hosted_by(host)) {
                    return Err(Error::forbidden("only the project's host may unshare it"));
                }
                state.project.clone().delete(tx).await?;
                // Nobody is "in" a project that is gone.
                participant::Entity::update_many()
                    .col_expr(
                        participant::Column::LocationKind,
                        Expr::value(ParticipantLocationKind::NoProject as i16),
                    )
                    .col_expr(
                        participant::Column::LocationProjectId,
                        Expr::value(Option::<i64>::None),
                    )
                    .filter(participant::Column::LocationProjectId.eq(i64::from(id.0)))
                    .exec(tx)
                    .await?;
                let room = load_room(tx, state.project.room_id).await?;
                Ok((state, room))
            })
        })
        .await
    }

    /// Adds `connection` to the project as a new collaborator. It must be a live
    /// participant of the project's room; room guests join as viewers.
    pub async fn join_project(
        &self,
        id: ProjectId,
        connection: ConnectionId,
    ) -> Result<(ProjectState, collaborator::Model, Vec<worktree::Model>)> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let state = load(tx, id).await?;
                let participant = require_participant(tx, state.project.room_id, connection)
                    .await
                    .map_err(|error| match error.code() {
                        ErrorCode::Forbidden => {
                            Error::forbidden("join the project's room on this connection first")
                        }
                        _ => error,
                    })?;
                if participant.answering_connection_lost {
                    return Err(Error::forbidden(
                        "this connection's place in the room is lost",
                    ));
                }
                if state
                    .collaborators
                    .iter()
                    .any(|c| collaborator_connection(c) == connection)
                {
                    return Err(Error::conflict(
                        "this connection has already joined the project",
                    ));
                }
                let role = if participant.role == ParticipantRole::Guest as i16 {
                    ProjectRole::Viewer
                } else {
                    ProjectRole::Editor
                };
                let replica_id = (1..)
                    .find(|r| !state.collaborators.iter().any(|c| c.replica_id == *r))
                    .unwrap_or(1);
                let row = collaborator::ActiveModel {
                    project_id: Set(id),
                    connection_id: Set(connection.id as i32),
                    connection_server_id: Set(connection.server_id as i32),
                    user_id: Set(participant.user_id),
                    replica_id: Set(replica_id),
                    is_host: Set(false),
                    role: Set(role as i16),
                    created_at: Set(Utc::now()),
                    ..Default::default()
                }
                .insert(tx)
                .await?;
                let worktrees = worktree::Entity::find()
                    .filter(worktree::Column::ProjectId.eq(id))
                    .order_by_asc(worktree::Column::Id)
                    .all(tx)
                    .await?;
                Ok((load(tx, id).await?, row, worktrees))
            })
        })
        .await
    }

    /// Removes guest `connection` from the project; returns the project after and the
    /// removed row.
    pub async fn leave_project(
        &self,
        id: ProjectId,
        connection: ConnectionId,
    ) -> Result<(ProjectState, collaborator::Model)> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let row = collaborator::Entity::find()
                    .filter(collaborator::Column::ProjectId.eq(id))
                    .filter(connection_filter(connection))
                    .one(tx)
                    .await?
                    .ok_or_else(|| {
                        Error::not_found("this connection has not joined the project")
                    })?;
                if row.is_host {
                    return Err(Error::invalid("the host unshares the project instead"));
                }
                row.clone().delete(tx).await?;
                Ok((load(tx, id).await?, row))
            })
        })
        .await
    }

    /// The projects `connection` hosts and the ones it joined as a guest.
    pub async fn projects_of_connection(
        &self,
        connection: ConnectionId,
    ) -> Result<(Vec<ProjectId>, Vec<ProjectId>)> {
        let rows = collaborator::Entity::find()
            .filter(connection_filter(connection))
            .all(&self.conn)
            .await?;
        let (hosted, joined): (Vec<_>, Vec<_>) = rows.into_iter().partition(|row| row.is_host);
        Ok((
            hosted.into_iter().map(|row| row.project_id).collect(),
            joined.into_iter().map(|row| row.project_id).collect(),
        ))
    }

    /// The host's connection dropped: its projects wait out the grace (no host).
    pub async fn host_connection_lost(
        &self,
        id: ProjectId,
        connection: ConnectionId,
    ) -> Result<()> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let state = load(tx, id).await?;
                if state.host_connection() == Some(connection) {
                    let mut active: project::ActiveModel = state.project.into();
                    active.host_connection_lost = Set(true);
                    active.host_lost_at = Set(Some(Utc::now()));
                    active.update(tx).await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// The host, back on `connection` (in the project's room), takes the project over
    /// from its old connection, which must be gone. Returns the project, the old
    /// connection, and whether `connection` had joined as a guest (that row is gone).
    pub async fn reshare_project(
        &self,
        id: ProjectId,
        connection: ConnectionId,
        user: UserId,
        old_is_gone: std::sync::Arc<dyn Fn(ConnectionId) -> bool + Send + Sync>,
    ) -> Result<(ProjectState, ConnectionId, bool)> {
        self.transaction(move |tx| {
            let old_is_gone = old_is_gone.clone();
            Box::pin(async move {
                let state = load(tx, id).await?;
                if state.project.host_user_id != user {
                    return Err(Error::forbidden("only the project's host may reshare it"));
                }
                require_participant(tx, state.project.room_id, connection)
                    .await
                    .map_err(|error| match error.code() {
                        ErrorCode::Forbidden => Error::forbidden("rejoin the project's room first"),
                        _ => error,
                    })?;
                let host_row = state
                    .collaborators
                    .iter()
                    .find(|c| c.is_host)
                    .cloned()
                    .ok_or_else(|| Error::not_found("the project has no host"))?;
                let old = collaborator_connection(&host_row);
                if old == connection {
                    return Err(Error::conflict("this connection already hosts the project"));
                }
                if !state.project.host_connection_lost && !old_is_gone(old) {
                    return Err(Error::conflict(
                        "the project is hosted by a live connection",
                    ));
                }
                // A guest row of the new connection would collide with the host's.
                let was_guest = collaborator::Entity::delete_many()
                    .filter(collaborator::Column::ProjectId.eq(id))
                    .filter(connection_filter(connection))
                    .exec(tx)
                    .await?
                    .rows_affected
                    > 0;
                let mut active: project::ActiveModel = state.project.into();
                active.host_connection_id = Set(Some(connection.id as i32));
                active.host_connection_server_id = Set(Some(connection.server_id as i32));
                active.host_connection_lost = Set(false);
                active.host_lost_at = Set(None);
                active.update(tx).await?;
                let mut active: collaborator::ActiveModel = host_row.into();
                active.connection_id = Set(connection.id as i32);
                active.connection_server_id = Set(connection.server_id as i32);
                active.update(tx).await?;
                Ok((load(tx, id).await?, old, was_guest))
            })
        })
        .await
    }

    /// Sets every collaborator row of `user` to `role`; the host's live connection only.
    pub async fn set_project_role(
        &self,
        id: ProjectId,
        host: ConnectionId,
        user: UserId,
        role: ProjectRole,
    ) -> Result<(ProjectState, Vec<collaborator::Model>)> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let state = require_host(tx, id, host).await?;
                let rows: Vec<_> = state
                    .collaborators
                    .iter()
                    .filter(|c| c.user_id == user)
                    .cloned()
                    .collect();
                if rows.is_empty() {
                    return Err(Error::not_found(format!(
                        "user {user} has not joined the project"
                    )));
                }
                if rows.iter().any(|c| c.is_host) {
                    return Err(Error::invalid("the host's role cannot change"));
                }
                let mut changed = Vec::new();
                for row in rows {
                    let mut active: collaborator::ActiveModel = row.into();
                    active.role = Set(role as i16);
                    changed.push(active.update(tx).await?);
                }
                Ok((load(tx, id).await?, changed))
            })
        })
        .await
    }

    /// The projects shared in `room`.
    pub async fn projects_in_room(&self, room: RoomId) -> Result<Vec<ProjectId>> {
        Ok(project::Entity::find()
            .filter(project::Column::RoomId.eq(room))
            .all(&self.conn)
            .await?
            .into_iter()
            .map(|project| project.id)
            .collect())
    }

    /// `user` became a room guest: their editor places in project `id` become viewer
    /// places. Returns the project and the changed rows (none when nothing changed).
    pub async fn demote_to_viewer(
        &self,
        id: ProjectId,
        user: UserId,
    ) -> Result<(ProjectState, Vec<collaborator::Model>)> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let state = load(tx, id).await?;
                let mut changed = Vec::new();
                for row in state.collaborators.iter().filter(|c| {
                    c.user_id == user && !c.is_host && c.role == ProjectRole::Editor as i16
                }) {
                    let mut active: collaborator::ActiveModel = row.clone().into();
                    active.role = Set(ProjectRole::Viewer as i16);
                    changed.push(active.update(tx).await?);
                }
                Ok((load(tx, id).await?, changed))
            })
        })
        .await
    }
}
