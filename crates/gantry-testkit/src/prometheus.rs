//! A real Prometheus on 127.0.0.1, loaded with deterministic data, for tests of Prometheus providers.
//!
//! The data are written as OpenMetrics, turned into TSDB blocks by `promtool tsdb create-blocks-from openmetrics`,
//! and served by `prometheus` (Debian package `prometheus`; `.ci/test-all` installs it) from a fresh directory with
//! nothing to scrape. The server is killed and its directory removed on drop.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a Prometheus could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrometheusError {
    /// `prometheus` or `promtool` is not installed.
    #[error("`{0}` is not installed (Debian: apt-get install prometheus; `bash .ci/test-all` does it)")]
    NotInstalled(&'static str),
    /// A file or process could not be set up.
    #[error("could not set up Prometheus: {0}")]
    Setup(String),
    /// The server did not become ready in time.
    #[error("Prometheus did not become ready within {0:?}: {1}")]
    NotReady(Duration, String),
}

/// One sample for [`PrometheusServer::start`]: a series (`name{labels}`) with a value at a time.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// `http_request_duration_seconds{service="web",version="2"}`.
    pub series: String,
    /// When.
    pub at: SystemTime,
    /// The value.
    pub value: f64,
}

/// A running Prometheus holding the samples it was started with.
#[derive(Debug)]
pub struct PrometheusServer {
    url: String,
    child: tokio::process::Child,
    dir: PathBuf,
}

impl PrometheusServer {
    /// Whether `prometheus` and `promtool` are installed.
    pub fn installed() -> bool {
        ["prometheus", "promtool"].iter().all(|tool| which(tool).is_some())
    }

    /// Loads `samples` (gauges; one `# TYPE` per metric name) and starts Prometheus on a free loopback port.
    pub async fn start(samples: &[Sample]) -> Result<Self, PrometheusError> {
        let prometheus = which("prometheus").ok_or(PrometheusError::NotInstalled("prometheus"))?;
        let promtool = which("promtool").ok_or(PrometheusError::NotInstalled("promtool"))?;
        let setup = |e: std::io::Error| PrometheusError::Setup(e.to_string());
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("gantry-prometheus-{}-{n}", std::process::id()));
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(setup)?;

        // OpenMetrics wants each metric family together, samples in time order, timestamps in seconds.
        let mut sorted = samples.to_vec();
        sorted.sort_by(|a, b| a.series.cmp(&b.series).then(a.at.cmp(&b.at)));
        let mut text = String::new();
        let mut typed = std::collections::BTreeSet::new();
        let name = |series: &str| series.split('{').next().unwrap_or(series).to_owned();
        let mut by_family: std::collections::BTreeMap<String, Vec<&Sample>> = Default::default();
        for s in &sorted {
            by_family.entry(name(&s.series)).or_default().push(s);
        }
        for (family, samples) in by_family {
            if typed.insert(family.clone()) {
                let _ = writeln!(text, "# TYPE {family} gauge");
            }
            for s in samples {
                let secs = s.at.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
                let _ = writeln!(text, "{} {} {secs:.3}", s.series, s.value);
            }
        }
        text.push_str("# EOF\n");
        let input = dir.join("data.om");
        std::fs::write(&input, text).map_err(setup)?;
        let made = tokio::process::Command::new(&promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&data)
            .output()
            .await
            .map_err(setup)?;
        if !made.status.success() {
            return Err(PrometheusError::Setup(format!(
                "promtool: {}",
                String::from_utf8_lossy(&made.stderr).lines().last().unwrap_or_default()
            )));
        }
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1h\nscrape_configs: []\n").map_err(setup)?;
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(setup)?;
            listener.local_addr().map_err(setup)?.port()
        };
        let url = format!("http://127.0.0.1:{port}");
        let child = tokio::process::Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=100y")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(setup)?;
        let server = Self { url, child, dir };
        server.ready(Duration::from_secs(15)).await?;
        Ok(server)
    }

    async fn ready(&self, within: Duration) -> Result<(), PrometheusError> {
        let deadline = tokio::time::Instant::now() + within;
        let address = self.url.trim_start_matches("http://").to_owned();
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            match probe(&address).await {
                Ok(true) => return Ok(()),
                Ok(false) => last = "not ready yet".into(),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(PrometheusError::NotReady(within, last))
    }

    /// The server's URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// `GET /-/ready` over a plain TCP connection: whether it answered 200.
async fn probe(address: &str) -> std::io::Result<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(format!("GET /-/ready HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut head = [0u8; 12];
    let n = stream.read(&mut head).await?;
    Ok(head[..n].starts_with(b"HTTP/1.1 200"))
}

/// A program on `PATH`.
pub(crate) fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join(tool)).find(|p| p.is_file())
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
