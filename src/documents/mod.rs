//! The document store: durable Yjs documents shared by the Yjs endpoint (`yjs`), the REST
//! API and channel notes.
//!
//! - A document is loaded once per server ([`DocumentStore::open`]): its latest snapshot
//!   plus the updates after it, before anyone is answered.
//! - An update is checked and applied in memory, then appended to the log by the group
//!   committer ([`writer`]); only once its batch is committed is it relayed to the
//!   document's other subscribers and acknowledged. A failed commit closes the
//!   document's subscribers, whose clients then resync what was lost.
//! - Awareness (cursors) lives in memory only.
//! - A document nobody uses leaves memory after `--doc-idle-timeout`, once its writes
//!   are committed; when its log has `--compaction-threshold` updates and is as large as
//!   its snapshot, or when it goes idle, the log is merged into a snapshot in the
//!   background ([`compaction`]).

pub mod compaction;
pub mod writer;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use parking_lot::Mutex;
use yrs::{
    ClientID, Doc, ReadTxn, StateVector, Transact, Update, sync::Awareness,
    updates::decoder::Decode,
};

use crate::{
    db::{Database, DocumentId, UserId, queries::documents::Transport},
    error::{Error, Result},
    metrics::Metrics,
};

/// What a subscriber of a document receives. Each payload comes with its y-websocket
/// frame, encoded once per broadcast rather than once per socket.
#[derive(Clone, Debug)]
pub enum DocEvent {
    /// Yjs v1 updates committed together, in commit order. One event per group commit
    /// rather than per update: under load a socket then takes one queue entry, one wakeup
    /// and one subscriber-map walk per commit instead of per update (those were a quarter
    /// of the server's time at 100 editors × 250 updates/s).
    Updates(Arc<[Committed]>),
    /// An encoded awareness update (y-protocols awareness payload).
    Awareness { update: Bytes, frame: Bytes },
    /// The document can no longer be served (a commit failed); resync from scratch.
    Closed(&'static str),
}

/// One committed update, as relayed.
#[derive(Clone, Debug)]
pub struct Committed {
    pub update: Bytes,
    /// The y-websocket frame carrying it.
    pub frame: Bytes,
    /// The subscriber it came from: it is not sent back there.
    pub origin: Option<SubscriberId>,
}

impl Committed {
    pub fn new(update: Bytes, origin: Option<SubscriberId>) -> Self {
        let mut frame = Vec::with_capacity(update.len() + 8);
        crate::yjs::protocol::update(&mut frame, &update);
        Committed {
            update,
            frame: frame.into(),
            origin,
        }
    }
}

impl DocEvent {
    pub fn awareness(update: Bytes) -> Self {
        let mut frame = Vec::with_capacity(update.len() + 8);
        crate::yjs::protocol::awareness(&mut frame, &update);
        DocEvent::Awareness {
            update,
            frame: frame.into(),
        }
    }

    /// The updates of an `Updates` event that `me` did not send.
    pub fn updates_for(
        updates: &[Committed],
        me: SubscriberId,
    ) -> impl Iterator<Item = &Committed> + Clone {
        updates.iter().filter(move |c| c.origin != Some(me))
    }
}

/// A connection that receives a document's events (a Yjs socket, a channel-notes
/// editor), as subscriber `me`. `deliver` must not wait.
pub trait Subscriber: Send + Sync {
    fn deliver(&self, me: SubscriberId, event: &DocEvent);
}

pub type SubscriberId = u64;

pub struct Document {
    pub id: DocumentId,
    pub name: String,
    awareness: Mutex<Awareness>,
    /// Which subscriber first sent each awareness client id (clients also relay the
    /// states of others, so the first sender is the owner).
    awareness_owners: Mutex<HashMap<ClientID, SubscriberId>>,
    subscribers: Mutex<HashMap<SubscriberId, Arc<dyn Subscriber>>>,
    /// Subscribers plus open handles: the document stays loaded while this is above 0.
    users: AtomicUsize,
    /// Updates applied in memory and not yet committed.
    pending_writes: AtomicUsize,
    /// Updates committed since the last snapshot (or load).
    since_snapshot: AtomicU64,
    /// Their bytes, and the snapshot's: compaction waits until the log is as large as
    /// the snapshot it rewrites (see `compaction::due`).
    log_bytes: AtomicU64,
    snapshot_bytes: AtomicU64,
    /// The id of the last update committed (or loaded): a snapshot taken from memory
    /// covers the log up to it.
    last_committed: AtomicI64,
    compacting: AtomicBool,
    /// A commit failed: the in-memory state may hold what the log does not.
    poisoned: AtomicBool,
}

/// A loaded document's log after its snapshot, and the snapshot's size.
struct LogSize {
    updates: u64,
    bytes: u64,
    snapshot_bytes: u64,
    /// The last update's id (the snapshot's last one when the log is empty).
    last_id: i64,
}

impl Document {
    fn new(id: DocumentId, name: String, doc: Doc, log: LogSize) -> Self {
        Document {
            id,
            name,
            awareness: Mutex::new(Awareness::new(doc)),
            awareness_owners: Mutex::new(HashMap::new()),
            subscribers: Mutex::new(HashMap::new()),
            users: AtomicUsize::new(0),
            pending_writes: AtomicUsize::new(0),
            since_snapshot: AtomicU64::new(log.updates),
            log_bytes: AtomicU64::new(log.bytes),
            snapshot_bytes: AtomicU64::new(log.snapshot_bytes),
            last_committed: AtomicI64::new(log.last_id),
            compacting: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
        }
    }

