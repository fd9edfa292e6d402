//! The worktree mirror of shared projects: the host's incremental `UpdateWorktree` and
//! `UpdateDiagnosticSummary` (checked, committed, then relayed to the guests) and the
//! stream of the whole mirror to a joiner, in chunks of `--max-worktree-chunk`.
//!
//! Both run under the project's lock, so a joiner receives its snapshot first and every
//! later update after it.

use sea_orm::ConnectionTrait;

use super::{
    Session,
    project_relay::{CatchUp, project_id},
};
use crate::{
    AppState,
    db::{
        ProjectId,
        entities::{worktree, worktree_diagnostic_summary as summary, worktree_entry as entry},
        queries::worktrees::{WorktreeChunk, diagnostic_summaries_page, worktree_entries_page},
    },
    error::{Error, Result},
    rpc::{ConnectionId, Response, proto},
};

/// Paths are at most this long (bytes); longer ones are refused. (PostgreSQL's btree
/// keys hold at most about 2.7 KB, and paths are part of the key.)
const MAX_PATH_BYTES: usize = 2048;

/// A join-stream message is cut before its entries pass this many bytes, whatever
/// `--max-worktree-chunk` says, so it always fits the frame cap.
const MAX_STREAM_CHUNK_BYTES: usize = 512 * 1024;

fn check_path(path: &str) -> Result<()> {
    if path.is_empty() || path.len() > MAX_PATH_BYTES || path.contains('\0') {
        return Err(Error::invalid(format!(
            "a path must be 1 to {MAX_PATH_BYTES} bytes without NUL"
        )));
    }
    Ok(())
}

fn to_i64(value: u64, field: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::invalid(format!("{field} {value} is too large")))
}

fn check_chunk(app: &AppState, items: usize) -> Result<()> {
    let max = app.config.max_worktree_chunk as usize;
    if items > max {
        return Err(Error::invalid(format!(
            "{items} entries in one message; the limit is {max} (--max-worktree-chunk): send the rest in more messages"
        )));
    }
    Ok(())
}

fn chunk_of(update: &proto::UpdateWorktree) -> Result<WorktreeChunk> {
    let scan_id = to_i64(update.scan_id, "scan_id")?;
    let mut updated = Vec::with_capacity(update.updated_entries.len());
    for e in &update.updated_entries {
        check_path(&e.path)?;
        updated.push(entry::Model {
            project_id: crate::db::ProjectId(0),
            worktree_id: 0,
            path: e.path.clone(),
            is_dir: e.is_dir,
            mtime_ms: to_i64(e.mtime_ms, "mtime_ms")?,
            size: to_i64(e.size, "size")?,
            is_ignored: e.is_ignored,
            scan_id,
        });
    }
    for path in &update.removed_paths {
        check_path(path)?;
    }
    let mut paths: Vec<&str> = update
        .updated_entries
        .iter()
        .map(|e| e.path.as_str())
        .chain(update.removed_paths.iter().map(String::as_str))
        .collect();
    paths.sort_unstable();
    if let Some(pair) = paths.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(Error::invalid(format!(
            "path {:?} appears twice in one update",
            pair[0]
        )));
    }
    Ok(WorktreeChunk {
        worktree_id: to_i64(update.worktree_id, "worktree_id")?,
        updated,
        removed: update.removed_paths.clone(),
        scan_id,
        is_last_update: update.is_last_update,
    })
}

pub async fn update_worktree(
    request: proto::UpdateWorktree,
    response: Response<proto::UpdateWorktree>,
    session: Session,
) -> Result<()> {
    let project = project_id(request.project_id)?;
    let app = &session.state;
    check_chunk(
        app,
        request.updated_entries.len() + request.removed_paths.len(),
    )?;
    let chunk = chunk_of(&request)?;
    let _order = app.project_locks.lock(project).await;
    app.db
        .update_worktree(
            project,
            session.connection_id,
            chunk,
            app.config.max_worktree_entries,
        )
        .await?;
    app.projects
        .relay_to_others(&app.cluster, project, session.connection_id, &request)?;
    response.send(proto::Ack {})?;
    Ok(())
}

pub async fn update_diagnostic_summary(
    request: proto::UpdateDiagnosticSummary,
    response: Response<proto::UpdateDiagnosticSummary>,
    session: Session,
) -> Result<()> {
    let project = project_id(request.project_id)?;
    let app = &session.state;
    check_chunk(app, request.summaries.len())?;
    let worktree_id = to_i64(request.worktree_id, "worktree_id")?;
    let mut summaries = Vec::with_capacity(request.summaries.len());
    let mut paths: Vec<&str> = request.summaries.iter().map(|s| s.path.as_str()).collect();
    paths.sort_unstable();
    if paths.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(Error::invalid("a path appears twice in one update"));
    }
    for s in &request.summaries {
        check_path(&s.path)?;
        summaries.push(summary::Model {
            project_id: ProjectId(0),
            worktree_id,
            path: s.path.clone(),
            language_server_id: to_i64(s.language_server_id, "language_server_id")?,
            error_count: i32::try_from(s.error_count).unwrap_or(i32::MAX),
            warning_count: i32::try_from(s.warning_count).unwrap_or(i32::MAX),
        });
    }
    let _order = app.project_locks.lock(project).await;
    app.db
        .update_diagnostic_summaries(
            project,
            session.connection_id,
            worktree_id,
            summaries,
            app.config.max_worktree_entries,
        )
        .await?;
    app.projects
        .relay_to_others(&app.cluster, project, session.connection_id, &request)?;
    response.send(proto::Ack {})?;
    Ok(())
}

