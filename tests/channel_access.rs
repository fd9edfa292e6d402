//! Channel access, end to end, where it is easy to get wrong: a banned member cannot
//! leave their way out of a ban; a ban over a pending invitation holds at once; losing
//! access (ban, removal, demotion) closes the notes, over RPC and over y-websocket; only
//! the canonical spelling of `channel/<id>/notes` is the channel's notes; a channel's
//! call is not joined by being called, and a ban takes the user out of it; chat nonces
//! belong to one channel and a re-sent one is not rate limited; a channel moved to the
//! top keeps its mover as admin; guests are not co-members for calls; a deleted comment
//! keeps neither its body nor its anchor.

mod common;

use collab::{
    client::Client,
    db::entities::channel_message,
    rpc::proto::{
        self, ChannelRole, ChannelVisibility,
        ErrorCode::{Conflict, Forbidden, RateLimited},
    },
};
use common::{
    Backend, TestServer,
    channels::{
        answer, find, ids, join, members, next_update, refused, removal, role_of, subscribe,
        view_of,
    },
    notes::{
        NotesDoc, add_member, channel_with, collaborators_until, join_notes, message_update_until,
        next_notes_update, next_sent, nonce, notes_name, post, stored_message, update_notes,
    },
    rooms::{befriend, incoming_call, participant, room_until, sorted},
    within,
    yjs::{YjsClient, refused_status, text_of_update},
};
use sea_orm::EntityTrait;
use yrs::sync::Message;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

const MEMBERS: i32 = ChannelVisibility::Members as i32;
const PUBLIC: i32 = ChannelVisibility::Public as i32;
const ADMIN: i32 = ChannelRole::Admin as i32;
const MEMBER: i32 = ChannelRole::Member as i32;
const GUEST: i32 = ChannelRole::Guest as i32;
const BANNED: i32 = ChannelRole::Banned as i32;

/// The close code of a socket closed by policy (here: its access changed).
const POLICY: u16 = 1008;

async fn create(client: &Client, name: &str, parent_id: u64, visibility: i32) -> proto::Channel {
    client
        .request(proto::CreateChannel {
            name: name.into(),
            parent_id,
            visibility,
        })
        .await
        .unwrap_or_else(|error| panic!("creating channel {name:?}: {error}"))
        .channel
        .expect("CreateChannelResponse carries the channel")
}

async fn invite(admin: &Client, channel_id: u64, user_id: u64, role: i32) {
    admin
        .request(proto::InviteChannelMember {
            channel_id,
            user_id,
            role,
        })
        .await
        .unwrap_or_else(|error| panic!("inviting user {user_id} to {channel_id}: {error}"));
}

async fn set_role(admin: &Client, channel_id: u64, user_id: u64, role: i32) {
    admin
        .request(proto::SetChannelMemberRole {
            channel_id,
            user_id,
            role,
        })
        .await
        .unwrap_or_else(|error| panic!("setting user {user_id}'s role in {channel_id}: {error}"));
}

/// The (role, accepted) of each row `user_id` holds in a members listing, sorted.
fn rows_of(members: &[proto::ChannelMember], user_id: u64) -> Vec<(i32, bool)> {
    let mut rows: Vec<_> = members
        .iter()
        .filter(|member| member.user_id == user_id)
        .map(|member| (member.role, member.accepted))
        .collect();
    rows.sort_unstable();
    rows
}

fn message(channel_id: u64, body: &str, nonce: &str) -> proto::SendChannelMessage {
    proto::SendChannelMessage {
        channel_id,
        body: body.into(),
        nonce: nonce.into(),
        ..Default::default()
    }
}

async fn send(client: &Client, request: proto::SendChannelMessage) -> proto::ChannelMessage {
    client
        .request(request)
        .await
        .unwrap_or_else(|error| panic!("sending a message: {error}"))
        .message
        .expect("ChannelMessageResponse carries the message")
}

async fn messages_of(client: &Client, channel_id: u64) -> Vec<proto::ChannelMessage> {
    client
        .request(proto::GetChannelMessages {
            channel_id,
            before_message_id: 0,
            limit: 0,
        })
        .await
        .expect("GetChannelMessages")
        .messages
}

async fn create_room(client: &Client) -> u64 {
    client
        .request(proto::CreateRoom {})
        .await
        .expect("a room is created")
        .room
        .expect("CreateRoomResponse carries the room")
        .id
}

