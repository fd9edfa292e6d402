//! LiveKit: tokens for participants and the RoomService calls that keep LiveKit's rooms
//! in step with ours. Optional: without `--livekit-url/key/secret` rooms work without
//! audio/video credentials.
//!
//! RoomService calls go through one bounded queue to one worker (so they reach LiveKit
//! in order), each with a timeout; failures are logged and counted, and never block or
//! fail the call flow.

use std::{sync::Arc, time::Duration};

use livekit_api::{
    access_token::{AccessToken, VideoGrants},
    services::room::{RoomClient, UpdateParticipantOptions},
};

use crate::{Config, rpc::proto};

/// RoomService calls give up after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The RoomService calls the server makes, in the order they must reach LiveKit.
enum Op {
    Remove {
        room: String,
        identity: String,
        then_delete_room: bool,
    },
    DeleteRoom {
        room: String,
    },
    SetCanPublish {
        room: String,
        identity: String,
        can_publish: bool,
    },
}

/// RoomService calls waiting for the worker; past this, new calls are dropped (logged and
/// counted): LiveKit being slow must not grow the server's memory.
const QUEUE: usize = 1024;

pub struct LiveKit {
    url: String,
    key: String,
    secret: String,
    token_ttl: Duration,
    /// One worker sends every RoomService call in order, so e.g. "guest" then "member"
    /// never reach LiveKit the other way round.
    ops: tokio::sync::mpsc::Sender<Op>,
    /// RoomService calls that failed or were dropped (a metric).
    pub failures: prometheus::IntCounter,
}

impl LiveKit {
    /// `None` unless URL, key and secret are all configured. Starts the worker, so it
    /// must run inside the runtime.
    pub fn from_config(config: &Config) -> Option<Arc<LiveKit>> {
        let (Some(url), Some(key), Some(secret)) = (
            &config.livekit_url,
            &config.livekit_key,
            &config.livekit_secret,
        ) else {
            return None;
        };
        let rooms = RoomClient::with_api_key(url, key, secret)
            .with_failover(false)
            .with_request_timeout(REQUEST_TIMEOUT);
        let failures = prometheus::IntCounter::new(
            "collab_livekit_failures_total",
            "LiveKit RoomService calls that failed or were dropped",
        )
        .expect("valid metric");
        let (ops, queue) = tokio::sync::mpsc::channel(QUEUE);
        tokio::spawn(work(rooms, queue, failures.clone()));
        Some(Arc::new(LiveKit {
            url: url.clone(),
            key: key.clone(),
            secret: secret.clone(),
            token_ttl: config.livekit_token_ttl,
            ops,
            failures,
        }))
    }

    /// Credentials to join `room` as `identity` (the user id) named `name` (the login).
    pub fn connection_info(
        &self,
        room: &str,
        identity: &str,
        name: &str,
        can_publish: bool,
    ) -> anyhow::Result<proto::LiveKitConnectionInfo> {
        let grants = VideoGrants {
            room_join: true,
            room: room.to_string(),
            can_publish: Some(can_publish),
            can_subscribe: Some(true),
            can_publish_data: Some(true),
            ..Default::default()
        };
        let token = AccessToken::with_api_key(&self.key, &self.secret)
            .with_identity(identity)
            .with_name(name)
            .with_grants(grants)
            .with_ttl(self.token_ttl)
            .to_jwt()?;
        Ok(proto::LiveKitConnectionInfo {
            server_url: self.url.clone(),
            token,
            can_publish,
        })
    }

    fn enqueue(&self, op: Op) {
        if self.ops.try_send(op).is_err() {
            self.failures.inc();
            tracing::warn!("LiveKit call queue full: dropping a RoomService call");
        }
    }

    /// Deletes a LiveKit room whose room is gone.
    pub fn delete_room(&self, room: String) {
        self.enqueue(Op::DeleteRoom { room });
    }

    /// A participant left `room`: remove them from LiveKit's room, then delete that room
    /// if ours is now empty.
    pub fn participant_left(&self, room: String, identity: String, room_empty: bool) {
        self.enqueue(Op::Remove {
            room,
            identity,
            then_delete_room: room_empty,
        });
    }

    pub fn set_can_publish(&self, room: String, identity: String, can_publish: bool) {
        self.enqueue(Op::SetCanPublish {
            room,
            identity,
            can_publish,
        });
    }
}

/// Sends queued RoomService calls one at a time; failures are logged and counted.
async fn work(
    rooms: RoomClient,
    mut queue: tokio::sync::mpsc::Receiver<Op>,
    failures: prometheus::IntCounter,
) {
    while let Some(op) = queue.recv().await {
        let (what, result) = match op {
            Op::Remove {
                room,
                identity,
                then_delete_room,
            } => {
                let removed = rooms.remove_participant(&room, &identity).await;
                if let Err(error) = removed {
                    failures.inc();
                    tracing::warn!(%error, "LiveKit remove_participant failed");
                }
                if !then_delete_room {
                    continue;
                }
                ("delete_room", rooms.delete_room(&room).await)
            }
            Op::DeleteRoom { room } => ("delete_room", rooms.delete_room(&room).await),
            Op::SetCanPublish {
                room,
                identity,
                can_publish,
            } => {
                let permission = livekit_protocol::ParticipantPermission {
                    can_subscribe: true,
                    can_publish,
                    can_publish_data: true,
                    ..Default::default()
                };
                let options = UpdateParticipantOptions {
                    permission: Some(permission),
                    ..Default::default()
                };
                (
                    "update_participant",
                    rooms
                        .update_participant(&room, &identity, options)
                        .await
                        .map(|_| ()),
                )
            }
        };
        if let Err(error) = result {
            failures.inc();
            tracing::warn!(%error, what, "LiveKit call failed");
        }
    }
}