fn entry_to_proto(row: entry::Model) -> proto::WorktreeEntry {
    proto::WorktreeEntry {
        path: row.path,
        is_dir: row.is_dir,
        mtime_ms: row.mtime_ms.max(0) as u64,
        size: row.size.max(0) as u64,
        is_ignored: row.is_ignored,
    }
}

/// Splits `items` into runs whose encoded size stays under `MAX_STREAM_CHUNK_BYTES`.
fn by_size<T: prost::Message>(items: Vec<T>) -> Vec<Vec<T>> {
    let mut runs = vec![Vec::new()];
    let mut bytes = 0;
    for item in items {
        let size = item.encoded_len() + 8;
        if bytes + size > MAX_STREAM_CHUNK_BYTES && !runs.last().is_some_and(Vec::is_empty) {
            runs.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        runs.last_mut().expect("never empty").push(item);
    }
    runs
}

/// Sends the project's mirror, as of `snapshot`, to `joiner`: the diagnostic summaries,
/// then each worktree's entries in chunks (the last chunk of each worktree has
/// `is_last_update`, even when the worktree is empty, so the last worktree's ends the
/// stream). Each chunk waits for room in the
/// joiner's queue, so a large tree neither trips the slow-consumer cut nor sits in
/// memory at once. Stops early when the joiner fell too far behind (`catch_up`).
pub(super) async fn stream_to_joiner(
    app: &AppState,
    snapshot: &impl ConnectionTrait,
    joiner: ConnectionId,
    project: ProjectId,
    worktrees: &[worktree::Model],
    catch_up: Option<&CatchUp>,
) -> Result<()> {
    let behind = || {
        if catch_up.is_some_and(CatchUp::overflowed) {
            Err(Error::unavailable(
                "the project changed too much while it was being sent; join again",
            ))
        } else {
            Ok(())
        }
    };
    let limit = app.config.max_worktree_chunk as usize;
    // Summaries first: the last worktree's `is_last_update` then ends the stream.
    let mut after = None;
    loop {
        behind()?;
        let page = diagnostic_summaries_page(snapshot, project, after.clone(), limit).await?;
        let Some(last) = page.last() else { break };
        after = Some((last.worktree_id, last.path.clone()));
        let full = page.len() == limit;
        // One message per worktree within the page.
        let mut rest = page.as_slice();
        while let Some(first) = rest.first() {
            let split = rest
                .iter()
                .position(|s| s.worktree_id != first.worktree_id)
                .unwrap_or(rest.len());
            let (same, tail) = rest.split_at(split);
            let summaries = same
                .iter()
                .map(|s| proto::DiagnosticSummary {
                    path: s.path.clone(),
                    language_server_id: s.language_server_id as u64,
                    error_count: s.error_count as u32,
                    warning_count: s.warning_count as u32,
                })
                .collect();
            for run in by_size(summaries) {
                let message = proto::UpdateDiagnosticSummary {
                    project_id: project.to_proto(),
                    worktree_id: first.worktree_id as u64,
                    summaries: run,
                };
                app.cluster.send_paced(joiner, message).await?;
            }
            rest = tail;
        }
        if !full {
            break;
        }
    }
    for tree in worktrees {
        let mut after: Option<String> = None;
        loop {
            behind()?;
            let mut page =
                worktree_entries_page(snapshot, project, tree.id, after.as_deref(), limit + 1)
                    .await?;
            let more = page.len() > limit;
            page.truncate(limit);
            after = page.last().map(|row| row.path.clone());
            app.metrics.join_entries_streamed.inc_by(page.len() as u64);
            let runs = by_size(page.into_iter().map(entry_to_proto).collect());
            let last_run = runs.len() - 1;
            for (i, run) in runs.into_iter().enumerate() {
                let chunk = proto::UpdateWorktree {
                    project_id: project.to_proto(),
                    worktree_id: tree.id as u64,
                    root_name: tree.root_name.clone(),
                    updated_entries: run,
                    removed_paths: Vec::new(),
                    scan_id: tree.scan_id as u64,
                    is_last_update: !more && i == last_run,
                };
                app.cluster.send_paced(joiner, chunk).await?;
            }
            if !more {
                break;
            }
        }
    }
    Ok(())
}
