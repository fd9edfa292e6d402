//! Channel chat and notifications: paging backwards through the history, editing and
//! deleting (who may), reactions, idempotent sends by nonce, mentions and their
//! notifications, size and guest limits, and the per-user rate limit.

mod common;

use collab::rpc::proto::{self, ChannelRole, ChannelVisibility, ErrorCode};
use common::{
    Backend, TestServer,
    notes::*,
    projects::{next_message, refused},
};

/// The bodies of a page, in order.
fn bodies(page: &proto::GetChannelMessagesResponse) -> Vec<String> {
    page.messages.iter().map(|m| m.body.clone()).collect()
}

fn numbered(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("message {i:03}")).collect()
}

/// 250 messages read back in pages of 100, newest page first, each page oldest first;
/// `done` only on the last; limits 0 and 500 both mean 100.
async fn history_pages_backwards(backend: Backend) {
    let server = TestServer::start_with(backend, |config| config.chat_rate_limit = 10_000).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let channel_id = channel_with(
        &alice,
        "chat-paging",
        ChannelVisibility::Members,
        &[(&bob, ChannelRole::Member)],
    )
    .await;

    let empty = history(&bob, channel_id, 0, 100).await;
    assert!(empty.messages.is_empty(), "{empty:?}");
    assert!(empty.done);

    let mut ids = Vec::new();
    for i in 0..250 {
        let message = post(&alice, channel_id, &format!("message {i:03}")).await;
        assert_eq!(message.channel_id, channel_id);
        assert_eq!(message.sender_id, alice.user_id());
        assert_eq!(message.kind, proto::ChannelMessageKind::Chat as i32);
        assert!(message.sent_at > 0);
        ids.push(message.id);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");

    let first = history(&bob, channel_id, 0, 100).await;
    assert_eq!(bodies(&first), numbered(150..250));
    assert_eq!(
        first.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids[150..250].to_vec()
    );
    assert!(!first.done);
    assert!(first.messages.iter().all(|m| m.sender_id == alice.user_id()
        && m.channel_id == channel_id
        && m.deleted_at == 0));

    let second = history(&bob, channel_id, first.messages[0].id, 100).await;
    assert_eq!(bodies(&second), numbered(50..150));
    assert!(!second.done);

    let third = history(&bob, channel_id, second.messages[0].id, 100).await;
    assert_eq!(bodies(&third), numbered(0..50));
    assert!(third.done, "nothing is older than the last page");

    let past_the_start = history(&bob, channel_id, ids[0], 100).await;
    assert!(past_the_start.messages.is_empty());
    assert!(past_the_start.done);

    // A small page in the middle.
    let small = history(&bob, channel_id, ids[10], 5).await;
    assert_eq!(bodies(&small), numbered(5..10));
    assert!(!small.done);
    let last_few = history(&bob, channel_id, ids[5], 100).await;
    assert_eq!(bodies(&last_few), numbered(0..5));
    assert!(last_few.done);

    // Limits: 500 is clamped to 100, and 0 means 100.
    let clamped = history(&bob, channel_id, 0, 500).await;
    assert_eq!(clamped.messages.len(), 100);
    assert_eq!(bodies(&clamped), numbered(150..250));
    assert!(!clamped.done);
    let unlimited = history(&bob, channel_id, 0, 0).await;
    assert_eq!(bodies(&unlimited), numbered(150..250));

    // A non-member reads nothing; an unknown channel is not found.
    let dave = server.client("dave").await;
    refused(
        dave.request(proto::GetChannelMessages {
            channel_id,
            before_message_id: 0,
            limit: 10,
        })
        .await,
        ErrorCode::Forbidden,
    );
    refused(
        dave.request(proto::GetChannelMessages {
            channel_id: channel_id + 1_000_000,
            before_message_id: 0,
            limit: 10,
        })
        .await,
        ErrorCode::NotFound,
    );
    server.stop().await;
}
db_test!(history_pages_backwards);

/// Only the author edits (not another member, not an admin); the author or an admin
/// deletes (softly: an empty body and deleted_at in later reads); a deleted message takes
/// no edits or reactions; reactions are idempotent and visible. Subscribed members get
/// ChannelMessageUpdated for each change.
async fn edits_deletes_and_reactions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let carol = server.client("carol").await;
    let channel_id = channel_with(
        &alice,
        "chat-edits",
        ChannelVisibility::Members,
        &[(&bob, ChannelRole::Member), (&carol, ChannelRole::Member)],
    )
    .await;
    subscribe(&alice).await;
    subscribe(&bob).await;

    let draft = post(&carol, channel_id, "first draft").await;
    assert_eq!(draft.edited_at, 0);
    assert_eq!(next_sent(&bob).await.id, draft.id);

    // The author edits.
    let edited = carol
        .request(proto::EditChannelMessage {
            channel_id,
            message_id: draft.id,
            body: "final text".into(),
            mentions: Vec::new(),
        })
        .await
        .expect("the author edits")
        .message
        .expect("ChannelMessageResponse carries the message");
    assert_eq!(edited.id, draft.id);
    assert_eq!(edited.body, "final text");
    assert_eq!(edited.sender_id, carol.user_id());
    assert!(edited.edited_at > 0, "edited_at is set: {edited:?}");
    let update = next_message::<proto::ChannelMessageUpdated>(&bob)
        .await
        .payload
        .message
        .expect("ChannelMessageUpdated carries the message");
    assert_eq!(update.id, draft.id);
    assert_eq!(update.body, "final text");
    assert_eq!(update.edited_at, edited.edited_at);

    // Nobody else edits: not another member, not an admin.
    for (who, client) in [("Bob", &bob), ("Alice (admin)", &alice)] {
        let error = refused(
            client
                .request(proto::EditChannelMessage {
                    channel_id,
                    message_id: draft.id,
                    body: format!("rewritten by {who}"),
                    mentions: Vec::new(),
                })
                .await,
            ErrorCode::Forbidden,
        );
        assert!(!error.message.is_empty(), "{who}");
    }
    let stored = stored_message(&bob, channel_id, draft.id).await;
    assert_eq!(stored.body, "final text");
    assert_eq!(stored.edited_at, edited.edited_at);

    // Another member may not delete it; an admin may.
    refused(
        bob.request(proto::DeleteChannelMessage {
            channel_id,
            message_id: draft.id,
        })
        .await,
        ErrorCode::Forbidden,
    );
    assert_eq!(
        stored_message(&bob, channel_id, draft.id).await.body,
        "final text"
    );
    alice
        .request(proto::DeleteChannelMessage {
            channel_id,
            message_id: draft.id,
        })
        .await
        .expect("an admin deletes");
    // Bob's next update is the deletion (the refused edits and delete sent none).
    let update = next_message::<proto::ChannelMessageUpdated>(&bob)
        .await
        .payload
        .message
        .expect("ChannelMessageUpdated carries the message");
    assert_eq!(update.id, draft.id);
    assert_eq!(update.body, "");
    assert!(update.deleted_at > 0);
    for reader in [&alice, &bob, &carol] {
        let stored = stored_message(reader, channel_id, draft.id).await;
        assert_eq!(stored.body, "", "a deleted message has no body");
        assert!(stored.deleted_at > 0, "{stored:?}");
        assert_eq!(stored.sender_id, carol.user_id());
    }
    // Deleting again is fine; editing or reacting to a deleted message is not.
    alice
        .request(proto::DeleteChannelMessage {
            channel_id,
            message_id: draft.id,
        })
        .await
        .expect("deleting is idempotent");
    refused(
        carol
            .request(proto::EditChannelMessage {
                channel_id,
                message_id: draft.id,
                body: "resurrected".into(),
                mentions: Vec::new(),
            })
            .await,
        ErrorCode::InvalidRequest,
    );
    refused(
        bob.request(proto::AddReaction {
            channel_id,
            message_id: draft.id,
            emoji: "👍".into(),
        })
        .await,
        ErrorCode::InvalidRequest,
    );
    let stored = stored_message(&bob, channel_id, draft.id).await;
    assert_eq!(stored.body, "");
    assert!(reactions(&stored).is_empty(), "{stored:?}");

    // Reactions: adding twice counts once; removing twice is fine.
    let target = post(&bob, channel_id, "react to me").await;
    let (bob_id, carol_id) = (bob.user_id(), carol.user_id());
    let add = |emoji: &str| proto::AddReaction {
        channel_id,
        message_id: target.id,
        emoji: emoji.to_string(),
    };
    let remove = |emoji: &str| proto::RemoveReaction {
        channel_id,
        message_id: target.id,
        emoji: emoji.to_string(),
    };
    bob.request(add("👍")).await.expect("Bob reacts");
    bob.request(add("👍"))
        .await
        .expect("reacting again is idempotent");
    carol.request(add("👍")).await.expect("Carol reacts");
    carol.request(add("🎉")).await.expect("Carol reacts again");
    let mut both = vec![bob_id, carol_id];
    both.sort_unstable();
    let mut expected = vec![("🎉".to_string(), vec![carol_id]), ("👍".to_string(), both)];
    expected.sort();
    assert_eq!(
        reactions(&stored_message(&alice, channel_id, target.id).await),
        expected
    );
    // Pushed to subscribed members.
    let target_id = target.id;
    message_update_until(&alice, "the reactions at Alice", |m| {
        m.id == target_id && reactions(m) == expected
    })
    .await;

    bob.request(remove("👍")).await.expect("Bob takes his back");
    bob.request(remove("👍"))
        .await
        .expect("removing again is idempotent");
    let mut expected = vec![
        ("🎉".to_string(), vec![carol_id]),
        ("👍".to_string(), vec![carol_id]),
    ];
    expected.sort();
    assert_eq!(
        reactions(&stored_message(&carol, channel_id, target.id).await),
        expected
    );
    message_update_until(&alice, "Bob's reaction removed at Alice", |m| {
        m.id == target_id && reactions(m) == expected
    })
    .await;
    carol
        .request(remove("🎉"))
        .await
        .expect("Carol takes one back");
    assert_eq!(
        reactions(&stored_message(&bob, channel_id, target.id).await),
        vec![("👍".to_string(), vec![carol_id])]
    );

    // The author deletes his own message.
    bob.request(proto::DeleteChannelMessage {
        channel_id,
        message_id: target.id,
    })
    .await
    .expect("the author deletes");
    let stored = stored_message(&carol, channel_id, target.id).await;
    assert_eq!(stored.body, "");
    assert!(stored.deleted_at > 0);
    server.stop().await;
}
db_test!(edits_deletes_and_reactions);

