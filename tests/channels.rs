//! Channels, end to end: Alice builds a tree of channels, renames, moves and deletes it
//! (and is refused cycles and public channels under members-only ones); every role rule
//! (members, admins of a sub-tree, guests who see only public channels, banned users,
//! strangers, unknown channels); invitations with their notifications, accepted and
//! declined; UpdateChannels deltas that reach exactly those whose view changed, and the
//! last admin who cannot step down; joining a channel's call room; calls between channel
//! co-members who are not contacts; channels from the seed file.

mod common;
#[path = "common/livekit.rs"]
mod fake_livekit;

use std::time::Duration;

use collab::{
    client::Client,
    rpc::proto::{
        self,
        ErrorCode::{Conflict, Forbidden, InvalidRequest, NotFound},
    },
    seed::{SeedFile, SeedUser, seed},
};
use common::{
    Backend, TestServer, WAIT,
    channels::{
        answer, find, ids, join, members, next_update, refused, removal, role_of, subscribe,
        view_of,
    },
    rooms::{incoming_call, participant, room_until, sorted},
    within,
};
use fake_livekit::{FakeLiveKit, KEY, SECRET};
use yrs::{Doc, ReadTxn, StateVector, Text, Transact};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

const MEMBERS: i32 = proto::ChannelVisibility::Members as i32;
const PUBLIC: i32 = proto::ChannelVisibility::Public as i32;
const NO_ROLE: i32 = proto::ChannelRole::None as i32;
const ADMIN: i32 = proto::ChannelRole::Admin as i32;
const MEMBER: i32 = proto::ChannelRole::Member as i32;
const GUEST: i32 = proto::ChannelRole::Guest as i32;
const BANNED: i32 = proto::ChannelRole::Banned as i32;
/// An id no channel and no user has.
const UNKNOWN: u64 = 999_999_999;

fn new_channel(name: &str, parent_id: u64, visibility: i32) -> proto::CreateChannel {
    proto::CreateChannel {
        name: name.into(),
        parent_id,
        visibility,
    }
}

fn rename(channel_id: u64, name: &str) -> proto::RenameChannel {
    proto::RenameChannel {
        channel_id,
        name: name.into(),
    }
}

fn move_to(channel_id: u64, to: u64) -> proto::MoveChannel {
    proto::MoveChannel { channel_id, to }
}

fn visibility(channel_id: u64, visibility: i32) -> proto::SetChannelVisibility {
    proto::SetChannelVisibility {
        channel_id,
        visibility,
    }
}

fn invitation(channel_id: u64, user_id: u64, role: i32) -> proto::InviteChannelMember {
    proto::InviteChannelMember {
        channel_id,
        user_id,
        role,
    }
}

fn role_change(channel_id: u64, user_id: u64, role: i32) -> proto::SetChannelMemberRole {
    proto::SetChannelMemberRole {
        channel_id,
        user_id,
        role,
    }
}

fn chat(channel_id: u64, body: &str, nonce: &str) -> proto::SendChannelMessage {
    proto::SendChannelMessage {
        channel_id,
        body: body.into(),
        nonce: nonce.into(),
        ..Default::default()
    }
}

/// The newest messages of a channel.
fn history(channel_id: u64) -> proto::GetChannelMessages {
    proto::GetChannelMessages {
        channel_id,
        before_message_id: 0,
        limit: 0,
    }
}

fn join_notes(channel_id: u64) -> proto::JoinChannelNotes {
    proto::JoinChannelNotes { channel_id }
}

async fn create(client: &Client, name: &str, parent_id: u64, visibility: i32) -> proto::Channel {
    client
        .request(new_channel(name, parent_id, visibility))
        .await
        .unwrap_or_else(|error| panic!("creating channel {name:?}: {error}"))
        .channel
        .expect("CreateChannelResponse carries the channel")
}

async fn invite(admin: &Client, channel_id: u64, user_id: u64, role: i32) {
    admin
        .request(invitation(channel_id, user_id, role))
        .await
        .unwrap_or_else(|error| panic!("inviting user {user_id} to {channel_id}: {error}"));
}

/// `admin` invites `login` to `channel_id` as `role`, and `login` accepts from a
/// connection of its own. Returns the user id.
async fn add_member(
    server: &TestServer,
    admin: &Client,
    channel_id: u64,
    login: &str,
    role: i32,
) -> u64 {
    let user_id = server.user_id(login).await.to_proto();
    invite(admin, channel_id, user_id, role).await;
    let invitee = server.client(login).await;
    invitee
        .request(answer(channel_id, true))
        .await
        .unwrap_or_else(|error| panic!("{login} accepting {channel_id}: {error}"));
    user_id
}

async fn set_role(admin: &Client, channel_id: u64, user_id: u64, role: i32) {
    admin
        .request(role_change(channel_id, user_id, role))
        .await
        .unwrap_or_else(|error| panic!("setting user {user_id}'s role in {channel_id}: {error}"));
}

fn member(members: &[proto::ChannelMember], user_id: u64) -> Option<&proto::ChannelMember> {
    members.iter().find(|member| member.user_id == user_id)
}

