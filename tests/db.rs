//! The database layer on both backends: migrations are idempotent, and the transaction
//! helper retries a transaction that lost a serialization race instead of failing it.

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use collab::{
    db::{Database, entities::user},
    error::Error,
};
use common::Backend;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};

async fn database(backend: &Backend) -> (Database, tempfile::TempDir, Option<common::PgDatabase>) {
    let (config, dir, pg) = common::test_config(backend).await;
    let db = collab::serve::open_database(&config.store, false)
        .await
        .unwrap();
    (db, dir, pg)
}

/// A database with every migration applied.
async fn migrated(backend: &Backend) -> (Database, tempfile::TempDir, Option<common::PgDatabase>) {
    let (db, dir, pg) = database(backend).await;
    db.migrate().await.unwrap();
    (db, dir, pg)
}

/// Closes the test's connections, then drops its PostgreSQL database (if any).
async fn finish<D>(db: D, pg: Option<common::PgDatabase>) {
    drop(db);
    if let Some(pg) = pg {
        pg.drop_database().await;
    }
}

async fn migrations_are_idempotent(backend: Backend) {
    let (db, _dir, pg) = database(&backend).await;
    let all: Vec<String> =
        <collab::migrations::Migrator as sea_orm_migration::MigratorTrait>::migrations()
            .iter()
            .map(|migration| migration.name().to_string())
            .collect();
    assert_eq!(
        all.first().map(String::as_str),
        Some("m20261123_000001_initial")
    );
    assert_eq!(
        db.migrate().await.unwrap(),
        all,
        "a fresh database gets every migration"
    );
    assert!(
        db.migrate().await.unwrap().is_empty(),
        "second run applies nothing"
    );
    // The schema is usable: a user round-trips.
    let (alice, _) = db.ensure_user("alice", Some("Alice"), false).await.unwrap();
    assert_eq!(db.get_user(alice.id).await.unwrap().unwrap().name, "Alice");
    finish(db, pg).await;
}
db_test!(migrations_are_idempotent);

/// Two transactions read the same counter, then both write it, and the counter ends at
/// 2, not 1. PostgreSQL: both read before either writes, so one fails on commit
/// (serialization failure) and is retried. SQLite: writers take the write lock at BEGIN,
/// so the second waits for the first instead of losing its update (making both read
/// first would deadlock them, so there the two just run at once).
async fn lost_races_are_retried(backend: Backend) {
    let (db, _dir, pg) = migrated(&backend).await;
    let (counter, _) = db.ensure_user("counter", Some("0"), false).await.unwrap();
    let db = Arc::new(db);
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let attempts = Arc::new(AtomicUsize::new(0));
    let racing = matches!(backend, Backend::Postgres(_));

    let increment = move |db: Arc<Database>,
                          barrier: Arc<tokio::sync::Barrier>,
                          attempts: Arc<AtomicUsize>| async move {
        db.transaction(move |tx| {
            let barrier = barrier.clone();
            let attempt = attempts.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let row = user::Entity::find_by_id(counter.id).one(tx).await?.unwrap();
                // The first two attempts meet here, so both have read before either writes.
                if racing && attempt < 2 {
                    barrier.wait().await;
                }
                let value: u32 = row.name.parse().unwrap();
                let mut active: user::ActiveModel = row.into();
                active.name = Set((value + 1).to_string());
                active.update(tx).await?;
                Ok::<_, Error>(())
            })
        })
        .await
    };
    let (a, b) = tokio::join!(
        tokio::spawn(increment(db.clone(), barrier.clone(), attempts.clone())),
        tokio::spawn(increment(db.clone(), barrier.clone(), attempts.clone())),
    );
    a.unwrap().expect("first increment commits");
    b.unwrap().expect("second increment commits after a retry");
    assert_eq!(db.get_user(counter.id).await.unwrap().unwrap().name, "2");
    if racing {
        assert!(
            attempts.load(Ordering::SeqCst) >= 3,
            "one transaction ran again"
        );
        assert!(db.retries.get() >= 1);
    }
    finish(db, pg).await;
}
db_test!(lost_races_are_retried);

/// SQLite has one writer at a time, so this process's writers queue for their turn
/// instead of meeting at SQLite's lock (whose busy handler sleeps them for milliseconds
/// at a time). While a turn is held, a group commit and a transaction both wait, and are
/// counted; released, both go through. PostgreSQL has row locks: nobody waits.
async fn writers_take_turns(backend: Backend) {
    use collab::db::queries::documents::{NewUpdate, Transport};
    let (db, _dir, pg) = migrated(&backend).await;
    let document = db.ensure_document("turns").await.unwrap();
    let db = Arc::new(db);
    let sqlite = matches!(backend, Backend::Sqlite);

    let turn = db.write_turn().await;
    let append = tokio::spawn({
        let db = db.clone();
        async move {
            db.append_updates(&[NewUpdate {
                document: document.id,
                data: vec![1, 2, 3],
                author: None,
                transport: Transport::Rpc,
            }])
            .await
        }
    });
    let user = tokio::spawn({
        let db = db.clone();
        async move { db.ensure_user("turn-taker", None, false).await }
    });
    let appended = if sqlite {
        // A gauge has no event to await: poll it, bounded by a timeout.
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while db.writers_waiting.get() < 2 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("both writers wait for the turn");
        assert!(!append.is_finished() && !user.is_finished());
        drop(turn);
        append.await
    } else {
        // Nothing to wait for: the append commits while the "turn" is held.
        let appended = append.await;
        drop(turn);
        appended
    };
    assert_eq!(appended.unwrap().unwrap().len(), 1);
    user.await
        .unwrap()
        .expect("the transaction commits after its turn");
    assert_eq!(db.writers_waiting.get(), 0);
    let stored = db.stored_document(document.id).await.unwrap();
    assert_eq!(stored.updates.len(), 1);
    finish(db, pg).await;
}
db_test!(writers_take_turns);