    /// Runs `f` with the awareness (and its document) locked.
    pub fn with_awareness<T>(&self, f: impl FnOnce(&mut Awareness) -> T) -> T {
        f(&mut self.awareness.lock())
    }

    pub fn state_vector(&self) -> StateVector {
        self.awareness.lock().doc().transact().state_vector()
    }

    /// The document as one update, or only what `since` lacks.
    pub fn encode_since(&self, since: &StateVector) -> Vec<u8> {
        self.awareness
            .lock()
            .doc()
            .transact()
            .encode_state_as_update_v1(since)
    }

    /// Checks and applies a Yjs v1 update in memory. An update that does not decode or
    /// integrate is refused and changes nothing here.
    pub fn apply(&self, data: &[u8]) -> Result<()> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(Error::unavailable("the document is reloading; reconnect"));
        }
        let update = Update::decode_v1(data)
            .map_err(|error| Error::invalid(format!("the update does not decode: {error}")))?;
        let awareness = self.awareness.lock();
        let mut txn = awareness.doc().transact_mut();
        txn.apply_update(update)
            .map_err(|error| Error::invalid(format!("the update does not apply: {error}")))
    }

    /// Records `subscriber` as the owner of the ids nobody owns yet.
    pub fn claim_awareness(
        &self,
        ids: impl IntoIterator<Item = ClientID>,
        subscriber: SubscriberId,
    ) {
        let mut owners = self.awareness_owners.lock();
        for id in ids {
            owners.entry(id).or_insert(subscriber);
        }
    }

    /// Removes the awareness states `subscriber` owns; returns the removal to broadcast.
    pub fn release_awareness(&self, subscriber: SubscriberId) -> Option<Bytes> {
        let ids: Vec<ClientID> = {
            let mut owners = self.awareness_owners.lock();
            let ids = owners
                .iter()
                .filter(|(_, owner)| **owner == subscriber)
                .map(|(id, _)| *id)
                .collect();
            owners.retain(|_, owner| *owner != subscriber);
            ids
        };
        self.remove_awareness(ids)
    }

    /// Removes awareness states not renewed within `max_age`; returns the removal.
    pub fn expire_awareness(&self, max_age: std::time::Duration) -> Option<Bytes> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let cutoff = now.saturating_sub(max_age.as_millis() as u64);
        let stale: Vec<ClientID> = self
            .awareness
            .lock()
            .iter()
            .filter(|(_, state)| state.data.is_some() && state.last_updated < cutoff)
            .map(|(id, _)| id)
            .collect();
        if !stale.is_empty() {
            let mut owners = self.awareness_owners.lock();
            for id in &stale {
                owners.remove(id);
            }
        }
        self.remove_awareness(stale)
    }

    fn remove_awareness(&self, ids: Vec<ClientID>) -> Option<Bytes> {
        if ids.is_empty() {
            return None;
        }
        let mut awareness = self.awareness.lock();
        for id in &ids {
            awareness.remove_state(*id);
        }
        let update = awareness.update_with_clients(ids).ok()?;
        Some(yrs::updates::encoder::Encode::encode_v1(&update).into())
    }

    /// Sends `event` to every subscriber but `except`.
    pub fn broadcast(&self, event: &DocEvent, except: Option<SubscriberId>) {
        let subscribers: Vec<_> = self
            .subscribers
            .lock()
            .iter()
            .filter(|(id, _)| Some(**id) != except)
            .map(|(id, s)| (*id, s.clone()))
            .collect();
        for (id, subscriber) in subscribers {
            subscriber.deliver(id, event);
        }
    }

    pub fn unsubscribe(&self, id: SubscriberId) {
        self.subscribers.lock().remove(&id);
    }
}

