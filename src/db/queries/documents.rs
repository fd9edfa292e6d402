//! The document store's tables: documents by name, the append-only update log (written
//! in batches, one transaction per batch), compacted snapshots and named versions.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::super::{
    Database, DocumentId, UserId,
    entities::{
        document, document_snapshot as snapshot, document_update as update,
        document_version as version,
    },
};
use crate::error::{Error, Result};

/// How an update reached the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Ws = 0,
    Rpc = 1,
    Http = 2,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Rpc => "rpc",
            Transport::Http => "http",
        }
    }
}

/// An update to append.
#[derive(Clone, Debug)]
pub struct NewUpdate {
    pub document: DocumentId,
    pub data: Vec<u8>,
    pub author: Option<UserId>,
    pub transport: Transport,
}

/// What loading a document reads: its latest snapshot and the updates after it.
pub struct Stored {
    pub snapshot: Option<snapshot::Model>,
    pub updates: Vec<update::Model>,
}

impl Database {
    /// The document named `name`, created if it does not exist.
    pub async fn ensure_document(&self, name: &str) -> Result<document::Model> {
        let find = || {
            document::Entity::find()
                .filter(document::Column::Name.eq(name))
                .one(&self.conn)
        };
        if let Some(found) = find().await? {
            return Ok(found);
        }
        let inserted = {
            let _turn = self.write_turn().await;
            document::ActiveModel {
                name: Set(name.to_string()),
                epoch: Set(0),
                created_at: Set(Utc::now()),
                ..Default::default()
            }
            .insert(&self.conn)
            .await
        };
        match inserted {
            Ok(document) => Ok(document),
            // Created concurrently (another server, another request): use that one.
            Err(error) if crate::db::is_unique_violation(&error) => find()
                .await?
                .ok_or_else(|| Error::Internal(anyhow::anyhow!("document {name} vanished"))),
            Err(error) => Err(error.into()),
        }
    }

    pub async fn find_document(&self, name: &str) -> Result<Option<document::Model>> {
        Ok(document::Entity::find()
            .filter(document::Column::Name.eq(name))
            .one(&self.conn)
            .await?)
    }

    /// The latest snapshot of `id` and the updates after it, in order.
    pub async fn stored_document(&self, id: DocumentId) -> Result<Stored> {
        let snapshot = snapshot::Entity::find()
            .filter(snapshot::Column::DocumentId.eq(id))
            .order_by_desc(snapshot::Column::Epoch)
            .one(&self.conn)
            .await?;
        let after = snapshot.as_ref().map_or(0, |s| s.up_to_update_id);
        let updates = update::Entity::find()
            .filter(update::Column::DocumentId.eq(id))
            .filter(update::Column::Id.gt(after))
            .order_by_asc(update::Column::Id)
            .all(&self.conn)
            .await?;
        Ok(Stored { snapshot, updates })
    }

    /// Appends `updates` in one transaction (one commit for the whole batch) and returns
    /// their sequence numbers, in order. Not retried: the caller reports the failure.
    pub async fn append_updates(&self, updates: &[NewUpdate]) -> Result<Vec<i64>> {
        use sea_orm::TransactionTrait;
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let rows = updates.iter().map(|new| update::ActiveModel {
            document_id: Set(new.document),
            data: Set(new.data.clone()),
            author_id: Set(new.author),
            transport: Set(new.transport as i16),
            created_at: Set(now),
            ..Default::default()
        });
        // One multi-row INSERT: a round trip per row cost PostgreSQL most of its time.
        let _turn = self.write_turn().await;
        let tx = self.conn.begin().await?;
        let mut ids = update::Entity::insert_many(rows)
            .exec_with_returning_keys(&tx)
            .await?;
        tx.commit().await?;
        // Ids come from one sequence in row order; sorted, they match `updates`.
        ids.sort_unstable();
        Ok(ids)
    }

