//! Channel members: invitations (with a notification), answers, removal, roles and the
//! member list. Changes run under the channel lock like tree changes (see `channels`),
//! and each affected subscriber receives the difference in what they see.

use super::{
    Session,
    channels::{channel_id, publish, role},
    notifications,
};
use crate::{
    error::Result,
    rpc::{Response, proto},
};

fn user_id(value: u64) -> Result<crate::db::UserId> {
    super::rooms::user_id(value, "user_id")
}

pub async fn invite_channel_member(
    request: proto::InviteChannelMember,
    response: Response<proto::InviteChannelMember>,
    session: Session,
) -> Result<()> {
    let (id, invitee, role) = (
        channel_id(request.channel_id)?,
        user_id(request.user_id)?,
        role(request.role)?,
    );
    let app = &session.state;
    let _order = app.channels.lock.lock().await;
    let changed = app
        .db
        .invite_channel_member(session.user_id(), id, invitee, role)
        .await?;
    publish(app, &changed.before, &changed.after);
    notifications::added(app, &changed.value);
    response.send(proto::Ack {})?;
    Ok(())
}

pub async fn respond_to_channel_invite(
    request: proto::RespondToChannelInvite,
    response: Response<proto::RespondToChannelInvite>,
    session: Session,
) -> Result<()> {
    let id = channel_id(request.channel_id)?;
    let app = &session.state;
    let _order = app.channels.lock.lock().await;
    let changed = app
        .db
        .respond_to_channel_invite(session.user_id(), id, request.accept)
        .await?;
    publish(app, &changed.before, &changed.after);
    for row in &changed.value {
        notifications::updated(app, row);
    }
    response.send(proto::Ack {})?;
    Ok(())
}

pub async fn remove_channel_member(
    request: proto::RemoveChannelMember,
    response: Response<proto::RemoveChannelMember>,
    session: Session,
) -> Result<()> {
    let (id, target) = (channel_id(request.channel_id)?, user_id(request.user_id)?);
    let app = &session.state;
    let _order = app.channels.lock.lock().await;
    let changed = app
        .db
        .remove_channel_member(session.user_id(), id, target)
        .await?;
    publish(app, &changed.before, &changed.after);
    response.send(proto::Ack {})?;
    Ok(())
}

pub async fn set_channel_member_role(
    request: proto::SetChannelMemberRole,
    response: Response<proto::SetChannelMemberRole>,
    session: Session,
) -> Result<()> {
    let (id, target, role) = (
        channel_id(request.channel_id)?,
        user_id(request.user_id)?,
        role(request.role)?,
    );
    let app = &session.state;
    let _order = app.channels.lock.lock().await;
    let changed = app
        .db
        .set_channel_member_role(session.user_id(), id, target, role)
        .await?;
    publish(app, &changed.before, &changed.after);
    response.send(proto::Ack {})?;
    Ok(())
}

pub async fn get_channel_members(
    request: proto::GetChannelMembers,
    response: Response<proto::GetChannelMembers>,
    session: Session,
) -> Result<()> {
    let id = channel_id(request.channel_id)?;
    let rows = session.db().channel_members(session.user_id(), id).await?;
    response.send(proto::GetChannelMembersResponse {
        members: rows
            .iter()
            .map(|row| proto::ChannelMember {
                user_id: row.user_id.to_proto(),
                role: i32::from(row.role),
                accepted: row.accepted,
            })
            .collect(),
    })?;
    Ok(())
}