/// A use of a loaded document; while any exists the document stays in memory.
pub struct DocHandle {
    pub doc: Arc<Document>,
    store: Arc<DocumentStore>,
}

impl std::ops::Deref for DocHandle {
    type Target = Document;
    fn deref(&self) -> &Document {
        &self.doc
    }
}

impl Drop for DocHandle {
    fn drop(&mut self) {
        if self.doc.users.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.store.schedule_unload(self.doc.clone());
        }
    }
}

type Slot = Arc<tokio::sync::OnceCell<Arc<Document>>>;

/// A document from its stored parts (a snapshot, then updates), skipping (and logging)
/// what does not decode or apply. Each part gets its own transaction: yrs handles one
/// update per transaction in linear time, while many updates in one transaction (or
/// merged without a document) take quadratic time — 13 s instead of 0.13 s for 100,000
/// typed characters.
pub fn rebuild<'a>(parts: impl Iterator<Item = &'a [u8]>) -> Doc {
    let doc = Doc::new();
    for data in parts {
        match Update::decode_v1(data) {
            Ok(update) => {
                if let Err(error) = doc.transact_mut().apply_update(update) {
                    tracing::error!(%error, "a stored update does not apply; skipped");
                }
            }
            Err(error) => tracing::error!(%error, "a stored update does not decode; skipped"),
        }
    }
    doc
}

pub struct DocumentStore {
    db: Database,
    metrics: Metrics,
    registry: Mutex<HashMap<String, Slot>>,
    writer: writer::Writer,
    next_subscriber: AtomicU64,
    max_docs: usize,
    idle_timeout: std::time::Duration,
    compaction_threshold: u64,
    shutdown: tokio_util::sync::CancellationToken,
    rates: Mutex<Rates>,
}

/// Updates and bytes per second, measured between two `sample_rates` calls.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Rates {
    pub updates_per_second: f64,
    pub bytes_per_second: f64,
    #[serde(skip)]
    last: Option<(std::time::Instant, u64, u64)>,
}

/// Document names: 1–512 bytes, no control characters, no empty path segment.
pub fn check_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 512
        && !name.chars().any(char::is_control)
        && !name.split('/').any(str::is_empty);
    if !valid {
        return Err(Error::invalid(
            "a document name is 1 to 512 bytes of '/'-separated non-empty segments",
        ));
    }
    Ok(())
}

impl DocumentStore {
    pub fn new(
        db: Database,
        metrics: Metrics,
        config: &crate::Config,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Arc<Self> {
        Arc::new_cyclic(|store| DocumentStore {
            writer: writer::Writer::start(db.clone(), metrics.clone(), store.clone()),
            db,
            metrics,
            registry: Mutex::new(HashMap::new()),
            next_subscriber: AtomicU64::new(1),
            max_docs: config.max_docs as usize,
            idle_timeout: config.doc_idle_timeout,
            compaction_threshold: config.compaction_threshold,
            shutdown,
            rates: Mutex::new(Rates::default()),
        })
    }

    pub fn loaded(&self) -> usize {
        self.registry.lock().len()
    }

    /// The document named `name`, loaded (from its snapshot and log) if needed.
    pub async fn open(self: &Arc<Self>, name: &str) -> Result<DocHandle> {
        check_name(name)?;
        loop {
            let slot = {
                let mut registry = self.registry.lock();
                if !registry.contains_key(name) && registry.len() >= self.max_docs {
                    return Err(Error::new(
                        crate::rpc::proto::ErrorCode::Unavailable,
                        format!(
                            "{} documents are open (--max-docs); try again later",
                            self.max_docs
                        ),
                    ));
                }
                registry.entry(name.to_string()).or_default().clone()
            };
            let doc = slot
                .get_or_try_init(|| self.load(name))
                .await
                .inspect_err(|_| {
                    // Let the next open retry from scratch.
                    let mut registry = self.registry.lock();
                    if registry
                        .get(name)
                        .is_some_and(|s| Arc::ptr_eq(s, &slot) && !s.initialized())
                    {
                        registry.remove(name);
                    }
                })?
                .clone();
            // Count the use under the registry lock, so an unload cannot slip between.
            let registry = self.registry.lock();
            if registry.get(name).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                doc.users.fetch_add(1, Ordering::SeqCst);
                return Ok(DocHandle {
                    doc,
                    store: self.clone(),
                });
            }
            // Unloaded between the load and now: open again.
        }
    }

