//! Typed ids. Each table's key is its own type, converted only at the proto boundary
//! (`from_proto` / `to_proto`) and stored as a plain integer.

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($($name:ident),* $(,)?) => {$(
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            sea_orm::DeriveValueType,
        )]
        #[serde(transparent)]
        pub struct $name(pub i32);

        impl $name {
            /// The id from a wire value; `None` when it cannot name a row.
            pub fn from_proto(value: u64) -> Option<Self> {
                i32::try_from(value).ok().filter(|id| *id > 0).map(Self)
            }
            pub fn to_proto(self) -> u64 {
                self.0 as u64
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}

id_type!(
    UserId,
    ServerId,
    ContactId,
    RoomId,
    RoomParticipantId,
    ProjectId,
    ProjectCollaboratorId,
    DocumentId,
    ChannelId,
    ChannelMemberId,
    ChannelMessageId,
    NotificationId,
);