fn call(room_id: u64, callee_user_id: u64) -> proto::Call {
    proto::Call {
        room_id,
        callee_user_id,
    }
}

/// The participants' user ids, sorted.
fn participant_ids(room: &proto::Room) -> Vec<u64> {
    sorted(room.participants.iter().map(|p| p.user_id).collect())
}

// ---------------------------------------------------------------------------------------
// Bans
// ---------------------------------------------------------------------------------------

/// zed (public) > crates (public). Mallory, a member of zed and of crates, is banned on
/// zed: she may not remove her banned row, nor her row on crates (the ban on zed covers
/// it); the ban holds: she is still listed banned, and is refused the notes and even
/// the call of public zed, which any stranger may join. Nina, not banned, may leave.
async fn a_banned_member_cannot_lift_their_own_ban(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let mallory = server.client("mallory").await;
    let nina = server.client("nina").await;
    let mallory_id = mallory.user_id();
    let nina_id = nina.user_id();
    let zed = create(&alice, "zed", 0, PUBLIC).await.id;
    let crates = create(&alice, "crates", zed, PUBLIC).await.id;
    add_member(&alice, zed, &mallory, ChannelRole::Member).await;
    add_member(&alice, crates, &mallory, ChannelRole::Member).await;
    add_member(&alice, zed, &nina, ChannelRole::Member).await;
    set_role(&alice, zed, mallory_id, BANNED).await;

    // Leaving is no way out of a ban: not the banned row, not a row under it.
    let what = "banned mallory removes her banned row";
    refused(&mallory, removal(zed, mallory_id), Forbidden, what).await;
    let what = "mallory, banned on zed, removes her row on crates";
    refused(&mallory, removal(crates, mallory_id), Forbidden, what).await;

    // Both rows are still there, the ban among them.
    let listed = members(&alice, zed).await;
    assert_eq!(
        rows_of(&listed, mallory_id),
        vec![(BANNED, true)],
        "{listed:?}"
    );
    let listed = members(&alice, crates).await;
    assert_eq!(
        rows_of(&listed, mallory_id),
        vec![(MEMBER, true), (BANNED, true)],
        "{listed:?}"
    );

    // Still banned: refused the notes, and the public calls a stranger may join.
    let notes = proto::JoinChannelNotes { channel_id: zed };
    refused(&mallory, notes, Forbidden, "banned mallory joins the notes").await;
    refused(&mallory, join(zed), Forbidden, "banned mallory joins zed").await;
    refused(
        &mallory,
        join(crates),
        Forbidden,
        "banned mallory joins crates",
    )
    .await;
    assert!(subscribe(&mallory).await.channels.is_empty());

    // A member who is not banned may leave.
    nina.request(removal(zed, nina_id))
        .await
        .expect("nina leaves zed");
    assert!(rows_of(&members(&alice, zed).await, nina_id).is_empty());
    server.stop().await;
}
db_test!(a_banned_member_cannot_lift_their_own_ban);

/// Bob (subscribed) is invited to public zed, then banned before he answers: the ban
/// holds at once. His invitation disappears (a delta, and his whole view), he may
/// neither accept nor decline it, and may not join zed's call as a guest.
async fn banning_a_pending_invitee_holds_at_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let bob_id = bob.user_id();
    let zed = create(&alice, "zed", 0, PUBLIC).await.id;
    let state = subscribe(&bob).await;
    assert!(state.invitations.is_empty(), "{state:?}");

    invite(&alice, zed, bob_id, MEMBER).await;
    let update = next_update(&bob).await;
    assert_eq!(ids(&update.invitations), vec![zed], "{update:?}");
    let state = view_of(&server, "bob").await;
    assert_eq!(ids(&state.invitations), vec![zed], "{state:?}");

    // The ban, over the pending invitation.
    set_role(&alice, zed, bob_id, BANNED).await;
    let update = next_update(&bob).await;
    assert_eq!(update.removed_invitations, vec![zed], "{update:?}");
    assert!(update.channels.is_empty(), "{update:?}");
    let listed = members(&alice, zed).await;
    let roles: Vec<i32> = rows_of(&listed, bob_id).iter().map(|row| row.0).collect();
    assert_eq!(roles, vec![BANNED], "{listed:?}");

    // The invitation can no longer be answered either way.
    refused(
        &bob,
        answer(zed, true),
        Forbidden,
        "the banned invitee accepts",
    )
    .await;
    refused(
        &bob,
        answer(zed, false),
        Forbidden,
        "the banned invitee declines",
    )
    .await;
    // Nor is public zed open to him as a guest.
    refused(&bob, join(zed), Forbidden, "the banned invitee joins zed").await;

    // His view: no invitation, no channel; the ban is still in place.
    let state = view_of(&server, "bob").await;
    assert!(state.invitations.is_empty(), "{state:?}");
    assert!(state.channels.is_empty(), "{state:?}");
    let listed = members(&alice, zed).await;
    let roles: Vec<i32> = rows_of(&listed, bob_id).iter().map(|row| row.0).collect();
    assert_eq!(roles, vec![BANNED], "{listed:?}");
    server.stop().await;
}
db_test!(banning_a_pending_invitee_holds_at_once);

