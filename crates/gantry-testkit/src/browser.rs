//! A real browser for tests of web pages: Debian's `chromium` driven by its `chromedriver` (WebDriver) on loopback.
//!
//! [`ChromeDriver::start`] runs `chromedriver` on a free port of 127.0.0.1 and gives
//! the WebDriver URL and the capabilities of a headless Chromium that keeps its profile in a directory of its own and
//! makes no connection but those the page asks for. Dropping it stops the driver and every browser it started.
//!
//! ```no_run
//! # async fn f() -> Result<(), gantry_testkit::browser::BrowserError> {
//! let driver = gantry_testkit::browser::ChromeDriver::start().await?;
//! let capabilities = driver.capabilities(1280, 900);
//! // fantoccini::ClientBuilder::new(connector).capabilities(capabilities).connect(driver.url()).await?
//! # let _ = capabilities; Ok(()) }
//! ```

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::prometheus::which;
use crate::registry::unique_dir;

/// Why the browser could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrowserError {
    /// A program is not installed.
    #[error("`{0}` is not installed (Debian: apt-get install chromium chromium-driver; `bash .ci/test-all` does it)")]
    NotInstalled(&'static str),
    /// A file or process could not be set up.
    #[error("could not start chromedriver: {0}")]
    Setup(String),
    /// The driver did not answer in time.
    #[error("chromedriver did not become ready within {0:?}")]
    NotReady(Duration),
}

/// A running `chromedriver` on loopback.
#[derive(Debug)]
pub struct ChromeDriver {
    url: String,
    chromium: PathBuf,
    profile: PathBuf,
    child: tokio::process::Child,
}

impl ChromeDriver {
    /// Whether `chromium` and `chromedriver` are on `PATH`.
    pub fn installed() -> bool {
        which("chromedriver").is_some() && which("chromium").is_some()
    }

    /// Starts `chromedriver` and waits until it is ready.
    pub async fn start() -> Result<Self, BrowserError> {
        let driver = which("chromedriver").ok_or(BrowserError::NotInstalled("chromedriver"))?;
        let chromium = which("chromium").ok_or(BrowserError::NotInstalled("chromium"))?;
        let setup = |e: std::io::Error| BrowserError::Setup(e.to_string());
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(setup)?;
            listener.local_addr().map_err(setup)?.port()
        };
        let profile = unique_dir("gantry-chromium");
        std::fs::create_dir_all(&profile).map_err(setup)?;
        let child = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(setup)?;
        let driver = Self { url: format!("http://127.0.0.1:{port}"), chromium, profile, child };
        driver.ready(port, Duration::from_secs(20)).await?;
        Ok(driver)
    }

    async fn ready(&self, port: u16, within: Duration) -> Result<(), BrowserError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                let request = format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
                // Read what comes within a moment: the driver may keep the connection open.
                let mut answer = Vec::new();
                if stream.write_all(request.as_bytes()).await.is_ok() {
                    let mut chunk = [0_u8; 4096];
                    while let Ok(Ok(n)) =
                        tokio::time::timeout(Duration::from_millis(500), stream.read(&mut chunk)).await
                    {
                        if n == 0 {
                            break;
                        }
                        answer.extend_from_slice(&chunk[..n]);
                        if String::from_utf8_lossy(&answer).contains("\"ready\":true") {
                            return Ok(());
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(BrowserError::NotReady(within))
    }

    /// The WebDriver URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The capabilities of a headless Chromium with a window of `width` × `height` (one session at a time per driver:
    /// its sessions share the driver's profile directory): its own profile directory, no
    /// sandbox (tests may run as root), no GPU, no background connections, and the browser console's messages kept
    /// for the driver's log (`goog:loggingPrefs`).
    pub fn capabilities(&self, width: u32, height: u32) -> serde_json::Map<String, serde_json::Value> {
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-default-apps".to_owned(),
            "--disable-extensions".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            "--metrics-recording-only".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", self.profile.display()),
        ];
        let capabilities = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": self.chromium, "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        match capabilities {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("an object"),
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The browsers the driver started are its children; a browser's own helpers end with it.
        let mut browsers = Vec::new();
        if let Some(driver) = self.child.id() {
            browsers = children_of(driver);
            for pid in &browsers {
                let _ = std::process::Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            }
        }
        let _ = self.child.start_kill();
        // The profile goes once the browsers have (a bounded wait: their helpers end with them).
        for _ in 0..100 {
            if browsers.iter().all(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The processes whose parent is `parent` (from `/proc`).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // `/proc/PID/stat`: `pid (comm) state ppid ...`; the name may hold spaces and parentheses.
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|stat| {
                let after = &stat[stat.rfind(')')? + 1..];
                after.split_whitespace().nth(1)?.parse::<u32>().ok()
            }) == Some(parent)
        })
        .collect()
}