    async fn load(&self, name: &str) -> Result<Arc<Document>> {
        let started = std::time::Instant::now();
        let row = self.db.ensure_document(name).await?;
        let stored = self.db.stored_document(row.id).await?;
        let log = LogSize {
            updates: stored.updates.len() as u64,
            bytes: stored.updates.iter().map(|u| u.data.len() as u64).sum(),
            snapshot_bytes: stored.snapshot.as_ref().map_or(0, |s| s.state.len() as u64),
            last_id: stored.updates.last().map_or_else(
                || stored.snapshot.as_ref().map_or(0, |s| s.up_to_update_id),
                |u| u.id,
            ),
        };
        let doc = tokio::task::spawn_blocking(move || {
            let parts = stored
                .snapshot
                .iter()
                .map(|s| s.state.as_slice())
                .chain(stored.updates.iter().map(|u| u.data.as_slice()));
            rebuild(parts)
        })
        .await
        .map_err(|error| Error::Internal(anyhow::anyhow!("loading a document: {error}")))?;
        self.metrics.documents_loaded.inc();
        self.metrics
            .document_load_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(Arc::new(Document::new(row.id, name.to_string(), doc, log)))
    }

    /// Adds a subscriber to an open document; returns its id. At most `max` per
    /// document (`None`: no limit).
    pub fn subscribe(
        &self,
        handle: &DocHandle,
        subscriber: Arc<dyn Subscriber>,
        max: Option<usize>,
    ) -> Result<SubscriberId> {
        let mut subscribers = handle.subscribers.lock();
        if max.is_some_and(|max| subscribers.len() >= max) {
            return Err(Error::new(
                crate::rpc::proto::ErrorCode::Unavailable,
                format!(
                    "the document has its maximum of {} clients",
                    max.unwrap_or(0)
                ),
            ));
        }
        let id = self.next_subscriber.fetch_add(1, Ordering::Relaxed);
        subscribers.insert(id, subscriber);
        Ok(id)
    }

    /// Applies `data` in memory, then commits it; returns its sequence number once it is
    /// durable (it has then been relayed to the other subscribers).
    pub async fn apply_update(
        &self,
        doc: &DocHandle,
        data: Vec<u8>,
        author: Option<UserId>,
        transport: Transport,
        origin: Option<SubscriberId>,
    ) -> Result<i64> {
        let done = self
            .submit_update(doc, data, author, transport, origin)
            .await?;
        done.await
            .map_err(|_| Error::unavailable("the server is shutting down"))?
    }

