//! Notifications: paging, marking read, and pushing `AddNotification` /
//! `UpdateNotification` to every connection of the recipient.

use super::Session;
use crate::{
    AppState,
    db::{NotificationId, entities::notification},
    error::{Error, Result},
    rpc::{Response, proto},
};

fn millis(time: chrono::DateTime<chrono::Utc>) -> u64 {
    time.timestamp_millis().max(0) as u64
}

pub(super) fn to_proto(row: &notification::Model) -> proto::Notification {
    proto::Notification {
        id: row.id.to_proto(),
        created_at: millis(row.created_at),
        kind: row.kind.clone(),
        entity_id: row.entity_id.unwrap_or_default().max(0) as u64,
        content: row.content.clone(),
        is_read: row.is_read,
        response: row.response,
    }
}

/// Pushes a new notification to its recipient.
pub(super) fn added(app: &AppState, row: &notification::Model) {
    app.metrics.notifications.inc();
    let message = proto::AddNotification {
        notification: Some(to_proto(row)),
    };
    app.cluster
        .broadcast(app.pool.user_connections(row.recipient_id), &message);
}

/// Pushes a changed notification (read, answered) to its recipient.
pub(super) fn updated(app: &AppState, row: &notification::Model) {
    let message = proto::UpdateNotification {
        notification: Some(to_proto(row)),
    };
    app.cluster
        .broadcast(app.pool.user_connections(row.recipient_id), &message);
}

pub async fn get_notifications(
    request: proto::GetNotifications,
    response: Response<proto::GetNotifications>,
    session: Session,
) -> Result<()> {
    let before = match request.before_id {
        0 => None,
        id => Some(
            NotificationId::from_proto(id)
                .ok_or_else(|| Error::invalid("before_id is not a notification id"))?,
        ),
    };
    let limit = match request.limit {
        0 => crate::db::queries::notifications::MAX_NOTIFICATIONS_PAGE,
        limit => u64::from(limit),
    };
    let (rows, done) = session
        .db()
        .notifications(session.user_id(), before, limit)
        .await?;
    response.send(proto::GetNotificationsResponse {
        notifications: rows.iter().map(to_proto).collect(),
        done,
    })?;
    Ok(())
}

pub async fn mark_notification_read(
    request: proto::MarkNotificationRead,
    response: Response<proto::MarkNotificationRead>,
    session: Session,
) -> Result<()> {
    let id = NotificationId::from_proto(request.notification_id)
        .ok_or_else(|| Error::invalid("notification_id is not a notification id"))?;
    let row = session
        .db()
        .mark_notification_read(session.user_id(), id)
        .await?;
    updated(&session.state, &row);
    response.send(proto::Ack {})?;
    Ok(())
}