/// Sending the same nonce twice returns the original message (same id) and stores and
/// pushes it once.
async fn a_nonce_makes_sending_idempotent(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let channel_id = channel_with(
        &alice,
        "chat-nonce",
        ChannelVisibility::Members,
        &[(&bob, ChannelRole::Member)],
    )
    .await;
    subscribe(&bob).await;

    let send = proto::SendChannelMessage {
        channel_id,
        body: "hello once".into(),
        nonce: "retry-me-1".into(),
        ..Default::default()
    };
    let first = alice
        .request(send.clone())
        .await
        .expect("sent")
        .message
        .expect("the message");
    let again = alice
        .request(send.clone())
        .await
        .expect("the retry is answered")
        .message
        .expect("the message");
    assert_eq!(again.id, first.id);
    assert_eq!(again.body, "hello once");
    assert_eq!(again.nonce, "retry-me-1");
    // From another connection of the same user, too.
    let alice_again = server.client("alice").await;
    let third = alice_again
        .request(send)
        .await
        .expect("the retry is answered")
        .message
        .expect("the message");
    assert_eq!(third.id, first.id);

    let page = history(&bob, channel_id, 0, 100).await;
    assert_eq!(page.messages.len(), 1, "{page:?}");
    assert_eq!(page.messages[0].id, first.id);

    // Bob got it once: the next push after it is the next message.
    assert_eq!(next_sent(&bob).await.id, first.id);
    let next = post(&alice, channel_id, "something else").await;
    let pushed = next_sent(&bob).await;
    assert_eq!(
        pushed.id, next.id,
        "the retries were not pushed: {pushed:?}"
    );
    assert_eq!(pushed.body, "something else");

    // The same nonce from another sender is another message.
    let bobs = bob
        .request(proto::SendChannelMessage {
            channel_id,
            body: "hello from bob".into(),
            nonce: "retry-me-1".into(),
            ..Default::default()
        })
        .await
        .expect("sent")
        .message
        .expect("the message");
    assert_ne!(bobs.id, first.id);
    assert_eq!(history(&alice, channel_id, 0, 100).await.messages.len(), 3);
    server.stop().await;
}
db_test!(a_nonce_makes_sending_idempotent);

