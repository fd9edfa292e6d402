//! The hot paths of shared projects, served from memory with no database access:
//! buffer operations relayed to every other collaborator, requests forwarded to the
//! host, and following.
//!
//! `ProjectRelay` mirrors each project's committed collaborators (connection, role,
//! host). The handlers in `projects` and `worktrees` refresh it under the project's lock
//! right after each commit, so what it allows is what the database says.
//!
//! Requests forwarded to the host and following are in `project_forwarding`.
//!
//! `UpdateBuffer` and `UpdateFollowers` are inline handlers: they run before the next
//! envelope of the connection is read, so a sender's operations are relayed in the
//! order it sent them.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use parking_lot::{Mutex, RwLock};
use prometheus::IntGauge;

use super::Session;
use crate::{
    cluster::Cluster,
    db::{ProjectId, UserId, queries::projects::ProjectState},
    error::{Error, Result},
    rpc::{ConnectionId, EnvelopedMessage, Response, proto},
};

#[derive(Clone)]
pub struct Member {
    pub connection: ConnectionId,
    pub user: UserId,
    pub replica_id: u32,
    pub role: proto::ProjectRole,
    /// Set while the member's join stream runs: relays to it wait here.
    catch_up: Option<Arc<CatchUp>>,
}

/// Deferred deliveries at most, per joiner, while its join stream runs; past it the
/// joiner cannot be brought up to date and its join fails.
const MAX_DEFERRED: usize = 4096;

type Deferred = Box<dyn FnOnce(&Cluster) + Send + Sync>;

/// Relays held back for a joiner until its snapshot has been streamed, so it never sees
/// a change before the state it applies to.
#[derive(Default)]
pub struct CatchUp {
    deferred: Mutex<Vec<Deferred>>,
    overflowed: AtomicBool,
}

impl CatchUp {
    fn defer(&self, send: Deferred) {
        let mut deferred = self.deferred.lock();
        if deferred.len() >= MAX_DEFERRED {
            self.overflowed.store(true, Ordering::Relaxed);
        } else {
            deferred.push(send);
        }
    }

    /// More changes arrived during the stream than can be held back.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }
}

impl Member {
    pub(super) fn may_edit(&self) -> bool {
        self.role != proto::ProjectRole::Viewer
    }
}

struct Share {
    /// The host's live connection; `None` while it is lost (the reconnect grace).
    host: Option<ConnectionId>,
    members: Vec<Member>,
    /// (leader, follower) pairs.
    follows: Vec<(ConnectionId, ConnectionId)>,
}

impl Share {
    fn member(&self, project: ProjectId, connection: ConnectionId) -> Result<&Member> {
        self.members
            .iter()
            .find(|m| m.connection == connection)
            .ok_or_else(|| not_joined(project))
    }
}

pub struct ProjectRelay {
    projects: RwLock<HashMap<ProjectId, Share>>,
    shared_gauge: IntGauge,
    members_gauge: IntGauge,
}

pub fn project_id(value: u64) -> Result<ProjectId> {
    ProjectId::from_proto(value).ok_or_else(|| Error::invalid("project_id is not a valid id"))
}

pub(super) fn not_joined(project: ProjectId) -> Error {
    Error::forbidden(format!("this connection has not joined project {project}"))
}

impl ProjectRelay {
    pub fn new(shared_gauge: IntGauge, members_gauge: IntGauge) -> Self {
        ProjectRelay {
            projects: RwLock::new(HashMap::new()),
            shared_gauge,
            members_gauge,
        }
    }

    /// Takes the committed state of a project; follows whose ends are gone are dropped.
    pub fn mirror(&self, state: &ProjectState) {
        self.mirror_joining(state, None);
    }

