//! A fake LiveKit RoomService: an HTTP server on `127.0.0.1:0` that answers every
//! `POST /twirp/livekit.RoomService/{method}` the way LiveKit's Twirp API does for the
//! calls collab makes (200, `application/protobuf`, an empty message), and records each
//! call so a test can await it instead of sleeping.
//!
//! The Rust SDK (`livekit-api`'s `TwirpClient`) sends protobuf bodies with
//! `content-type: application/protobuf`, decodes a 200 answer as protobuf, and reads a
//! non-200 answer as a JSON Twirp error (`{"code": ..., "msg": ...}`); `fail(true)` makes
//! the fake answer 500 with such a body.
#![allow(dead_code)]

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use livekit_protocol::{DeleteRoomRequest, RoomParticipantIdentity, UpdateParticipantRequest};
use prost::Message as _;
use tokio::{
    sync::{Mutex, mpsc},
    task::JoinHandle,
};

use crate::common::within;

/// One RoomService call as the fake understood it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomServiceCall {
    /// The Twirp method: `DeleteRoom`, `RemoveParticipant`, `UpdateParticipant`, ...
    pub method: String,
    /// The LiveKit room named in the request ("" when the method has none).
    pub room: String,
    /// The participant identity named in the request ("" when the method has none).
    pub identity: String,
    /// `permission.can_publish` of an `UpdateParticipant` that set a permission.
    pub can_publish: Option<bool>,
    /// The request carried a token signed with `SECRET`, issued by `KEY`, granting
    /// `roomAdmin` (or `roomCreate`) for that room — what LiveKit itself requires.
    pub authorized: bool,
}

/// The API key and secret the fake accepts.
pub const KEY: &str = "devkey";
pub const SECRET: &str = "a-fake-livekit-secret-of-at-least-32-chars";

/// Checks the `Authorization: Bearer <jwt>` the server sent, as LiveKit would.
fn authorized(headers: &axum::http::HeaderMap, room: &str) -> bool {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    else {
        return false;
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_issuer(&[KEY]);
    validation.validate_aud = false;
    let key = jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes());
    let Ok(data) = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation) else {
        return false;
    };
    let video = &data.claims["video"];
    let admin = video["roomAdmin"] == true && (room.is_empty() || video["room"] == room);
    admin || video["roomCreate"] == true
}

struct Shared {
    calls: mpsc::UnboundedSender<RoomServiceCall>,
    failing: AtomicBool,
}

pub struct FakeLiveKit {
    /// `http://127.0.0.1:<port>`: what to set as `config.livekit_url`.
    pub url: String,
    shared: Arc<Shared>,
    calls: Mutex<mpsc::UnboundedReceiver<RoomServiceCall>>,
    task: JoinHandle<()>,
}

impl FakeLiveKit {
    pub async fn start() -> FakeLiveKit {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake LiveKit");
        let addr = listener.local_addr().unwrap();
        let (sender, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            calls: sender,
            failing: AtomicBool::new(false),
        });
        let app = Router::new()
            .route("/twirp/livekit.RoomService/{method}", post(room_service))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("fake LiveKit serves");
        });
        FakeLiveKit {
            url: format!("http://{addr}"),
            shared,
            calls: Mutex::new(receiver),
            task,
        }
    }

    /// From now on, answer every call with HTTP 500 (still recording it), or stop doing so.
    pub fn fail(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    /// The next recorded call (fails the test after `WAIT`).
    pub async fn next_call(&self) -> RoomServiceCall {
        within("a LiveKit RoomService call", async {
            self.calls
                .lock()
                .await
                .recv()
                .await
                .expect("the fake LiveKit is running")
        })
        .await
    }

    /// Skips recorded calls until one satisfies `pick`, and returns it.
    pub async fn until(
        &self,
        what: &str,
        pick: impl Fn(&RoomServiceCall) -> bool,
    ) -> RoomServiceCall {
        within(what, async {
            let mut calls = self.calls.lock().await;
            loop {
                let call = calls.recv().await.expect("the fake LiveKit is running");
                if pick(&call) {
                    return call;
                }
            }
        })
        .await
    }
}

impl Drop for FakeLiveKit {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn room_service(
    State(shared): State<Arc<Shared>>,
    Path(method): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let (room, identity, can_publish) = match method.as_str() {
        "DeleteRoom" => {
            let request = DeleteRoomRequest::decode(body).unwrap_or_default();
            (request.room, String::new(), None)
        }
        "RemoveParticipant" => {
            let request = RoomParticipantIdentity::decode(body).unwrap_or_default();
            (request.room, request.identity, None)
        }
        "UpdateParticipant" => {
            let request = UpdateParticipantRequest::decode(body).unwrap_or_default();
            let can_publish = request.permission.map(|permission| permission.can_publish);
            (request.room, request.identity, can_publish)
        }
        _ => (String::new(), String::new(), None),
    };
    let authorized = authorized(&headers, &room);
    let _ = shared.calls.send(RoomServiceCall {
        method,
        room,
        identity,
        can_publish,
        authorized,
    });
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"code":"unauthenticated","msg":"invalid credentials"}"#,
        )
            .into_response();
    }
    if shared.failing.load(Ordering::SeqCst) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"code":"internal","msg":"the fake LiveKit fails on purpose"}"#,
        )
            .into_response();
    }
    // An empty protobuf message decodes as the default of any response type.
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/protobuf")],
        Vec::<u8>::new(),
    )
        .into_response()
}
