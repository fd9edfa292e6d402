//! The generated protobuf types and the message tables. Every message that may be the
//! payload of an envelope is listed once in `messages!`; every request is paired with its
//! response type once in `request_messages!`, so `request(Ping {})` returns `Ack` by type
//! and a handler can only answer with the declared type.

use std::any::TypeId;

#[allow(clippy::all, missing_docs)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/collab.rs"));
}
pub use generated::*;

/// The protocol version this build speaks (`x-collab-protocol-version`).
pub const PROTOCOL_VERSION: u32 = 1;
/// Every version the server accepts in the handshake.
pub const SUPPORTED_PROTOCOL_VERSIONS: &[u32] = &[PROTOCOL_VERSION];

/// A message that can travel as the payload of an [`Envelope`].
pub trait EnvelopedMessage: Clone + std::fmt::Debug + Send + Sync + Sized + 'static {
    /// The message's name, as in the `.proto` file; used in logs and metrics.
    const NAME: &'static str;
    fn into_payload(self) -> envelope::Payload;
    fn from_payload(payload: envelope::Payload) -> Option<Self>;
}

/// A request: the peer must answer it with exactly one `Response` (or an `Error`).
pub trait RequestMessage: EnvelopedMessage {
    type Response: EnvelopedMessage;
}

macro_rules! messages {
    ($($name:ident),* $(,)?) => {
        $(
            impl EnvelopedMessage for $name {
                const NAME: &'static str = stringify!($name);
                fn into_payload(self) -> envelope::Payload {
                    envelope::Payload::$name(self)
                }
                fn from_payload(payload: envelope::Payload) -> Option<Self> {
                    match payload {
                        envelope::Payload::$name(message) => Some(message),
                        _ => None,
                    }
                }
            }
        )*

        /// The type and name of a payload: the registry's key and the metrics label.
        pub fn payload_type(payload: &envelope::Payload) -> (TypeId, &'static str) {
            match payload {
                $(envelope::Payload::$name(_) => (TypeId::of::<$name>(), stringify!($name)),)*
            }
        }
    };
}

macro_rules! request_messages {
    ($(($request:ident, $response:ident)),* $(,)?) => {
        $(impl RequestMessage for $request {
            type Response = $response;
        })*

        /// Whether a payload is a request (so the sender waits for an answer).
        pub fn is_request(payload: &envelope::Payload) -> bool {
            matches!(payload, $(envelope::Payload::$request(_))|*)
        }
    };
}

messages!(
    Hello,
    Ack,
    Error,
    Ping,
    GetUsers,
    SearchUsers,
    UsersResponse,
    RequestContact,
    RespondToContactRequest,
    RemoveContact,
    UpdateContacts,
    CreateRoom,
    CreateRoomResponse,
    Call,
    IncomingCall,
    CallCanceled,
    CallEnded,
    JoinRoom,
    JoinRoomResponse,
    RejoinRoom,
    DeclineCall,
    CancelCall,
    LeaveRoom,
    RoomUpdated,
    UpdateParticipantLocation,
    SetRoomParticipantRole,
    UpdatePresence,
    PresenceUpdated,
    UpdateLiveKitCredentials,
    ShareProject,
    ShareProjectResponse,
    UnshareProject,
    ProjectUnshared,
    JoinProject,
    JoinProjectResponse,
    AddProjectCollaborator,
    LeaveProject,
    RemoveProjectCollaborator,
    UpdateProjectCollaborator,
    ReshareProject,
    UpdateProject,
    UpdateWorktree,
    UpdateDiagnosticSummary,
    SetProjectCollaboratorRole,
    UpdateBuffer,
    OpenBufferByPath,
    OpenBufferById,
    OpenBufferResponse,
    SaveBuffer,
    BufferSaved,
    CreateProjectEntry,
    SearchProject,
    SearchProjectResponse,
    GetHover,
    GetHoverResponse,
    Follow,
    FollowResponse,
    Unfollow,
    UpdateFollowers,
    UpdateChannels,
    SubscribeToChannels,
    SubscribeToChannelsResponse,
    CreateChannel,
    CreateChannelResponse,
    RenameChannel,
    MoveChannel,
    DeleteChannel,
    SetChannelVisibility,
    InviteChannelMember,
    RespondToChannelInvite,
    RemoveChannelMember,
    SetChannelMemberRole,
    GetChannelMembers,
    GetChannelMembersResponse,
    JoinChannel,
    JoinChannelNotes,
    JoinChannelNotesResponse,
    UpdateChannelNotes,
    ChannelNotesUpdated,
    ChannelNotesAwareness,
    RejoinChannelNotes,
    RejoinChannelNotesResponse,
    LeaveChannelNotes,
    ChannelNotesCollaborators,
    ChannelNotesClosed,
    SendChannelMessage,
    ChannelMessageResponse,
    EditChannelMessage,
    DeleteChannelMessage,
    GetChannelMessages,
    GetChannelMessagesResponse,
    AddReaction,
    RemoveReaction,
    AckChannelMessage,
    ChannelMessageSent,
    ChannelMessageUpdated,
    GetNotifications,
    GetNotificationsResponse,
    MarkNotificationRead,
    AddNotification,
    UpdateNotification,
);