// ---------------------------------------------------------------------------------------
// Losing access closes the notes
// ---------------------------------------------------------------------------------------

/// Alice and Bob (a member) edit the notes over RPC. Alice bans Bob: his session ends
/// with ChannelNotesClosed, Alice sees him leave the collaborators, and his next update
/// is refused and stored nowhere.
async fn a_ban_closes_the_rpc_notes(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let bob_id = bob.user_id();
    let zed = channel_with(
        &alice,
        "notes-ban",
        ChannelVisibility::Members,
        &[(&bob, ChannelRole::Member)],
    )
    .await;
    let alice_doc = NotesDoc::from_update(&join_notes(&alice, zed).await.state);
    let joined = join_notes(&bob, zed).await;
    assert!(joined.can_edit, "a member edits");
    let bob_doc = NotesDoc::from_update(&joined.state);
    collaborators_until(&alice, zed, &[&alice, &bob]).await;

    // Bob edits as a member.
    update_notes(&bob, zed, bob_doc.push("by bob")).await;
    let got = next_notes_update(&alice, zed).await;
    assert!(alice_doc.apply_news(&got));
    assert_eq!(alice_doc.text(), "by bob");

    set_role(&alice, zed, bob_id, BANNED).await;
    let closed = within(
        "ChannelNotesClosed at the banned member",
        bob.recv::<proto::ChannelNotesClosed>(),
    )
    .await
    .expect("the connection is open")
    .payload;
    assert_eq!(closed.channel_id, zed, "{closed:?}");
    collaborators_until(&alice, zed, &[&alice]).await;

    let late = proto::UpdateChannelNotes {
        channel_id: zed,
        update: bob_doc.push(" after the ban").into(),
    };
    refused(&bob, late, Forbidden, "the banned member's update").await;
    let fresh = server.client("alice").await;
    let state = join_notes(&fresh, zed).await.state;
    assert_eq!(text_of_update(&state), "by bob");
    server.stop().await;
}
db_test!(a_ban_closes_the_rpc_notes);

/// Bob and Carol (members) have y-websocket sockets on the notes. Alice removes Bob:
/// his socket is closed with 1008 and he may not reconnect; Carol's socket lives on.
async fn a_removal_closes_the_members_socket(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let carol = server.client("carol").await;
    let bob_id = bob.user_id();
    let zed = channel_with(
        &alice,
        "notes-removal",
        ChannelVisibility::Members,
        &[(&bob, ChannelRole::Member), (&carol, ChannelRole::Member)],
    )
    .await;
    let name = notes_name(zed);
    let alice_doc = NotesDoc::from_update(&join_notes(&alice, zed).await.state);
    let mut bob_ws = YjsClient::join(&server, &name, "bob").await;
    let mut carol_ws = YjsClient::join(&server, &name, "carol").await;
    update_notes(&alice, zed, alice_doc.push("hello")).await;
    bob_ws.wait_text("hello").await;
    carol_ws.wait_text("hello").await;

    alice
        .request(removal(zed, bob_id))
        .await
        .expect("bob is removed");
    let close = bob_ws.closed().await;
    assert_eq!(
        close.as_ref().map(|(code, _)| *code),
        Some(POLICY),
        "{close:?}"
    );
    let token = server.token("bob").await;
    let status = refused_status(&server, &name, Some(token.as_str())).await;
    assert_eq!(status, 403, "the removed member reconnects");

    // Carol's socket was not closed: the next edit reaches it.
    update_notes(&alice, zed, alice_doc.push("!")).await;
    carol_ws.wait_text("hello!").await;
    carol_ws.close().await;
    server.stop().await;
}
db_test!(a_removal_closes_the_members_socket);