/// Checks a mention notification.
fn assert_mention(
    notification: &proto::Notification,
    message: &proto::ChannelMessage,
    sender_id: u64,
) {
    assert_eq!(notification.kind, "ChannelMessageMention");
    assert_eq!(notification.entity_id, message.id);
    assert!(!notification.is_read);
    assert!(notification.created_at > 0);
    let content: serde_json::Value =
        serde_json::from_str(&notification.content).expect("the content is JSON");
    assert_eq!(
        content["channel_id"].as_u64(),
        Some(message.channel_id),
        "{content}"
    );
    assert_eq!(
        content["message_id"].as_u64(),
        Some(message.id),
        "{content}"
    );
    assert_eq!(content["sender_id"].as_u64(), Some(sender_id), "{content}");
}

/// `@bob` in the body and an explicit mention of Carol notify them (pushed, listed,
/// marked read); a mentioned user who cannot see the channel gets nothing. Bodies over
/// 4096 bytes are too large; a guest posts only in a public channel.
async fn mentions_notify_members_and_limits_apply(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let carol = server.client("carol").await;
    let dave = server.client("dave").await;
    let eve = server.client("eve").await;
    let channel_id = channel_with(
        &alice,
        "chat-mentions",
        ChannelVisibility::Members,
        &[
            (&bob, ChannelRole::Member),
            (&carol, ChannelRole::Member),
            (&eve, ChannelRole::Guest),
        ],
    )
    .await;
    let (alice_id, bob_id, carol_id, dave_id) = (
        alice.user_id(),
        bob.user_id(),
        carol.user_id(),
        dave.user_id(),
    );

    let body = "hey @bob and @dave, carol: have a look";
    let start = body.find("carol").unwrap() as u32;
    let message = alice
        .request(proto::SendChannelMessage {
            channel_id,
            body: body.into(),
            nonce: nonce(),
            mentions: vec![proto::ChatMention {
                start,
                end: start + 5,
                user_id: carol_id,
            }],
            ..Default::default()
        })
        .await
        .expect("sent")
        .message
        .expect("the message");
    assert_eq!(message.body, body);
    let mentioned: Vec<u64> = message.mentions.iter().map(|m| m.user_id).collect();
    assert!(mentioned.contains(&bob_id), "{:?}", message.mentions);
    assert!(mentioned.contains(&carol_id), "{:?}", message.mentions);
    assert!(
        message
            .mentions
            .iter()
            .any(|m| m.user_id == carol_id && m.start == start && m.end == start + 5),
        "{:?}",
        message.mentions
    );
    for m in &message.mentions {
        assert!(m.start < m.end && m.end as usize <= body.len(), "{m:?}");
    }

    // Bob and Carol: pushed, listed (newest first, above the invitation), marked read.
    for (client, user_id) in [(&bob, bob_id), (&carol, carol_id)] {
        let pushed = next_message::<proto::AddNotification>(client)
            .await
            .payload
            .notification
            .expect("AddNotification carries the notification");
        assert_mention(&pushed, &message, alice_id);
        let listed = client
            .request(proto::GetNotifications {
                before_id: 0,
                limit: 0,
            })
            .await
            .expect("GetNotifications");
        assert_eq!(listed.notifications.len(), 2, "user {user_id}: {listed:?}");
        assert!(listed.done);
        assert_eq!(listed.notifications[0].id, pushed.id);
        assert_mention(&listed.notifications[0], &message, alice_id);
        assert_eq!(listed.notifications[1].kind, "ChannelInvitation");

        client
            .request(proto::MarkNotificationRead {
                notification_id: pushed.id,
            })
            .await
            .expect("marked read");
        let updated = notification_update(client, pushed.id).await;
        assert!(updated.is_read);
        assert_eq!(updated.kind, "ChannelMessageMention");
        let listed = client
            .request(proto::GetNotifications {
                before_id: 0,
                limit: 10,
            })
            .await
            .expect("GetNotifications");
        assert!(listed.notifications[0].is_read);
    }
    // Only one's own notifications may be marked.
    let bobs = bob
        .request(proto::GetNotifications {
            before_id: 0,
            limit: 1,
        })
        .await
        .expect("GetNotifications")
        .notifications;
    assert_eq!(bobs.len(), 1);
    refused(
        carol
            .request(proto::MarkNotificationRead {
                notification_id: bobs[0].id,
            })
            .await,
        ErrorCode::NotFound,
    );

    // Dave, who cannot see the channel, got nothing: his first notification is the
    // invitation sent now, and it is his only one.
    alice
        .request(proto::InviteChannelMember {
            channel_id,
            user_id: dave_id,
            role: ChannelRole::Member as i32,
        })
        .await
        .expect("Alice invites Dave");
    let first = next_message::<proto::AddNotification>(&dave)
        .await
        .payload
        .notification
        .expect("AddNotification carries the notification");
    assert_eq!(first.kind, "ChannelInvitation", "{first:?}");
    assert_eq!(first.entity_id, channel_id);
    let listed = dave
        .request(proto::GetNotifications {
            before_id: 0,
            limit: 0,
        })
        .await
        .expect("GetNotifications");
    assert_eq!(listed.notifications.len(), 1, "{listed:?}");
    assert_eq!(listed.notifications[0].id, first.id);

    // Size: 4096 bytes pass; 4097, or 2049 two-byte characters, do not.
    post(&alice, channel_id, &"x".repeat(4096)).await;
    for body in ["x".repeat(4097), "é".repeat(2049)] {
        refused(
            alice.request(chat(channel_id, &body)).await,
            ErrorCode::PayloadTooLarge,
        );
    }
    refused(
        alice.request(chat(channel_id, "")).await,
        ErrorCode::InvalidRequest,
    );

    // A guest may not post in a members-only channel, and may in a public one.
    refused(
        eve.request(chat(channel_id, "may I?")).await,
        ErrorCode::Forbidden,
    );
    let lobby = channel_with(
        &alice,
        "chat-lobby",
        ChannelVisibility::Public,
        &[(&eve, ChannelRole::Guest)],
    )
    .await;
    let posted = post(&eve, lobby, "hello from a guest").await;
    assert_eq!(posted.sender_id, eve.user_id());
    assert_eq!(
        bodies(&history(&alice, lobby, 0, 10).await),
        vec!["hello from a guest".to_string()]
    );
    assert!(!bodies(&history(&alice, channel_id, 0, 100).await).contains(&"may I?".to_string()));
    server.stop().await;
}
db_test!(mentions_notify_members_and_limits_apply);