    /// Stores a snapshot of the document covering its updates up to `up_to`, as its next
    /// epoch, and drops older snapshots; returns the epoch. The updates it covers stay in
    /// the log (loads skip them) until `prune_log` removes them in small steps.
    ///
    /// `encode` gives the state and its state vector. It is called once per attempt, so a
    /// retried transaction encodes again instead of every attempt holding a copy of a
    /// state that can be megabytes; any state encoded after `up_to` was read covers it.
    pub async fn save_snapshot(
        &self,
        id: DocumentId,
        encode: impl Fn() -> (Vec<u8>, Vec<u8>) + Send + Sync,
        up_to: i64,
    ) -> Result<i32> {
        self.transaction(|tx| {
            let (state, state_vector) = encode();
            Box::pin(async move {
                let doc = document::Entity::find_by_id(id)
                    .one(tx)
                    .await?
                    .ok_or_else(|| Error::not_found(format!("no document {id}")))?;
                let epoch = doc.epoch + 1;
                snapshot::ActiveModel {
                    document_id: Set(id),
                    epoch: Set(epoch),
                    state: Set(state),
                    state_vector: Set(state_vector),
                    up_to_update_id: Set(up_to),
                    created_at: Set(Utc::now()),
                }
                .insert(tx)
                .await?;
                snapshot::Entity::delete_many()
                    .filter(snapshot::Column::DocumentId.eq(id))
                    .filter(snapshot::Column::Epoch.lt(epoch))
                    .exec(tx)
                    .await?;
                let mut active: document::ActiveModel = doc.into();
                active.epoch = Set(epoch);
                active.update(tx).await?;
                Ok(epoch)
            })
        })
        .await
    }

    /// Deletes the document's updates up to `up_to` (a snapshot covers them), at most
    /// `PRUNE_STEP` rows per statement. Each step is a write of its own, so on SQLite the
    /// group commits of every document go on between steps: deleting 100,000 rows at once
    /// held the only writer's lock long enough to show in the relay's p99.
    pub async fn prune_log(&self, id: DocumentId, up_to: i64) -> Result<u64> {
        const PRUNE_STEP: u64 = 2_000;
        let mut deleted = 0;
        loop {
            // The first `PRUNE_STEP` covered ids, oldest first: the last one bounds the step.
            let Some(bound) = update::Entity::find()
                .select_only()
                .column(update::Column::Id)
                .filter(update::Column::DocumentId.eq(id))
                .filter(update::Column::Id.lte(up_to))
                .order_by_asc(update::Column::Id)
                .offset(PRUNE_STEP - 1)
                .limit(1)
                .into_tuple::<i64>()
                .one(&self.conn)
                .await?
            else {
                break;
            };
            deleted += self.delete_log(id, bound).await?;
        }
        Ok(deleted + self.delete_log(id, up_to).await?)
    }

    async fn delete_log(&self, id: DocumentId, up_to: i64) -> Result<u64> {
        let _turn = self.write_turn().await;
        let outcome = update::Entity::delete_many()
            .filter(update::Column::DocumentId.eq(id))
            .filter(update::Column::Id.lte(up_to))
            .exec(&self.conn)
            .await?;
        Ok(outcome.rows_affected)
    }

    /// Stores a named version; returns its number (1, 2, ...).
    pub async fn create_version(
        &self,
        id: DocumentId,
        name: String,
        state: Vec<u8>,
        author: Option<UserId>,
    ) -> Result<i32> {
        self.transaction(move |tx| {
            let (name, state) = (name.clone(), state.clone());
            Box::pin(async move {
                let last = version::Entity::find()
                    .filter(version::Column::DocumentId.eq(id))
                    .order_by_desc(version::Column::Version)
                    .one(tx)
                    .await?
                    .map_or(0, |v| v.version);
                let row = version::ActiveModel {
                    document_id: Set(id),
                    version: Set(last + 1),
                    name: Set(name),
                    state: Set(state),
                    author_id: Set(author),
                    created_at: Set(Utc::now()),
                }
                .insert(tx)
                .await?;
                Ok(row.version)
            })
        })
        .await
    }

    /// The named versions of a document, oldest first, without their states.
    pub async fn list_versions(&self, id: DocumentId) -> Result<Vec<version::Model>> {
        Ok(version::Entity::find()
            .filter(version::Column::DocumentId.eq(id))
            .order_by_asc(version::Column::Version)
            .select_only()
            .columns([
                version::Column::DocumentId,
                version::Column::Version,
                version::Column::Name,
                version::Column::AuthorId,
                version::Column::CreatedAt,
            ])
            .column_as(sea_orm::sea_query::Expr::val(Vec::<u8>::new()), "state")
            .into_model::<version::Model>()
            .all(&self.conn)
            .await?)
    }

    pub async fn get_version(&self, id: DocumentId, number: i32) -> Result<Option<version::Model>> {
        Ok(version::Entity::find_by_id((id, number))
            .one(&self.conn)
            .await?)
    }
}