/// Bob, a member, edits the notes over y-websocket; Eve, a guest, reads them. Bob is
/// made a guest: his read-write socket is closed with 1008 (Eve's read-only one is not),
/// and a new socket of his is read-only: his edit is answered with permission-denied
/// and stored nowhere.
async fn a_demotion_closes_a_read_write_socket(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let eve = server.client("eve").await;
    let bob_id = bob.user_id();
    let zed = channel_with(
        &alice,
        "notes-demotion",
        ChannelVisibility::Members,
        &[(&bob, ChannelRole::Member), (&eve, ChannelRole::Guest)],
    )
    .await;
    let name = notes_name(zed);
    let alice_doc = NotesDoc::from_update(&join_notes(&alice, zed).await.state);
    let mut bob_ws = YjsClient::join(&server, &name, "bob").await;
    let mut eve_ws = YjsClient::join(&server, &name, "eve").await;

    // Bob's socket writes: his edit reaches Alice and Eve.
    bob_ws.push("member").await;
    let got = next_notes_update(&alice, zed).await;
    assert!(alice_doc.apply_news(&got));
    assert_eq!(alice_doc.text(), "member");
    eve_ws.wait_text("member").await;

    set_role(&alice, zed, bob_id, GUEST).await;
    let close = bob_ws.closed().await;
    assert_eq!(
        close.as_ref().map(|(code, _)| *code),
        Some(POLICY),
        "{close:?}"
    );

    // Eve was read-only already: her socket lives on.
    update_notes(&alice, zed, alice_doc.push("+")).await;
    eve_ws.wait_text("member+").await;

    // Bob, now a guest of zed, reconnects: he reads, and may not write.
    let mut bob_ws = YjsClient::join(&server, &name, "bob").await;
    assert_eq!(bob_ws.text(), "member+");
    let denied_before = bob_ws.denied.len();
    bob_ws.push(" as a guest").await;
    let answer = bob_ws
        .frame_where("the permission-denied answer", |f| {
            f.bytes.starts_with(&[2, 0])
        })
        .await;
    assert!(
        matches!(&answer.messages[..], [Message::Auth(Some(_))]),
        "{:?}",
        answer.messages
    );
    assert_eq!(bob_ws.denied.len(), denied_before + 1);
    let fresh = server.client("alice").await;
    let state = join_notes(&fresh, zed).await.state;
    assert_eq!(text_of_update(&state), "member+");

    bob_ws.close().await;
    eve_ws.close().await;
    server.stop().await;
}
db_test!(a_demotion_closes_a_read_write_socket);

/// `channel/0<id>/notes` (and other spellings of the same number) are not the
/// channel's notes: refused with 403 even for its admin, while `channel/<id>/notes`
/// opens and writes.
async fn only_the_canonical_notes_name_opens(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let zed = create(&alice, "zed", 0, MEMBERS).await.id;
    let token = server.token("alice").await;

    for name in [
        format!("channel/0{zed}/notes"),
        format!("channel/00{zed}/notes"),
        format!("channel/+{zed}/notes"),
    ] {
        let status = refused_status(&server, &name, Some(token.as_str())).await;
        assert_eq!(status, 403, "{name}");
    }

    let alice_doc = NotesDoc::from_update(&join_notes(&alice, zed).await.state);
    let mut ws = YjsClient::join_with(&server, &notes_name(zed), &token).await;
    ws.push("canonical").await;
    let got = next_notes_update(&alice, zed).await;
    assert!(alice_doc.apply_news(&got));
    assert_eq!(alice_doc.text(), "canonical");
    ws.close().await;
    server.stop().await;
}
db_test!(only_the_canonical_notes_name_opens);

// ---------------------------------------------------------------------------------------
// Channel calls
// ---------------------------------------------------------------------------------------

