//! REST: an admin mints tokens for people, users mint WebSocket tokens for themselves,
//! tokens are revoked, and the operator endpoints answer.

mod common;

use collab::{client::Client, rpc::proto};
use common::{Backend, TestServer};
use serde_json::{Value, json};

async fn rest_story(backend: Backend) {
    let server = TestServer::start(backend).await;
    let http = reqwest::Client::new();
    let admin = server.admin("root").await;
    let admin_token = server.token("root").await;
    let alice = server.user("alice").await;
    let alice_token = server.token("alice").await;

    // Who am I?
    let me: Value = http
        .get(server.http("/api/user"))
        .bearer_auth(&alice_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["login"], "alice");
    assert_eq!(me["is_admin"], false);
    let anonymous = http.get(server.http("/api/user")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["error"]["code"], "UNAUTHORIZED");

    // The admin creates a user and mints a token for them; the token connects.
    let created = http
        .post(server.http("/api/users"))
        .bearer_auth(&admin_token)
        .json(&json!({ "login": "dora", "name": "Dora" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let dora: Value = created.json().await.unwrap();
    let minted = http
        .post(server.http(&format!("/api/users/{}/access_tokens", dora["id"])))
        .bearer_auth(&admin_token)
        .json(&json!({ "ttl_seconds": 600 }))
        .send()
        .await
        .unwrap();
    assert_eq!(minted.status(), 201);
    let minted: Value = minted.json().await.unwrap();
    let dora_token = minted["token"].as_str().unwrap();
    let client = Client::connect(&server.rpc_url(), dora_token)
        .await
        .expect("dora connects");
    assert_eq!(client.user_id(), dora["id"].as_u64().unwrap());
    client.request(proto::Ping {}).await.unwrap();

    // Revoking it (as Dora herself) locks the next connection out.
    let jti = minted["jti"].as_str().unwrap();
    let revoked = http
        .delete(server.http(&format!("/api/access_tokens/{jti}")))
        .bearer_auth(dora_token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    let error = Client::connect(&server.rpc_url(), dora_token)
        .await
        .err()
        .expect("revoked");
    assert!(
        matches!(
            error,
            collab::client::ConnectError::Http { status: 401, .. }
        ),
        "{error}"
    );

    // Users may not mint access tokens, nor create users.
    let refused = http
        .post(server.http(&format!("/api/users/{}/access_tokens", alice.id)))
        .bearer_auth(&alice_token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let refused = http
        .post(server.http("/api/users"))
        .bearer_auth(&alice_token)
        .json(&json!({ "login": "eve" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let bad_login = http
        .post(server.http("/api/users"))
        .bearer_auth(&admin_token)
        .json(&json!({ "login": "no spaces" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_login.status(), 400);

    // Impersonation: the admin acts as Alice; /api/user says so.
    let impersonation: Value = http
        .post(server.http(&format!("/api/users/{}/access_tokens", alice.id)))
        .bearer_auth(&admin_token)
        .json(&json!({ "impersonate": true }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let me: Value = http
        .get(server.http("/api/user"))
        .bearer_auth(impersonation["token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["login"], "alice");
    assert_eq!(me["impersonator"]["id"], admin.id.0);

    // WebSocket tokens: for yourself, scoped; not for others unless admin.
    let ws: Value = http
        .post(server.http("/api/ws-token"))
        .bearer_auth(&alice_token)
        .json(&json!({ "document": "notes/1", "permission": "read" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let claims = server
        .state
        .auth
        .verify_ws_token(ws["token"].as_str().unwrap())
        .unwrap();
    assert_eq!(claims.user_id, alice.id.0);
    assert_eq!(claims.document.as_deref(), Some("notes/1"));
    assert_eq!(claims.permission, collab::auth::Permission::Read);
    assert!(claims.exp - claims.iat <= 300, "five minutes by default");
    let for_other = http
        .post(server.http("/api/ws-token"))
        .bearer_auth(&alice_token)
        .json(&json!({ "user_id": admin.id.0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(for_other.status(), 403);
    let by_admin = http
        .post(server.http("/api/ws-token"))
        .bearer_auth(&admin_token)
        .json(&json!({ "user_id": alice.id.0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(by_admin.status(), 201);
    server.stop().await;
}
db_test!(rest_story);

/// `/healthz`, `/stats` and `/metrics` report the live server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_endpoints() {
    let server = TestServer::start(Backend::Sqlite).await;
    let client = server.client("alice").await;
    client.request(proto::Ping {}).await.unwrap();
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(server.http("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let stats: Value = http
        .get(server.http("/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["connections"], 1);
    assert_eq!(stats["users_online"], 1);
    assert_eq!(stats["server_id"], server.state.server_id.0);
    assert_eq!(stats["version"], env!("CARGO_PKG_VERSION"));
    let metrics = http
        .get(server.http("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("collab_rpc_connections 1"), "{metrics}");
    assert!(
        metrics.contains("collab_rpc_messages_in_total{type=\"Ping\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("collab_rpc_handler_seconds_count{type=\"Ping\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("collab_users_online 1"), "{metrics}");
    server.stop().await;
}

/// Graceful shutdown closes sockets with "going away" and marks the server stopped.
async fn graceful_shutdown(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let client = server.client("alice").await;
    client.request(proto::Ping {}).await.unwrap();
    server.halt().await;
    common::within("the client to see the close", client.closed()).await;
    let row = server
        .state
        .db
        .get_server(server.state.server_id)
        .await
        .unwrap()
        .expect("server row");
    assert!(row.stopped_at.is_some(), "server marked stopped");
    server.stop().await;
}
db_test!(graceful_shutdown);
