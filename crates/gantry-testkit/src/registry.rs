//! A real image registry on 127.0.0.1, and a base image made locally, for tests of image builds.
//!
//! The registry is Debian's `docker-registry` (the CNCF distribution registry, 2.8) storing in a fresh temporary
//! directory, optionally behind htpasswd authentication. The base image is built with `buildah` from Debian's
//! `busybox-static`: nothing is pulled from the internet. `.ci/test-all` installs `buildah runc docker-registry
//! busybox-static`. The registry is killed and its storage removed on drop.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::prometheus::which;

/// The user of a registry started with [`RegistryServer::start_with_auth`].
pub const REGISTRY_USER: &str = "gantry";
/// Its password.
pub const REGISTRY_PASSWORD: &str = "gantry-registry-password";
/// bcrypt of [`REGISTRY_PASSWORD`] (cost 5), as htpasswd keeps it.
const REGISTRY_PASSWORD_BCRYPT: &str = "$2b$05$mC78xPhjgNn8Y30BYy3/eulW7mH/a5PQX2nwW132C9ZRH1Js1syr6";

/// Why a registry or a base image could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A program is not installed.
    #[error(
        "`{0}` is not installed (Debian: apt-get install buildah runc docker-registry busybox-static; `bash .ci/test-all` does it)"
    )]
    NotInstalled(&'static str),
    /// A file or process could not be set up.
    #[error("could not set up the registry: {0}")]
    Setup(String),
    /// The registry did not answer in time.
    #[error("the registry did not become ready within {0:?}")]
    NotReady(Duration),
    /// A buildah command failed.
    #[error("`buildah {args}` failed: {stderr}")]
    Buildah {
        /// Its arguments.
        args: String,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// A running `docker-registry` on a free loopback port.
#[derive(Debug)]
pub struct RegistryServer {
    address: String,
    child: tokio::process::Child,
    dir: tempfile_dir::Dir,
}

mod tempfile_dir {
    /// A directory removed on drop.
    #[derive(Debug)]
    pub(super) struct Dir(pub(super) std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl RegistryServer {
    /// Whether `docker-registry`, `buildah` and `busybox` (static) are installed.
    pub fn installed() -> bool {
        which("docker-registry").is_some() && which("buildah").is_some() && Path::new(BUSYBOX).is_file()
    }

    /// A registry without authentication.
    pub async fn start() -> Result<Self, RegistryError> {
        Self::launch(false).await
    }

    /// A registry that asks for [`REGISTRY_USER`] and [`REGISTRY_PASSWORD`] (htpasswd, Basic).
    pub async fn start_with_auth() -> Result<Self, RegistryError> {
        Self::launch(true).await
    }

    async fn launch(auth: bool) -> Result<Self, RegistryError> {
        let binary = which("docker-registry").ok_or(RegistryError::NotInstalled("docker-registry"))?;
        let setup = |e: std::io::Error| RegistryError::Setup(e.to_string());
        let dir = tempfile_dir::Dir(unique_dir("gantry-registry"));
        std::fs::create_dir_all(dir.0.join("storage")).map_err(setup)?;
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(setup)?;
            listener.local_addr().map_err(setup)?.port()
        };
        let address = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: {address}}}\n",
            dir.0.join("storage").display()
        );
        if auth {
            let htpasswd = dir.0.join("htpasswd");
            std::fs::write(&htpasswd, format!("{REGISTRY_USER}:{REGISTRY_PASSWORD_BCRYPT}\n")).map_err(setup)?;
            config.push_str(&format!("auth: {{htpasswd: {{realm: gantry, path: {}}}}}\n", htpasswd.display()));
        }
        let config_path = dir.0.join("config.yml");
        std::fs::write(&config_path, config).map_err(setup)?;
        let child = tokio::process::Command::new(binary)
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(setup)?;
        let server = Self { address, child, dir };
        server.ready(Duration::from_secs(15)).await?;
        Ok(server)
    }

    async fn ready(&self, within: Duration) -> Result<(), RegistryError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(&self.address).await {
                let request = format!("GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.address);
                let mut head = [0u8; 12];
                if stream.write_all(request.as_bytes()).await.is_ok()
                    && let Ok(n) = stream.read(&mut head).await
                    && (head[..n].starts_with(b"HTTP/1.1 200") || head[..n].starts_with(b"HTTP/1.1 401"))
                {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(RegistryError::NotReady(within))
    }

    /// `127.0.0.1:PORT`: the registry part of image references.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The directory the registry stores blobs and manifests in.
    pub fn storage(&self) -> PathBuf {
        self.dir.0.join("storage")
    }

    /// Builds a base image from the static busybox (`/bin/busybox` with its applets linked), pushes it to this
    /// registry as `base/busybox:1` and returns its reference. buildah works in `storage` (`--root storage/root`,
    /// `--runroot storage/run`).
    pub async fn push_busybox_base(&self, storage: &Path) -> Result<String, RegistryError> {
        let reference = format!("{}/base/busybox:1", self.address);
        let buildah = Buildah::new(storage);
        let container = buildah.run(&["from", "scratch"]).await?;
        let container = container.trim().to_owned();
        buildah.run(&["copy", &container, BUSYBOX, "/bin/busybox"]).await?;
        buildah.run(&["run", "--network", "none", &container, "--", "/bin/busybox", "--install", "-s", "/bin"]).await?;
        buildah.run(&["config", "--env", "PATH=/bin", "--cmd", "/bin/sh", &container]).await?;
        buildah.run(&["commit", "-q", &container, "gantry-base"]).await?;
        buildah.run(&["rm", &container]).await?;
        let destination = format!("docker://{reference}");
        // Credentials in a file of the job's storage, not on a command line that `ps` shows.
        std::fs::create_dir_all(storage).map_err(|e| RegistryError::Setup(e.to_string()))?;
        let authfile = storage.join("auth.json");
        let auth = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}"),
        );
        let config = serde_json::json!({"auths": {&self.address: {"auth": auth}}});
        std::fs::write(&authfile, config.to_string()).map_err(|e| RegistryError::Setup(e.to_string()))?;
        let authfile = authfile.display().to_string();
        buildah.run(&["push", "--tls-verify=false", "--authfile", &authfile, "gantry-base", &destination]).await?;
        Ok(reference)
    }
}

/// Where Debian's `busybox-static` puts its binary.
const BUSYBOX: &str = "/bin/busybox";

/// buildah on a storage of its own.
struct Buildah {
    root: PathBuf,
}

impl Buildah {
    fn new(storage: &Path) -> Self {
        Self { root: storage.to_owned() }
    }

    async fn run(&self, args: &[&str]) -> Result<String, RegistryError> {
        let binary = which("buildah").ok_or(RegistryError::NotInstalled("buildah"))?;
        let output = tokio::process::Command::new(binary)
            .arg("--root")
            .arg(self.root.join("root"))
            .arg("--runroot")
            .arg(self.root.join("run"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| RegistryError::Setup(e.to_string()))?;
        if !output.status.success() {
            return Err(RegistryError::Buildah {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A fresh path under the temporary directory.
pub fn unique_dir(prefix: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()))
}