/// With a limit of 5 messages a minute, the 6th is RateLimited with a positive
/// `retry_after_ms` tag and is not stored; another user's bucket is their own.
async fn chat_is_rate_limited_per_user(backend: Backend) {
    let server = TestServer::start_with(backend, |config| config.chat_rate_limit = 5).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let channel_id = channel_with(
        &alice,
        "chat-rate",
        ChannelVisibility::Members,
        &[(&bob, ChannelRole::Member)],
    )
    .await;

    for i in 0..5 {
        post(&alice, channel_id, &format!("alice {i}")).await;
    }
    let error = refused(
        alice.request(chat(channel_id, "one too many")).await,
        ErrorCode::RateLimited,
    );
    let retry_after: u64 = error
        .tag("retry_after_ms")
        .unwrap_or_else(|| panic!("a retry_after_ms tag: {:?}", error.tags))
        .parse()
        .unwrap_or_else(|_| panic!("retry_after_ms is an integer: {:?}", error.tags));
    assert!(retry_after > 0, "{:?}", error.tags);
    assert!(retry_after <= 60_000, "{:?}", error.tags);

    // Bob's bucket is full.
    for i in 0..5 {
        post(&bob, channel_id, &format!("bob {i}")).await;
    }
    let page = history(&bob, channel_id, 0, 100).await;
    assert_eq!(page.messages.len(), 10, "{:?}", bodies(&page));
    assert!(!bodies(&page).contains(&"one too many".to_string()));
    server.stop().await;
}
db_test!(chat_is_rate_limited_per_user);
