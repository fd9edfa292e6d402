//! Contacts, end to end: Alice on two devices, Bob and Carol request, accept, decline
//! and remove each other, and see each other come online and go offline.

mod common;

use collab::{client::Client, rpc::proto};
use common::{Backend, TestServer, WAIT};

async fn next_update(client: &Client) -> proto::UpdateContacts {
    client
        .recv_timeout::<proto::UpdateContacts>(WAIT)
        .await
        .expect("an UpdateContacts")
        .payload
}

fn contact(user_id: u64, online: bool) -> proto::Contact {
    proto::Contact { user_id, online }
}

async fn contacts_story(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.user_id("alice").await.to_proto();
    let bob = server.user_id("bob").await.to_proto();
    let carol = server.user_id("carol").await.to_proto();

    let alice_laptop = server.client("alice").await;
    let alice_desktop = server.client("alice").await;
    let bob_client = server.client("bob").await;
    let carol_client = server.client("carol").await;
    // Everyone starts with the full (empty) state.
    for client in [&alice_laptop, &alice_desktop, &bob_client, &carol_client] {
        assert_eq!(next_update(client).await, proto::UpdateContacts::default());
    }

    // Alice asks Bob from her laptop; both of her devices and Bob hear about it.
    alice_laptop
        .request(proto::RequestContact { responder_id: bob })
        .await
        .unwrap();
    for device in [&alice_laptop, &alice_desktop] {
        let update = next_update(device).await;
        assert_eq!(update.outgoing_requests, vec![bob]);
    }
    assert_eq!(
        next_update(&bob_client).await.incoming_requests,
        vec![alice]
    );

    // Typed refusals.
    let again = alice_desktop
        .request(proto::RequestContact { responder_id: bob })
        .await
        .unwrap_err();
    assert_eq!(again.code, proto::ErrorCode::Conflict);
    let myself = alice_laptop
        .request(proto::RequestContact {
            responder_id: alice,
        })
        .await
        .unwrap_err();
    assert_eq!(myself.code, proto::ErrorCode::InvalidRequest);
    let nobody = alice_laptop
        .request(proto::RequestContact {
            responder_id: 999_999,
        })
        .await
        .unwrap_err();
    assert_eq!(nobody.code, proto::ErrorCode::NotFound);
    let zero = alice_laptop
        .request(proto::RequestContact { responder_id: 0 })
        .await
        .unwrap_err();
    assert_eq!(zero.code, proto::ErrorCode::InvalidRequest);
    let not_asked = carol_client
        .request(proto::RespondToContactRequest {
            requester_id: alice,
            response: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(not_asked.code, proto::ErrorCode::NotFound);

    // Bob accepts: both sides now have each other, online.
    bob_client
        .request(proto::RespondToContactRequest {
            requester_id: alice,
            response: proto::ContactRequestResponse::Accept as i32,
        })
        .await
        .unwrap();
    let update = next_update(&bob_client).await;
    assert_eq!(update.contacts, vec![contact(alice, true)]);
    assert_eq!(update.remove_incoming_requests, vec![alice]);
    for device in [&alice_laptop, &alice_desktop] {
        let update = next_update(device).await;
        assert_eq!(update.contacts, vec![contact(bob, true)]);
        assert_eq!(update.remove_outgoing_requests, vec![bob]);
    }

    // Carol asks Alice; Alice declines from her desktop.
    carol_client
        .request(proto::RequestContact {
            responder_id: alice,
        })
        .await
        .unwrap();
    assert_eq!(
        next_update(&carol_client).await.outgoing_requests,
        vec![alice]
    );
    for device in [&alice_laptop, &alice_desktop] {
        assert_eq!(next_update(device).await.incoming_requests, vec![carol]);
    }
    alice_desktop
        .request(proto::RespondToContactRequest {
            requester_id: carol,
            response: proto::ContactRequestResponse::Decline as i32,
        })
        .await
        .unwrap();
    assert_eq!(
        next_update(&carol_client).await.remove_outgoing_requests,
        vec![alice]
    );
    for device in [&alice_laptop, &alice_desktop] {
        assert_eq!(
            next_update(device).await.remove_incoming_requests,
            vec![carol]
        );
    }

    // Bob goes offline, then comes back: Alice's devices see both; Bob's new connection
    // starts from the full state.
    bob_client.close().await;
    for device in [&alice_laptop, &alice_desktop] {
        assert_eq!(
            next_update(device).await.contacts,
            vec![contact(bob, false)]
        );
    }
    let bob_client = server.client("bob").await;
    assert_eq!(
        next_update(&bob_client).await,
        proto::UpdateContacts {
            contacts: vec![contact(alice, true)],
            ..Default::default()
        }
    );
    for device in [&alice_laptop, &alice_desktop] {
        assert_eq!(next_update(device).await.contacts, vec![contact(bob, true)]);
    }

    // Alice closing one device keeps her online; closing the last makes her offline.
    // Bob's next update is the offline one, so the first close announced nothing.
    alice_laptop.close().await;
    alice_desktop.close().await;
    assert_eq!(
        next_update(&bob_client).await.contacts,
        vec![contact(alice, false)]
    );

    // Back online, Alice removes Bob: both lose the contact.
    let alice_client = server.client("alice").await;
    assert_eq!(
        next_update(&alice_client).await.contacts,
        vec![contact(bob, true)]
    );
    assert_eq!(
        next_update(&bob_client).await.contacts,
        vec![contact(alice, true)]
    );
    alice_client
        .request(proto::RemoveContact { user_id: bob })
        .await
        .unwrap();
    assert_eq!(next_update(&alice_client).await.remove_contacts, vec![bob]);
    assert_eq!(next_update(&bob_client).await.remove_contacts, vec![alice]);
    let gone = alice_client
        .request(proto::RemoveContact { user_id: bob })
        .await
        .unwrap_err();
    assert_eq!(gone.code, proto::ErrorCode::NotFound);
    assert!(
        !server
            .state
            .db
            .are_contacts(server.user_id("alice").await, server.user_id("bob").await)
            .await
            .unwrap()
    );
    server.stop().await;
}
db_test!(contacts_story);

/// Users can be found by id and by login prefix, case-insensitively; `%` is literal.
async fn user_lookup(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.user_id("alice").await.to_proto();
    server.user("alfred").await;
    server.user("bob").await;
    let client = server.client("carol").await;
    let found = client
        .request(proto::SearchUsers {
            query: "AL".into(),
            limit: 0,
        })
        .await
        .unwrap();
    let logins: Vec<_> = found.users.iter().map(|user| user.login.as_str()).collect();
    assert_eq!(logins, ["alfred", "alice"]);
    let none = client
        .request(proto::SearchUsers {
            query: "%".into(),
            limit: 0,
        })
        .await
        .unwrap();
    assert!(none.users.is_empty());
    let long = client
        .request(proto::SearchUsers {
            query: "a".repeat(65),
            limit: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(long.code, proto::ErrorCode::InvalidRequest);
    let by_id = client
        .request(proto::GetUsers {
            user_ids: vec![alice, 424_242],
        })
        .await
        .unwrap();
    assert_eq!(by_id.users.len(), 1);
    assert_eq!(by_id.users[0].login, "alice");
    let too_many = client
        .request(proto::GetUsers {
            user_ids: vec![1; 1001],
        })
        .await
        .unwrap_err();
    assert_eq!(too_many.code, proto::ErrorCode::InvalidRequest);
    server.stop().await;
}
db_test!(user_lookup);
