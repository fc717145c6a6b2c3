//! The SQLite store.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use gantry_core::{JournalRecord, RunStore, StoreError};
use rusqlite::{Connection, OptionalExtension, params};

/// The schema's migrations, in order: the schema's version is how many have been applied.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        pipeline TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE records (
        run_id TEXT NOT NULL REFERENCES runs(run_id),
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) STRICT, WITHOUT ROWID;
"];

/// Journals in one SQLite file. Clones share the connection.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqliteStore {
    /// Opens (or creates) the store at `path` and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        let mut conn = Connection::open(&path).map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(unavailable)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(unavailable)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(unavailable)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(unavailable)?;
        migrate(&mut conn)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), path })
    }

    /// Runs `f` on the connection on a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| unavailable(format!("the store's thread stopped: {e}")))?
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(unavailable)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(unavailable)?;
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    for (version, migration) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
        tx.execute_batch(migration).map_err(|e| unavailable(format!("migration {}: {e}", version + 1)))?;
    }
    tx.pragma_update(None, "user_version", known).map_err(unavailable)?;
    tx.commit().map_err(unavailable)
}

fn kind(record: &JournalRecord) -> &'static str {
    match record {
        JournalRecord::RunStarted { .. } => "run_started",
        JournalRecord::RunResumed { .. } => "run_resumed",
        JournalRecord::StepStarted { .. } => "step_started",
        JournalRecord::StepEnded { .. } => "step_ended",
        JournalRecord::Output { .. } => "output",
        JournalRecord::VarSet { .. } => "var_set",
        JournalRecord::Checkpoint { .. } => "checkpoint",
        JournalRecord::RunEnded { .. } => "run_ended",
        _ => "other",
    }
}

fn encode(records: &[JournalRecord]) -> Result<Vec<(&'static str, String)>, StoreError> {
    records.iter().map(|r| Ok((kind(r), serde_json::to_string(r).map_err(unavailable)?))).collect()
}

fn insert(
    tx: &rusqlite::Transaction<'_>,
    run_id: &str,
    first_seq: i64,
    rows: &[(&str, String)],
) -> Result<(), StoreError> {
    let mut insert = tx
        .prepare_cached("INSERT INTO records (run_id, seq, kind, body) VALUES (?1, ?2, ?3, ?4)")
        .map_err(unavailable)?;
    for (i, (kind, body)) in rows.iter().enumerate() {
        let seq = first_seq + i64::try_from(i).unwrap_or(i64::MAX);
        insert.execute(params![run_id, seq, kind, body]).map_err(unavailable)?;
    }
    Ok(())
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn create(&self, run_id: &str, first: &JournalRecord) -> Result<(), StoreError> {
        let rows = encode(std::slice::from_ref(first))?;
        let pipeline = match first {
            JournalRecord::RunStarted { pipeline, .. } => pipeline.clone(),
            _ => String::new(),
        };
        let run_id = run_id.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(unavailable)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            let created = tx.execute(
                "INSERT INTO runs (run_id, pipeline, created_ms) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![run_id, pipeline, now],
            );
            if created.map_err(unavailable)? == 0 {
                return Err(StoreError::Exists(run_id));
            }
            insert(&tx, &run_id, 0, &rows)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn append(&self, run_id: &str, records: &[JournalRecord]) -> Result<(), StoreError> {
        let rows = encode(records)?;
        let run_id = run_id.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(unavailable)?;
            let next: Option<i64> = tx
                .query_row(
                    "SELECT (SELECT COALESCE(MAX(seq) + 1, 0) FROM records WHERE run_id = ?1) FROM runs WHERE run_id = ?1",
                    params![run_id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            let next = next.ok_or_else(|| StoreError::UnknownRun(run_id.clone()))?;
            insert(&tx, &run_id, next, &rows)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn records(&self, run_id: &str) -> Result<Option<Vec<JournalRecord>>, StoreError> {
        let run_id = run_id.to_owned();
        self.with(move |conn| {
            let known: Option<i64> = conn
                .query_row("SELECT 1 FROM runs WHERE run_id = ?1", params![run_id], |row| row.get(0))
                .optional()
                .map_err(unavailable)?;
            if known.is_none() {
                return Ok(None);
            }
            let mut query =
                conn.prepare_cached("SELECT body FROM records WHERE run_id = ?1 ORDER BY seq").map_err(unavailable)?;
            let bodies: Vec<String> = query
                .query_map(params![run_id], |row| row.get(0))
                .map_err(unavailable)?
                .collect::<Result<_, _>>()
                .map_err(unavailable)?;
            let records = bodies
                .iter()
                .enumerate()
                .map(|(position, body)| {
                    serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
                        run_id: run_id.clone(),
                        position,
                        why: e.to_string(),
                    })
                })
                .collect::<Result<Vec<JournalRecord>, _>>()?;
            Ok(Some(records))
        })
        .await
    }
}
