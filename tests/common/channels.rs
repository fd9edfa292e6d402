//! Helpers for channel stories: the requests and pushed updates most stories use.

use collab::{
    client::Client,
    rpc::{
        RequestMessage,
        proto::{self, ErrorCode},
    },
};

use super::{TestServer, WAIT, rooms::sorted};

pub fn answer(channel_id: u64, accept: bool) -> proto::RespondToChannelInvite {
    proto::RespondToChannelInvite { channel_id, accept }
}

pub fn find(channels: &[proto::Channel], id: u64) -> &proto::Channel {
    channels
        .iter()
        .find(|channel| channel.id == id)
        .unwrap_or_else(|| panic!("channel {id} is not in {channels:?}"))
}

pub fn ids(channels: &[proto::Channel]) -> Vec<u64> {
    sorted(channels.iter().map(|channel| channel.id).collect())
}

pub fn join(channel_id: u64) -> proto::JoinChannel {
    proto::JoinChannel { channel_id }
}

pub async fn members(client: &Client, channel_id: u64) -> Vec<proto::ChannelMember> {
    client
        .request(proto::GetChannelMembers { channel_id })
        .await
        .expect("the channel's members")
        .members
}

/// The next UpdateChannels delta this connection receives.
pub async fn next_update(client: &Client) -> proto::UpdateChannels {
    client
        .recv_timeout::<proto::UpdateChannels>(WAIT)
        .await
        .expect("an UpdateChannels")
        .payload
}

/// `request` from `client` is refused with `code`.
pub async fn refused<T: RequestMessage>(client: &Client, request: T, code: ErrorCode, what: &str) {
    match client.request(request).await {
        Ok(response) => panic!("{what}: expected {}, got {response:?}", code.as_str_name()),
        Err(error) => assert_eq!(error.code, code, "{what}: {error}"),
    }
}

pub fn removal(channel_id: u64, user_id: u64) -> proto::RemoveChannelMember {
    proto::RemoveChannelMember {
        channel_id,
        user_id,
    }
}

/// The receiver's role in `channel_id` as `update` states it.
pub fn role_of(update: &proto::UpdateChannels, channel_id: u64) -> Option<i32> {
    update
        .roles
        .iter()
        .find(|membership| membership.channel_id == channel_id)
        .map(|membership| membership.role)
}

pub async fn subscribe(client: &Client) -> proto::UpdateChannels {
    client
        .request(proto::SubscribeToChannels {})
        .await
        .expect("subscribed to channels")
        .state
        .expect("SubscribeToChannelsResponse carries the state")
}

/// `login`'s whole view, from a connection of its own.
pub async fn view_of(server: &TestServer, login: &str) -> proto::UpdateChannels {
    let client = server.client(login).await;
    subscribe(&client).await
}