    /// Like `mirror`, with `joiner`'s relays held back until `finish_catch_up`.
    pub fn mirror_joining(
        &self,
        state: &ProjectState,
        joiner: Option<ConnectionId>,
    ) -> Option<Arc<CatchUp>> {
        let mut projects = self.projects.write();
        let old = projects.get(&state.project.id);
        let joining = joiner.map(|_| Arc::new(CatchUp::default()));
        let members: Vec<Member> = state
            .collaborators
            .iter()
            .map(|row| {
                let connection = crate::db::queries::projects::collaborator_connection(row);
                let catch_up = if Some(connection) == joiner {
                    joining.clone()
                } else {
                    old.and_then(|share| {
                        share
                            .members
                            .iter()
                            .find(|m| m.connection == connection)
                            .and_then(|m| m.catch_up.clone())
                    })
                };
                Member {
                    connection,
                    user: row.user_id,
                    replica_id: row.replica_id as u32,
                    role: proto::ProjectRole::try_from(row.role as i32)
                        .unwrap_or(proto::ProjectRole::Viewer),
                    catch_up,
                }
            })
            .collect();
        let share = projects.entry(state.project.id).or_insert_with(|| Share {
            host: None,
            members: Vec::new(),
            follows: Vec::new(),
        });
        self.members_gauge
            .add(members.len() as i64 - share.members.len() as i64);
        share.host = state.host_connection();
        share.follows.retain(|(a, b)| {
            [a, b]
                .iter()
                .all(|c| members.iter().any(|m| m.connection == **c))
        });
        share.members = members;
        self.shared_gauge.set(projects.len() as i64);
        joining
    }

    /// The joiner's stream is done: what was held back goes out now, in order, and
    /// later relays go straight to it. Fails when too much was held back.
    pub fn finish_catch_up(
        &self,
        project: ProjectId,
        joiner: ConnectionId,
        cluster: &Cluster,
    ) -> Result<()> {
        let mut projects = self.projects.write();
        let Some(member) = projects
            .get_mut(&project)
            .and_then(|share| share.members.iter_mut().find(|m| m.connection == joiner))
        else {
            // It left (or the project ended) meanwhile; nothing to deliver.
            return Ok(());
        };
        let Some(catch_up) = member.catch_up.take() else {
            return Ok(());
        };
        if catch_up.overflowed() {
            return Err(Error::unavailable(
                "the project changed too much while it was being sent; join again",
            ));
        }
        for send in catch_up.deferred.lock().drain(..) {
            send(cluster);
        }
        Ok(())
    }

    /// Drops entries of projects that no longer exist (e.g. deleted with their room).
    pub fn retain(&self, exists: impl Fn(ProjectId) -> bool) {
        let mut projects = self.projects.write();
        projects.retain(|id, share| {
            let keep = exists(*id);
            if !keep {
                self.members_gauge.sub(share.members.len() as i64);
            }
            keep
        });
        self.shared_gauge.set(projects.len() as i64);
    }

    pub fn project_ids(&self) -> Vec<ProjectId> {
        self.projects.read().keys().copied().collect()
    }

    pub fn remove(&self, project: ProjectId) {
        let mut projects = self.projects.write();
        if let Some(share) = projects.remove(&project) {
            self.members_gauge.sub(share.members.len() as i64);
        }
        self.shared_gauge.set(projects.len() as i64);
    }

    pub fn member(&self, project: ProjectId, connection: ConnectionId) -> Option<Member> {
        let projects = self.projects.read();
        let share = projects.get(&project)?;
        share
            .members
            .iter()
            .find(|m| m.connection == connection)
            .cloned()
    }

