//! Group commit: one task takes every queued update (up to `MAX_BATCH`) and appends them
//! in one transaction, so under load many updates share one commit, while a lone update
//! is committed at once (no timer). After the commit, each update is relayed to its
//! document's other subscribers (one event per document per commit) and its submitter
//! is answered, in queue order.

use std::sync::{Arc, Weak, atomic::Ordering};

use bytes::Bytes;
use rustc_hash::FxHashMap as HashMap;
use tokio::sync::{mpsc, oneshot};

use super::{Committed, DocEvent, Document, DocumentStore, SubscriberId};
use crate::{
    db::{
        Database, DocumentId, UserId,
        queries::documents::{NewUpdate, Transport},
    },
    error::{Error, Result},
    metrics::Metrics,
};

/// Updates committed together at most.
const MAX_BATCH: usize = 512;
/// Updates queued for the committer at most; submitters wait beyond it.
const QUEUE: usize = 4096;

pub struct Write {
    pub doc: Arc<Document>,
    pub data: Bytes,
    pub author: Option<UserId>,
    pub transport: Transport,
    /// The subscriber the update came from (it is not echoed back).
    pub origin: Option<SubscriberId>,
}

enum Item {
    Write(Write, oneshot::Sender<Result<i64>>),
    Flush(oneshot::Sender<()>),
}

pub struct Writer {
    queue: mpsc::Sender<Item>,
}

impl Writer {
    pub fn start(db: Database, metrics: Metrics, store: Weak<DocumentStore>) -> Writer {
        let (queue, mut items) = mpsc::channel(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while items.recv_many(&mut batch, MAX_BATCH).await > 0 {
                commit(&db, &metrics, &store, std::mem::take(&mut batch)).await;
            }
        });
        Writer { queue }
    }

    pub async fn submit(&self, write: Write) -> Result<oneshot::Receiver<Result<i64>>> {
        let (done, receiver) = oneshot::channel();
        self.queue
            .send(Item::Write(write, done))
            .await
            .map_err(|_| Error::unavailable("the document committer has stopped"))?;
        Ok(receiver)
    }

    /// Returns once everything queued before it is committed.
    pub async fn flush(&self) {
        let (done, receiver) = oneshot::channel();
        if self.queue.send(Item::Flush(done)).await.is_ok() {
            let _ = receiver.await;
        }
    }
}

async fn commit(db: &Database, metrics: &Metrics, store: &Weak<DocumentStore>, items: Vec<Item>) {
    let mut writes = Vec::with_capacity(items.len());
    let mut flushes = Vec::new();
    for item in items {
        match item {
            Item::Write(write, done) => writes.push((write, done)),
            Item::Flush(done) => flushes.push(done),
        }
    }
    if !writes.is_empty() {
        let rows: Vec<NewUpdate> = writes
            .iter()
            .map(|(w, _)| NewUpdate {
                document: w.doc.id,
                data: w.data.to_vec(),
                author: w.author,
                transport: w.transport,
            })
            .collect();
        let started = std::time::Instant::now();
        let outcome = db.append_updates(&rows).await;
        metrics
            .document_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.document_commit_batch.observe(writes.len() as f64);
        let store = store.upgrade();
        match outcome {
            Ok(ids) => {
                // Each document's updates go to its subscribers as one event, in commit
                // order, before any submitter is answered.
                let mut groups: Vec<(Arc<Document>, Vec<Committed>)> = Vec::new();
                let mut group_of: HashMap<DocumentId, usize> = HashMap::default();
                let mut answers = Vec::with_capacity(writes.len());
                for ((write, done), id) in writes.into_iter().zip(ids) {
                    let doc = write.doc;
                    doc.last_committed.fetch_max(id, Ordering::SeqCst);
                    doc.pending_writes.fetch_sub(1, Ordering::SeqCst);
                    if let Some(store) = &store {
                        store.committed(&doc, write.data.len() as u64);
                    }
                    let group = *group_of.entry(doc.id).or_insert_with(|| {
                        groups.push((doc.clone(), Vec::new()));
                        groups.len() - 1
                    });
                    groups[group]
                        .1
                        .push(Committed::new(write.data, write.origin));
                    answers.push((done, id));
                }
                for (doc, updates) in groups {
                    doc.broadcast(&DocEvent::Updates(updates.into()), None);
                }
                for (done, id) in answers {
                    let _ = done.send(Ok(id));
                }
            }
            Err(error) => {
                tracing::error!(%error, updates = writes.len(), "committing document updates failed");
                for (write, done) in writes {
                    write.doc.pending_writes.fetch_sub(1, Ordering::SeqCst);
                    if let Some(store) = &store {
                        store.poison(&write.doc);
                    }
                    let _ = done.send(Err(Error::unavailable(
                        "the update could not be saved; reconnect and resync",
                    )));
                }
            }
        }
    }
    for done in flushes {
        let _ = done.send(());
    }
}
