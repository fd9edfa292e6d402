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
        document, document_snapshot as snapshot, document_snapshot_part as part,
        document_update as update, document_version as version,
    },
};
use crate::error::{Error, Result};

/// A snapshot's state is stored in rows of at most this many bytes (see `save_snapshot`).
pub const SNAPSHOT_PART_BYTES: usize = 256 * 1024;

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

    /// The latest snapshot of `id` (its parts joined) and the updates after it, in order.
    pub async fn stored_document(&self, id: DocumentId) -> Result<Stored> {
        loop {
            let mut snapshot = snapshot::Entity::find()
                .filter(snapshot::Column::DocumentId.eq(id))
                .order_by_desc(snapshot::Column::Epoch)
                .one(&self.conn)
                .await?;
            if let Some(snapshot) = &mut snapshot {
                let parts = part::Entity::find()
                    .filter(part::Column::DocumentId.eq(id))
                    .filter(part::Column::Epoch.eq(snapshot.epoch))
                    .order_by_asc(part::Column::Part)
                    .all(&self.conn)
                    .await?;
                for part in parts {
                    snapshot.state.extend_from_slice(&part.data);
                }
            }
            let after = snapshot.as_ref().map_or(0, |s| s.up_to_update_id);
            let updates = update::Entity::find()
                .filter(update::Column::DocumentId.eq(id))
                .filter(update::Column::Id.gt(after))
                .order_by_asc(update::Column::Id)
                .all(&self.conn)
                .await?;
            // A compaction that committed meanwhile removes this snapshot with its parts
            // and then the log it covers; while the snapshot is still there, what was
            // read of them is whole. Otherwise read again.
            let Some(epoch) = snapshot.as_ref().map(|s| s.epoch) else {
                return Ok(Stored { snapshot, updates });
            };
            let still = snapshot::Entity::find_by_id((id, epoch))
                .one(&self.conn)
                .await?;
            if still.is_some() {
                return Ok(Stored { snapshot, updates });
            }
        }
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

    /// Stores `state` as the document's snapshot covering its updates up to `up_to`, as
    /// its next epoch, and drops older snapshots; returns the epoch. The updates it covers
    /// stay in the log (loads skip them) until `prune_log` removes them.
    ///
    /// A state over `SNAPSHOT_PART_BYTES` is written in parts first, each by a short
    /// write of its own, then the snapshot row with the first part makes them current.
    /// On SQLite the group commits of every document go on between the parts: saving a
    /// 5.5 MB snapshot in one transaction held the only writer for ~47 ms, which showed
    /// in the relay's p99. Parts left by a save that did not finish are removed by the
    /// next one; loads never see them.
    pub async fn save_snapshot(
        &self,
        id: DocumentId,
        state: Vec<u8>,
        state_vector: Vec<u8>,
        up_to: i64,
    ) -> Result<i32> {
        let current = document::Entity::find_by_id(id)
            .one(&self.conn)
            .await?
            .ok_or_else(|| Error::not_found(format!("no document {id}")))?
            .epoch;
        let epoch = current + 1;
        let (head, rest) = state.split_at(state.len().min(SNAPSHOT_PART_BYTES));
        {
            let _turn = self.write_turn().await;
            part::Entity::delete_many()
                .filter(part::Column::DocumentId.eq(id))
                .filter(part::Column::Epoch.gte(epoch))
                .exec(&self.conn)
                .await?;
        }
        for (number, data) in rest.chunks(SNAPSHOT_PART_BYTES).enumerate() {
            let _turn = self.write_turn().await;
            part::ActiveModel {
                document_id: Set(id),
                epoch: Set(epoch),
                part: Set(number as i32),
                data: Set(data.to_vec()),
            }
            .insert(&self.conn)
            .await?;
        }
        self.transaction(|tx| {
            let (head, state_vector) = (head.to_vec(), state_vector.clone());
            Box::pin(async move {
                let doc = document::Entity::find_by_id(id)
                    .one(tx)
                    .await?
                    .ok_or_else(|| Error::not_found(format!("no document {id}")))?;
                if doc.epoch != current {
                    return Err(Error::new(
                        crate::rpc::proto::ErrorCode::Conflict,
                        format!("document {id} was compacted meanwhile"),
                    ));
                }
                snapshot::ActiveModel {
                    document_id: Set(id),
                    epoch: Set(epoch),
                    state: Set(head),
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
                part::Entity::delete_many()
                    .filter(part::Column::DocumentId.eq(id))
                    .filter(part::Column::Epoch.lt(epoch))
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
