//! Documents over REST, on the same store as the Yjs endpoint: an update posted over
//! HTTP reaches a connected socket and is committed; the state comes back whole or as a
//! diff against a state vector; named versions keep the state they were taken at; bad
//! bodies and read-only tokens are refused and change nothing.

mod common;

use base64::Engine;
use collab::auth::jwt::Permission;
use common::{
    Backend, TestServer,
    yjs::{YjsClient, text_of_update},
};
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, updates::encoder::Encode};

/// A v1 update that inserts `chunk` at the start of the text "text" of a fresh doc.
fn insert_update(chunk: &str) -> Vec<u8> {
    let doc = Doc::new();
    let text = doc.get_or_insert_text("text");
    let mut txn = doc.transact_mut();
    text.insert(&mut txn, 0, chunk);
    txn.encode_state_as_update_v1(&StateVector::default())
}

async fn post(server: &TestServer, path: &str, token: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.http(path))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .expect("request sent")
}

async fn get(server: &TestServer, path: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(server.http(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request sent")
}

async fn documents_over_rest(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = server.token("alice").await;
    let mut bob = YjsClient::join(&server, "team/plan", "bob").await;

    // An update posted over HTTP is committed (a sequence number) and reaches Bob.
    let response = post(
        &server,
        "/api/docs/team/plan/updates",
        &token,
        insert_update("hi"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["sequence"].as_i64().is_some_and(|n| n > 0), "{body}");
    bob.wait_text("hi").await;

    // The whole state, and only what a state vector lacks.
    let whole = get(&server, "/api/docs/team/plan", &token).await;
    assert_eq!(whole.status(), 200);
    let whole = whole.bytes().await.unwrap().to_vec();
    assert_eq!(text_of_update(&whole), "hi");
    let sv = bob.doc().transact().state_vector().encode_v1();
    let sv = base64::engine::general_purpose::URL_SAFE.encode(sv);
    let diff = get(&server, &format!("/api/docs/team/plan?sv={sv}"), &token).await;
    let diff = diff.bytes().await.unwrap().to_vec();
    assert!(
        diff.len() < whole.len(),
        "a diff against Bob's state is smaller"
    );
    assert_eq!(text_of_update(&diff), "", "Bob lacks nothing");

    // A named version keeps "hi" while the document moves on.
    let version = post(
        &server,
        "/api/docs/team/plan/snapshots",
        &token,
        br#"{"name":"first"}"#.to_vec(),
    )
    .await;
    assert_eq!(version.status(), 200);
    let version: serde_json::Value = version.json().await.unwrap();
    assert_eq!(version["version"], 1);
    bob.insert(0, ">> ").await;
    bob.round_trip().await;
    let listed: serde_json::Value = get(&server, "/api/docs/team/plan/snapshots", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["version"], 1);
    assert_eq!(listed[0]["name"], "first");
    let old = get(&server, "/api/docs/team/plan/snapshots/1", &token).await;
    assert_eq!(text_of_update(&old.bytes().await.unwrap()), "hi");
    let now = get(&server, "/api/docs/team/plan", &token).await;
    assert_eq!(text_of_update(&now.bytes().await.unwrap()), ">> hi");
    let missing = get(&server, "/api/docs/team/plan/snapshots/9", &token).await;
    assert_eq!(missing.status(), 404);

    // Garbage is refused; a read-only token may read but not write; no token is 401.
    let garbage = post(
        &server,
        "/api/docs/team/plan/updates",
        &token,
        vec![0xff, 1, 2],
    )
    .await;
    assert_eq!(garbage.status(), 400);
    let alice = server.user_id("alice").await;
    let reader = server
        .state
        .auth
        .mint_ws_token(
            alice,
            Some("team/plan".into()),
            Permission::Read,
            std::time::Duration::from_secs(60),
        )
        .unwrap()
        .token;
    let refused = post(
        &server,
        "/api/docs/team/plan/updates",
        &reader,
        insert_update("x"),
    )
    .await;
    assert_eq!(refused.status(), 403);
    let read = get(&server, "/api/docs/team/plan", &reader).await;
    assert_eq!(text_of_update(&read.bytes().await.unwrap()), ">> hi");
    let anonymous = reqwest::get(server.http("/api/docs/team/plan"))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        bob.doc()
            .get_or_insert_text("text")
            .get_string(&bob.doc().transact()),
        ">> hi"
    );
    server.stop().await;
}
db_test!(documents_over_rest);
