//! Helpers for room stories: contacts made directly in the database, waiting for a room
//! state, and the common messages.

use collab::{client::Client, rpc::proto};

use super::{TestServer, WAIT, within};

/// Makes `a` and `b` contacts directly in the database (before their clients connect).
pub async fn befriend(server: &TestServer, a: &str, b: &str) {
    let a = server.user_id(a).await;
    let b = server.user_id(b).await;
    server.state.db.request_contact(a, b).await.unwrap();
    server
        .state
        .db
        .respond_to_contact_request(b, a, true)
        .await
        .unwrap();
}

/// The peer id of a client as it appears in rooms.
pub fn peer(client: &Client) -> Option<proto::PeerId> {
    Some(proto::PeerId::from(client.peer_id()))
}

pub fn shared_project(project_id: u64) -> proto::ParticipantLocation {
    proto::ParticipantLocation {
        kind: proto::participant_location::Kind::SharedProject as i32,
        project_id,
    }
}

pub fn participant(room: &proto::Room, user_id: u64) -> Option<&proto::Participant> {
    room.participants.iter().find(|p| p.user_id == user_id)
}

pub fn is_pending(room: &proto::Room, user_id: u64) -> bool {
    room.pending_participants
        .iter()
        .any(|p| p.user_id == user_id)
}

pub fn sorted(mut ids: Vec<u64>) -> Vec<u64> {
    ids.sort_unstable();
    ids
}

/// The next RoomUpdated's room.
pub async fn next_room(client: &Client) -> proto::Room {
    client
        .recv_timeout::<proto::RoomUpdated>(WAIT)
        .await
        .expect("a RoomUpdated")
        .payload
        .room
        .expect("RoomUpdated carries the room")
}

/// Takes RoomUpdated messages until one whose room satisfies `check` (earlier states may
/// arrive first); fails the test after `WAIT`.
pub async fn room_until(
    client: &Client,
    what: &str,
    check: impl Fn(&proto::Room) -> bool,
) -> proto::Room {
    within(what, async {
        loop {
            let room = client
                .recv::<proto::RoomUpdated>()
                .await
                .expect("the connection is open")
                .payload
                .room
                .expect("RoomUpdated carries the room");
            if check(&room) {
                return room;
            }
        }
    })
    .await
}

pub async fn incoming_call(client: &Client) -> proto::IncomingCall {
    client
        .recv_timeout::<proto::IncomingCall>(WAIT)
        .await
        .expect("an IncomingCall")
        .payload
}

pub async fn call_canceled(client: &Client) -> proto::CallCanceled {
    client
        .recv_timeout::<proto::CallCanceled>(WAIT)
        .await
        .expect("a CallCanceled")
        .payload
}

pub async fn call_ended(client: &Client) -> proto::CallEnded {
    client
        .recv_timeout::<proto::CallEnded>(WAIT)
        .await
        .expect("a CallEnded")
        .payload
}

/// `caller` creates a room and calls `callee`, who answers; both clients connected, the
/// caller has seen the callee join. Returns (caller, callee, room id).
pub async fn room_of_two(server: &TestServer, caller: &str, callee: &str) -> (Client, Client, u64) {
    befriend(server, caller, callee).await;
    let caller_client = server.client(caller).await;
    let callee_client = server.client(callee).await;
    let callee_id = callee_client.user_id();
    let room_id = caller_client
        .request(proto::CreateRoom {})
        .await
        .unwrap()
        .room
        .expect("CreateRoomResponse carries the room")
        .id;
    call_and_answer(&caller_client, &callee_client, room_id).await;
    room_until(&caller_client, "the callee to join", |room| {
        participant(room, callee_id).is_some() && !is_pending(room, callee_id)
    })
    .await;
    (caller_client, callee_client, room_id)
}

pub fn presence_at(line: u32) -> proto::UpdatePresence {
    proto::UpdatePresence {
        status: proto::PresenceStatus::Active as i32,
        cursor: Some(proto::Cursor {
            path: "src/main.rs".into(),
            line,
            column: 4,
        }),
        viewport: None,
    }
}

/// `client`'s participant moves to shared project `project_id` (and the server agrees).
/// Shares an empty project from `client` into `room_id`; returns its id.
pub async fn share_empty_project(client: &Client, room_id: u64) -> u64 {
    client
        .request(proto::ShareProject {
            room_id,
            worktrees: Vec::new(),
        })
        .await
        .expect("project shared")
        .project_id
}

pub async fn open_project(client: &Client, room_id: u64, project_id: u64) {
    let location = Some(shared_project(project_id));
    client
        .request(proto::UpdateParticipantLocation { room_id, location })
        .await
        .expect("location updated");
}

/// `caller` calls `callee` into `room_id`; the callee's device rings and answers.
pub async fn call_and_answer(
    caller: &Client,
    callee: &Client,
    room_id: u64,
) -> proto::JoinRoomResponse {
    let call = proto::Call {
        room_id,
        callee_user_id: callee.user_id(),
    };
    caller.request(call).await.expect("the call rings");
    assert_eq!(incoming_call(callee).await.room_id, room_id);
    callee
        .request(proto::JoinRoom { room_id })
        .await
        .expect("the callee answers")
}

/// Waits for the next `PresenceUpdated { removed: true }`, skipping live states.
pub async fn presence_removed(client: &Client, what: &str) -> proto::PresenceUpdated {
    within(what, async {
        loop {
            let update = client
                .recv::<proto::PresenceUpdated>()
                .await
                .expect("the connection is open")
                .payload;
            if update.removed {
                return update;
            }
        }
    })
    .await
}
