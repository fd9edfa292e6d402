//! `collab seed`: creates admins and users from a JSON file, idempotently. A second run
//! with the same file changes nothing and says so.
//!
//! ```json
//! { "admins": [{ "login": "admin", "name": "Administrator" }],
//!   "users":  [{ "login": "alice", "name": "Alice" }, { "login": "bob" }],
//!   "channels": ["general"] }
//! ```
//!
//! Each named channel is a members-only root channel (found by name, created if
//! missing) whose admins include every seed admin.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use crate::db::{Database, queries::users::Ensured};

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct SeedFile {
    #[serde(default)]
    pub admins: Vec<SeedUser>,
    #[serde(default)]
    pub users: Vec<SeedUser>,
    /// Root channels, with the admins as channel admins.
    #[serde(default)]
    pub channels: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    pub login: String,
    pub name: Option<String>,
}

/// What a seed run did, by login.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SeedReport {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    /// Channels created, by name.
    pub channels_created: Vec<String>,
}

impl SeedReport {
    pub fn changed_nothing(&self) -> bool {
        self.created.is_empty() && self.updated.is_empty() && self.channels_created.is_empty()
    }
}

impl std::fmt::Display for SeedReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.changed_nothing() {
            return write!(
                f,
                "nothing to change: all {} users are already as seeded",
                self.unchanged.len()
            );
        }
        write!(
            f,
            "created {} users [{}], updated {} [{}], unchanged {}; created {} channels [{}]",
            self.created.len(),
            self.created.join(", "),
            self.updated.len(),
            self.updated.join(", "),
            self.unchanged.len(),
            self.channels_created.len(),
            self.channels_created.join(", ")
        )
    }
}

pub fn read_seed_file(path: &Path) -> anyhow::Result<SeedFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

pub async fn seed(db: &Database, file: &SeedFile) -> anyhow::Result<SeedReport> {
    let mut report = SeedReport::default();
    let entries = file
        .admins
        .iter()
        .map(|user| (user, true))
        .chain(file.users.iter().map(|user| (user, false)));
    for (user, is_admin) in entries {
        let (_, ensured) = db
            .ensure_user(&user.login, user.name.as_deref(), is_admin)
            .await
            .map_err(|error| anyhow::anyhow!("seeding user {:?}: {error}", user.login))?;
        let list = match ensured {
            Ensured::Created => &mut report.created,
            Ensured::Updated => &mut report.updated,
            Ensured::Unchanged => &mut report.unchanged,
        };
        list.push(user.login.clone());
    }
    let mut admins = Vec::new();
    for admin in &file.admins {
        if let Some(user) = db.get_user_by_login(&admin.login).await? {
            admins.push(user.id);
        }
    }
    for name in &file.channels {
        let created = db
            .seed_channel(name, &admins)
            .await
            .map_err(|error| anyhow::anyhow!("seeding channel {name:?}: {error}"))?;
        if created {
            report.channels_created.push(name.clone());
        }
    }
    Ok(report)
}
