//! Users: create (idempotently), look up by id or login, search by login prefix.

use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, Func},
};

use super::super::{Database, UserId, entities::user};
use crate::error::{Error, Result};

pub const MAX_LOGIN_LEN: usize = 64;

/// Logins are 1–64 characters of ASCII letters, digits, `-`, `_` and `.`.
pub fn validate_login(login: &str) -> Result<()> {
    let valid = !login.is_empty()
        && login.len() <= MAX_LOGIN_LEN
        && login
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid login {login:?}: use 1-{MAX_LOGIN_LEN} letters, digits, '-', '_' or '.'"
        )))
    }
}

/// What `ensure_user` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    Created,
    Updated,
    Unchanged,
}

impl Database {
    pub async fn get_user(&self, id: UserId) -> Result<Option<user::Model>> {
        Ok(user::Entity::find_by_id(id).one(&self.conn).await?)
    }

    pub async fn get_user_by_login(&self, login: &str) -> Result<Option<user::Model>> {
        Ok(user::Entity::find()
            .filter(user::Column::Login.eq(login))
            .one(&self.conn)
            .await?)
    }

    pub async fn get_users(&self, ids: &[UserId]) -> Result<Vec<user::Model>> {
        Ok(user::Entity::find()
            .filter(user::Column::Id.is_in(ids.iter().copied()))
            .order_by_asc(user::Column::Id)
            .all(&self.conn)
            .await?)
    }

    /// Users whose login starts with `prefix`, ignoring ASCII case.
    pub async fn search_users(&self, prefix: &str, limit: u64) -> Result<Vec<user::Model>> {
        let escaped: String = prefix
            .to_ascii_lowercase()
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let pattern = format!("{escaped}%");
        Ok(user::Entity::find()
            .filter(
                Expr::expr(Func::lower(Expr::col(user::Column::Login)))
                    .like(sea_orm::sea_query::LikeExpr::new(pattern).escape('\\')),
            )
            .order_by_asc(user::Column::Login)
            .limit(limit)
            .all(&self.conn)
            .await?)
    }

    /// Creates the user, or brings an existing one to the given name and admin flag.
    /// Idempotent: a second call with the same arguments changes nothing.
    pub async fn ensure_user(
        &self,
        login: &str,
        name: Option<&str>,
        is_admin: bool,
    ) -> Result<(user::Model, Ensured)> {
        validate_login(login)?;
        let login = login.to_string();
        let name = name.map(str::to_string);
        self.transaction(move |tx| {
            let login = login.clone();
            let name = name.clone();
            Box::pin(async move { ensure_user_in(tx, &login, name.as_deref(), is_admin).await })
        })
        .await
    }
}

async fn ensure_user_in(
    tx: &impl ConnectionTrait,
    login: &str,
    name: Option<&str>,
    is_admin: bool,
) -> Result<(user::Model, Ensured)> {
    let existing = user::Entity::find()
        .filter(user::Column::Login.eq(login))
        .one(tx)
        .await?;
    match existing {
        None => {
            let created = user::ActiveModel {
                login: Set(login.to_string()),
                name: Set(name.unwrap_or(login).to_string()),
                is_admin: Set(is_admin),
                created_at: Set(chrono::Utc::now()),
                ..Default::default()
            }
            .insert(tx)
            .await?;
            Ok((created, Ensured::Created))
        }
        Some(user) => {
            let wanted_name = name.unwrap_or(&user.name).to_string();
            if user.is_admin == is_admin && user.name == wanted_name {
                return Ok((user, Ensured::Unchanged));
            }
            let mut active: user::ActiveModel = user.into();
            active.is_admin = Set(is_admin);
            active.name = Set(wanted_name);
            Ok((active.update(tx).await?, Ensured::Updated))
        }
    }
}