/// Alice, in zed's call, may not call Bob (a contact, not a member) into it: a channel's
/// call is joined with JoinChannel. From an ordinary room she may call him, and that is
/// the first call that rings him.
async fn a_channel_call_is_not_joined_by_being_called(backend: Backend) {
    let server = TestServer::start(backend).await;
    befriend(&server, "alice", "bob").await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let alice_id = alice.user_id();
    let bob_id = bob.user_id();
    let zed = create(&alice, "zed", 0, MEMBERS).await.id;
    let joined = alice.request(join(zed)).await.expect("alice joins zed");
    let channel_room = joined.room.expect("JoinRoomResponse carries the room").id;

    let what = "calling a contact into a channel's call";
    refused(&alice, call(channel_room, bob_id), Forbidden, what).await;

    // From an ordinary room, the same call rings; it is Bob's first.
    alice
        .request(proto::LeaveRoom {})
        .await
        .expect("alice leaves");
    let room_id = create_room(&alice).await;
    alice
        .request(call(room_id, bob_id))
        .await
        .expect("a contact is called");
    let incoming = incoming_call(&bob).await;
    assert_eq!(incoming.room_id, room_id, "bob's first call: {incoming:?}");
    assert_eq!(incoming.calling_user_id, alice_id);
    server.stop().await;
}
db_test!(a_channel_call_is_not_joined_by_being_called);

/// Alice, Bob and Carol (members) are in zed's call. Alice bans Bob: he leaves the
/// room; Alice (and Carol) see the room without him, and Bob is told with a room that
/// no longer lists him.
async fn a_ban_takes_the_member_out_of_the_call(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let carol = server.client("carol").await;
    let (alice_id, bob_id, carol_id) = (alice.user_id(), bob.user_id(), carol.user_id());
    let zed = channel_with(
        &alice,
        "call-ban",
        ChannelVisibility::Members,
        &[(&bob, ChannelRole::Member), (&carol, ChannelRole::Member)],
    )
    .await;
    let joined = alice.request(join(zed)).await.expect("alice joins");
    let room_id = joined.room.expect("JoinRoomResponse carries the room").id;
    for client in [&bob, &carol] {
        let joined = client.request(join(zed)).await.expect("a member joins");
        let room = joined.room.expect("JoinRoomResponse carries the room");
        assert_eq!(room.id, room_id);
    }
    let everyone = sorted(vec![alice_id, bob_id, carol_id]);
    room_until(&alice, "everyone in zed's call", |room| {
        room.id == room_id && participant_ids(room) == everyone
    })
    .await;

    set_role(&alice, zed, bob_id, BANNED).await;
    let others = sorted(vec![alice_id, carol_id]);
    for client in [&alice, &carol] {
        room_until(client, "the call without bob", |room| {
            room.id == room_id && participant_ids(room) == others
        })
        .await;
    }
    let room = room_until(&bob, "bob told he left the call", |room| {
        room.id == room_id && participant(room, bob_id).is_none()
    })
    .await;
    assert!(participant(&room, alice_id).is_some(), "{room:?}");
    refused(&bob, join(zed), Forbidden, "banned bob joins again").await;
    server.stop().await;
}
db_test!(a_ban_takes_the_member_out_of_the_call);

/// zed (public) > {lobby (public), crates (members)}. Bob is a member of zed, Carol of
/// crates; Gina joined public lobby's call, so she is a guest of lobby only. Guests do
/// not share the tree for calls: Gina may not call Bob, Carol may not call Gina; Carol
/// may call Bob (and that is his first call).
async fn guests_are_not_co_members(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let carol = server.client("carol").await;
    let gina = server.client("gina").await;
    let (bob_id, carol_id, gina_id) = (bob.user_id(), carol.user_id(), gina.user_id());
    let zed = create(&alice, "zed", 0, PUBLIC).await.id;
    let lobby = create(&alice, "lobby", zed, PUBLIC).await.id;
    let crates = create(&alice, "crates", zed, MEMBERS).await.id;
    add_member(&alice, zed, &bob, ChannelRole::Member).await;
    add_member(&alice, crates, &carol, ChannelRole::Member).await;

    // Gina becomes a guest of lobby by joining its call, then leaves the call.
    let joined = gina.request(join(lobby)).await.expect("gina joins lobby");
    let room = joined.room.expect("JoinRoomResponse carries the room");
    assert!(participant(&room, gina_id).is_some(), "{room:?}");
    let listed = members(&alice, lobby).await;
    assert_eq!(rows_of(&listed, gina_id), vec![(GUEST, true)], "{listed:?}");
    gina.request(proto::LeaveRoom {})
        .await
        .expect("gina leaves the call");

    // The guest may not call a member of the tree who is not her contact...
    let gina_room = create_room(&gina).await;
    let what = "a guest calls a member";
    refused(&gina, call(gina_room, bob_id), Forbidden, what).await;
    // ...nor be called by one.
    let carol_room = create_room(&carol).await;
    let what = "a member calls a guest";
    refused(&carol, call(carol_room, gina_id), Forbidden, what).await;

    // Two members of the tree may call each other; that is Bob's first call.
    carol
        .request(call(carol_room, bob_id))
        .await
        .expect("a co-member is called");
    let incoming = incoming_call(&bob).await;
    assert_eq!(
        incoming.room_id, carol_room,
        "bob's first call: {incoming:?}"
    );
    assert_eq!(incoming.calling_user_id, carol_id);
    server.stop().await;
}
db_test!(guests_are_not_co_members);

