//! `Session`: the authenticated connection a handler runs for.

use std::sync::Arc;

use crate::{AppState, auth::Principal, db::UserId, rpc::ConnectionId};

#[derive(Clone)]
pub struct Session {
    pub connection_id: ConnectionId,
    pub principal: Arc<Principal>,
    pub state: Arc<AppState>,
}

impl Session {
    pub fn user_id(&self) -> UserId {
        self.principal.user_id()
    }

    pub fn db(&self) -> &crate::db::Database {
        &self.state.db
    }
}