/// Takes UpdateChannels deltas until one removes channels.
async fn removal_update(client: &Client, what: &str) -> proto::UpdateChannels {
    within(what, async {
        loop {
            let update = client
                .recv::<proto::UpdateChannels>()
                .await
                .expect("the connection is open")
                .payload;
            if !update.removed_channels.is_empty() {
                return update;
            }
        }
    })
    .await
}

async fn notification_added(client: &Client) -> proto::Notification {
    client
        .recv_timeout::<proto::AddNotification>(WAIT)
        .await
        .expect("an AddNotification")
        .payload
        .notification
        .expect("AddNotification carries the notification")
}

async fn notification_updated(client: &Client) -> proto::Notification {
    client
        .recv_timeout::<proto::UpdateNotification>(WAIT)
        .await
        .expect("an UpdateNotification")
        .payload
        .notification
        .expect("UpdateNotification carries the notification")
}

/// A v1 update that inserts `chunk` into the text "notes" of a fresh doc.
fn insert_update(chunk: &str) -> Vec<u8> {
    let doc = Doc::new();
    let text = doc.get_or_insert_text("notes");
    let mut txn = doc.transact_mut();
    text.insert(&mut txn, 0, chunk);
    txn.encode_state_as_update_v1(&StateVector::default())
}

// ---------------------------------------------------------------------------------------
// The tree
// ---------------------------------------------------------------------------------------

