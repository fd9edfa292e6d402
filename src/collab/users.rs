//! User lookup: by ids, or by login prefix.

use super::Session;
use crate::{
    db::{UserId, entities::user, queries::users::MAX_LOGIN_LEN},
    error::{Error, Result},
    rpc::{Response, proto},
};

const MAX_IDS: usize = 1000;
const MAX_SEARCH_RESULTS: u32 = 50;

pub fn user_to_proto(user: &user::Model) -> proto::User {
    proto::User {
        id: user.id.to_proto(),
        login: user.login.clone(),
        name: user.name.clone(),
    }
}

pub async fn get_users(
    request: proto::GetUsers,
    response: Response<proto::GetUsers>,
    session: Session,
) -> Result<()> {
    if request.user_ids.len() > MAX_IDS {
        return Err(Error::invalid(format!(
            "at most {MAX_IDS} user ids per request"
        )));
    }
    let ids: Vec<UserId> = request
        .user_ids
        .iter()
        .filter_map(|id| UserId::from_proto(*id))
        .collect();
    let users = session.db().get_users(&ids).await?;
    response.send(proto::UsersResponse {
        users: users.iter().map(user_to_proto).collect(),
    })?;
    Ok(())
}

pub async fn search_users(
    request: proto::SearchUsers,
    response: Response<proto::SearchUsers>,
    session: Session,
) -> Result<()> {
    if request.query.len() > MAX_LOGIN_LEN {
        return Err(Error::invalid(format!(
            "query is longer than a login ({MAX_LOGIN_LEN} bytes)"
        )));
    }
    let limit = match request.limit {
        0 => MAX_SEARCH_RESULTS,
        limit => limit.min(MAX_SEARCH_RESULTS),
    };
    let users = session
        .db()
        .search_users(&request.query, limit as u64)
        .await?;
    response.send(proto::UsersResponse {
        users: users.iter().map(user_to_proto).collect(),
    })?;
    Ok(())
}