request_messages!(
    (Ping, Ack),
    (GetUsers, UsersResponse),
    (SearchUsers, UsersResponse),
    (RequestContact, Ack),
    (RespondToContactRequest, Ack),
    (RemoveContact, Ack),
    (CreateRoom, CreateRoomResponse),
    (Call, Ack),
    (JoinRoom, JoinRoomResponse),
    (RejoinRoom, JoinRoomResponse),
    (DeclineCall, Ack),
    (CancelCall, Ack),
    (LeaveRoom, Ack),
    (UpdateParticipantLocation, Ack),
    (SetRoomParticipantRole, Ack),
    (ShareProject, ShareProjectResponse),
    (UnshareProject, Ack),
    (JoinProject, JoinProjectResponse),
    (LeaveProject, Ack),
    (ReshareProject, Ack),
    (UpdateProject, Ack),
    (UpdateWorktree, Ack),
    (UpdateDiagnosticSummary, Ack),
    (SetProjectCollaboratorRole, Ack),
    (UpdateBuffer, Ack),
    (OpenBufferByPath, OpenBufferResponse),
    (OpenBufferById, OpenBufferResponse),
    (SaveBuffer, BufferSaved),
    (CreateProjectEntry, Ack),
    (SearchProject, SearchProjectResponse),
    (GetHover, GetHoverResponse),
    (Follow, FollowResponse),
    (Unfollow, Ack),
    (SubscribeToChannels, SubscribeToChannelsResponse),
    (CreateChannel, CreateChannelResponse),
    (RenameChannel, Ack),
    (MoveChannel, Ack),
    (DeleteChannel, Ack),
    (SetChannelVisibility, Ack),
    (InviteChannelMember, Ack),
    (RespondToChannelInvite, Ack),
    (RemoveChannelMember, Ack),
    (SetChannelMemberRole, Ack),
    (GetChannelMembers, GetChannelMembersResponse),
    (JoinChannel, JoinRoomResponse),
    (JoinChannelNotes, JoinChannelNotesResponse),
    (UpdateChannelNotes, Ack),
    (RejoinChannelNotes, RejoinChannelNotesResponse),
    (LeaveChannelNotes, Ack),
    (SendChannelMessage, ChannelMessageResponse),
    (EditChannelMessage, ChannelMessageResponse),
    (DeleteChannelMessage, Ack),
    (GetChannelMessages, GetChannelMessagesResponse),
    (AddReaction, Ack),
    (RemoveReaction, Ack),
    (AckChannelMessage, Ack),
    (GetNotifications, GetNotificationsResponse),
    (MarkNotificationRead, Ack),
);

/// The name of a payload, or `"Unknown"` for an envelope without one (a payload field
/// this build does not know).
pub fn payload_name(payload: Option<&envelope::Payload>) -> &'static str {
    payload.map_or("Unknown", |payload| payload_type(payload).1)
}