/// Alice builds zed > {crates > collab > tests, docs} and a root "lab"; renames crates;
/// is refused cycles, no-op moves and public channels under members-only ones; moves
/// collab (with its sub-channel) under docs and then to the top; deletes zed, and with
/// it every sub-channel, their messages and their notes.
async fn channel_tree_operations(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;

    // A public root; names are trimmed; sub-channels list their ancestors, root first.
    let created = create(&alice, "zed", 0, PUBLIC).await;
    assert_ne!(created.id, 0);
    assert_eq!(created.name, "zed");
    assert!(created.parent_path.is_empty(), "{created:?}");
    assert_eq!(created.visibility, PUBLIC);
    let zed = created.id;
    let created = create(&alice, "  crates  ", zed, MEMBERS).await;
    assert_eq!(created.name, "crates");
    assert_eq!(created.parent_path, vec![zed]);
    assert_eq!(created.visibility, MEMBERS);
    let crates = created.id;
    let created = create(&alice, "collab", crates, MEMBERS).await;
    assert_eq!(created.parent_path, vec![zed, crates]);
    let collab = created.id;
    let tests = create(&alice, "tests", collab, MEMBERS).await.id;
    let docs = create(&alice, "docs", zed, PUBLIC).await.id;
    let lab = create(&alice, "lab", 0, MEMBERS).await.id;
    // 64 characters is the limit, counted in characters, not bytes.
    let wide = create(&alice, &"é".repeat(64), 0, MEMBERS).await;
    assert_eq!(wide.name.chars().count(), 64);

    // Empty, blank, too long or with control characters: refused, to create or rename.
    let too_long = "x".repeat(65);
    for name in ["", "   ", "tab\there", "bell\u{7}", too_long.as_str()] {
        let what = format!("the name {name:?}");
        refused(&alice, new_channel(name, 0, MEMBERS), InvalidRequest, &what).await;
        refused(&alice, rename(crates, name), InvalidRequest, &what).await;
    }

    // Bob is a member of collab itself (not of its ancestors): he sees collab and tests.
    add_member(&server, &alice, collab, "bob", MEMBER).await;
    let view = view_of(&server, "alice").await;
    for id in [zed, crates, collab, tests, docs, lab] {
        assert_eq!(role_of(&view, id), Some(ADMIN), "alice's role in {id}");
    }
    let path = find(&view.channels, tests).parent_path.clone();
    assert_eq!(path, vec![zed, crates, collab]);
    assert_eq!(find(&view.channels, docs).parent_path, vec![zed]);
    let view = view_of(&server, "bob").await;
    assert_eq!(ids(&view.channels), sorted(vec![collab, tests]));
    assert_eq!(role_of(&view, collab), Some(MEMBER));

    // Rename (trimmed too).
    alice.request(rename(crates, " core ")).await.unwrap();
    let view = view_of(&server, "alice").await;
    assert_eq!(find(&view.channels, crates).name, "core");

    // A channel cannot go under itself or a descendant; a root is already at the top; a
    // move to the current parent is no move.
    for (channel_id, to, why) in [
        (crates, crates, "crates under itself"),
        (crates, collab, "crates under its sub-channel"),
        (zed, tests, "zed under a descendant"),
        (zed, 0, "zed, a root, to the top"),
        (collab, crates, "collab under its current parent"),
    ] {
        refused(&alice, move_to(channel_id, to), InvalidRequest, why).await;
    }

    // A public channel needs a public parent: created, moved or switched under the
    // members-only crates, it is refused; zed cannot go members-only over public docs.
    let open = new_channel("open", crates, PUBLIC);
    refused(&alice, open, InvalidRequest, "public under crates").await;
    refused(
        &alice,
        move_to(docs, crates),
        InvalidRequest,
        "docs under crates",
    )
    .await;
    let public = visibility(collab, PUBLIC);
    refused(&alice, public, InvalidRequest, "collab public under crates").await;
    let closed = visibility(zed, MEMBERS);
    refused(&alice, closed, InvalidRequest, "zed members-only over docs").await;
    // Within the rules, crates (under public zed) goes public and back.
    alice.request(visibility(crates, PUBLIC)).await.unwrap();
    let view = view_of(&server, "alice").await;
    assert_eq!(find(&view.channels, crates).visibility, PUBLIC);
    alice.request(visibility(crates, MEMBERS)).await.unwrap();
    let view = view_of(&server, "alice").await;
    assert_eq!(find(&view.channels, crates).visibility, MEMBERS);

    // Bob subscribes. collab moves under docs with its sub-channel: Bob hears of both in
    // their new place.
    let bob = server.client("bob").await;
    let state = subscribe(&bob).await;
    assert_eq!(ids(&state.channels), sorted(vec![collab, tests]));
    alice.request(move_to(collab, docs)).await.unwrap();
    let update = next_update(&bob).await;
    assert_eq!(ids(&update.channels), sorted(vec![collab, tests]));
    assert_eq!(find(&update.channels, collab).parent_path, vec![zed, docs]);
    let path = find(&update.channels, tests).parent_path.clone();
    assert_eq!(path, vec![zed, docs, collab]);
    // Then to the top: a root of its own, out of zed. Bob, whose membership is on collab,
    // keeps seeing it (moved, not removed).
    alice.request(move_to(collab, 0)).await.unwrap();
    let update = next_update(&bob).await;
    assert!(update.removed_channels.is_empty(), "{update:?}");
    assert!(find(&update.channels, collab).parent_path.is_empty());
    assert_eq!(find(&update.channels, tests).parent_path, vec![collab]);
    let view = view_of(&server, "bob").await;
    assert_eq!(ids(&view.channels), sorted(vec![collab, tests]));
    assert!(find(&view.channels, collab).parent_path.is_empty());

    // A sub-sub-channel with chat and notes, and chat in docs.
    let deep = create(&alice, "deep", crates, MEMBERS).await.id;
    alice
        .request(chat(deep, "hello deep", "deep-1"))
        .await
        .unwrap();
    alice
        .request(chat(docs, "hello docs", "docs-1"))
        .await
        .unwrap();
    let messages = alice.request(history(deep)).await.unwrap().messages;
    assert!(
        messages.iter().any(|m| m.body == "hello deep"),
        "{messages:?}"
    );
    alice.request(join_notes(deep)).await.unwrap();
    let update = proto::UpdateChannelNotes {
        channel_id: deep,
        update: insert_update("agenda").into(),
    };
    alice.request(update).await.expect("deep's notes written");
    let notes = format!("channel/{deep}/notes");
    let stored = server.state.db.find_document(&notes).await.unwrap();
    assert!(stored.is_some(), "the notes are stored");

    // Deleting zed deletes crates, deep and docs, their messages and notes; lab and
    // collab (no longer under zed) stay.
    let delete = proto::DeleteChannel { channel_id: zed };
    alice.request(delete).await.expect("zed deleted");
    let view = view_of(&server, "alice").await;
    let left = ids(&view.channels);
    for id in [zed, crates, deep, docs] {
        assert!(!left.contains(&id), "{id} is still in {left:?}");
    }
    assert!(left.contains(&lab), "{left:?}");
    let view = view_of(&server, "bob").await;
    assert_eq!(ids(&view.channels), sorted(vec![collab, tests]));
    for channel_id in [zed, crates, deep, docs] {
        refused(&alice, history(channel_id), NotFound, "a deleted chat").await;
    }
    refused(&alice, join_notes(deep), NotFound, "deleted notes").await;
    let listing = proto::GetChannelMembers { channel_id: zed };
    refused(&alice, listing, NotFound, "deleted members").await;
    let stored = server.state.db.find_document(&notes).await.unwrap();
    assert!(stored.is_none(), "deep's notes are deleted with it");
    server.stop().await;
}
db_test!(channel_tree_operations);

// ---------------------------------------------------------------------------------------
// Roles
// ---------------------------------------------------------------------------------------

