//! The sweep's side of shared projects: collaborators on servers that are gone, hosts
//! lost past the reconnect grace, and projects that no longer exist.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait, Query},
};

use super::{
    super::{
        Database, ProjectId,
        entities::{
            project, project_collaborator as collaborator, room_participant as participant,
        },
    },
    projects::collaborator_connection,
    rooms::gone_servers,
};
use crate::{error::Result, rpc::ConnectionId};

impl Database {
    /// Collaborators on servers that are gone (stopped, or silent past `alive_since`):
    /// guests are removed, hosts marked lost (their projects wait for a reshare until
    /// the grace ends). Returns the removed guests and the projects whose host was
    /// marked lost.
    pub async fn sweep_gone_collaborators(
        &self,
        this: crate::db::ServerId,
        alive_since: chrono::DateTime<Utc>,
    ) -> Result<(Vec<(ProjectId, ConnectionId)>, Vec<ProjectId>)> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let gone = gone_servers(tx, this.0, Utc::now(), alive_since).await?;
                if gone.is_empty() {
                    return Ok((Vec::new(), Vec::new()));
                }
                let on_gone = || {
                    sea_orm::Condition::all()
                        .add(collaborator::Column::ConnectionServerId.is_in(gone.clone()))
                        .add(collaborator::Column::IsHost.eq(false))
                };
                let guests = collaborator::Entity::find()
                    .filter(on_gone())
                    .all(tx)
                    .await?;
                collaborator::Entity::delete_many()
                    .filter(on_gone())
                    .exec(tx)
                    .await?;
                let hostless = project::Entity::find()
                    .filter(project::Column::HostConnectionServerId.is_in(gone.clone()))
                    .filter(project::Column::HostConnectionLost.eq(false))
                    .all(tx)
                    .await?;
                for project in &hostless {
                    let mut active: project::ActiveModel = project.clone().into();
                    active.host_connection_lost = Set(true);
                    active.host_lost_at = Set(Some(Utc::now()));
                    active.update(tx).await?;
                }
                Ok((
                    guests
                        .iter()
                        .map(|row| (row.project_id, collaborator_connection(row)))
                        .collect(),
                    hostless.iter().map(|project| project.id).collect(),
                ))
            })
        })
        .await
    }

    /// Projects to unshare: those whose host has been lost since before
    /// `expired_since` (the reconnect grace is over), and those whose host is no longer
    /// an answered participant of the project's room.
    pub async fn orphaned_projects(
        &self,
        expired_since: chrono::DateTime<Utc>,
    ) -> Result<Vec<ProjectId>> {
        let hosted = Query::select()
            .expr(Expr::val(1))
            .from(participant::Entity)
            .and_where(
                Expr::col((participant::Entity, participant::Column::RoomId))
                    .equals((project::Entity, project::Column::RoomId)),
            )
            .and_where(
                Expr::col((participant::Entity, participant::Column::UserId))
                    .equals((project::Entity, project::Column::HostUserId)),
            )
            .and_where(
                Expr::col((
                    participant::Entity,
                    participant::Column::AnsweringConnectionId,
                ))
                .is_not_null(),
            )
            .to_owned();
        let expired = sea_orm::Condition::all()
            .add(project::Column::HostConnectionLost.eq(true))
            .add(project::Column::HostLostAt.lt(expired_since));
        Ok(project::Entity::find()
            .filter(
                sea_orm::Condition::any()
                    .add(Expr::exists(hosted).not())
                    .add(expired),
            )
            .all(&self.conn)
            .await?
            .into_iter()
            .map(|project| project.id)
            .collect())
    }

    /// Which of `ids` still exist.
    pub async fn existing_projects(&self, ids: Vec<ProjectId>) -> Result<Vec<ProjectId>> {
        let mut existing = Vec::new();
        // In slices, to stay far below the databases' bind-parameter limits.
        for slice in ids.chunks(1000) {
            existing.extend(
                project::Entity::find()
                    .filter(project::Column::Id.is_in(slice.iter().copied()))
                    .all(&self.conn)
                    .await?
                    .into_iter()
                    .map(|project| project.id),
            );
        }
        Ok(existing)
    }
}