    /// The sender's membership (checked by `allow`), then `message` relayed to every
    /// other collaborator, marked as the sender's. Returns the receivers' count.
    pub fn relay<M: EnvelopedMessage>(
        &self,
        cluster: &Cluster,
        project: ProjectId,
        from: ConnectionId,
        message: &M,
        allow: impl FnOnce(&Member) -> Result<()>,
    ) -> Result<usize> {
        let projects = self.projects.read();
        let share = projects.get(&project).ok_or_else(|| not_joined(project))?;
        allow(share.member(project, from)?)?;
        if share.members.iter().all(|m| m.connection == from) {
            return Ok(0);
        }
        // Encoded once for every receiver (see `SharedEnvelope`).
        let shared = cluster.share(message.clone(), Some(from))?;
        // Members still catching up get it after their catch-up; the rest at once.
        let mut deferred = 0;
        let receivers = share
            .members
            .iter()
            .filter(|m| m.connection != from)
            .filter_map(|member| {
                let Some(catch_up) = &member.catch_up else {
                    return Some(member.connection);
                };
                let (to, shared) = (member.connection, shared.clone());
                catch_up.defer(Box::new(move |cluster: &Cluster| {
                    if let Err(error) = cluster.send_shared(to, &shared) {
                        tracing::debug!(receiver = %to, %error, "deferred relay skipped a receiver");
                    }
                }));
                deferred += 1;
                None
            });
        let sent = cluster.send_shared_each(receivers, &shared, |receiver, error| {
            tracing::debug!(%receiver, %error, message = M::NAME, "relay skipped a receiver");
        });
        Ok(sent + deferred)
    }

    /// `message` from a member to every other member, whatever the sender's role (the
    /// caller checked it against the database).
    pub fn relay_to_others<M: EnvelopedMessage>(
        &self,
        cluster: &Cluster,
        project: ProjectId,
        from: ConnectionId,
        message: &M,
    ) -> Result<()> {
        self.relay(cluster, project, from, message, |_| Ok(()))
            .map(drop)
    }

    /// The sender must be a member and the host; returns the host.
    pub(super) fn host_of(
        &self,
        project: ProjectId,
        from: ConnectionId,
    ) -> Result<(Member, ConnectionId)> {
        let projects = self.projects.read();
        let share = projects.get(&project).ok_or_else(|| not_joined(project))?;
        let sender = share.member(project, from)?.clone();
        let host = share.host.ok_or_else(|| {
            Error::unavailable("the project's host is not connected (it may be reconnecting)")
        })?;
        Ok((sender, host))
    }

    pub(super) fn follow(&self, project: ProjectId, leader: ConnectionId, follower: ConnectionId) {
        if let Some(share) = self.projects.write().get_mut(&project)
            && !share.follows.contains(&(leader, follower))
        {
            share.follows.push((leader, follower));
        }
    }

    pub(super) fn unfollow(
        &self,
        project: ProjectId,
        leader: ConnectionId,
        follower: ConnectionId,
    ) -> bool {
        let mut projects = self.projects.write();
        let Some(share) = projects.get_mut(&project) else {
            return false;
        };
        let before = share.follows.len();
        share.follows.retain(|pair| *pair != (leader, follower));
        share.follows.len() != before
    }

    pub(super) fn followers(&self, project: ProjectId, leader: ConnectionId) -> Vec<ConnectionId> {
        self.projects
            .read()
            .get(&project)
            .map(|share| {
                share
                    .follows
                    .iter()
                    .filter(|(l, _)| *l == leader)
                    .map(|(_, f)| *f)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Buffer operations: relayed to every other collaborator, never stored. Viewers may
/// only move their cursors and selections.
pub fn update_buffer(
    request: proto::UpdateBuffer,
    response: Response<proto::UpdateBuffer>,
    session: &Session,
) -> Result<()> {
    let project = project_id(request.project_id)?;
    let app = &session.state;
    let edits = request
        .operations
        .iter()
        .any(|op| op.kind != proto::buffer_operation::Kind::Selections as i32);
    let sent = app.projects.relay(
        &app.cluster,
        project,
        session.connection_id,
        &request,
        |sender| {
            if edits && !sender.may_edit() {
                return Err(Error::forbidden(
                    "viewers may not edit; only selection updates are relayed",
                ));
            }
            Ok(())
        },
    )?;
    app.metrics
        .buffer_operations_relayed
        .inc_by((sent * request.operations.len()) as u64);
    response.send(proto::Ack {})?;
    Ok(())
}
