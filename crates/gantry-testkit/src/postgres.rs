//! A real PostgreSQL server for tests: the PostgreSQL 15 binaries of the machine (`/usr/lib/postgresql/15/bin`),
//! a cluster made with `initdb` in a temporary directory, listening on a free port of 127.0.0.1 only. Dropping it
//! stops the server (`pg_ctl stop -m fast`) and removes the directory.
//!
//! As root, the cluster belongs to the `postgres` user (PostgreSQL refuses to run as root); otherwise to the
//! current user. Its superuser is `gantry`, with `trust` authentication on loopback.
//!
//! ```no_run
//! # async fn f() -> Result<(), gantry_testkit::postgres::PostgresError> {
//! let server = gantry_testkit::postgres::PostgresServer::start().await?;
//! let config = server.connection_string("postgres"); // host=127.0.0.1 port=… user=gantry dbname=postgres
//! # let _ = config; Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::registry::unique_dir;

/// Where the binaries are looked for.
const BIN: &str = "/usr/lib/postgresql/15/bin";

/// Why the server could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The binaries are not installed.
    #[error("PostgreSQL 15 is not installed at {BIN} (Debian: apt-get install postgresql-15)")]
    NotInstalled,
    /// A step of the setup failed.
    #[error("could not start PostgreSQL: {0}")]
    Setup(String),
}

/// A PostgreSQL server of a test's own.
#[derive(Debug)]
pub struct PostgresServer {
    dir: PathBuf,
    port: u16,
    owner: Option<&'static str>,
}

impl PostgresServer {
    /// Whether the binaries are here.
    pub fn installed() -> bool {
        Path::new(BIN).join("initdb").is_file() && Path::new(BIN).join("pg_ctl").is_file()
    }

    /// Makes a cluster and starts it; ready when this returns (about a second).
    pub async fn start() -> Result<Self, PostgresError> {
        if !Self::installed() {
            return Err(PostgresError::NotInstalled);
        }
        tokio::task::spawn_blocking(Self::start_blocking)
            .await
            .map_err(|e| PostgresError::Setup(format!("the setup thread stopped: {e}")))?
    }

    fn start_blocking() -> Result<Self, PostgresError> {
        let setup = |what: &str, e: &dyn std::fmt::Display| PostgresError::Setup(format!("{what}: {e}"));
        let root = is_root();
        let owner = root.then_some("postgres");
        let dir = unique_dir("gantry-postgres");
        std::fs::create_dir_all(&dir).map_err(|e| setup("make its directory", &e))?;
        if let Some(owner) = owner {
            let status = Command::new("chown").arg(owner).arg(&dir).status().map_err(|e| setup("chown", &e))?;
            if !status.success() {
                return Err(PostgresError::Setup(format!("chown {owner} {}: {status}", dir.display())));
            }
        }
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| setup("find a port", &e))?;
            listener.local_addr().map_err(|e| setup("find a port", &e))?.port()
        };
        let server = Self { dir, port, owner };
        let data = server.dir.join("data");
        server.run(
            "initdb",
            &["-D", &data.display().to_string(), "--username=gantry", "--auth=trust", "--encoding=UTF8", "--no-sync"],
        )?;
        let options = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=on", server.dir.display());
        server.run(
            "pg_ctl",
            &[
                "-D",
                &data.display().to_string(),
                "-o",
                &options,
                "-l",
                &server.dir.join("log").display().to_string(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        )?;
        Ok(server)
    }

    /// Runs a binary of the installation as the cluster's owner.
    fn run(&self, binary: &str, args: &[&str]) -> Result<(), PostgresError> {
        let program = Path::new(BIN).join(binary);
        let mut command = match self.owner {
            Some(owner) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(owner).arg("--").arg(&program);
                c
            }
            None => Command::new(&program),
        };
        let output = command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| PostgresError::Setup(format!("{binary}: {e}")))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(PostgresError::Setup(format!(
                "{binary} {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq-style connection string for `database`, as the superuser `gantry`.
    pub fn connection_string(&self, database: &str) -> String {
        format!("host=127.0.0.1 port={} user=gantry dbname={database}", self.port)
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: as a crash would), keeping its data; `restart` brings
    /// it back.
    pub fn crash(&self) -> Result<(), PostgresError> {
        let data = self.dir.join("data").display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])
    }

    /// Starts the server again on the same port and data.
    pub fn restart(&self) -> Result<(), PostgresError> {
        let data = self.dir.join("data").display().to_string();
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.display());
        let log = self.dir.join("log").display().to_string();
        self.run("pg_ctl", &["-D", &data, "-o", &options, "-l", &log, "-w", "-t", "30", "start"])
    }
}

fn is_root() -> bool {
    // The effective user of this process, from `/proc` (no libc call needed).
    std::fs::read_to_string("/proc/self/status").ok().is_some_and(|status| {
        status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().nth(1)) == Some("0")
    })
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let data = self.dir.join("data").display().to_string();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "-t", "10", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
