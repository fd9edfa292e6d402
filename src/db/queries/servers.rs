//! The `servers` table: a row per running process, a heartbeat, and a stop mark.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};

use super::super::{Database, ServerId, entities::server};
use crate::error::Result;

impl Database {
    pub async fn register_server(&self, hostname: &str, version: &str) -> Result<ServerId> {
        let now = Utc::now();
        let _turn = self.write_turn().await;
        let row = server::ActiveModel {
            hostname: Set(hostname.to_string()),
            version: Set(version.to_string()),
            started_at: Set(now),
            heartbeat_at: Set(now),
            stopped_at: Set(None),
            ..Default::default()
        }
        .insert(&self.conn)
        .await?;
        Ok(row.id)
    }

    pub async fn server_heartbeat(&self, id: ServerId) -> Result<()> {
        let _turn = self.write_turn().await;
        server::ActiveModel {
            id: Set(id),
            heartbeat_at: Set(Utc::now()),
            ..Default::default()
        }
        .update(&self.conn)
        .await?;
        Ok(())
    }

    pub async fn mark_server_stopped(&self, id: ServerId) -> Result<()> {
        let now = Utc::now();
        let _turn = self.write_turn().await;
        server::ActiveModel {
            id: Set(id),
            heartbeat_at: Set(now),
            stopped_at: Set(Some(now)),
            ..Default::default()
        }
        .update(&self.conn)
        .await?;
        Ok(())
    }

    pub async fn get_server(&self, id: ServerId) -> Result<Option<server::Model>> {
        Ok(server::Entity::find_by_id(id).one(&self.conn).await?)
    }
}
