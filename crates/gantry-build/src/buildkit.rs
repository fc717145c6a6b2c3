//! BuildKit builds through the Docker Engine's `/build` endpoint (`version=2`), without a client session.
//!
//! The Engine streams BuildKit's progress as `moby.buildkit.trace` messages: base64 of a protobuf
//! `StatusResponse` (moby/buildkit `api/services/control/control.proto`). The few fields read here are decoded by
//! hand: the vertexes (one per Dockerfile step and internal operation: name, cached, started, completed, error) and
//! their logs. bollard cannot decode these messages without its gRPC session machinery, so this module speaks HTTP
//! to the socket itself (hyper, which bollard uses too).
//!
//! Without a session, BuildKit cannot ask the client for registry credentials or secrets: caches (`cachefrom`)
//! and base images are pulled anonymously, and build secrets are refused before the build.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gantry_core::{CancellationToken, LayerSource, LogStream};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;

use crate::error::BuildError;
use crate::request::{BuildObserver, BuildRequest, LayerReport};

/// What a BuildKit build of the Engine gives back.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) image_id: String,
}

/// Sends the build and follows it. `cache_from` are image references with inline cache; `registry_cache` says
/// whether cache hits come from them (the Engine had no build cache of its own when the build started).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn build(
    socket: &Path,
    request: &BuildRequest,
    network: &str,
    tar: Vec<u8>,
    dockerfile: &str,
    cache_from: &[String],
    registry_cache: bool,
    observer: &dyn BuildObserver,
    cancel: &CancellationToken,
) -> Result<Outcome, BuildError> {
    let (mut sender, _connection) = connect(socket).await?;
    let mut query: Vec<(&str, String)> = vec![
        ("version", "2".into()),
        ("dockerfile", dockerfile.into()),
        ("networkmode", network.into()),
        ("rm", "1".into()),
        ("forcerm", "1".into()),
    ];
    for tag in &request.tags {
        query.push(("t", tag.to_string()));
    }
    let mut args: BTreeMap<&str, &str> = request.build_args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // The cache goes inside the image, so that pushing it is pushing the cache.
    args.insert("BUILDKIT_INLINE_CACHE", "1");
    query.push(("buildargs", serde_json::to_string(&args).unwrap_or_default()));
    if !request.labels.is_empty() {
        query.push(("labels", serde_json::to_string(&request.labels).unwrap_or_default()));
    }
    if let Some(target) = &request.target {
        query.push(("target", target.clone()));
    }
    if !cache_from.is_empty() {
        query.push(("cachefrom", serde_json::to_string(cache_from).unwrap_or_default()));
    }
    let query: String = query.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect::<Vec<_>>().join("&");
    let http = hyper::Request::post(format!("/v1.41/build?{query}"))
        .header("Host", "docker")
        .header("Content-Type", "application/x-tar")
        .body(Full::new(Bytes::from(tar)))
        .map_err(|e| engine(socket, e.to_string()))?;
    let response = tokio::select! {
        response = sender.send_request(http) => response.map_err(|e| engine(socket, e.to_string()))?,
        () = cancel.cancelled() => return Err(BuildError::Cancelled),
    };
    let status = response.status();
    let mut body = response.into_body();
    let mut follower = Follower { registry_cache, ..Follower::default() };
    let mut pending = Vec::new();
    let mut image_id = None;
    let mut failure: Option<String> = None;
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            () = cancel.cancelled() => return Err(BuildError::Cancelled),
        };
        let Some(frame) = frame else { break };
        let frame =
            frame.map_err(|e| BuildError::Builder { builder: "docker", why: e.to_string(), tail: Vec::new() })?;
        let Some(data) = frame.data_ref() else { continue };
        pending.extend_from_slice(data);
        while let Some(newline) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=newline).collect();
            let Ok(message) = serde_json::from_slice::<serde_json::Value>(&line) else { continue };
            if !status.is_success() {
                failure = message.get("message").and_then(|m| m.as_str()).map(str::to_owned);
                continue;
            }
            if let Some(error) = message.get("error").and_then(|e| e.as_str()) {
                failure = Some(error.to_owned());
            } else if message.get("id").and_then(|i| i.as_str()) == Some("moby.buildkit.trace") {
                if let Some(aux) = message.get("aux").and_then(|a| a.as_str())
                    && let Ok(raw) = STANDARD.decode(aux)
                {
                    follower.status(&raw, observer);
                }
            } else if let Some(id) = message.pointer("/aux/ID").and_then(|i| i.as_str()) {
                image_id = Some(id.to_owned());
            } else if let Some(text) = message.get("stream").and_then(|s| s.as_str()) {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    observer.line(LogStream::Stdout, line);
                }
            }
        }
    }
    if !status.is_success() && failure.is_none() {
        failure = Some(format!("the Engine answered {status}"));
    }
    if let Some(error) = failure {
        return Err(follower.classify(request, error));
    }
    let image_id = image_id.ok_or_else(|| BuildError::Builder {
        builder: "docker",
        why: "the BuildKit build ended without an image id".into(),
        tail: Vec::new(),
    })?;
    Ok(Outcome { image_id })
}