// ---------------------------------------------------------------------------------------
// Chat
// ---------------------------------------------------------------------------------------

/// A nonce belongs to one channel: Alice's nonce from channel A is a conflict in channel
/// B (nothing is stored there). With a limit of 2 messages a minute, Bob's re-sent nonce
/// still returns his original message past the limit, while a new message is
/// RateLimited; nothing is stored twice.
async fn chat_nonces_are_per_channel_and_resends_are_not_rate_limited(backend: Backend) {
    let server = TestServer::start_with(backend, |config| config.chat_rate_limit = 2).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let a = channel_with(
        &alice,
        "chat-a",
        ChannelVisibility::Members,
        &[(&bob, ChannelRole::Member)],
    )
    .await;
    let b = create(&alice, "chat-b", 0, MEMBERS).await.id;

    let original = send(&alice, message(a, "in a", "shared-nonce")).await;
    let what = "a nonce of channel A re-sent to channel B";
    refused(&alice, message(b, "in b", "shared-nonce"), Conflict, what).await;
    assert!(messages_of(&alice, b).await.is_empty(), "nothing in B");
    // In A it is still the original.
    let again = send(&alice, message(a, "in a", "shared-nonce")).await;
    assert_eq!(again.id, original.id);
    assert_eq!(again.channel_id, a);

    // Bob's bucket: two messages.
    let first_request = message(a, "bob 1", "bob-first");
    let first = send(&bob, first_request.clone()).await;
    let second = post(&bob, a, "bob 2").await;
    // The first one re-sent past the limit: the original, not RateLimited.
    let resent = bob
        .request(first_request.clone())
        .await
        .unwrap_or_else(|error| panic!("a re-sent nonce past the limit: {error}"))
        .message
        .expect("ChannelMessageResponse carries the message");
    assert_eq!(resent.id, first.id);
    assert_eq!(resent.body, "bob 1");
    // A new message is over the limit.
    let what = "a third message within the minute";
    refused(&bob, message(a, "bob 3", &nonce()), RateLimited, what).await;
    // And the re-send still answers after a refusal.
    let resent = send(&bob, first_request).await;
    assert_eq!(resent.id, first.id);

    let stored: Vec<u64> = messages_of(&bob, a).await.iter().map(|m| m.id).collect();
    assert_eq!(stored, vec![original.id, first.id, second.id]);
    server.stop().await;
}
db_test!(chat_nonces_are_per_channel_and_resends_are_not_rate_limited);

