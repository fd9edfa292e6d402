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
    rpc::{
        RpcError,
        proto::{self, ErrorCode},
    },
    seed::{SeedFile, SeedUser, seed},
};
use common::{
    Backend, TestServer, WAIT,
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

/// The request was refused with `code`.
#[track_caller]
fn expect_code<T: std::fmt::Debug>(result: Result<T, RpcError>, code: ErrorCode, what: &str) {
    match result {
        Ok(value) => panic!("{what}: expected {}, got {value:?}", code.as_str_name()),
        Err(error) => assert_eq!(error.code, code, "{what}: {error}"),
    }
}

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

async fn subscribe(client: &Client) -> proto::UpdateChannels {
    client
        .request(proto::SubscribeToChannels {})
        .await
        .expect("subscribed to channels")
        .state
        .expect("SubscribeToChannelsResponse carries the state")
}

/// `login`'s whole view, from a connection of its own.
async fn view_of(server: &TestServer, login: &str) -> proto::UpdateChannels {
    let client = server.client(login).await;
    subscribe(&client).await
}

fn ids(channels: &[proto::Channel]) -> Vec<u64> {
    sorted(channels.iter().map(|channel| channel.id).collect())
}

fn find(channels: &[proto::Channel], id: u64) -> &proto::Channel {
    channels
        .iter()
        .find(|channel| channel.id == id)
        .unwrap_or_else(|| panic!("channel {id} is not in {channels:?}"))
}

/// The receiver's role in `channel_id` as `update` states it.
fn role_of(update: &proto::UpdateChannels, channel_id: u64) -> Option<i32> {
    update
        .roles
        .iter()
        .find(|membership| membership.channel_id == channel_id)
        .map(|membership| membership.role)
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
        .request(proto::RespondToChannelInvite {
            channel_id,
            accept: true,
        })
        .await
        .unwrap_or_else(|error| panic!("{login} accepting {channel_id}: {error}"));
    user_id
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

async fn set_visibility(admin: &Client, channel_id: u64, visibility: i32) {
    admin
        .request(proto::SetChannelVisibility {
            channel_id,
            visibility,
        })
        .await
        .unwrap_or_else(|error| panic!("setting {channel_id}'s visibility: {error}"));
}

async fn members(client: &Client, channel_id: u64) -> Vec<proto::ChannelMember> {
    client
        .request(proto::GetChannelMembers { channel_id })
        .await
        .expect("the channel's members")
        .members
}

fn member(members: &[proto::ChannelMember], user_id: u64) -> Option<&proto::ChannelMember> {
    members.iter().find(|member| member.user_id == user_id)
}

/// The next UpdateChannels delta this connection receives.
async fn next_update(client: &Client) -> proto::UpdateChannels {
    client
        .recv_timeout::<proto::UpdateChannels>(WAIT)
        .await
        .expect("an UpdateChannels")
        .payload
}

/// Takes UpdateChannels deltas until one satisfies `check`.
async fn update_until(
    client: &Client,
    what: &str,
    check: impl Fn(&proto::UpdateChannels) -> bool,
) -> proto::UpdateChannels {
    within(what, async {
        loop {
            let update = client
                .recv::<proto::UpdateChannels>()
                .await
                .expect("the connection is open")
                .payload;
            if check(&update) {
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
        let create_it = proto::CreateChannel {
            name: name.into(),
            parent_id: 0,
            visibility: MEMBERS,
        };
        expect_code(
            alice.request(create_it).await,
            ErrorCode::InvalidRequest,
            &format!("creating a channel named {name:?}"),
        );
        let rename = proto::RenameChannel {
            channel_id: crates,
            name: name.into(),
        };
        expect_code(
            alice.request(rename).await,
            ErrorCode::InvalidRequest,
            &format!("renaming crates to {name:?}"),
        );
    }

    // Bob is a member of collab itself (not of its ancestors): he sees collab and tests.
    add_member(&server, &alice, collab, "bob", MEMBER).await;
    let view = view_of(&server, "alice").await;
    for id in [zed, crates, collab, tests, docs, lab] {
        assert_eq!(role_of(&view, id), Some(ADMIN), "alice's role in {id}");
    }
    assert_eq!(find(&view.channels, tests).parent_path, vec![zed, crates, collab]);
    assert_eq!(find(&view.channels, docs).parent_path, vec![zed]);
    let view = view_of(&server, "bob").await;
    assert_eq!(ids(&view.channels), sorted(vec![collab, tests]));
    assert_eq!(role_of(&view, collab), Some(MEMBER));

    // Rename.
    let rename = proto::RenameChannel {
        channel_id: crates,
        name: " core ".into(),
    };
    alice.request(rename).await.expect("crates renamed");
    let view = view_of(&server, "alice").await;
    assert_eq!(find(&view.channels, crates).name, "core");

    // A channel cannot go under itself or a descendant; a root is already at the top; a
    // move to the current parent is no move.
    for (channel_id, to, why) in [
        (crates, crates, "under itself"),
        (crates, collab, "under its sub-channel"),
        (zed, tests, "under a descendant"),
        (zed, 0, "to the top, being a root"),
        (collab, crates, "under its current parent"),
    ] {
        expect_code(
            alice.request(proto::MoveChannel { channel_id, to }).await,
            ErrorCode::InvalidRequest,
            &format!("moving {channel_id} {why}"),
        );
    }

    // A public channel needs a public parent: created, moved or switched under the
    // members-only crates, it is refused; zed cannot go members-only over public docs.
    let open = proto::CreateChannel {
        name: "open".into(),
        parent_id: crates,
        visibility: PUBLIC,
    };
    expect_code(
        alice.request(open).await,
        ErrorCode::InvalidRequest,
        "a public channel created under crates",
    );
    expect_code(
        alice
            .request(proto::MoveChannel {
                channel_id: docs,
                to: crates,
            })
            .await,
        ErrorCode::InvalidRequest,
        "public docs moved under crates",
    );
    expect_code(
        alice
            .request(proto::SetChannelVisibility {
                channel_id: collab,
                visibility: PUBLIC,
            })
            .await,
        ErrorCode::InvalidRequest,
        "collab made public under crates",
    );
    expect_code(
        alice
            .request(proto::SetChannelVisibility {
                channel_id: zed,
                visibility: MEMBERS,
            })
            .await,
        ErrorCode::InvalidRequest,
        "zed made members-only over public docs",
    );
    // Within the rules, crates (under public zed) goes public and back.
    set_visibility(&alice, crates, PUBLIC).await;
    let view = view_of(&server, "alice").await;
    assert_eq!(find(&view.channels, crates).visibility, PUBLIC);
    set_visibility(&alice, crates, MEMBERS).await;
    let view = view_of(&server, "alice").await;
    assert_eq!(find(&view.channels, crates).visibility, MEMBERS);

    // collab moves under docs with its sub-channel; Bob sees both in their new place.
    alice
        .request(proto::MoveChannel {
            channel_id: collab,
            to: docs,
        })
        .await
        .expect("collab moved under docs");
    let view = view_of(&server, "bob").await;
    assert_eq!(find(&view.channels, collab).parent_path, vec![zed, docs]);
    assert_eq!(find(&view.channels, tests).parent_path, vec![zed, docs, collab]);
    // Then to the top: a root of its own, out of zed.
    alice
        .request(proto::MoveChannel {
            channel_id: collab,
            to: 0,
        })
        .await
        .expect("collab made a root");
    let view = view_of(&server, "bob").await;
    assert_eq!(ids(&view.channels), sorted(vec![collab, tests]));
    assert!(find(&view.channels, collab).parent_path.is_empty());
    assert_eq!(find(&view.channels, tests).parent_path, vec![collab]);

    // A sub-sub-channel with chat and notes, and chat in docs.
    let deep = create(&alice, "deep", crates, MEMBERS).await.id;
    alice
        .request(chat(deep, "hello deep", "deep-1"))
        .await
        .expect("a message in deep");
    alice
        .request(chat(docs, "hello docs", "docs-1"))
        .await
        .expect("a message in docs");
    let messages = alice.request(history(deep)).await.unwrap().messages;
    assert!(messages.iter().any(|m| m.body == "hello deep"), "{messages:?}");
    alice
        .request(proto::JoinChannelNotes { channel_id: deep })
        .await
        .expect("deep's notes joined");
    alice
        .request(proto::UpdateChannelNotes {
            channel_id: deep,
            update: insert_update("agenda").into(),
        })
        .await
        .expect("deep's notes written");
    let notes = format!("channel/{deep}/notes");
    assert!(
        server.state.db.find_document(&notes).await.unwrap().is_some(),
        "the notes are stored"
    );

    // Deleting zed deletes crates, deep and docs, their messages and notes; lab and
    // collab (no longer under zed) stay.
    alice
        .request(proto::DeleteChannel { channel_id: zed })
        .await
        .expect("zed deleted");
    let view = view_of(&server, "alice").await;
    let left = ids(&view.channels);
    for id in [zed, crates, deep, docs] {
        assert!(!left.contains(&id), "{id} is still in {left:?}");
    }
    assert!(left.contains(&lab), "{left:?}");
    let view = view_of(&server, "bob").await;
    assert_eq!(ids(&view.channels), sorted(vec![collab, tests]));
    for channel_id in [zed, crates, deep, docs] {
        expect_code(
            alice.request(history(channel_id)).await,
            ErrorCode::NotFound,
            &format!("messages of deleted {channel_id}"),
        );
    }
    expect_code(
        alice
            .request(proto::JoinChannelNotes { channel_id: deep })
            .await,
        ErrorCode::NotFound,
        "notes of deleted deep",
    );
    expect_code(
        alice
            .request(proto::GetChannelMembers { channel_id: zed })
            .await,
        ErrorCode::NotFound,
        "members of deleted zed",
    );
    assert!(
        server.state.db.find_document(&notes).await.unwrap().is_none(),
        "deep's notes are deleted with it"
    );
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
    for id in &everything {
        assert_eq!(role_of(&view, *id), Some(MEMBER), "bob's role in {id}");
    }
    let view = view_of(&server, "carol").await;
    assert_eq!(ids(&view.channels), sorted(vec![lobby, stage]));
    assert_eq!(role_of(&view, stage), Some(ADMIN));
    // The guest: the public channels, and guestroom where her own membership is; not
    // the members-only secret.
    let view = view_of(&server, "gina").await;
    assert_eq!(ids(&view.channels), sorted(vec![zed, lobby, stage, guestroom]));
    for id in [zed, lobby, stage, guestroom] {
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
        let rename = proto::RenameChannel {
            channel_id: secret,
            name: "renamed".into(),
        };
        expect_code(
            client.request(rename).await,
            ErrorCode::Forbidden,
            &format!("{who} renames"),
        );
        let to_lobby = proto::MoveChannel {
            channel_id: secret,
            to: lobby,
        };
        expect_code(
            client.request(to_lobby).await,
            ErrorCode::Forbidden,
            &format!("{who} moves"),
        );
        expect_code(
            client
                .request(proto::DeleteChannel { channel_id: secret })
                .await,
            ErrorCode::Forbidden,
            &format!("{who} deletes"),
        );
        let public = proto::SetChannelVisibility {
            channel_id: secret,
            visibility: PUBLIC,
        };
        expect_code(
            client.request(public).await,
            ErrorCode::Forbidden,
            &format!("{who} sets the visibility"),
        );
        let invitation = proto::InviteChannelMember {
            channel_id: secret,
            user_id: olga,
            role: MEMBER,
        };
        expect_code(
            client.request(invitation).await,
            ErrorCode::Forbidden,
            &format!("{who} invites"),
        );
        let demote = proto::SetChannelMemberRole {
            channel_id: secret,
            user_id: sam,
            role: GUEST,
        };
        expect_code(
            client.request(demote).await,
            ErrorCode::Forbidden,
            &format!("{who} sets a role"),
        );
        let remove = proto::RemoveChannelMember {
            channel_id: secret,
            user_id: sam,
        };
        expect_code(
            client.request(remove).await,
            ErrorCode::Forbidden,
            &format!("{who} removes a member"),
        );
        let sub = proto::CreateChannel {
            name: "sub".into(),
            parent_id: secret,
            visibility: MEMBERS,
        };
        expect_code(
            client.request(sub).await,
            ErrorCode::Forbidden,
            &format!("{who} creates a sub-channel"),
        );
    }
    // The same invitation from Alice, an admin, passes.
    invite(&alice, secret, olga, MEMBER).await;

    // Carol's admin role in lobby covers stage; moving stage under zed needs her to be
    // an admin of zed too.
    let rename = proto::RenameChannel {
        channel_id: stage,
        name: "main stage".into(),
    };
    carol.request(rename).await.expect("carol renames stage");
    let backstage = create(&carol, "backstage", lobby, MEMBERS).await.id;
    let to_zed = proto::MoveChannel {
        channel_id: stage,
        to: zed,
    };
    expect_code(
        carol.request(to_zed).await,
        ErrorCode::Forbidden,
        "carol moves stage under zed",
    );
    // Mallory, banned above, may not use her admin role in lobby.
    let rename = proto::RenameChannel {
        channel_id: stage,
        name: "mallory's".into(),
    };
    expect_code(
        mallory.request(rename).await,
        ErrorCode::Forbidden,
        "banned mallory renames stage",
    );

    // The guest does not see the new members-only backstage, reads nothing of secret,
    // reads and posts in public lobby, reads guestroom but may not post there, and
    // reads notes without editing them; Bob, a member, edits.
    let view = view_of(&server, "gina").await;
    assert!(!ids(&view.channels).contains(&backstage), "{view:?}");
    expect_code(
        gina.request(history(secret)).await,
        ErrorCode::Forbidden,
        "gina reads secret",
    );
    expect_code(
        gina.request(proto::JoinChannelNotes { channel_id: secret })
            .await,
        ErrorCode::Forbidden,
        "gina opens secret's notes",
    );
    expect_code(
        gina.request(proto::GetChannelMembers { channel_id: secret })
            .await,
        ErrorCode::Forbidden,
        "gina lists secret's members",
    );
    gina.request(history(guestroom))
        .await
        .expect("gina reads guestroom");
    gina.request(chat(lobby, "hi all", "gina-1"))
        .await
        .expect("a guest posts in a public channel");
    expect_code(
        gina.request(chat(guestroom, "hi", "gina-2")).await,
        ErrorCode::Forbidden,
        "gina posts in members-only guestroom",
    );
    let notes = gina
        .request(proto::JoinChannelNotes { channel_id: lobby })
        .await
        .expect("gina reads lobby's notes");
    assert!(!notes.can_edit, "a guest does not edit notes");
    let notes = bob
        .request(proto::JoinChannelNotes { channel_id: secret })
        .await
        .expect("bob opens secret's notes");
    assert!(notes.can_edit, "a member edits notes");
    expect_code(
        nina.request(history(secret)).await,
        ErrorCode::Forbidden,
        "nina reads secret",
    );

    // The banned are refused everything, public channels included.
    for channel_id in [zed, lobby] {
        expect_code(
            mallory.request(proto::JoinChannel { channel_id }).await,
            ErrorCode::Forbidden,
            &format!("banned mallory joins {channel_id}"),
        );
    }
    expect_code(
        mallory
            .request(proto::JoinChannelNotes { channel_id: lobby })
            .await,
        ErrorCode::Forbidden,
        "banned mallory opens lobby's notes",
    );
    expect_code(
        mallory.request(history(lobby)).await,
        ErrorCode::Forbidden,
        "banned mallory reads lobby",
    );
    expect_code(
        mallory.request(chat(lobby, "hi", "mallory-1")).await,
        ErrorCode::Forbidden,
        "banned mallory posts in lobby",
    );
    // Nina, a stranger but not banned, may join public lobby.
    nina.request(proto::JoinChannel { channel_id: lobby })
        .await
        .expect("a stranger joins a public channel");

    // Unknown channels are not found.
    expect_code(
        alice
            .request(proto::RenameChannel {
                channel_id: UNKNOWN,
                name: "x".into(),
            })
            .await,
        ErrorCode::NotFound,
        "renaming an unknown channel",
    );
    expect_code(
        alice
            .request(proto::DeleteChannel {
                channel_id: UNKNOWN,
            })
            .await,
        ErrorCode::NotFound,
        "deleting an unknown channel",
    );
    expect_code(
        alice
            .request(proto::CreateChannel {
                name: "orphan".into(),
                parent_id: UNKNOWN,
                visibility: MEMBERS,
            })
            .await,
        ErrorCode::NotFound,
        "creating under an unknown channel",
    );
    expect_code(
        bob.request(proto::JoinChannel {
            channel_id: UNKNOWN,
        })
        .await,
        ErrorCode::NotFound,
        "joining an unknown channel",
    );
    expect_code(
        bob.request(history(UNKNOWN)).await,
        ErrorCode::NotFound,
        "reading an unknown channel",
    );
    expect_code(
        bob.request(chat(UNKNOWN, "hi", "bob-1")).await,
        ErrorCode::NotFound,
        "posting in an unknown channel",
    );
    expect_code(
        bob.request(proto::JoinChannelNotes {
            channel_id: UNKNOWN,
        })
        .await,
        ErrorCode::NotFound,
        "opening an unknown channel's notes",
    );
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
    assert!(state.channels.is_empty() && state.invitations.is_empty(), "{state:?}");

    // The invitation: a notification, and the channel among Bob's invitations.
    invite(&alice, zed, bob_id, MEMBER).await;
    let invitation = notification_added(&bob).await;
    assert_eq!(invitation.kind, "ChannelInvitation");
    assert_eq!(invitation.entity_id, zed);
    assert!(!invitation.is_read);
    assert_eq!(invitation.response, None);
    let content: serde_json::Value =
        serde_json::from_str(&invitation.content).expect("the content is JSON");
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
    expect_code(
        bob.request(history(zed)).await,
        ErrorCode::Forbidden,
        "bob reads zed before accepting",
    );
    expect_code(
        alice
            .request(proto::InviteChannelMember {
                channel_id: zed,
                user_id: bob_id,
                role: GUEST,
            })
            .await,
        ErrorCode::Conflict,
        "inviting bob twice",
    );

    // Bob accepts: the notification is answered and read; the invitation turns into
    // the channel and its sub-channel, with his role.
    bob.request(proto::RespondToChannelInvite {
        channel_id: zed,
        accept: true,
    })
    .await
    .expect("bob accepts");
    let answered = notification_updated(&bob).await;
    assert_eq!(answered.id, invitation.id);
    assert_eq!(answered.response, Some(true));
    assert!(answered.is_read);
    let update = next_update(&bob).await;
    assert_eq!(update.removed_invitations, vec![zed]);
    assert_eq!(ids(&update.channels), sorted(vec![zed, crates]));
    assert_eq!(role_of(&update, zed), Some(MEMBER));
    assert_eq!(role_of(&update, crates), Some(MEMBER));
    bob.request(history(crates))
        .await
        .expect("a member reads the sub-channel");
    let listed = members(&alice, zed).await;
    assert!(member(&listed, bob_id).expect("bob is listed").accepted);
    let inbox = bob
        .request(proto::GetNotifications {
            before_id: 0,
            limit: 0,
        })
        .await
        .expect("bob's notifications");
    let stored = inbox
        .notifications
        .iter()
        .find(|n| n.id == invitation.id)
        .expect("the invitation is kept");
    assert_eq!(stored.response, Some(true));

    // No second answer; no invitation for a member.
    expect_code(
        bob.request(proto::RespondToChannelInvite {
            channel_id: zed,
            accept: true,
        })
        .await,
        ErrorCode::NotFound,
        "answering an answered invitation",
    );
    expect_code(
        alice
            .request(proto::InviteChannelMember {
                channel_id: zed,
                user_id: bob_id,
                role: ADMIN,
            })
            .await,
        ErrorCode::Conflict,
        "inviting a member",
    );

    // Roles to invite with: admin, member or guest; users must exist.
    let carol_sub = server.client("carol").await;
    let carol_plain = server.client("carol").await;
    let carol_id = carol_sub.user_id();
    subscribe(&carol_sub).await;
    for role in [NO_ROLE, BANNED, 42] {
        expect_code(
            alice
                .request(proto::InviteChannelMember {
                    channel_id: crates,
                    user_id: carol_id,
                    role,
                })
                .await,
            ErrorCode::InvalidRequest,
            &format!("inviting with role {role}"),
        );
    }
    expect_code(
        alice
            .request(proto::InviteChannelMember {
                channel_id: crates,
                user_id: UNKNOWN,
                role: MEMBER,
            })
            .await,
        ErrorCode::NotFound,
        "inviting an unknown user",
    );

    // Carol is invited to crates: both her connections are notified, the subscribed one
    // lists the invitation. She declines from the other.
    invite(&alice, crates, carol_id, GUEST).await;
    for connection in [&carol_sub, &carol_plain] {
        let invitation = notification_added(connection).await;
        assert_eq!(invitation.kind, "ChannelInvitation");
        assert_eq!(invitation.entity_id, crates);
    }
    let update = next_update(&carol_sub).await;
    assert_eq!(ids(&update.invitations), vec![crates]);
    carol_plain
        .request(proto::RespondToChannelInvite {
            channel_id: crates,
            accept: false,
        })
        .await
        .expect("carol declines");
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
    let rename = proto::RenameChannel {
        channel_id: inner,
        name: "kitchen".into(),
    };
    alice.request(rename).await.expect("inner renamed");
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
    let rename = proto::RenameChannel {
        channel_id: plaza,
        name: "square".into(),
    };
    alice.request(rename).await.expect("plaza renamed");
    for client in [&gina, &bob] {
        let update = next_update(client).await;
        assert_eq!(ids(&update.channels), vec![plaza]);
        assert_eq!(update.channels[0].name, "square");
    }
    let extra = gina.try_recv::<proto::UpdateChannels>();
    assert!(extra.is_none(), "gina got {:?}", extra.map(|e| e.payload));
    let everything = sorted(vec![zed, inner, plaza, backroom]);

    // Carol is removed: she loses every channel, and is refused from then on.
    alice
        .request(proto::RemoveChannelMember {
            channel_id: zed,
            user_id: carol_id,
        })
        .await
        .expect("carol removed");
    let update = update_until(&carol, "carol's channels removed", |update| {
        !update.removed_channels.is_empty()
    })
    .await;
    assert_eq!(sorted(update.removed_channels.clone()), everything);
    expect_code(
        carol.request(history(zed)).await,
        ErrorCode::Forbidden,
        "removed carol reads zed",
    );
    // Only rows that exist can be removed or changed; NONE is no role to set.
    for (channel_id, user_id, what) in [
        (zed, carol_id, "removing carol twice"),
        (inner, bob_id, "removing bob from inner (his row is on zed)"),
    ] {
        expect_code(
            alice
                .request(proto::RemoveChannelMember {
                    channel_id,
                    user_id,
                })
                .await,
            ErrorCode::NotFound,
            what,
        );
    }
    expect_code(
        alice
            .request(proto::SetChannelMemberRole {
                channel_id: zed,
                user_id: carol_id,
                role: MEMBER,
            })
            .await,
        ErrorCode::NotFound,
        "setting the role of a non-member",
    );
    expect_code(
        alice
            .request(proto::SetChannelMemberRole {
                channel_id: zed,
                user_id: bob_id,
                role: NO_ROLE,
            })
            .await,
        ErrorCode::InvalidRequest,
        "setting role NONE",
    );

    // Mallory is banned: she loses every channel, and cannot even join public plaza.
    set_role(&alice, zed, mallory_id, BANNED).await;
    let update = update_until(&mallory, "mallory's channels removed", |update| {
        !update.removed_channels.is_empty()
    })
    .await;
    assert_eq!(sorted(update.removed_channels.clone()), everything);
    expect_code(
        mallory
            .request(proto::JoinChannel { channel_id: plaza })
            .await,
        ErrorCode::Forbidden,
        "banned mallory joins plaza",
    );
    let listed = members(&alice, zed).await;
    assert_eq!(member(&listed, mallory_id).map(|m| m.role), Some(BANNED));

    // Alice, the last admin, may neither step down nor leave.
    expect_code(
        alice
            .request(proto::SetChannelMemberRole {
                channel_id: zed,
                user_id: alice_id,
                role: MEMBER,
            })
            .await,
        ErrorCode::Conflict,
        "the last admin steps down",
    );
    expect_code(
        alice
            .request(proto::RemoveChannelMember {
                channel_id: zed,
                user_id: alice_id,
            })
            .await,
        ErrorCode::Conflict,
        "the last admin leaves",
    );

    // She makes Bob an admin: his next delta is that (none came from Carol's removal or
    // Mallory's ban). Then Alice may leave, and Bob is the last admin.
    set_role(&alice, zed, bob_id, ADMIN).await;
    let update = next_update(&bob).await;
    assert_eq!(role_of(&update, zed), Some(ADMIN), "{update:?}");
    assert_eq!(role_of(&update, inner), Some(ADMIN), "{update:?}");
    assert!(update.removed_channels.is_empty(), "{update:?}");
    alice
        .request(proto::RemoveChannelMember {
            channel_id: zed,
            user_id: alice_id,
        })
        .await
        .expect("alice leaves");
    let update = update_until(&alice, "alice's channels removed", |update| {
        !update.removed_channels.is_empty()
    })
    .await;
    assert_eq!(sorted(update.removed_channels.clone()), everything);
    expect_code(
        bob.request(proto::SetChannelMemberRole {
            channel_id: zed,
            user_id: bob_id,
            role: GUEST,
        })
        .await,
        ErrorCode::Conflict,
        "the new last admin steps down",
    );
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

    expect_code(
        nina.request(proto::JoinChannel {
            channel_id: private,
        })
        .await,
        ErrorCode::Forbidden,
        "a stranger joins a members-only channel",
    );

    // Alice, the admin, opens zed's call room.
    let joined = alice
        .request(proto::JoinChannel { channel_id: zed })
        .await
        .expect("alice joins zed's call");
    let info = joined.live_kit_connection_info.expect("LiveKit credentials");
    assert!(info.can_publish, "an admin publishes");
    let room = joined.room.expect("JoinRoomResponse carries the room");
    let room_id = room.id;
    assert_eq!(room.participants.len(), 1, "{room:?}");
    let me = participant(&room, alice_id).expect("alice is in the room");
    assert_eq!(me.role, proto::ParticipantRole::Admin as i32);

    // Bob, a member, joins the same room and may publish; Alice sees him.
    let joined = bob
        .request(proto::JoinChannel { channel_id: zed })
        .await
        .expect("bob joins zed's call");
    assert!(joined.live_kit_connection_info.expect("credentials").can_publish);
    let room = joined.room.expect("JoinRoomResponse carries the room");
    assert_eq!(room.id, room_id, "the channel's room is reused");
    let role = participant(&room, bob_id).map(|p| p.role);
    assert_eq!(role, Some(proto::ParticipantRole::Member as i32));
    assert!(participant(&room, alice_id).is_some(), "{room:?}");
    room_until(&alice, "bob in the channel's room", |room| {
        participant(room, bob_id).is_some()
    })
    .await;

    // Nina joins public zed as a guest: no publishing; she now has a guest membership
    // and sees zed (not private).
    let joined = nina
        .request(proto::JoinChannel { channel_id: zed })
        .await
        .expect("a stranger joins a public channel");
    let info = joined.live_kit_connection_info.expect("credentials");
    assert!(!info.can_publish, "a guest does not publish");
    let room = joined.room.expect("JoinRoomResponse carries the room");
    assert_eq!(room.id, room_id);
    let guest = proto::ParticipantRole::Guest as i32;
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
    expect_code(
        bob.request(proto::JoinChannel {
            channel_id: private,
        })
        .await,
        ErrorCode::Conflict,
        "joining a second room",
    );
    bob.request(proto::LeaveRoom {}).await.expect("bob leaves");
    let joined = bob
        .request(proto::JoinChannel {
            channel_id: private,
        })
        .await
        .expect("bob joins private's call");
    let room = joined.room.expect("JoinRoomResponse carries the room");
    assert_ne!(room.id, room_id, "each channel has its own room");
    let role = participant(&room, bob_id).map(|p| p.role);
    assert_eq!(role, Some(proto::ParticipantRole::Member as i32));
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

    let room_id = alice
        .request(proto::CreateRoom {})
        .await
        .expect("a room")
        .room
        .expect("CreateRoomResponse carries the room")
        .id;
    alice
        .request(proto::Call {
            room_id,
            callee_user_id: bob_id,
        })
        .await
        .expect("a co-member is called");
    let call = incoming_call(&bob).await;
    assert_eq!(call.room_id, room_id);
    assert_eq!(call.calling_user_id, alice_id);
    bob.request(proto::JoinRoom { room_id })
        .await
        .expect("bob answers");

    for (callee_user_id, who) in [
        (dave_id, "a stranger"),
        (erin_id, "a user only invited"),
        (mallory_id, "a banned user"),
    ] {
        expect_code(
            alice
                .request(proto::Call {
                    room_id,
                    callee_user_id,
                })
                .await,
            ErrorCode::Forbidden,
            &format!("calling {who}"),
        );
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
    let admins = [admin.user_id(), server.user_id("root").await.to_proto()];
    assert_eq!(
        sorted(listed.iter().map(|m| m.user_id).collect()),
        sorted(admins.to_vec()),
        "one row per seed admin: {listed:?}"
    );
    for row in &listed {
        assert_eq!((row.role, row.accepted), (ADMIN, true), "{row:?}");
    }
    server.stop().await;
}
db_test!(seeded_channels);