/// A snapshot leaves the log it covers in place (a load skips it); `prune_log` then
/// removes exactly that part, in steps, and nothing of the newer log or of another
/// document.
async fn a_snapshot_covers_its_log_until_the_log_is_pruned(backend: Backend) {
    use collab::db::queries::documents::{NewUpdate, Transport};
    let (db, _dir, pg) = migrated(&backend).await;
    let notes = db.ensure_document("notes").await.unwrap();
    let other = db.ensure_document("other").await.unwrap();
    let mut ids = Vec::new();
    for batch in 0..10u8 {
        // Interleaved with another document's updates, as documents share one id sequence.
        let rows: Vec<NewUpdate> = (0..500)
            .map(|i| NewUpdate {
                document: if i % 5 == 4 { other.id } else { notes.id },
                data: vec![batch, (i % 256) as u8],
                author: None,
                transport: Transport::Ws,
            })
            .collect();
        let new = db.append_updates(&rows).await.unwrap();
        ids.extend(
            new.iter()
                .zip(&rows)
                .filter(|(_, r)| r.document == notes.id)
                .map(|(id, _)| *id),
        );
    }
    assert_eq!(ids.len(), 4_000);
    let up_to = ids[3_499];
    let epoch = db
        .save_snapshot(notes.id, vec![0, 0], vec![0], up_to)
        .await
        .unwrap();
    assert_eq!(epoch, 1);
    let stored = db.stored_document(notes.id).await.unwrap();
    assert_eq!(stored.snapshot.unwrap().up_to_update_id, up_to);
    assert_eq!(
        stored.updates.len(),
        500,
        "a load skips what the snapshot covers"
    );

    let logged = |document| {
        use collab::db::entities::document_update;
        use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
        document_update::Entity::find()
            .filter(document_update::Column::DocumentId.eq(document))
            .order_by_asc(document_update::Column::Id)
            .all(&db.conn)
    };
    assert_eq!(logged(notes.id).await.unwrap().len(), 4_000);

    assert_eq!(db.prune_log(notes.id, up_to).await.unwrap(), 3_500);
    assert_eq!(db.prune_log(notes.id, up_to).await.unwrap(), 0);
    let left: Vec<i64> = logged(notes.id)
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(left, ids[3_500..]);
    assert_eq!(logged(other.id).await.unwrap().len(), 1_000);
    finish(db, pg).await;
}
db_test!(a_snapshot_covers_its_log_until_the_log_is_pruned);

/// A snapshot larger than a part is stored in parts and loads back whole; parts that an
/// interrupted save left behind are not read; the next snapshot takes its
/// predecessor's parts away with it.
async fn a_large_snapshot_is_stored_in_parts_and_loads_whole(backend: Backend) {
    use collab::db::{entities::document_snapshot_part as part, queries::documents};
    use sea_orm::{ColumnTrait, QueryFilter};
    let (db, _dir, pg) = migrated(&backend).await;
    let doc = db.ensure_document("large").await.unwrap();
    let parts = || {
        part::Entity::find()
            .filter(part::Column::DocumentId.eq(doc.id))
            .all(&db.conn)
    };
    // Left by a save of epoch 1 that did not finish.
    part::ActiveModel {
        document_id: Set(doc.id),
        epoch: Set(1),
        part: Set(7),
        data: Set(vec![9; 10]),
    }
    .insert(&db.conn)
    .await
    .unwrap();

    let state: Vec<u8> = (0..2 * documents::SNAPSHOT_PART_BYTES + 1000)
        .map(|i| (i % 251) as u8)
        .collect();
    let epoch = db
        .save_snapshot(doc.id, state.clone(), vec![0], 0)
        .await
        .unwrap();
    assert_eq!(epoch, 1);
    let stored = db.stored_document(doc.id).await.unwrap().snapshot.unwrap();
    assert!(
        stored.state == state,
        "the state loads back whole and in order"
    );
    let written = parts().await.unwrap();
    assert_eq!(
        written.len(),
        2,
        "the head is in the snapshot row, the rest in 2 parts"
    );
    assert!(written.iter().all(|p| p.data != vec![9; 10]));

    assert_eq!(
        db.save_snapshot(doc.id, vec![1, 2, 3], vec![0], 0)
            .await
            .unwrap(),
        2
    );
    let stored = db.stored_document(doc.id).await.unwrap().snapshot.unwrap();
    assert_eq!(stored.state, vec![1, 2, 3]);
    assert!(parts().await.unwrap().is_empty());
    finish(db, pg).await;
}
db_test!(a_large_snapshot_is_stored_in_parts_and_loads_whole);