/// A comment (anchored to code) that is deleted keeps neither its body nor its anchor:
/// not in the push, not in the history, not in the database.
async fn a_deleted_comment_has_no_body_and_no_anchor(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let zed = channel_with(
        &alice,
        "chat-comment",
        ChannelVisibility::Members,
        &[(&bob, ChannelRole::Member)],
    )
    .await;
    subscribe(&bob).await;
    let anchor = proto::CodeAnchor {
        path: "src/secret.rs".into(),
        line: 42,
        snippet: "let password = \"hunter2\";".into(),
    };
    let sent = send(
        &alice,
        proto::SendChannelMessage {
            channel_id: zed,
            body: "this leaks the password".into(),
            nonce: nonce(),
            kind: proto::ChannelMessageKind::Comment as i32,
            anchor: Some(anchor.clone()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(sent.anchor.as_ref(), Some(&anchor));
    assert_eq!(next_sent(&bob).await.id, sent.id);
    let stored = stored_message(&bob, zed, sent.id).await;
    assert_eq!(stored.anchor.as_ref(), Some(&anchor), "{stored:?}");

    alice
        .request(proto::DeleteChannelMessage {
            channel_id: zed,
            message_id: sent.id,
        })
        .await
        .expect("the author deletes");
    let pushed = message_update_until(&bob, "the deletion", |m| m.id == sent.id).await;
    assert_eq!(pushed.body, "");
    assert_eq!(pushed.anchor, None, "{pushed:?}");
    assert!(pushed.deleted_at != 0, "{pushed:?}");
    for reader in [&alice, &bob] {
        let stored = stored_message(reader, zed, sent.id).await;
        assert_eq!(stored.body, "", "{stored:?}");
        assert_eq!(stored.anchor, None, "{stored:?}");
        assert!(stored.deleted_at != 0, "{stored:?}");
        assert_eq!(stored.kind, proto::ChannelMessageKind::Comment as i32);
    }

    // The words are gone from the database too.
    let rows = channel_message::Entity::find()
        .all(&server.state.db.conn)
        .await
        .expect("read channel_messages");
    let row = rows
        .iter()
        .find(|row| row.id.to_proto() == sent.id)
        .expect("the deleted message's row stays");
    assert_eq!(row.body, "", "{row:?}");
    assert_eq!(row.anchor_snippet, None, "{row:?}");
    server.stop().await;
}
db_test!(a_deleted_comment_has_no_body_and_no_anchor);

// ---------------------------------------------------------------------------------------
// Moving to the top
// ---------------------------------------------------------------------------------------

/// Alice is an admin of zed only (no row on its sub-channels). She moves crates (with
/// its sub-channel) to the top: she keeps it, as its admin, with a row of her own on
/// the new root. Bob, an admin of zed with a guest row on docs, moves docs to the top:
/// his row there becomes an accepted admin row.
async fn a_channel_moved_to_the_top_keeps_its_mover_as_admin(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let (alice_id, bob_id) = (alice.user_id(), bob.user_id());
    let zed = create(&alice, "zed", 0, MEMBERS).await.id;
    let crates = create(&alice, "crates", zed, MEMBERS).await.id;
    let deep = create(&alice, "deep", crates, MEMBERS).await.id;
    let docs = create(&alice, "docs", zed, MEMBERS).await.id;
    add_member(&alice, zed, &bob, ChannelRole::Admin).await;
    add_member(&alice, docs, &bob, ChannelRole::Guest).await;
    let listed = members(&alice, crates).await;
    assert_eq!(
        rows_of(&listed, alice_id),
        vec![(ADMIN, true)],
        "{listed:?}"
    );

    let state = subscribe(&alice).await;
    assert_eq!(find(&state.channels, crates).parent_path, vec![zed]);
    alice
        .request(proto::MoveChannel {
            channel_id: crates,
            to: 0,
        })
        .await
        .expect("crates moves to the top");
    // Alice's own connection hears of the move, and loses nothing.
    let update = next_update(&alice).await;
    assert!(update.removed_channels.is_empty(), "{update:?}");
    assert!(find(&update.channels, crates).parent_path.is_empty());

    let view = view_of(&server, "alice").await;
    let moved = find(&view.channels, crates);
    assert!(moved.parent_path.is_empty(), "{moved:?}");
    assert_eq!(role_of(&view, crates), Some(ADMIN), "{view:?}");
    assert_eq!(find(&view.channels, deep).parent_path, vec![crates]);
    assert_eq!(role_of(&view, deep), Some(ADMIN), "{view:?}");
    assert_eq!(role_of(&view, zed), Some(ADMIN), "{view:?}");
    let listed = members(&alice, crates).await;
    assert_eq!(
        rows_of(&listed, alice_id),
        vec![(ADMIN, true)],
        "{listed:?}"
    );
    // She administers the new root.
    alice
        .request(proto::RenameChannel {
            channel_id: crates,
            name: "core".into(),
        })
        .await
        .expect("the mover renames the new root");

    // Bob's guest row on docs becomes an admin row.
    bob.request(proto::MoveChannel {
        channel_id: docs,
        to: 0,
    })
    .await
    .expect("docs moves to the top");
    let view = view_of(&server, "bob").await;
    assert!(find(&view.channels, docs).parent_path.is_empty());
    assert_eq!(role_of(&view, docs), Some(ADMIN), "{view:?}");
    let listed = members(&bob, docs).await;
    assert_eq!(rows_of(&listed, bob_id), vec![(ADMIN, true)], "{listed:?}");
    server.stop().await;
}
db_test!(a_channel_moved_to_the_top_keeps_its_mover_as_admin);
