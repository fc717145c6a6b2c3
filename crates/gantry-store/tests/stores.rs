//! One conformance suite for every store (in memory, SQLite), then what only a file can show: a journal that
//! outlives its process, a run resumed from a reopened file, a damaged record and a newer schema refused by name.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gantry_core::{
    Context, JournalRecord, MemoryStore, Pipeline, Run, RunStatus, RunStore, Secret, StepStatus, StoreError, step_fn,
};
use gantry_store::SqliteStore;

fn started(pipeline: &str) -> JournalRecord {
    serde_json::from_value(serde_json::json!({
        "kind": "run_started", "pipeline": pipeline, "fingerprint": [], "vars": {"env": "prod"},
        "sealed_vars": [], "secret_names": ["token"], "at_ms": 1
    }))
    .unwrap()
}

fn step(kind: &str, step: &str) -> JournalRecord {
    let mut value = serde_json::json!({"kind": kind, "step": step, "at_ms": 2});
    if kind == "step_ended" {
        value["status"] = "succeeded".into();
        value["reason"] = serde_json::Value::Null;
        value["attempts"] = 1.into();
    }
    serde_json::from_value(value).unwrap()
}

/// A step that counts its runs.
fn counted(count: &Arc<AtomicU32>) -> impl gantry_core::Step {
    let count = Arc::clone(count);
    step_fn(move |_| {
        let count = Arc::clone(&count);
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    })
}