/// zed (public) > {secret (members), lobby (public) > stage (public), guestroom
/// (members)}. Bob is a member of zed, Carol an admin of lobby, Gina a guest of zed and
/// of guestroom, Sam a member of secret; Mallory is an admin of lobby but banned from
/// zed; Nina is nobody. Only admins manage a channel; guests see public channels and
/// their own; the banned are refused everything; unknown channels are not found.
async fn roles_decide_who_may_do_what(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let zed = create(&alice, "zed", 0, PUBLIC).await.id;
    let secret = create(&alice, "secret", zed, MEMBERS).await.id;
    let lobby = create(&alice, "lobby", zed, PUBLIC).await.id;
    let stage = create(&alice, "stage", lobby, PUBLIC).await.id;
    let guestroom = create(&alice, "guestroom", zed, MEMBERS).await.id;
    add_member(&server, &alice, zed, "bob", MEMBER).await;
    add_member(&server, &alice, lobby, "carol", ADMIN).await;
    add_member(&server, &alice, zed, "gina", GUEST).await;
    add_member(&server, &alice, guestroom, "gina", GUEST).await;
    let sam = add_member(&server, &alice, secret, "sam", MEMBER).await;
    let mallory_id = add_member(&server, &alice, lobby, "mallory", ADMIN).await;
    set_role(&alice, zed, mallory_id, BANNED).await;
    let olga = server.user_id("olga").await.to_proto();
    let bob = server.client("bob").await;
    let carol = server.client("carol").await;
    let gina = server.client("gina").await;
    let mallory = server.client("mallory").await;
    let nina = server.client("nina").await;

    // Who sees what, with which role.
    let everything = sorted(vec![zed, secret, lobby, stage, guestroom]);
    let view = view_of(&server, "bob").await;
    assert_eq!(ids(&view.channels), everything);
    for &id in &everything {
        assert_eq!(role_of(&view, id), Some(MEMBER), "bob's role in {id}");
    }
    let view = view_of(&server, "carol").await;
    assert_eq!(ids(&view.channels), sorted(vec![lobby, stage]));
    assert_eq!(role_of(&view, stage), Some(ADMIN));
    // The guest: the public channels, and guestroom where her own membership is; not
    // the members-only secret.
    let view = view_of(&server, "gina").await;
    let visible = sorted(vec![zed, lobby, stage, guestroom]);
    assert_eq!(ids(&view.channels), visible);
    for &id in &visible {
        assert_eq!(role_of(&view, id), Some(GUEST), "gina's role in {id}");
    }
    // Banned on zed wins over admin of lobby: Mallory sees nothing; nor does Nina.
    assert!(view_of(&server, "mallory").await.channels.is_empty());
    assert!(view_of(&server, "nina").await.channels.is_empty());

    // Every admin request on secret, each one fine for an admin, is forbidden to a
    // member, to an admin of another sub-tree, to a guest, to the banned and to a
    // stranger.
    for (client, who) in [
        (&bob, "bob (member)"),
        (&carol, "carol (admin of lobby)"),
        (&gina, "gina (guest)"),
        (&mallory, "mallory (banned)"),
        (&nina, "nina (stranger)"),
    ] {
        refused(client, rename(secret, "renamed"), Forbidden, who).await;
        refused(client, move_to(secret, lobby), Forbidden, who).await;
        let delete = proto::DeleteChannel { channel_id: secret };
        refused(client, delete, Forbidden, who).await;
        refused(client, visibility(secret, PUBLIC), Forbidden, who).await;
        refused(client, invitation(secret, olga, MEMBER), Forbidden, who).await;
        refused(client, role_change(secret, sam, GUEST), Forbidden, who).await;
        refused(client, removal(secret, sam), Forbidden, who).await;
        let sub = new_channel("sub", secret, MEMBERS);
        refused(client, sub, Forbidden, who).await;
    }
    // The same invitation from Alice, an admin, passes.
    invite(&alice, secret, olga, MEMBER).await;

    // Carol's admin role in lobby covers stage; moving stage under zed needs her to be
    // an admin of zed too.
    carol.request(rename(stage, "main stage")).await.unwrap();
    let backstage = create(&carol, "backstage", lobby, MEMBERS).await.id;
    refused(&carol, move_to(stage, zed), Forbidden, "stage under zed").await;
    // Mallory, banned from zed, may not use her admin role in lobby.
    let what = "banned mallory renames stage";
    refused(&mallory, rename(stage, "mine"), Forbidden, what).await;

    // The guest does not see the new members-only backstage, reads nothing of secret,
    // reads and posts in public lobby, reads guestroom but may not post there, and
    // reads notes without editing them; Bob, a member, edits.
    let view = view_of(&server, "gina").await;
    assert!(!ids(&view.channels).contains(&backstage), "{view:?}");
    refused(&gina, history(secret), Forbidden, "gina reads secret").await;
    refused(&gina, join_notes(secret), Forbidden, "gina's notes").await;
    let listing = proto::GetChannelMembers { channel_id: secret };
    refused(&gina, listing, Forbidden, "gina lists secret").await;
    gina.request(history(guestroom)).await.unwrap();
    gina.request(chat(lobby, "hi all", "gina-1")).await.unwrap();
    let post = chat(guestroom, "hi", "gina-2");
    refused(
        &gina,
        post,
        Forbidden,
        "a guest posts in a members-only channel",
    )
    .await;
    let notes = gina.request(join_notes(lobby)).await.unwrap();
    assert!(!notes.can_edit, "a guest does not edit notes");
    let notes = bob.request(join_notes(secret)).await.unwrap();
    assert!(notes.can_edit, "a member edits notes");
    refused(&nina, history(secret), Forbidden, "nina reads secret").await;

    // The banned are refused everything, public channels included.
    let who = "banned mallory";
    refused(&mallory, join(zed), Forbidden, who).await;
    refused(&mallory, join(lobby), Forbidden, who).await;
    refused(&mallory, join_notes(lobby), Forbidden, who).await;
    refused(&mallory, history(lobby), Forbidden, who).await;
    refused(&mallory, chat(lobby, "hi", "mallory-1"), Forbidden, who).await;
    // Nina, a stranger but not banned, may join public lobby.
    nina.request(join(lobby)).await.expect("a stranger joins");

    // Unknown channels are not found.
    let what = "an unknown channel";
    refused(&alice, rename(UNKNOWN, "x"), NotFound, what).await;
    let delete = proto::DeleteChannel {
        channel_id: UNKNOWN,
    };
    refused(&alice, delete, NotFound, what).await;
    refused(&alice, new_channel("x", UNKNOWN, MEMBERS), NotFound, what).await;
    refused(&bob, join(UNKNOWN), NotFound, what).await;
    refused(&bob, history(UNKNOWN), NotFound, what).await;
    refused(&bob, chat(UNKNOWN, "hi", "bob-1"), NotFound, what).await;
    refused(&bob, join_notes(UNKNOWN), NotFound, what).await;
    server.stop().await;
}
db_test!(roles_decide_who_may_do_what);