    /// Like `apply_update`, without waiting for the commit: returns when the update is
    /// queued (waiting while the committer's queue is full). For pipelined sockets.
    pub async fn submit_update(
        &self,
        doc: &DocHandle,
        data: Vec<u8>,
        author: Option<UserId>,
        transport: Transport,
        origin: Option<SubscriberId>,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<i64>>> {
        doc.apply(&data)?;
        self.metrics
            .document_updates
            .with_label_values(&[transport.as_str()])
            .inc();
        self.metrics.document_update_bytes.inc_by(data.len() as u64);
        doc.pending_writes.fetch_add(1, Ordering::SeqCst);
        self.writer
            .submit(writer::Write {
                doc: doc.doc.clone(),
                data: data.into(),
                author,
                transport,
                origin,
            })
            .await
    }

    /// Removes `doc` from the registry if it is still the loaded copy of its name.
    fn forget(&self, registry: &mut HashMap<String, Slot>, doc: &Arc<Document>) {
        if registry
            .get(&doc.name)
            .and_then(|slot| slot.get())
            .is_some_and(|loaded| Arc::ptr_eq(loaded, doc))
        {
            registry.remove(&doc.name);
            self.metrics.documents_loaded.dec();
        }
    }

    /// Called by the writer after committing one update of `bytes`.
    fn committed(self: &Arc<Self>, doc: &Arc<Document>, bytes: u64) {
        let updates = doc.since_snapshot.fetch_add(1, Ordering::SeqCst) + 1;
        let log_bytes = doc.log_bytes.fetch_add(bytes, Ordering::SeqCst) + bytes;
        let snapshot_bytes = doc.snapshot_bytes.load(Ordering::SeqCst);
        if compaction::due(
            updates,
            log_bytes,
            snapshot_bytes,
            self.compaction_threshold,
        ) {
            compaction::start(self.clone(), doc.clone());
        }
    }

    /// A commit failed: the document's memory may hold updates the log lacks. Its
    /// subscribers are told to resync and it leaves the registry.
    fn poison(&self, doc: &Arc<Document>) {
        self.close(doc, "the document could not be saved");
    }

    fn close(&self, doc: &Arc<Document>, reason: &'static str) {
        if doc.poisoned.swap(true, Ordering::SeqCst) {
            return;
        }
        self.forget(&mut self.registry.lock(), doc);
        doc.broadcast(&DocEvent::Closed(reason), None);
    }

    /// The document was deleted: if it is loaded, it takes no more updates, and its
    /// subscribers are closed.
    pub fn deleted(&self, name: &str) {
        let loaded = self
            .registry
            .lock()
            .get(name)
            .and_then(|slot| slot.get().cloned());
        if let Some(doc) = loaded {
            self.close(&doc, "the document was deleted");
        }
    }

    /// The last use of `doc` ended: after the idle timeout, and once its writes are
    /// committed, it is compacted (if it has new updates) and leaves memory.
    fn schedule_unload(self: &Arc<Self>, doc: Arc<Document>) {
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(store.idle_timeout) => {}
                    _ = store.shutdown.cancelled() => {}
                }
                if doc.users.load(Ordering::SeqCst) > 0 {
                    return;
                }
                if doc.pending_writes.load(Ordering::SeqCst) == 0 {
                    break;
                }
                if store.shutdown.is_cancelled() {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
            if doc.since_snapshot.load(Ordering::SeqCst) > 0
                && let Err(error) = compaction::compact(&store, &doc).await
            {
                tracing::warn!(%error, document = %doc.name, "compaction at unload failed");
            }
            let mut registry = store.registry.lock();
            if doc.users.load(Ordering::SeqCst) == 0 {
                store.forget(&mut registry, &doc);
            }
        });
    }

    /// Every loaded document's awareness states older than `max_age` are removed, and
    /// their subscribers told (clients renew theirs every 15 s).
    pub fn expire_awareness(&self, max_age: std::time::Duration) {
        let loaded: Vec<Arc<Document>> = self
            .registry
            .lock()
            .values()
            .filter_map(|slot| slot.get().cloned())
            .collect();
        for doc in loaded {
            if let Some(removal) = doc.expire_awareness(max_age) {
                doc.broadcast(&DocEvent::awareness(removal), None);
            }
        }
    }

    /// Updates the per-second rates from the counters (called every few seconds).
    pub fn sample_rates(&self) {
        let updates: u64 = ["ws", "rpc", "http"]
            .iter()
            .map(|t| self.metrics.document_updates.with_label_values(&[t]).get())
            .sum();
        let bytes = self.metrics.document_update_bytes.get();
        let now = std::time::Instant::now();
        let mut rates = self.rates.lock();
        if let Some((then, last_updates, last_bytes)) = rates.last {
            let seconds = now.duration_since(then).as_secs_f64().max(1e-3);
            rates.updates_per_second = (updates - last_updates) as f64 / seconds;
            rates.bytes_per_second = (bytes - last_bytes) as f64 / seconds;
        }
        rates.last = Some((now, updates, bytes));
    }

    pub fn rates(&self) -> Rates {
        *self.rates.lock()
    }

    /// Waits until every queued update is committed (for shutdown).
    pub async fn flush(&self) {
        self.writer.flush().await;
    }
}
