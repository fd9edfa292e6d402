//! A channel's call room: found or created on the first `JoinChannel`, joined directly
//! (nobody rings), with the participant's room role following the channel role. Anyone
//! not banned may join a public channel; doing so makes them a guest of it.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use super::{
    super::{
        ChannelId, Database, UserId,
        entities::{channel_member, room, room_participant as participant},
    },
    channel_tree::{Forest, insert_member, load_path, load_trees},
    channels::Changed,
    rooms::{RoomState, free_index, load, row_of},
};
use crate::{
    error::{Error, Result},
    rpc::{
        ConnectionId,
        proto::{ChannelRole as Role, ParticipantRole},
    },
};

impl Database {
    /// Puts `connection` in `channel`'s room. `Changed` holds the channel's tree before
    /// and after when joining made the user a guest (else both are empty).
    pub async fn join_channel_room(
        &self,
        user: UserId,
        connection: ConnectionId,
        channel: ChannelId,
        livekit_room: String,
    ) -> Result<Changed<RoomState>> {
        self.transaction(move |tx| {
            let livekit_room = livekit_room.clone();
            Box::pin(async move {
                let path = load_path(tx, channel).await?;
                let mut role = path.role(user, channel);
                if role == Role::Banned {
                    return Err(Error::forbidden(format!(
                        "you are banned from channel {channel}"
                    )));
                }
                let (mut before, mut after) = (Forest::default(), Forest::default());
                if !path.can_see(user, channel) {
                    if !path.channel(channel)?.is_public() {
                        return Err(Error::forbidden(format!(
                            "channel {channel} is for its members"
                        )));
                    }
                    let root = path.channel(channel)?.root();
                    before = load_trees(tx, &[root]).await?;
                    let pending = path
                        .members
                        .iter()
                        .find(|row| row.channel_id == channel && row.user_id == user)
                        .cloned();
                    match pending {
                        // An invitation is accepted by joining.
                        Some(row) => {
                            let mut active: channel_member::ActiveModel = row.into();
                            active.accepted = Set(true);
                            active.update(tx).await?;
                        }
                        None => {
                            insert_member(tx, channel, user, Role::Guest, true, None).await?;
                        }
                    }
                    after = load_trees(tx, &[root]).await?;
                    role = after.role(user, channel);
                    if role == Role::Banned {
                        return Err(Error::forbidden(format!(
                            "you are banned from channel {channel}"
                        )));
                    }
                }
                if let Some(row) = row_of(tx, user).await? {
                    return Err(Error::conflict(format!(
                        "you are already in room {} (or being called); leave it first",
                        row.room_id
                    )));
                }
                let existing = room::Entity::find()
                    .filter(room::Column::ChannelId.eq(channel))
                    .one(tx)
                    .await?;
                let room = match existing {
                    Some(room) => room,
                    None => {
                        room::ActiveModel {
                            livekit_room: Set(livekit_room),
                            created_at: Set(Utc::now()),
                            channel_id: Set(Some(channel)),
                            ..Default::default()
                        }
                        .insert(tx)
                        .await?
                    }
                };
                let answered: Vec<_> = load(tx, room.id).await?.answered().cloned().collect();
                let room_role = match role {
                    Role::Admin => ParticipantRole::Admin,
                    Role::Member => ParticipantRole::Member,
                    _ => ParticipantRole::Guest,
                };
                participant::ActiveModel {
                    room_id: Set(room.id),
                    user_id: Set(user),
                    answering_connection_id: Set(Some(connection.id as i32)),
                    answering_connection_server_id: Set(Some(connection.server_id as i32)),
                    answering_connection_lost: Set(false),
                    calling_user_id: Set(user),
                    calling_connection_id: Set(connection.id as i32),
                    calling_connection_server_id: Set(connection.server_id as i32),
                    location_kind: Set(0),
                    location_project_id: Set(None),
                    role: Set(room_role as i16),
                    participant_index: Set(Some(free_index(&answered))),
                    created_at: Set(Utc::now()),
                    ..Default::default()
                }
                .insert(tx)
                .await?;
                Ok(Changed {
                    before,
                    after,
                    value: load(tx, room.id).await?,
                })
            })
        })
        .await
    }
}