// ---------------------------------------------------------------------------------------
// Invitations
// ---------------------------------------------------------------------------------------

/// Alice invites Bob (subscribed): a notification and a pending invitation that gives
/// no role; Bob accepts and gets the channels with his role. Carol (two connections)
/// declines. Invitations of members, with bad roles or to unknown users are refused.
async fn invitations_accepted_and_declined(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let alice_id = alice.user_id();
    let zed = create(&alice, "zed", 0, MEMBERS).await.id;
    let crates = create(&alice, "crates", zed, MEMBERS).await.id;
    let bob = server.client("bob").await;
    let bob_id = bob.user_id();
    let state = subscribe(&bob).await;
    assert!(state.channels.is_empty(), "{state:?}");
    assert!(state.invitations.is_empty(), "{state:?}");

    // The invitation: a notification, and the channel among Bob's invitations.
    invite(&alice, zed, bob_id, MEMBER).await;
    let invited = notification_added(&bob).await;
    assert_eq!(invited.kind, "ChannelInvitation");
    assert_eq!(invited.entity_id, zed);
    assert!(!invited.is_read);
    assert_eq!(invited.response, None);
    let content: serde_json::Value =
        serde_json::from_str(&invited.content).expect("the content is JSON");
    assert_eq!(content["channel_id"].as_u64(), Some(zed), "{content}");
    assert_eq!(content["channel_name"].as_str(), Some("zed"), "{content}");
    assert_eq!(content["inviter_id"].as_u64(), Some(alice_id), "{content}");
    let update = next_update(&bob).await;
    assert_eq!(ids(&update.invitations), vec![zed]);
    assert_eq!(update.invitations[0].name, "zed");
    assert!(update.channels.is_empty(), "{update:?}");

    // Pending: listed as not accepted, no role yet, and not invitable twice.
    let listed = members(&alice, zed).await;
    let pending = member(&listed, bob_id).expect("bob is listed");
    assert_eq!((pending.role, pending.accepted), (MEMBER, false));
    let admin = member(&listed, alice_id).expect("alice is listed");
    assert_eq!((admin.role, admin.accepted), (ADMIN, true));
    refused(&bob, history(zed), Forbidden, "a pending invitee reads").await;
    let again = invitation(zed, bob_id, GUEST);
    refused(&alice, again, Conflict, "inviting bob twice").await;

    // Bob accepts: the notification is answered and read; the invitation turns into
    // the channel and its sub-channel, with his role.
    bob.request(answer(zed, true)).await.expect("bob accepts");
    let answered = notification_updated(&bob).await;
    assert_eq!(answered.id, invited.id);
    assert_eq!(answered.response, Some(true));
    assert!(answered.is_read);
    let update = next_update(&bob).await;
    assert_eq!(update.removed_invitations, vec![zed]);
    assert_eq!(ids(&update.channels), sorted(vec![zed, crates]));
    assert_eq!(role_of(&update, zed), Some(MEMBER));
    assert_eq!(role_of(&update, crates), Some(MEMBER));
    bob.request(history(crates)).await.expect("a member reads");
    let listed = members(&alice, zed).await;
    assert!(member(&listed, bob_id).expect("bob is listed").accepted);
    let inbox = proto::GetNotifications {
        before_id: 0,
        limit: 0,
    };
    let inbox = bob.request(inbox).await.unwrap().notifications;
    let kept = inbox.iter().find(|n| n.id == invited.id);
    assert_eq!(kept.and_then(|n| n.response), Some(true), "{inbox:?}");

    // No second answer; no invitation for a member.
    refused(&bob, answer(zed, true), NotFound, "answering twice").await;
    let again = invitation(zed, bob_id, ADMIN);
    refused(&alice, again, Conflict, "inviting a member").await;

    // Roles to invite with: admin, member or guest; users must exist.
    let carol_sub = server.client("carol").await;
    let carol_plain = server.client("carol").await;
    let carol_id = carol_sub.user_id();
    subscribe(&carol_sub).await;
    for role in [NO_ROLE, BANNED, 42] {
        let bad = invitation(crates, carol_id, role);
        refused(&alice, bad, InvalidRequest, &format!("role {role}")).await;
    }
    let nobody = invitation(crates, UNKNOWN, MEMBER);
    refused(&alice, nobody, NotFound, "an unknown user").await;

    // Carol is invited to crates: both her connections are notified, the subscribed one
    // lists the invitation. She declines from the other.
    invite(&alice, crates, carol_id, GUEST).await;
    for connection in [&carol_sub, &carol_plain] {
        let invited = notification_added(connection).await;
        assert_eq!(invited.kind, "ChannelInvitation");
        assert_eq!(invited.entity_id, crates);
    }
    let update = next_update(&carol_sub).await;
    assert_eq!(ids(&update.invitations), vec![crates]);
    carol_plain.request(answer(crates, false)).await.unwrap();
    let answered = notification_updated(&carol_sub).await;
    assert_eq!(answered.entity_id, crates);
    assert_eq!(answered.response, Some(false));
    let update = next_update(&carol_sub).await;
    assert_eq!(update.removed_invitations, vec![crates]);
    assert!(update.channels.is_empty(), "{update:?}");
    assert!(member(&members(&alice, crates).await, carol_id).is_none());
    assert!(view_of(&server, "carol").await.channels.is_empty());
    // The declined invitation is gone, so Carol can be invited again.
    invite(&alice, crates, carol_id, MEMBER).await;
    server.stop().await;
}
db_test!(invitations_accepted_and_declined);

