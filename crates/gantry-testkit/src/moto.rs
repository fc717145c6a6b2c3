//! A real AWS API emulator on 127.0.0.1: `moto_server` (PyPI `moto[server]`; `.ci/test-all` installs it), for STS.
//! It checks no signatures; its state is its own per server. Killed on drop.

use std::process::Stdio;
use std::time::Duration;

/// Why moto could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MotoError {
    /// `moto_server` is not installed.
    #[error("`moto_server` is not installed (pip install 'moto[server]>=5,<6'; `bash .ci/test-all` does it)")]
    NotInstalled,
    /// It did not start or become ready.
    #[error("moto_server did not become ready: {0}")]
    NotReady(String),
}

/// A running `moto_server`.
#[derive(Debug)]
pub struct MotoServer {
    url: String,
    child: tokio::process::Child,
}

impl MotoServer {
    /// Starts `moto_server` on a free loopback port and waits (at most 20 s) until it answers.
    pub async fn start() -> Result<Self, MotoError> {
        let port = {
            let listener =
                std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| MotoError::NotReady(e.to_string()))?;
            listener.local_addr().map_err(|e| MotoError::NotReady(e.to_string()))?.port()
        };
        let child = tokio::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|_| MotoError::NotInstalled)?;
        let server = Self { url: format!("http://127.0.0.1:{port}"), child };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(MotoError::NotReady(format!("nothing listens on port {port} after 20 s")))
    }

    /// The endpoint URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
