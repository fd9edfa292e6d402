//! Helpers for shared-project stories: a room of three, sharing, uploading worktree entries
//! in chunks, joining and collecting the join stream, buffer operations, and a host
//! answering a request the server forwarded to it.

use std::collections::{BTreeMap, BTreeSet};

use collab::{
    client::Client,
    rpc::{EnvelopedMessage, RequestMessage, RpcError, TypedEnvelope, proto},
};

use super::{
    TestServer, WAIT,
    rooms::{befriend, call_and_answer, is_pending, participant, peer, room_of_two, room_until},
    within,
};

/// The default `--max-worktree-chunk`.
pub const MAX_CHUNK: usize = 256;

/// `host` creates a room and calls `a`, then `b`, into it; both answer (as room members).
/// Returns (host, a, b, room id) once the host has seen `b` join.
pub async fn room_of_three(
    server: &TestServer,
    host: &str,
    a: &str,
    b: &str,
) -> (Client, Client, Client, u64) {
    befriend(server, host, b).await;
    let (host_client, a_client, room_id) = room_of_two(server, host, a).await;
    let b_client = server.client(b).await;
    let b_id = b_client.user_id();
    call_and_answer(&host_client, &b_client, room_id).await;
    room_until(&host_client, "the third participant to join", |room| {
        participant(room, b_id).is_some() && !is_pending(room, b_id)
    })
    .await;
    (host_client, a_client, b_client, room_id)
}

/// The room admin makes `user_id` a room guest (who then joins projects as a viewer).
pub async fn make_room_guest(admin: &Client, room_id: u64, user_id: u64) {
    admin
        .request(proto::SetRoomParticipantRole {
            room_id,
            user_id,
            role: proto::ParticipantRole::Guest as i32,
        })
        .await
        .expect("the admin makes a room guest");
}

/// The projects `user_id` shares, as the room lists them.
pub fn shared_by(room: &proto::Room, user_id: u64) -> Vec<proto::ParticipantProject> {
    participant(room, user_id)
        .map(|p| p.projects.clone())
        .unwrap_or_default()
}

/// Whether the room lists `project_id` as shared by `user_id`.
pub fn lists(room: &proto::Room, user_id: u64, project_id: u64) -> bool {
    shared_by(room, user_id)
        .iter()
        .any(|project| project.id == project_id)
}

/// A visible worktree with no scan yet.
pub fn worktree(id: u64, root_name: &str) -> proto::WorktreeMetadata {
    proto::WorktreeMetadata {
        id,
        root_name: root_name.into(),
        visible: true,
        scan_id: 0,
        completed_scan_id: 0,
    }
}

/// Shares a project into `room_id`; returns its id.
pub async fn share_project(
    host: &Client,
    room_id: u64,
    worktrees: Vec<proto::WorktreeMetadata>,
) -> u64 {
    let project_id = host
        .request(proto::ShareProject { room_id, worktrees })
        .await
        .expect("the project is shared")
        .project_id;
    assert_ne!(project_id, 0);
    project_id
}

/// A file entry whose fields derive from its path.
pub fn entry(path: &str) -> proto::WorktreeEntry {
    proto::WorktreeEntry {
        path: path.into(),
        is_dir: false,
        mtime_ms: 1_700_000_000_000 + path.len() as u64,
        size: path.len() as u64,
        is_ignored: false,
    }
}

pub fn entries(paths: &[&str]) -> Vec<proto::WorktreeEntry> {
    paths.iter().map(|path| entry(path)).collect()
}

/// `count` distinct entries, a hundred per directory, each with its own size and mtime.
pub fn numbered_entries(count: usize) -> Vec<proto::WorktreeEntry> {
    (0..count)
        .map(|i| proto::WorktreeEntry {
            path: format!("src/dir{:03}/file{i:05}.rs", i / 100),
            is_dir: false,
            mtime_ms: 1_700_000_000_000 + i as u64,
            size: i as u64,
            is_ignored: i % 7 == 0,
        })
        .collect()
}

/// Entries by path.
pub fn by_path(entries: &[proto::WorktreeEntry]) -> BTreeMap<String, proto::WorktreeEntry> {
    entries
        .iter()
        .map(|entry| (entry.path.clone(), entry.clone()))
        .collect()
}