// ---------------------------------------------------------------------------------------
// Deltas
// ---------------------------------------------------------------------------------------

/// zed (public) > inner (members); Bob, Carol and Mallory are members of zed, Gina a
/// guest; all subscribed. Each change reaches those whose view it changes, and only
/// them: a rename of inner reaches the members but not Gina; a new public channel
/// reaches Gina; Carol removed and Mallory banned lose everything; the last admin cannot
/// step down until there is another.
async fn deltas_reach_exactly_who_sees_them(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let alice_id = alice.user_id();
    let zed = create(&alice, "zed", 0, PUBLIC).await.id;
    let inner = create(&alice, "inner", zed, MEMBERS).await.id;
    let bob_id = add_member(&server, &alice, zed, "bob", MEMBER).await;
    let carol_id = add_member(&server, &alice, zed, "carol", MEMBER).await;
    let mallory_id = add_member(&server, &alice, zed, "mallory", MEMBER).await;
    add_member(&server, &alice, zed, "gina", GUEST).await;
    let bob = server.client("bob").await;
    let carol = server.client("carol").await;
    let mallory = server.client("mallory").await;
    let gina = server.client("gina").await;

    let state = subscribe(&alice).await;
    assert_eq!(ids(&state.channels), sorted(vec![zed, inner]));
    for client in [&bob, &carol, &mallory] {
        let state = subscribe(client).await;
        assert_eq!(ids(&state.channels), sorted(vec![zed, inner]));
        assert_eq!(role_of(&state, inner), Some(MEMBER));
    }
    let state = subscribe(&gina).await;
    assert_eq!(ids(&state.channels), vec![zed]);
    assert_eq!(role_of(&state, zed), Some(GUEST));

    // A rename of members-only inner: the members hear of it, Alice (the actor) too.
    alice.request(rename(inner, "kitchen")).await.unwrap();
    for client in [&alice, &bob] {
        let update = next_update(client).await;
        assert_eq!(ids(&update.channels), vec![inner]);
        assert_eq!(update.channels[0].name, "kitchen");
        assert!(update.removed_channels.is_empty(), "{update:?}");
    }

    // A new public channel: Gina's first delta is this one (not the rename before it).
    let plaza = create(&alice, "plaza", zed, PUBLIC).await.id;
    let update = next_update(&gina).await;
    assert_eq!(ids(&update.channels), vec![plaza], "gina's first delta");
    assert_eq!(ids(&next_update(&bob).await.channels), vec![plaza]);

    // A new members-only channel reaches Bob; Gina's next delta is the later rename of
    // plaza, so she never heard of backroom.
    let backroom = create(&alice, "backroom", zed, MEMBERS).await.id;
    assert_eq!(ids(&next_update(&bob).await.channels), vec![backroom]);
    alice.request(rename(plaza, "square")).await.unwrap();
    for client in [&gina, &bob] {
        let update = next_update(client).await;
        assert_eq!(ids(&update.channels), vec![plaza]);
        assert_eq!(update.channels[0].name, "square");
    }
    let extra = gina.try_recv::<proto::UpdateChannels>();
    assert!(extra.is_none(), "gina got {:?}", extra.map(|e| e.payload));
    let everything = sorted(vec![zed, inner, plaza, backroom]);

    // Carol is removed: she loses every channel, and is refused from then on.
    alice.request(removal(zed, carol_id)).await.unwrap();
    let update = removal_update(&carol, "carol's channels removed").await;
    assert_eq!(sorted(update.removed_channels), everything);
    refused(&carol, history(zed), Forbidden, "removed carol reads").await;
    // Only rows that exist can be removed or changed; NONE is no role to set.
    let twice = removal(zed, carol_id);
    refused(&alice, twice, NotFound, "removing carol twice").await;
    let elsewhere = removal(inner, bob_id);
    refused(&alice, elsewhere, NotFound, "bob's row is on zed").await;
    let gone = role_change(zed, carol_id, MEMBER);
    refused(&alice, gone, NotFound, "the role of a non-member").await;
    let none = role_change(zed, bob_id, NO_ROLE);
    refused(&alice, none, InvalidRequest, "role NONE").await;

    // Mallory is banned: she loses every channel, and cannot even join public plaza.
    set_role(&alice, zed, mallory_id, BANNED).await;
    let update = removal_update(&mallory, "mallory's channels removed").await;
    assert_eq!(sorted(update.removed_channels), everything);
    refused(&mallory, join(plaza), Forbidden, "banned mallory joins").await;
    let listed = members(&alice, zed).await;
    assert_eq!(member(&listed, mallory_id).map(|m| m.role), Some(BANNED));

    // Alice, the last admin, may neither step down nor leave.
    let step_down = role_change(zed, alice_id, MEMBER);
    refused(&alice, step_down, Conflict, "the last admin steps down").await;
    refused(
        &alice,
        removal(zed, alice_id),
        Conflict,
        "the last admin leaves",
    )
    .await;

    // She makes Bob an admin: his next delta is that (none came from Carol's removal or
    // Mallory's ban). Then Alice may leave, and Bob is the last admin.
    set_role(&alice, zed, bob_id, ADMIN).await;
    let update = next_update(&bob).await;
    assert_eq!(role_of(&update, zed), Some(ADMIN), "{update:?}");
    assert_eq!(role_of(&update, inner), Some(ADMIN), "{update:?}");
    assert!(update.removed_channels.is_empty(), "{update:?}");
    alice
        .request(removal(zed, alice_id))
        .await
        .expect("alice leaves");
    let update = removal_update(&alice, "alice's channels removed").await;
    assert_eq!(sorted(update.removed_channels), everything);
    let step_down = role_change(zed, bob_id, GUEST);
    refused(&bob, step_down, Conflict, "the new last admin steps down").await;
    server.stop().await;
}
db_test!(deltas_reach_exactly_who_sees_them);

