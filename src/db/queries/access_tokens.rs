//! Access-token rows: recorded when minted, checked on every authentication, revoked by
//! setting `revoked_at`.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use super::super::{Database, UserId, entities::access_token};
use crate::error::{Error, Result};

impl Database {
    pub async fn insert_access_token(
        &self,
        jti: &str,
        user_id: UserId,
        impersonated_user_id: Option<UserId>,
        is_admin: bool,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let _turn = self.write_turn().await;
        access_token::ActiveModel {
            jti: Set(jti.to_string()),
            user_id: Set(user_id),
            impersonated_user_id: Set(impersonated_user_id),
            is_admin: Set(is_admin),
            created_at: Set(Utc::now()),
            expires_at: Set(expires_at),
            revoked_at: Set(None),
        }
        .insert(&self.conn)
        .await?;
        Ok(())
    }

    pub async fn get_access_token(&self, jti: &str) -> Result<Option<access_token::Model>> {
        Ok(access_token::Entity::find_by_id(jti.to_string())
            .one(&self.conn)
            .await?)
    }

    /// Revokes a token; revoking twice is not an error. `NotFound` for an unknown `jti`.
    pub async fn revoke_access_token(&self, jti: &str) -> Result<access_token::Model> {
        let token = self
            .get_access_token(jti)
            .await?
            .ok_or_else(|| Error::not_found(format!("no access token {jti}")))?;
        if token.revoked_at.is_some() {
            return Ok(token);
        }
        let mut active: access_token::ActiveModel = token.into();
        active.revoked_at = Set(Some(Utc::now()));
        let _turn = self.write_turn().await;
        Ok(active.update(&self.conn).await?)
    }

    /// The ids of tokens revoked at or after `since`.
    pub async fn tokens_revoked_since(&self, since: DateTime<Utc>) -> Result<Vec<String>> {
        Ok(access_token::Entity::find()
            .filter(access_token::Column::RevokedAt.gte(since))
            .all(&self.conn)
            .await?
            .into_iter()
            .map(|token| token.jti)
            .collect())
    }
}