fn engine(socket: &Path, why: String) -> BuildError {
    BuildError::BuilderMissing {
        binary: format!("the Docker Engine at {} ({why})", socket.display()),
        hint: "start dockerd, or point DockerEngine at its socket",
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// An HTTP/1.1 connection to the Engine's socket; it closes when the returned guard is dropped.
async fn connect(socket: &Path) -> Result<(Sender, AbortOnDrop), BuildError> {
    let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| engine(socket, e.to_string()))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| engine(socket, e.to_string()))?;
    Ok((sender, AbortOnDrop(tokio::spawn(connection))))
}

/// Whether the Engine's BuildKit holds any build cache (`GET /system/df`): a build on an Engine without any takes
/// every cache hit from the registry cache.
pub(crate) async fn has_build_cache(socket: &Path) -> Result<bool, BuildError> {
    let (mut sender, _connection) = connect(socket).await?;
    let request = hyper::Request::get("/v1.41/system/df")
        .header("Host", "docker")
        .body(Full::new(Bytes::new()))
        .map_err(|e| engine(socket, e.to_string()))?;
    let response = sender.send_request(request).await.map_err(|e| engine(socket, e.to_string()))?;
    let body = response.into_body().collect().await.map_err(|e| engine(socket, e.to_string()))?.to_bytes();
    let usage: serde_json::Value = serde_json::from_slice(&body).map_err(|e| engine(socket, e.to_string()))?;
    Ok(usage.get("BuildCache").and_then(|c| c.as_array()).is_some_and(|c| !c.is_empty()))
}

struct AbortOnDrop(tokio::task::JoinHandle<Result<(), hyper::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A BuildKit vertex as the trace tells it, merged over its updates.
#[derive(Debug, Default, Clone)]
struct Vertex {
    name: String,
    cached: bool,
    started: Option<Duration>,
    completed: Option<Duration>,
    error: String,
    reported: bool,
}

/// Follows the trace: reports each Dockerfile step once it completes, keeps each vertex's last log lines.
#[derive(Debug, Default)]
struct Follower {
    vertexes: HashMap<String, Vertex>,
    logs: HashMap<String, Vec<String>>,
    registry_cache: bool,
}

impl Follower {
    fn status(&mut self, raw: &[u8], observer: &dyn BuildObserver) {
        for (field, value) in fields(raw) {
            match (field, value) {
                (1, Value::Bytes(v)) => self.vertex(v, observer),
                (3, Value::Bytes(log)) => self.log(log, observer),
                _ => {}
            }
        }
    }

    fn vertex(&mut self, raw: &[u8], observer: &dyn BuildObserver) {
        let mut digest = String::new();
        let mut update = Vertex::default();
        for (field, value) in fields(raw) {
            match (field, value) {
                (1, Value::Bytes(v)) => digest = String::from_utf8_lossy(v).into_owned(),
                (3, Value::Bytes(v)) => update.name = String::from_utf8_lossy(v).into_owned(),
                (4, Value::Varint(v)) => update.cached = v != 0,
                (5, Value::Bytes(v)) => update.started = Some(timestamp(v)),
                (6, Value::Bytes(v)) => update.completed = Some(timestamp(v)),
                (7, Value::Bytes(v)) => update.error = String::from_utf8_lossy(v).into_owned(),
                _ => {}
            }
        }
        let vertex = self.vertexes.entry(digest).or_default();
        let reported = vertex.reported;
        *vertex = Vertex { reported, ..update };
        if vertex.reported || vertex.completed.is_none() || !vertex.error.is_empty() {
            return;
        }
        vertex.reported = true;
        observer.line(LogStream::Stdout, &format!("{}{}", vertex.name, if vertex.cached { " CACHED" } else { "" }));
        if let Some((number, of, instruction)) = dockerfile_step(&vertex.name) {
            let source = if instruction.starts_with("FROM ") {
                LayerSource::BaseImage
            } else if vertex.cached {
                if self.registry_cache { LayerSource::RegistryCache } else { LayerSource::Cache }
            } else {
                LayerSource::Built
            };
            let duration = match (vertex.started, vertex.completed) {
                (Some(started), Some(completed)) => completed.saturating_sub(started),
                _ => Duration::ZERO,
            };
            observer.layer(&LayerReport { number, of, instruction: instruction.to_owned(), source, duration });
        }
    }

    fn log(&mut self, raw: &[u8], observer: &dyn BuildObserver) {
        let mut vertex = String::new();
        let mut stream = 1;
        let mut message = Vec::new();
        for (field, value) in fields(raw) {
            match (field, value) {
                (1, Value::Bytes(v)) => vertex = String::from_utf8_lossy(v).into_owned(),
                (3, Value::Varint(v)) => stream = v,
                (4, Value::Bytes(v)) => message = v.to_vec(),
                _ => {}
            }
        }
        let stream = if stream == 2 { LogStream::Stderr } else { LogStream::Stdout };
        let lines = self.logs.entry(vertex).or_default();
        for line in String::from_utf8_lossy(&message).lines().filter(|l| !l.trim().is_empty()) {
            observer.line(stream, line);
            lines.push(line.to_owned());
            if lines.len() > 25 {
                lines.remove(0);
            }
        }
    }

    /// The error a failed BuildKit build stands for: the vertex that failed names the step.
    fn classify(&self, request: &BuildRequest, error: String) -> BuildError {
        if error.contains("dockerfile parse error") || error.contains("unknown instruction") {
            return BuildError::InvalidContainerfile { file: request.containerfile.clone(), message: error };
        }
        if let Some((digest, failed)) = self.vertexes.iter().find(|(_, v)| !v.error.is_empty()) {
            let instruction =
                dockerfile_step(&failed.name).map_or_else(|| failed.name.clone(), |(_, _, i)| i.to_owned());
            // `executor failed running [/bin/sh -c exit 4]: exit code: 4` (20.10), `process "..." did not complete
            // successfully: exit code: 4` (later).
            if let Some((_, code)) = failed.error.rsplit_once("exit code: ") {
                let tail = self.logs.get(digest).cloned().unwrap_or_default();
                return BuildError::StepFailed { instruction, why: format!("exit code {}", code.trim()), tail };
            }
        }
        if let Some(problem) = crate::registry::registry_problem(&error, request.tags.iter().chain(&request.cache_from))
        {
            return problem(request.auth.is_some());
        }
        BuildError::Builder { builder: "docker", why: error, tail: Vec::new() }
    }
}

/// `[2/3] RUN make` (or `[stage-0 2/3] RUN make`) as (number, of, instruction).
fn dockerfile_step(name: &str) -> Option<(u32, u32, &str)> {
    let rest = name.strip_prefix('[')?;
    let (counts, instruction) = rest.split_once("] ")?;
    let counts = counts.rsplit(' ').next()?;
    let (number, of) = counts.split_once('/')?;
    Some((number.parse().ok()?, of.parse().ok()?, instruction))
}

/// A `google.protobuf.Timestamp` as time since the epoch.
fn timestamp(raw: &[u8]) -> Duration {
    let (mut seconds, mut nanos) = (0u64, 0u64);
    for (field, value) in fields(raw) {
        match (field, value) {
            (1, Value::Varint(v)) => seconds = v,
            (2, Value::Varint(v)) => nanos = v,
            _ => {}
        }
    }
    Duration::from_secs(seconds) + Duration::from_nanos(nanos)
}

/// A protobuf field's value, as far as the wire format tells it.
#[derive(Debug, PartialEq)]
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of a protobuf message, in order; stops at the first malformed byte.
fn fields(mut raw: &[u8]) -> Vec<(u64, Value<'_>)> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let Some((key, rest)) = varint(raw) else { break };
        raw = rest;
        let value = match key & 7 {
            0 => {
                let Some((v, rest)) = varint(raw) else { break };
                raw = rest;
                Value::Varint(v)
            }
            2 => {
                let Some((len, rest)) = varint(raw) else { break };
                let Ok(len) = usize::try_from(len) else { break };
                if rest.len() < len {
                    break;
                }
                let (bytes, rest) = rest.split_at(len);
                raw = rest;
                Value::Bytes(bytes)
            }
            1 if raw.len() >= 8 => {
                raw = &raw[8..];
                Value::Fixed
            }
            5 if raw.len() >= 4 => {
                raw = &raw[4..];
                Value::Fixed
            }
            _ => break,
        };
        out.push((key >> 3, value));
    }
    out
}