// ---------------------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------------------

/// zed (public) > private (members), LiveKit configured. Alice and Bob (a member) join
/// zed's call room and may publish; Nina, a stranger, may not join private but joins
/// public zed as a guest who may not publish, and then sees zed. A participant of a
/// room cannot join another channel's room.
async fn joining_a_channel_call(backend: Backend) {
    let fake = FakeLiveKit::start().await;
    let url = fake.url.clone();
    let server = TestServer::start_with(backend, move |config| {
        config.livekit_url = Some(url);
        config.livekit_key = Some(KEY.into());
        config.livekit_secret = Some(SECRET.into());
        config.livekit_token_ttl = Duration::from_secs(3600);
    })
    .await;
    let alice = server.client("alice").await;
    let alice_id = alice.user_id();
    let zed = create(&alice, "zed", 0, PUBLIC).await.id;
    let private = create(&alice, "private", zed, MEMBERS).await.id;
    let bob_id = add_member(&server, &alice, zed, "bob", MEMBER).await;
    let bob = server.client("bob").await;
    let nina = server.client("nina").await;
    let nina_id = nina.user_id();
    assert!(subscribe(&nina).await.channels.is_empty());
    let (admin, member_role, guest) = (
        proto::ParticipantRole::Admin as i32,
        proto::ParticipantRole::Member as i32,
        proto::ParticipantRole::Guest as i32,
    );

    refused(&nina, join(private), Forbidden, "a stranger joins private").await;

    // Alice, the admin, opens zed's call room.
    let joined = alice.request(join(zed)).await.expect("alice joins");
    let info = joined.live_kit_connection_info.expect("LiveKit info");
    assert!(info.can_publish, "an admin publishes");
    let room = joined.room.expect("JoinRoomResponse carries the room");
    let room_id = room.id;
    assert_eq!(room.participants.len(), 1, "{room:?}");
    assert_eq!(participant(&room, alice_id).map(|p| p.role), Some(admin));

    // Bob, a member, joins the same room and may publish; Alice sees him.
    let joined = bob.request(join(zed)).await.expect("bob joins");
    let info = joined.live_kit_connection_info.expect("LiveKit info");
    assert!(info.can_publish, "a member publishes");
    let room = joined.room.expect("JoinRoomResponse carries the room");
    assert_eq!(room.id, room_id, "the channel's room is reused");
    assert_eq!(
        participant(&room, bob_id).map(|p| p.role),
        Some(member_role)
    );
    assert!(participant(&room, alice_id).is_some(), "{room:?}");
    room_until(&alice, "bob in the channel's room", |room| {
        participant(room, bob_id).is_some()
    })
    .await;

    // Nina joins public zed as a guest: no publishing; she now has a guest membership
    // and sees zed (not private).
    let joined = nina.request(join(zed)).await.expect("nina joins");
    let info = joined.live_kit_connection_info.expect("LiveKit info");
    assert!(!info.can_publish, "a guest does not publish");
    let room = joined.room.expect("JoinRoomResponse carries the room");
    assert_eq!(room.id, room_id);
    assert_eq!(participant(&room, nina_id).map(|p| p.role), Some(guest));
    room_until(&alice, "nina in the room as a guest", |room| {
        participant(room, nina_id).map(|p| p.role) == Some(guest)
    })
    .await;
    let update = next_update(&nina).await;
    let seen = ids(&update.channels);
    assert!(seen.contains(&zed), "{update:?}");
    assert!(!seen.contains(&private), "{update:?}");
    assert_eq!(role_of(&update, zed), Some(GUEST));
    let listed = members(&alice, zed).await;
    let row = member(&listed, nina_id).expect("nina is a member now");
    assert_eq!((row.role, row.accepted), (GUEST, true));

    // Bob is in zed's room: joining private's is a conflict until he leaves.
    refused(&bob, join(private), Conflict, "joining a second room").await;
    bob.request(proto::LeaveRoom {}).await.expect("bob leaves");
    let joined = bob.request(join(private)).await.expect("bob joins private");
    let room = joined.room.expect("JoinRoomResponse carries the room");
    assert_ne!(room.id, room_id, "each channel has its own room");
    assert_eq!(
        participant(&room, bob_id).map(|p| p.role),
        Some(member_role)
    );
    server.stop().await;
}
db_test!(joining_a_channel_call);

