//! Compaction: a document's log is merged into a new snapshot (the next epoch), in the
//! background, from the document in memory. Updates are applied in memory before they
//! are committed, so the memory holds every update committed so far: the snapshot is
//! taken to cover the log up to the last committed update, read before the state is
//! encoded. Updates applied but not yet committed may be in the snapshot too, and then
//! also in the log after it; applying an update twice changes nothing in a CRDT. (If
//! such an update's commit then fails, its editor is told to resync and finds it saved.)
//!
//! Rebuilding the snapshot from the database instead (snapshot plus log, decoded into a
//! second document) cost as much memory as the document again and most of a core at
//! 100 editors × 100 updates/s. Editors wait only while the state is encoded.

use std::sync::{Arc, atomic::Ordering};

use yrs::{ReadTxn, StateVector, Transact, updates::encoder::Encode};

use super::{Document, DocumentStore};
use crate::error::Result;

/// Whether a log of `updates` updates and `log_bytes` bytes after a snapshot of
/// `snapshot_bytes` is due for compaction: it has `threshold` updates, and it is as large
/// as the snapshot. Compaction rewrites the whole snapshot, so the second condition keeps
/// its cost proportional to what was written. Compacting every 1,000 updates regardless
/// rewrote a 100,000-item document several times a second under 100 editors: three
/// times the p99 and two and a half times the peak RSS (BENCHMARKS.md).
pub fn due(updates: u64, log_bytes: u64, snapshot_bytes: u64, threshold: u64) -> bool {
    updates >= threshold && log_bytes >= snapshot_bytes
}

/// Starts a compaction of `doc` unless one is running.
pub fn start(store: Arc<DocumentStore>, doc: Arc<Document>) {
    if doc.compacting.load(Ordering::SeqCst) {
        return;
    }
    tokio::spawn(async move {
        if let Err(error) = compact(&store, &doc).await {
            tracing::warn!(%error, document = %doc.name, "compaction failed");
        }
    });
}

/// Compacts `doc` now (returns at once if another compaction of it runs).
pub async fn compact(store: &DocumentStore, doc: &Document) -> Result<()> {
    if doc.compacting.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let outcome = run(store, doc).await;
    doc.compacting.store(false, Ordering::SeqCst);
    outcome
}

async fn run(store: &DocumentStore, doc: &Document) -> Result<()> {
    let started = std::time::Instant::now();
    // A document that failed a commit holds what the log does not; it is closing.
    if doc.poisoned.load(Ordering::SeqCst) {
        return Ok(());
    }
    // Read before the state: what was committed by now is in memory.
    let merged_count = doc.since_snapshot.load(Ordering::SeqCst);
    let merged_bytes = doc.log_bytes.load(Ordering::SeqCst);
    let up_to = doc.last_committed.load(Ordering::SeqCst);
    if merged_count == 0 {
        return Ok(());
    }
    // Encoded from the document, the state is squashed (runs of typed characters are one
    // item), unlike `merge_updates_v1`'s output.
    let (state, state_vector) = doc.with_awareness(|awareness| {
        let txn = awareness.doc().transact();
        (
            txn.encode_state_as_update_v1(&StateVector::default()),
            txn.state_vector().encode_v1(),
        )
    });
    let encoded = started.elapsed();
    let snapshot_bytes = state.len() as u64;
    store
        .db
        .save_snapshot(doc.id, state, state_vector, up_to)
        .await?;
    let saved = started.elapsed();
    let _ = doc
        .since_snapshot
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            Some(n.saturating_sub(merged_count))
        });
    let _ = doc
        .log_bytes
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            Some(n.saturating_sub(merged_bytes))
        });
    doc.snapshot_bytes.store(snapshot_bytes, Ordering::SeqCst);
    store.metrics.document_compactions.inc();
    // The log the snapshot covers goes in small steps, after the snapshot is saved (loads
    // skip it meanwhile; a crash leaves it for the next compaction).
    let pruned = store.db.prune_log(doc.id, up_to).await?;
    tracing::debug!(
        document = %doc.name, merged_count, snapshot_bytes, pruned, ?encoded, ?saved,
        elapsed = ?started.elapsed(), "compacted"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::due;

    #[test]
    fn a_log_is_due_at_the_threshold_once_it_is_as_large_as_the_snapshot() {
        // No snapshot yet: the threshold alone decides.
        assert!(!due(999, 50_000, 0, 1000));
        assert!(due(1000, 30_000, 0, 1000));
        // A 3 MB snapshot: a thousand small updates wait, a log as large does not.
        assert!(!due(1000, 40_000, 3_000_000, 1000));
        assert!(!due(70_000, 2_999_999, 3_000_000, 1000));
        assert!(due(75_000, 3_000_000, 3_000_000, 1000));
        // Large updates still wait for the threshold.
        assert!(!due(10, 10_000_000, 3_000_000, 1000));
    }
}
