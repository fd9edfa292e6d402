//! REST: an admin mints tokens for people, users mint WebSocket tokens for themselves,
//! tokens are revoked, and the operator endpoints answer.

mod common;

use collab::{client::Client, rpc::proto};
use common::{Backend, TestServer};
use serde_json::{Value, json};

/// A REST call: status and JSON body (`Null` when the body is empty or not JSON).
async fn call(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, server.http(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post(server: &TestServer, path: &str, token: &str, body: Value) -> (u16, Value) {
    call(server, reqwest::Method::POST, path, Some(token), Some(body)).await
}

async fn get(server: &TestServer, path: &str, token: Option<&str>) -> (u16, Value) {
    call(server, reqwest::Method::GET, path, token, None).await
}

async fn rest_story(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin("root").await;
    let admin_token = server.token("root").await;
    let alice = server.user("alice").await;
    let alice_token = server.token("alice").await;

    // Who am I?
    let (status, me) = get(&server, "/api/user", Some(&alice_token)).await;
    assert_eq!(
        (status, &me["login"], &me["is_admin"]),
        (200, &json!("alice"), &json!(false))
    );
    let (status, body) = get(&server, "/api/user", None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("UNAUTHORIZED"))
    );

    // The admin creates a user and mints a token for them; the token connects.
    let (status, dora) = post(
        &server,
        "/api/users",
        &admin_token,
        json!({ "login": "dora", "name": "Dora" }),
    )
    .await;
    assert_eq!(status, 201);
    let tokens_path = format!("/api/users/{}/access_tokens", dora["id"]);
    let (status, minted) = post(
        &server,
        &tokens_path,
        &admin_token,
        json!({ "ttl_seconds": 600 }),
    )
    .await;
    assert_eq!(status, 201);
    let dora_token = minted["token"].as_str().unwrap();
    let client = Client::connect(&server.rpc_url(), dora_token)
        .await
        .expect("dora connects");
    assert_eq!(client.user_id(), dora["id"].as_u64().unwrap());
    client.request(proto::Ping {}).await.unwrap();

    // Revoking it (as Dora herself) locks the next connection out.
    let revoke_path = format!("/api/access_tokens/{}", minted["jti"].as_str().unwrap());
    let (status, _) = call(
        &server,
        reqwest::Method::DELETE,
        &revoke_path,
        Some(dora_token),
        None,
    )
    .await;
    assert_eq!(status, 204);
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

    // Users may not mint access tokens, nor create users; logins are validated.
    let alice_tokens = format!("/api/users/{}/access_tokens", alice.id);
    assert_eq!(
        post(&server, &alice_tokens, &alice_token, json!({}))
            .await
            .0,
        403
    );
    assert_eq!(
        post(
            &server,
            "/api/users",
            &alice_token,
            json!({ "login": "eve" })
        )
        .await
        .0,
        403
    );
    assert_eq!(
        post(
            &server,
            "/api/users",
            &admin_token,
            json!({ "login": "no spaces" })
        )
        .await
        .0,
        400
    );

    // Impersonation: the admin acts as Alice; /api/user says so.
    let (_, impersonation) = post(
        &server,
        &alice_tokens,
        &admin_token,
        json!({ "impersonate": true }),
    )
    .await;
    let (_, me) = get(&server, "/api/user", impersonation["token"].as_str()).await;
    assert_eq!(me["login"], "alice");
    assert_eq!(me["impersonator"]["id"], admin.id.0);

    // WebSocket tokens: for yourself, scoped; not for others unless admin.
    let (_, ws) = post(
        &server,
        "/api/ws-token",
        &alice_token,
        json!({ "document": "notes/1", "permission": "read" }),
    )
    .await;
    let claims = server
        .state
        .auth
        .verify_ws_token(ws["token"].as_str().unwrap())
        .unwrap();
    assert_eq!(claims.user_id, alice.id.0);
    assert_eq!(claims.document.as_deref(), Some("notes/1"));
    assert_eq!(claims.permission, collab::auth::Permission::Read);
    assert!(claims.exp - claims.iat <= 300, "five minutes by default");
    let for_admin = json!({ "user_id": admin.id.0 });
    assert_eq!(
        post(&server, "/api/ws-token", &alice_token, for_admin)
            .await
            .0,
        403
    );
    let for_alice = json!({ "user_id": alice.id.0 });
    assert_eq!(
        post(&server, "/api/ws-token", &admin_token, for_alice)
            .await
            .0,
        201
    );
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