/// Alice (admin of zed) and Bob (member of zed's sub-channel) are not contacts, yet may
/// call each other: they share a channel tree. Dave (a stranger), Erin (only invited)
/// and Mallory (banned) may not be called.
async fn channel_co_members_may_call(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let alice_id = alice.user_id();
    let zed = create(&alice, "zed", 0, MEMBERS).await.id;
    let crates = create(&alice, "crates", zed, MEMBERS).await.id;
    let bob_id = add_member(&server, &alice, crates, "bob", MEMBER).await;
    let erin_id = server.user_id("erin").await.to_proto();
    invite(&alice, zed, erin_id, MEMBER).await;
    let mallory_id = add_member(&server, &alice, crates, "mallory", MEMBER).await;
    set_role(&alice, zed, mallory_id, BANNED).await;
    let dave_id = server.user_id("dave").await.to_proto();
    let bob = server.client("bob").await;
    // Everyone is online, so a refusal is not for want of a device.
    let _dave = server.client("dave").await;
    let _erin = server.client("erin").await;
    let _mallory = server.client("mallory").await;

    let created = alice.request(proto::CreateRoom {}).await.unwrap();
    let room_id = created
        .room
        .expect("CreateRoomResponse carries the room")
        .id;
    let call = proto::Call {
        room_id,
        callee_user_id: bob_id,
    };
    alice.request(call).await.expect("a co-member is called");
    let incoming = incoming_call(&bob).await;
    assert_eq!(incoming.room_id, room_id);
    assert_eq!(incoming.calling_user_id, alice_id);
    bob.request(proto::JoinRoom { room_id })
        .await
        .expect("bob answers");

    for (callee_user_id, who) in [
        (dave_id, "calling a stranger"),
        (erin_id, "calling a user only invited"),
        (mallory_id, "calling a banned user"),
    ] {
        let call = proto::Call {
            room_id,
            callee_user_id,
        };
        refused(&alice, call, Forbidden, who).await;
    }
    server.stop().await;
}
db_test!(channel_co_members_may_call);

// ---------------------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------------------

fn seed_user(login: &str) -> SeedUser {
    SeedUser {
        login: login.into(),
        name: None,
    }
}

/// A seed file's channels become members-only roots with every seed admin as an
/// accepted admin; a second run creates nothing new.
async fn seeded_channels(backend: Backend) {
    let server = TestServer::start(backend).await;
    let file = SeedFile {
        admins: vec![seed_user("admin"), seed_user("root")],
        channels: vec!["zed".into()],
        ..Default::default()
    };
    seed(&server.state.db, &file).await.expect("the first run");
    seed(&server.state.db, &file).await.expect("the second run");

    let admin = server.client("admin").await;
    let state = subscribe(&admin).await;
    assert_eq!(state.channels.len(), 1, "{state:?}");
    let zed = &state.channels[0];
    assert_eq!(zed.name, "zed");
    assert!(zed.parent_path.is_empty(), "{zed:?}");
    assert_eq!(zed.visibility, MEMBERS);
    assert_eq!(role_of(&state, zed.id), Some(ADMIN));
    let view = view_of(&server, "root").await;
    assert_eq!(ids(&view.channels), vec![zed.id]);
    assert_eq!(role_of(&view, zed.id), Some(ADMIN));
    assert!(view_of(&server, "alice").await.channels.is_empty());

    let listed = members(&admin, zed.id).await;
    let admins = vec![admin.user_id(), server.user_id("root").await.to_proto()];
    let listed_ids = sorted(listed.iter().map(|m| m.user_id).collect());
    assert_eq!(listed_ids, sorted(admins), "one row per seed admin");
    for row in &listed {
        assert_eq!((row.role, row.accepted), (ADMIN, true), "{row:?}");
    }
    server.stop().await;
}
db_test!(seeded_channels);
