//! A Docker Engine of the test's own: Debian's `dockerd` (20.10) with its data, runtime state and socket in a
//! temporary directory, no iptables rules, no bridge, so that it touches nothing of the machine's network.
//! `RUN` steps of its builds must use the network `none`. Stopped (`SIGTERM` to its process group, which holds the
//! containerd it started) and removed on drop. `.ci/test-all` installs `docker.io`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::registry::{RegistryError, unique_dir};

/// A running `dockerd`.
#[derive(Debug)]
pub struct DockerDaemon {
    child: std::process::Child,
    dir: PathBuf,
    socket: PathBuf,
}

/// Where Debian's `docker.io` puts the daemon.
const DOCKERD: &str = "/usr/sbin/dockerd";

impl DockerDaemon {
    /// Whether `dockerd` is installed.
    pub fn installed() -> bool {
        Path::new(DOCKERD).is_file()
    }

    /// Starts a daemon and waits until it answers on its socket.
    pub async fn start() -> Result<Self, RegistryError> {
        if !Self::installed() {
            return Err(RegistryError::NotInstalled("dockerd"));
        }
        let setup = |e: std::io::Error| RegistryError::Setup(e.to_string());
        // Short: containerd's socket lives under the exec root, and a unix socket's path has 107 bytes at most.
        let dir = unique_dir("gantry-dockerd");
        std::fs::create_dir_all(&dir).map_err(setup)?;
        let socket = dir.join("docker.sock");
        let mut command = std::process::Command::new(DOCKERD);
        command
            .args(["--iptables=false", "--ip-masq=false", "--bridge=none", "--ip-forward=false"])
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("dockerd.log")).map_err(setup)?);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().map_err(setup)?;
        let daemon = Self { child, dir, socket };
        daemon.ready(Duration::from_secs(30)).await?;
        Ok(daemon)
    }

    async fn ready(&self, within: Duration) -> Result<(), RegistryError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if let Ok(mut stream) = tokio::net::UnixStream::connect(&self.socket).await {
                let mut head = [0u8; 12];
                if stream.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n").await.is_ok()
                    && let Ok(n) = stream.read(&mut head).await
                    && head[..n].starts_with(b"HTTP/1.1 200")
                {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(RegistryError::NotReady(within))
    }

    /// The daemon's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Runs the Docker command line (`/usr/bin/docker`) against this daemon; its standard output.
    pub fn cli(&self, args: &[&str]) -> Result<String, RegistryError> {
        let output = std::process::Command::new("/usr/bin/docker")
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| RegistryError::Setup(e.to_string()))?;
        if !output.status.success() {
            return Err(RegistryError::Setup(format!(
                "docker {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Removes every image and build cache entry: the daemon's storage as a new CI machine has it.
    pub fn wipe(&self) -> Result<(), RegistryError> {
        // Tags first (an untagged parent goes with its last child), then whatever is left, children before parents.
        for _ in 0..5 {
            let tagged = self.cli(&["images", "--format", "{{.Repository}}:{{.Tag}}"])?;
            let mut names: Vec<&str> = tagged.split_whitespace().filter(|n| !n.contains("<none>")).collect();
            let ids = self.cli(&["images", "-aq"])?;
            names.extend(ids.split_whitespace());
            if names.is_empty() {
                self.cli(&["builder", "prune", "-af"])?;
                return Ok(());
            }
            for name in names {
                // A parent still in use by a child fails now and goes in a later round.
                let _ = self.cli(&["rmi", "-f", name]);
            }
        }
        Err(RegistryError::Setup(format!("images are left after wiping: {}", self.cli(&["images", "-a"])?)))
    }
}

impl Drop for DockerDaemon {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let quiet = |signal: &str| {
            std::process::Command::new("kill").args([signal, "--", &group]).stderr(Stdio::null()).status()
        };
        let _ = quiet("-TERM");
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = quiet("-KILL");
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