fn varint(raw: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, byte) in raw.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &raw[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Recorded;

    #[test]
    fn a_trace_message_from_docker_20_10_decodes() {
        // Captured from dockerd 20.10.24 building `COPY a.txt /a.txt` with version=2: the vertex of the context.
        let raw = STANDARD
            .decode("CosBCkdzaGEyNTY6ZDA0YWJkMzBhYTNjYTIzOWU3ZDcxNTAyOGVkNWYyMTU1NjA1NGNmM2FhZDdjMDRmNDg4M2EyN2QxYmQ4ZjAzZBokW2ludGVybmFsXSBsb2FkIHJlbW90ZSBidWlsZCBjb250ZXh0KgwIjsPc2AYQvbuRuwEyDAiOw9zYBhDLzubHAQ==")
            .unwrap();
        let recorded = Recorded::default();
        let mut follower = Follower::default();
        follower.status(&raw, &recorded);
        let vertex = follower.vertexes.values().next().unwrap();
        assert_eq!(vertex.name, "[internal] load remote build context");
        assert!(vertex.completed > vertex.started && vertex.started.is_some());
        assert!(recorded.layers().is_empty(), "an internal vertex is not a Dockerfile step");
    }

    #[test]
    fn dockerfile_steps_are_read_from_vertex_names() {
        assert_eq!(dockerfile_step("[2/3] RUN make"), Some((2, 3, "RUN make")));
        assert_eq!(dockerfile_step("[stage-0 1/2] FROM x"), Some((1, 2, "FROM x")));
        assert_eq!(dockerfile_step("[internal] load metadata"), None);
        assert_eq!(encode("a b/{\"x\":1}"), "a%20b%2F%7B%22x%22%3A1%7D");
    }
}