async fn conformance(store: &dyn RunStore) {
    assert!(store.records("r1").await.unwrap().is_none(), "unknown run");
    store.create("r1", &started("release")).await.unwrap();
    assert!(matches!(store.create("r1", &started("release")).await, Err(StoreError::Exists(id)) if id == "r1"));
    store.append("r1", &[step("step_started", "build")]).await.unwrap();
    store.append("r1", &[step("step_ended", "build"), step("step_started", "deploy")]).await.unwrap();
    store.create("r2", &started("other")).await.unwrap();
    store.append("r2", &[step("step_started", "x")]).await.unwrap();
    let records = store.records("r1").await.unwrap().unwrap();
    assert_eq!(
        records,
        [
            started("release"),
            step("step_started", "build"),
            step("step_ended", "build"),
            step("step_started", "deploy")
        ],
        "in the order appended, each run its own"
    );
    assert!(matches!(store.append("nope", &[step("step_started", "x")]).await, Err(StoreError::UnknownRun(_))));
    store.append("r1", &[]).await.unwrap();
    assert_eq!(store.records("r1").await.unwrap().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_store_keeps_journals_the_same_way() {
    conformance(&MemoryStore::new()).await;
    let dir = tempfile::tempdir().unwrap();
    conformance(&SqliteStore::open(dir.path().join("runs.db")).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_outlives_its_store_and_a_run_resumes_from_a_reopened_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    let (built, deployed) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let pipeline = {
        let deployed = Arc::clone(&deployed);
        Pipeline::builder("release")
            .step("build", counted(&built))
            .step(
                "deploy",
                step_fn(move |ctx| {
                    let (deployed, tx) = (Arc::clone(&deployed), tx.clone());
                    async move {
                        ctx.secret("token")?;
                        if deployed.fetch_add(1, Ordering::SeqCst) == 0 {
                            let _ = tx.send(());
                            std::future::pending::<()>().await;
                        }
                        Ok(())
                    }
                })
                .idempotent(),
            )
            .after(["build"])
            .build()
            .unwrap()
    };
    let secret = "tok-77ab01c9d2";
    // The secret is in a variable too: only its name may be stored.
    let context = || Context::new().var("auth", format!("Bearer {secret}")).secret("token", Secret::new(secret));

    // The first host: its store, a run, and the host dies in `deploy`.
    let id = {
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        let run = Run::new(&pipeline, context()).store(store);
        let id = run.id().to_owned();
        let handle = tokio::spawn(run.execute());
        tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        handle.abort();
        let _ = handle.await;
        id
    };

    // The next host opens the file again and resumes.
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let report = Run::resume(&pipeline, store.clone(), &id, context()).await.unwrap().execute().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!((built.load(Ordering::SeqCst), deployed.load(Ordering::SeqCst)), (1, 2));
    let records = store.records(&id).await.unwrap().unwrap();
    let ends: Vec<(&str, StepStatus)> = records
        .iter()
        .filter_map(|r| match r {
            JournalRecord::StepEnded { step, status, .. } => Some((step.as_str(), *status)),
            _ => None,
        })
        .collect();
    assert_eq!(ends, [("build", StepStatus::Succeeded), ("deploy", StepStatus::Succeeded)]);
    assert!(matches!(records.last(), Some(JournalRecord::RunEnded { status: RunStatus::Succeeded, .. })));
    drop(store);

    // The secret's value is nowhere in the file (nor in its write-ahead log).
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "the secret is in the store's files");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_and_a_newer_schema_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    let store = SqliteStore::open(&path).unwrap();
    store.create("r1", &started("release")).await.unwrap();
    store.append("r1", &[step("step_started", "build")]).await.unwrap();
    drop(store);
    behind_the_stores_back(&path, "UPDATE records SET body = '{\"kind\": \"step_started\"' WHERE seq = 1");
    let store = SqliteStore::open(&path).unwrap();
    let error = store.records("r1").await.unwrap_err();
    assert!(matches!(&error, StoreError::Corrupt { run_id, position: 1, .. } if run_id == "r1"), "{error}");
    assert!(error.to_string().starts_with("record 1 of run `r1` cannot be read: "), "{error}");
    // A resume of that run is refused with the same words, and writes nothing.
    let pipeline = Pipeline::builder("release").step("build", step_fn(|_| async { Ok(()) })).build().unwrap();
    let refused = Run::resume(&pipeline, Arc::new(store), "r1", Context::new()).await.err().unwrap();
    assert!(refused.to_string().contains("record 1 of run `r1` cannot be read"), "{refused}");

    behind_the_stores_back(&path, "PRAGMA user_version = 99");
    let newer = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(newer, StoreError::SchemaTooNew { found: 99, known: 1 }), "{newer}");
    assert_eq!(
        newer.to_string(),
        "the store's schema is version 99; this Gantry knows versions up to 1: upgrade Gantry"
    );
}

/// Changes the file behind the store's back, as a damaged disk or a newer Gantry would.
fn behind_the_stores_back(path: &std::path::Path, sql: &str) {
    rusqlite::Connection::open(path).unwrap().execute_batch(sql).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL 15 (/usr/lib/postgresql/15/bin): run bash .ci/test-all"]
async fn postgres_keeps_journals_the_same_way_through_a_crash_of_the_server() {
    use gantry_store::PostgresStore;
    use gantry_testkit::postgres::PostgresServer;
    let server = PostgresServer::start().await.unwrap();
    let config = server.connection_string("postgres");
    let store = PostgresStore::connect(&config).await.unwrap();
    conformance(&store).await;
    // A second process's connection: the schema is there, migrated once.
    let other = PostgresStore::connect(&config).await.unwrap();
    assert_eq!(other.records("r1").await.unwrap().unwrap().len(), 4);

    // A run journaled there, then the server crashes (no clean shutdown) and comes back: every committed append is
    // still there, and a run resumes from it.
    let built = Arc::new(AtomicU32::new(0));
    let pipeline = Pipeline::builder("release").step("build", counted(&built)).build().unwrap();
    let report = Run::new(&pipeline, Context::new()).store(Arc::new(store.clone())).execute().await.unwrap();
    let before = store.records(&report.run_id).await.unwrap().unwrap();
    server.crash().unwrap();
    assert!(matches!(store.records(&report.run_id).await, Err(StoreError::Unavailable(_))), "the server is down");
    server.restart().unwrap();
    let store = PostgresStore::connect(&config).await.unwrap();
    assert_eq!(store.records(&report.run_id).await.unwrap().unwrap(), before);
    let ended = Run::resume(&pipeline, Arc::new(store.clone()), &report.run_id, Context::new()).await.err().unwrap();
    assert!(ended.to_string().contains("ended (succeeded)"), "{ended}");

    // A damaged record, and a newer schema.
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute("UPDATE gantry_records SET body = '{' WHERE run_id = 'r1' AND seq = 2").await.unwrap();
    let damaged = store.records("r1").await.unwrap_err();
    assert!(matches!(damaged, StoreError::Corrupt { position: 2, .. }), "{damaged}");
    client.batch_execute("UPDATE gantry_schema SET version = 7").await.unwrap();
    let newer = PostgresStore::connect(&config).await.unwrap_err();
    assert!(matches!(newer, StoreError::SchemaTooNew { found: 7, known: 1 }), "{newer}");
    assert_eq!(built.load(Ordering::SeqCst), 1);
}
