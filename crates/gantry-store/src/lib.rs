//! Gantry's run stores: where durable runs keep their journals ([`gantry_core::RunStore`]).
//!
//! [`SqliteStore`] keeps them in one SQLite file: the embedded default, nothing to run beside the host. The file is
//! in WAL mode with `synchronous=FULL`, so an append that returned survives a crash of the process and of the
//! machine. Its schema is versioned (`PRAGMA user_version`) and migrated when opened; a file from a newer Gantry is
//! refused with [`StoreError::SchemaTooNew`](gantry_core::StoreError::SchemaTooNew).
//!
//! [`PostgresStore`] keeps them in a PostgreSQL database (tables `gantry_runs`, `gantry_records`, and the schema's
//! version in `gantry_schema`, migrated under an advisory lock), for hosts with several replicas.
//!
//! ```
//! use std::sync::Arc;
//! use gantry_core::{CommandStep, Context, Pipeline, Run, RunStatus};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let store = Arc::new(gantry_store::SqliteStore::open(dir.path().join("runs.db")).unwrap());
//! let pipeline = Pipeline::builder("release").step("build", CommandStep::new("true")).build().unwrap();
//! let report = Run::new(&pipeline, Context::new()).store(store.clone()).execute().await.unwrap();
//! assert_eq!(report.status, RunStatus::Succeeded);
//! // A host that died mid-run would call `Run::resume(&pipeline, store, &run_id, context)`.
//! # });
//! ```

mod postgres;
mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