/// Applies an UpdateWorktree to a worktree's entries.
pub fn apply(entries: &mut BTreeMap<String, proto::WorktreeEntry>, update: &proto::UpdateWorktree) {
    for path in &update.removed_paths {
        entries.remove(path);
    }
    for entry in &update.updated_entries {
        entries.insert(entry.path.clone(), entry.clone());
    }
}

/// One chunk of scan `scan_id` of `worktree`, updating `updated` (no removals).
pub fn worktree_chunk(
    project_id: u64,
    worktree: &proto::WorktreeMetadata,
    scan_id: u64,
    updated: Vec<proto::WorktreeEntry>,
    is_last_update: bool,
) -> proto::UpdateWorktree {
    proto::UpdateWorktree {
        project_id,
        worktree_id: worktree.id,
        root_name: worktree.root_name.clone(),
        updated_entries: updated,
        removed_paths: Vec::new(),
        scan_id,
        is_last_update,
    }
}

/// The host uploads `entries` as scan `scan_id` of `worktree`, `chunk_size` entries per
/// UpdateWorktree, the last one marked; returns how many chunks it sent.
pub async fn upload(
    host: &Client,
    project_id: u64,
    worktree: &proto::WorktreeMetadata,
    scan_id: u64,
    entries: &[proto::WorktreeEntry],
    chunk_size: usize,
) -> usize {
    let parts: Vec<&[proto::WorktreeEntry]> = if entries.is_empty() {
        vec![entries]
    } else {
        entries.chunks(chunk_size).collect()
    };
    let count = parts.len();
    for (i, part) in parts.into_iter().enumerate() {
        let update = worktree_chunk(project_id, worktree, scan_id, part.to_vec(), i + 1 == count);
        host.request(update).await.unwrap_or_else(|error| {
            panic!("chunk {i} of worktree {} refused: {error}", worktree.id)
        });
    }
    count
}

/// A JoinProjectResponse and the join stream that followed it.
pub struct Joined {
    pub response: proto::JoinProjectResponse,
    /// The join stream's UpdateWorktree chunks, in arrival order.
    pub chunks: Vec<proto::UpdateWorktree>,
}

impl Joined {
    pub fn chunks_of(&self, worktree_id: u64) -> Vec<&proto::UpdateWorktree> {
        self.chunks
            .iter()
            .filter(|chunk| chunk.worktree_id == worktree_id)
            .collect()
    }

    /// Worktree `worktree_id`'s entries after applying the join stream.
    pub fn entries(&self, worktree_id: u64) -> BTreeMap<String, proto::WorktreeEntry> {
        let mut entries = BTreeMap::new();
        for chunk in self.chunks_of(worktree_id) {
            apply(&mut entries, chunk);
        }
        entries
    }

    /// The other collaborators, by replica id.
    pub fn collaborators(&self) -> Vec<proto::Collaborator> {
        let mut collaborators = self.response.collaborators.clone();
        collaborators.sort_by_key(|c| c.replica_id);
        collaborators
    }
}

/// Joins `project_id` and takes UpdateWorktree chunks until every worktree of the
/// response has had its `is_last_update` (none may follow it).
pub async fn join_project(client: &Client, project_id: u64) -> Joined {
    let response = client
        .request(proto::JoinProject { project_id })
        .await
        .expect("joins the project");
    assert_eq!(response.project_id, project_id);
    let mut pending: BTreeSet<u64> = response.worktrees.iter().map(|w| w.id).collect();
    let mut chunks = Vec::new();
    within("the join stream", async {
        while !pending.is_empty() {
            let chunk = client
                .recv::<proto::UpdateWorktree>()
                .await
                .expect("the connection is open")
                .payload;
            assert_eq!(chunk.project_id, project_id);
            assert!(
                pending.contains(&chunk.worktree_id),
                "a chunk for worktree {} after its last one (or unknown): {:?}",
                chunk.worktree_id,
                response.worktrees
            );
            if chunk.is_last_update {
                pending.remove(&chunk.worktree_id);
            }
            chunks.push(chunk);
        }
    })
    .await;
    Joined { response, chunks }
}

/// `client` as a collaborator of a project.
pub fn collaborator(
    client: &Client,
    replica_id: u32,
    role: proto::ProjectRole,
) -> proto::Collaborator {
    proto::Collaborator {
        peer_id: peer(client),
        replica_id,
        user_id: client.user_id(),
        is_host: role == proto::ProjectRole::Host,
        role: role as i32,
    }
}

