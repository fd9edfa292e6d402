//! LiveKit: tokens for participants and the RoomService calls that keep LiveKit's rooms
//! in step with ours. Optional: without `--livekit-url/key/secret` rooms work without
//! audio/video credentials.
//!
//! RoomService calls run in the background with a timeout; their failures are logged and
//! counted, and never block or fail the call flow.

use std::{sync::Arc, time::Duration};

use livekit_api::{
    access_token::{AccessToken, VideoGrants},
    services::room::{RoomClient, UpdateParticipantOptions},
};

use crate::{Config, rpc::proto};

/// RoomService calls give up after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub struct LiveKit {
    url: String,
    key: String,
    secret: String,
    token_ttl: Duration,
    rooms: RoomClient,
    /// RoomService calls that failed (a metric).
    pub failures: prometheus::IntCounter,
}

impl LiveKit {
    /// `None` unless URL, key and secret are all configured.
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
        Some(Arc::new(LiveKit {
            url: url.clone(),
            key: key.clone(),
            secret: secret.clone(),
            token_ttl: config.livekit_token_ttl,
            rooms,
            failures: prometheus::IntCounter::new(
                "collab_livekit_failures_total",
                "LiveKit RoomService calls that failed",
            )
            .expect("valid metric"),
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

    fn spawn(
        self: &Arc<Self>,
        what: &'static str,
        call: impl Future<Output = Result<(), String>> + Send + 'static,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(error) = call.await {
                this.failures.inc();
                tracing::warn!(%error, what, "LiveKit call failed");
            }
        });
    }

    /// Deletes a LiveKit room whose room is gone.
    pub fn delete_room(self: &Arc<Self>, room: String) {
        let this = self.clone();
        self.spawn("delete_room", async move {
            this.rooms
                .delete_room(&room)
                .await
                .map_err(|e| e.to_string())
        });
    }

    /// A participant left `room`: remove them from LiveKit's room, then delete that room
    /// if ours is now empty (in that order, in one task).
    pub fn participant_left(self: &Arc<Self>, room: String, identity: String, room_empty: bool) {
        let this = self.clone();
        self.spawn("remove_participant", async move {
            let removed = this
                .rooms
                .remove_participant(&room, &identity)
                .await
                .map_err(|e| e.to_string());
            if room_empty {
                this.rooms
                    .delete_room(&room)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            removed
        });
    }

    pub fn set_can_publish(self: &Arc<Self>, room: String, identity: String, can_publish: bool) {
        let this = self.clone();
        self.spawn("update_participant", async move {
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
            this.rooms
                .update_participant(&room, &identity, options)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
    }
}
