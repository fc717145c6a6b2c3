//! The PostgreSQL store.

use std::sync::Arc;

use async_trait::async_trait;
use gantry_core::{JournalRecord, RunStore, StoreError};
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

/// The schema's migrations, in order: the schema's version is how many have been applied.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE gantry_runs (
        run_id TEXT PRIMARY KEY,
        pipeline TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE gantry_records (
        run_id TEXT NOT NULL REFERENCES gantry_runs(run_id),
        seq BIGINT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
"];

/// An arbitrary key for the advisory lock that serialises migrations between processes.
const MIGRATION_LOCK: i64 = 0x6761_6e74_7279;

/// Journals in a PostgreSQL database: for hosts that run several replicas, or keep their state in PostgreSQL
/// already. Appends are committed transactions (durable under the server's `synchronous_commit`, on by default).
/// Clones share the connection.
#[derive(Clone)]
pub struct PostgresStore {
    client: Arc<Mutex<Client>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl PostgresStore {
    /// Connects with `config` (`host=… port=… user=… dbname=…`, libpq's keywords; a password in it is never shown
    /// in errors) and brings the schema up to date. Plain TCP: put the connection inside a trusted network, or a
    /// TLS-terminating proxy.
    pub async fn connect(config: &str) -> Result<Self, StoreError> {
        let (mut client, connection) = tokio_postgres::connect(config, NoTls)
            .await
            .map_err(|e| unavailable(format!("cannot connect to PostgreSQL: {e}")))?;
        // The connection's task; when it ends, later calls fail with the reason.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        migrate(&mut client).await?;
        Ok(Self { client: Arc::new(Mutex::new(client)) })
    }
}

async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    let tx = client.transaction().await.map_err(unavailable)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(unavailable)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS gantry_schema (version BIGINT NOT NULL)")
        .await
        .map_err(unavailable)?;
    let found: i64 = match tx.query_opt("SELECT version FROM gantry_schema", &[]).await.map_err(unavailable)? {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO gantry_schema (version) VALUES (0)", &[]).await.map_err(unavailable)?;
            0
        }
    };
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    for (version, migration) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
        tx.batch_execute(migration).await.map_err(|e| unavailable(format!("migration {}: {e}", version + 1)))?;
    }
    tx.execute("UPDATE gantry_schema SET version = $1", &[&known]).await.map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)
}

fn encode(records: &[JournalRecord]) -> Result<Vec<(String, String)>, StoreError> {
    records
        .iter()
        .map(|r| {
            let body = serde_json::to_string(r).map_err(unavailable)?;
            let kind = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["kind"].as_str().map(str::to_owned))
                .unwrap_or_default();
            Ok((kind, body))
        })
        .collect()
}

async fn insert(
    tx: &tokio_postgres::Transaction<'_>,
    run_id: &str,
    first: i64,
    rows: &[(String, String)],
) -> Result<(), StoreError> {
    let statement = tx
        .prepare("INSERT INTO gantry_records (run_id, seq, kind, body) VALUES ($1, $2, $3, $4)")
        .await
        .map_err(unavailable)?;
    for (i, (kind, body)) in rows.iter().enumerate() {
        let seq = first + i64::try_from(i).unwrap_or(i64::MAX);
        tx.execute(&statement, &[&run_id, &seq, kind, body]).await.map_err(unavailable)?;
    }
    Ok(())
}

#[async_trait]
impl RunStore for PostgresStore {
    async fn create(&self, run_id: &str, first: &JournalRecord) -> Result<(), StoreError> {
        let rows = encode(std::slice::from_ref(first))?;
        let pipeline = match first {
            JournalRecord::RunStarted { pipeline, .. } => pipeline.clone(),
            _ => String::new(),
        };
        let mut client = self.client.lock().await;
        let tx = client.transaction().await.map_err(unavailable)?;
        let created = tx
            .execute(
                "INSERT INTO gantry_runs (run_id, pipeline) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&run_id, &pipeline],
            )
            .await
            .map_err(unavailable)?;
        if created == 0 {
            return Err(StoreError::Exists(run_id.to_owned()));
        }
        insert(&tx, run_id, 0, &rows).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn append(&self, run_id: &str, records: &[JournalRecord]) -> Result<(), StoreError> {
        let rows = encode(records)?;
        let mut client = self.client.lock().await;
        let tx = client.transaction().await.map_err(unavailable)?;
        // The run's row, locked: appends to one run are serialised between processes too.
        let known = tx
            .query_opt("SELECT 1 FROM gantry_runs WHERE run_id = $1 FOR UPDATE", &[&run_id])
            .await
            .map_err(unavailable)?;
        if known.is_none() {
            return Err(StoreError::UnknownRun(run_id.to_owned()));
        }
        let next: i64 = tx
            .query_one("SELECT COALESCE(MAX(seq) + 1, 0) FROM gantry_records WHERE run_id = $1", &[&run_id])
            .await
            .map_err(unavailable)?
            .get(0);
        insert(&tx, run_id, next, &rows).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn records(&self, run_id: &str) -> Result<Option<Vec<JournalRecord>>, StoreError> {
        let client = self.client.lock().await;
        let known =
            client.query_opt("SELECT 1 FROM gantry_runs WHERE run_id = $1", &[&run_id]).await.map_err(unavailable)?;
        if known.is_none() {
            return Ok(None);
        }
        let rows = client
            .query("SELECT body FROM gantry_records WHERE run_id = $1 ORDER BY seq", &[&run_id])
            .await
            .map_err(unavailable)?;
        let records = rows
            .iter()
            .enumerate()
            .map(|(position, row)| {
                let body: &str = row.get(0);
                serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
                    run_id: run_id.to_owned(),
                    position,
                    why: e.to_string(),
                })
            })
            .collect::<Result<Vec<JournalRecord>, _>>()?;
        Ok(Some(records))
    }
}