/// The next message of type `M`, or a failed test after `WAIT`.
pub async fn next_message<M: EnvelopedMessage>(client: &Client) -> TypedEnvelope<M> {
    client
        .recv_timeout::<M>(WAIT)
        .await
        .unwrap_or_else(|error| panic!("waiting for a {}: {error}", M::NAME))
}

/// The next `count` messages of type `M`.
pub async fn next_messages<M: EnvelopedMessage>(
    client: &Client,
    count: usize,
) -> Vec<TypedEnvelope<M>> {
    within(M::NAME, async {
        let mut messages = Vec::with_capacity(count);
        while messages.len() < count {
            messages.push(client.recv::<M>().await.expect("the connection is open"));
        }
        messages
    })
    .await
}

/// Every message of type `M` that has arrived and is not taken yet.
pub fn drain<M: EnvelopedMessage>(client: &Client) -> Vec<M> {
    std::iter::from_fn(|| client.try_recv::<M>())
        .map(|envelope| envelope.payload)
        .collect()
}

/// Asserts that a request failed with `code`; returns the error.
#[track_caller]
pub fn refused<T: std::fmt::Debug>(
    result: Result<T, RpcError>,
    code: proto::ErrorCode,
) -> RpcError {
    match result {
        Ok(value) => panic!("expected {}, got {value:?}", code.as_str_name()),
        Err(error) => {
            assert_eq!(error.code, code, "{error}");
            error
        }
    }
}

pub fn op(kind: proto::buffer_operation::Kind, n: u32) -> proto::BufferOperation {
    proto::BufferOperation {
        kind: kind as i32,
        data: n.to_be_bytes().to_vec().into(),
    }
}

/// An edit of buffer `buffer_id` numbered `n`.
pub fn edit(project_id: u64, buffer_id: u64, n: u32) -> proto::UpdateBuffer {
    proto::UpdateBuffer {
        project_id,
        buffer_id,
        operations: vec![op(proto::buffer_operation::Kind::Edit, n)],
    }
}

/// A selection change in buffer `buffer_id` numbered `n`.
pub fn select(project_id: u64, buffer_id: u64, n: u32) -> proto::UpdateBuffer {
    proto::UpdateBuffer {
        project_id,
        buffer_id,
        operations: vec![op(proto::buffer_operation::Kind::Selections, n)],
    }
}

/// The number carried by an update's first operation.
pub fn seq(update: &proto::UpdateBuffer) -> u32 {
    let data = &update.operations[0].data;
    u32::from_be_bytes(<[u8; 4]>::try_from(&data[..]).expect("a numbered operation"))
}

/// Edits of buffer 1 numbered `numbers`, in order.
pub fn edits(project_id: u64, numbers: std::ops::Range<u32>) -> Vec<proto::UpdateBuffer> {
    numbers.map(|n| edit(project_id, 1, n)).collect()
}

/// The payloads among `updates` that `sender` sent, in arrival order.
pub fn sent_by(
    updates: &[TypedEnvelope<proto::UpdateBuffer>],
    sender: &Client,
) -> Vec<proto::UpdateBuffer> {
    updates
        .iter()
        .filter(|update| update.original_sender_id == Some(sender.peer_id()))
        .map(|update| update.payload.clone())
        .collect()
}

pub fn open_path(project_id: u64, path: &str) -> proto::OpenBufferByPath {
    proto::OpenBufferByPath {
        project_id,
        worktree_id: 1,
        path: path.into(),
    }
}

/// `guest` sends `request`; the host receives it unchanged, marked as the guest's, and
/// answers with `answer` (a response or an error). Returns what the guest got.
pub async fn forwarded<M>(
    host: &Client,
    guest: &Client,
    request: M,
    answer: Result<M::Response, RpcError>,
) -> Result<M::Response, RpcError>
where
    M: RequestMessage + PartialEq,
{
    let sent = request.clone();
    let (result, ()) = tokio::join!(guest.request(request), async {
        let received = next_message::<M>(host).await;
        assert_eq!(
            received.payload, sent,
            "the host gets the request unchanged"
        );
        assert_eq!(
            received.original_sender_id,
            Some(guest.peer_id()),
            "the host sees who asked"
        );
        let answered = match answer {
            Ok(response) => host.respond(&received, response),
            Err(error) => host.respond_with_error(&received, error),
        };
        answered.expect("the host answers");
    });
    result
}
