//! buildah: daemonless builds, each on its own storage if asked, with layers cached locally (`--layers`) and in a
//! registry (`--cache-from`, `--cache-to`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Instant;

use async_trait::async_trait;
use gantry_core::{CancellationToken, ImageRef, LayerSource, LogStream};

use crate::auth::{AuthFile, private_dir, write_private};
use crate::builder::Builder;
use crate::error::BuildError;
use crate::process::{self, Finished};
use crate::registry::registry_problem;
use crate::request::{BuildObserver, BuildRequest, LayerReport, OpenStep};

const HINT: &str = "Debian: apt-get install buildah runc; `bash .ci/test-all` installs them";

/// Builds with `buildah build --layers`, pushes with `buildah push`.
///
/// ```
/// use gantry_build::Buildah;
/// let buildah = Buildah::new().root("/var/lib/gantry/storage").runroot("/run/gantry/storage").network("none");
/// # let _ = buildah;
/// ```
#[derive(Clone, Debug)]
pub struct Buildah {
    binary: PathBuf,
    root: Option<PathBuf>,
    runroot: Option<PathBuf>,
    storage_driver: Option<String>,
    network: String,
}

impl Default for Buildah {
    fn default() -> Self {
        Self::new()
    }
}

impl Buildah {
    /// `buildah` from `PATH`, on its default storage, `RUN` steps on the host's network.
    pub fn new() -> Self {
        Self { binary: "buildah".into(), root: None, runroot: None, storage_driver: None, network: "host".into() }
    }

    /// Another `buildah` program.
    #[must_use]
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = path.into();
        self
    }

    /// Where images and layers are stored (`--root`): the local cache.
    #[must_use]
    pub fn root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.root = Some(dir.into());
        self
    }

    /// Where runtime state is kept (`--runroot`).
    #[must_use]
    pub fn runroot(mut self, dir: impl Into<PathBuf>) -> Self {
        self.runroot = Some(dir.into());
        self
    }

    /// The storage driver (`overlay`, `vfs`); buildah picks one by default.
    #[must_use]
    pub fn storage_driver(mut self, driver: impl Into<String>) -> Self {
        self.storage_driver = Some(driver.into());
        self
    }

    /// The network of `RUN` steps: `host` (the default), `none` (no network at all: hermetic builds), or a
    /// network buildah knows.
    #[must_use]
    pub fn network(mut self, network: impl Into<String>) -> Self {
        self.network = network.into();
        self
    }

    /// Whether the `buildah` program runs here.
    pub async fn available(&self) -> bool {
        tokio::process::Command::new(&self.binary)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success())
    }

    fn global_args(&self) -> Vec<OsString> {
        let mut args = Vec::new();
        if let Some(root) = &self.root {
            args.extend(["--root".into(), root.clone().into_os_string()]);
        }
        if let Some(runroot) = &self.runroot {
            args.extend(["--runroot".into(), runroot.clone().into_os_string()]);
        }
        if let Some(driver) = &self.storage_driver {
            args.extend(["--storage-driver".into(), driver.into()]);
        }
        args
    }
}

#[async_trait]
impl Builder for Buildah {
    fn name(&self) -> &'static str {
        "buildah"
    }

    async fn build(
        &self,
        request: &BuildRequest,
        observer: &dyn BuildObserver,
        cancel: &CancellationToken,
    ) -> Result<String, BuildError> {
        let private = private_dir()?;
        let iidfile = private.path().join("iid");
        let authfile = authfile(request).await?;
        let registries_conf = registries_conf(private.path(), &request.insecure_registries)?;
        let mut args = self.global_args();
        args.extend(["build".into(), "--layers".into(), format!("--network={}", self.network).into()]);
        args.extend(["-f".into(), request.containerfile.clone().into_os_string()]);
        args.extend(["--iidfile".into(), iidfile.clone().into_os_string()]);
        push_auth(&mut args, authfile.as_ref());
        for tag in &request.tags {
            args.extend(["-t".into(), tag.to_string().into()]);
        }
        for (name, value) in &request.build_args {
            args.extend(["--build-arg".into(), format!("{name}={value}").into()]);
        }
        for (name, value) in &request.labels {
            args.extend(["--label".into(), format!("{name}={value}").into()]);
        }
        if let Some(target) = &request.target {
            args.extend(["--target".into(), target.into()]);
        }
        for (n, (id, secret)) in request.secrets.iter().enumerate() {
            let file = private.path().join(format!("secret-{n}"));
            write_private(&file, secret.expose().as_bytes())?;
            let mut arg = OsString::from(format!("id={id},src="));
            arg.push(file.as_os_str());
            args.extend(["--secret".into(), arg]);
        }
        for from in &request.cache_from {
            args.extend(["--cache-from".into(), cache_repository(from).into()]);
        }
        if let Some(to) = &request.cache_to {
            args.extend(["--cache-to".into(), cache_repository(to).into()]);
        }
        args.push(request.context.clone().into_os_string());

        let mut steps = StepParser::default();
        let env = registries_conf.iter().map(|p| ("CONTAINERS_REGISTRIES_CONF", p.as_os_str())).collect::<Vec<_>>();
        let finished = process::run(&self.binary, &args, &env, cancel, HINT, |stream, line| {
            if stream == LogStream::Stdout
                && let Some(report) = steps.feed(line, Instant::now())
            {
                observer.layer(&report);
            }
            observer.line(stream, line);
        })
        .await?;
        if !finished.status.success() {
            return Err(classify_build(request, finished));
        }
        if let Some(report) = steps.finish(Instant::now()) {
            observer.layer(&report);
        }
        let id = std::fs::read_to_string(&iidfile).map_err(|e| BuildError::io("could not read the image id", e))?;
        Ok(id.trim().to_owned())
    }

    async fn push(
        &self,
        image_id: &str,
        to: &ImageRef,
        request: &BuildRequest,
        observer: &dyn BuildObserver,
        cancel: &CancellationToken,
    ) -> Result<String, BuildError> {
        let private = private_dir()?;
        let digestfile = private.path().join("digest");
        let authfile = authfile(request).await?;
        let mut args = self.global_args();
        args.extend(["push".into(), "--digestfile".into(), digestfile.clone().into_os_string()]);
        if request.is_insecure(to.registry()) {
            args.push("--tls-verify=false".into());
        }
        push_auth(&mut args, authfile.as_ref());
        args.extend([image_id.into(), format!("docker://{to}").into()]);
        let finished =
            process::run(&self.binary, &args, &[], cancel, HINT, |stream, line| observer.line(stream, line)).await?;
        if !finished.status.success() {
            return Err(classify_push(to, finished, request.auth.is_some()));
        }
        let digest =
            std::fs::read_to_string(&digestfile).map_err(|e| BuildError::io("could not read the pushed digest", e))?;
        Ok(digest.trim().to_owned())
    }
}

/// The request's credentials as an auth file, credential sources asked now.
async fn authfile(request: &BuildRequest) -> Result<Option<AuthFile>, BuildError> {
    match &request.auth {
        Some(auth) => Ok(Some(auth.resolve().await?.write_authfile()?)),
        None => Ok(None),
    }
}

/// A `registries.conf` that marks only `insecure` registries as reached without TLS (buildah's `--tls-verify=false`
/// would lower it for every registry of the build, credentials included): the system's file, if any, with an entry
/// for each insecure registry it does not name.
fn registries_conf(dir: &std::path::Path, insecure: &[String]) -> Result<Option<PathBuf>, BuildError> {
    if insecure.is_empty() {
        return Ok(None);
    }
    let system = std::fs::read_to_string("/etc/containers/registries.conf").unwrap_or_default();
    let mut conf = system.clone();
    for registry in insecure {
        if !system.contains(&format!("location = \"{registry}\"")) {
            conf.push_str(&format!("\n[[registry]]\nlocation = \"{registry}\"\ninsecure = true\n"));
        }
    }
    let path = dir.join("registries.conf");
    write_private(&path, conf.as_bytes())?;
    Ok(Some(path))
}

fn push_auth(args: &mut Vec<OsString>, authfile: Option<&AuthFile>) {
    if let Some(file) = authfile {
        args.extend(["--authfile".into(), file.path().as_os_str().to_owned()]);
    }
}

/// A cache is a repository: buildah tags each cached layer in it by its own key.
fn cache_repository(image: &ImageRef) -> String {
    format!("{}/{}", image.registry(), image.repository())
}

/// The error a failed `buildah build` stands for.
fn classify_build(request: &BuildRequest, finished: Finished) -> BuildError {
    let message = last_error(&finished.tail);
    if message.contains("cannot find Containerfile or Dockerfile") {
        return BuildError::ContainerfileMissing { path: request.containerfile.clone(), searched: false };
    }
    if let Some(rest) = message.strip_prefix("building at STEP \"") {
        let (instruction, why) = rest.split_once("\": ").unwrap_or((rest, ""));
        if let Some(why) = why.strip_prefix("while running runtime: ") {
            // The step's own output: the lines since its `STEP` line, without buildah's closing error.
            let start = finished.tail.iter().rposition(|l| step_line(l).is_some()).map_or(0, |i| i + 1);
            let tail = finished.tail[start..].iter().filter(|l| !l.starts_with("Error: ")).cloned().collect();
            return BuildError::StepFailed { instruction: instruction.trim().to_owned(), why: why.to_owned(), tail };
        }
        if let Some(registry) = registry_problem(why, request.tags.iter().chain(&request.cache_from)) {
            return registry(request.auth.is_some());
        }
        // Anything else that stops a step before it runs is the Containerfile's fault: an unknown instruction,
        // a bad flag, a stage or file that is not there.
        let why = why.split(" &imagebuilder.Step").next().unwrap_or(why);
        return BuildError::InvalidContainerfile {
            file: request.containerfile.clone(),
            message: format!("at `{}`: {why}", instruction.trim()),
        };
    }
    if let Some(registry) = registry_problem(&message, request.tags.iter().chain(&request.cache_from)) {
        return registry(request.auth.is_some());
    }
    if message.contains("parse") || message.contains("Dockerfile") || message.contains("Containerfile") {
        return BuildError::InvalidContainerfile { file: request.containerfile.clone(), message };
    }
    BuildError::Builder { builder: "buildah", why: message, tail: finished.tail }
}

fn classify_push(to: &ImageRef, finished: Finished, given: bool) -> BuildError {
    let message = last_error(&finished.tail);
    if let Some(registry) = registry_problem(&message, [to]) {
        return registry(given);
    }
    BuildError::PushFailed { reference: to.to_string(), why: message }
}

/// buildah's last `Error: ...` line, without the prefix.
fn last_error(tail: &[String]) -> String {
    tail.iter()
        .rev()
        .find_map(|l| l.strip_prefix("Error: "))
        .map_or_else(|| tail.last().cloned().unwrap_or_else(|| "no output".into()), str::to_owned)
}

/// `STEP 2/5: RUN make` (or `[1/2] STEP 2/5: ...` in a multi-stage build) as (stage prefix, number, of, instruction).
fn step_line(line: &str) -> Option<(&str, u32, u32, &str)> {
    let (stage, rest) = match line.strip_prefix('[') {
        Some(after) => {
            let (stage, rest) = after.split_once("] ")?;
            (&line[..stage.len() + 3], rest)
        }
        None => ("", line),
    };
    let rest = rest.strip_prefix("STEP ")?;
    let (counts, instruction) = rest.split_once(": ")?;
    let (number, of) = counts.split_once('/')?;
    Some((stage, number.parse().ok()?, of.parse().ok()?, instruction))
}

/// Follows buildah's output and reports each step once the next begins (or the image is committed).
#[derive(Debug, Default)]
struct StepParser {
    open: OpenStep,
}

impl StepParser {
    fn feed(&mut self, line: &str, now: Instant) -> Option<LayerReport> {
        if let Some((stage, number, of, instruction)) = step_line(line) {
            return self.open.begin(number, of, format!("{stage}{instruction}"), now);
        }
        if line.starts_with("COMMIT") {
            return self.open.end(now);
        }
        if let Some(report) = self.open.current() {
            if line.starts_with("--> Cache pulled from remote") {
                report.source = LayerSource::RegistryCache;
            } else if line.starts_with("--> Using cache") && report.source == LayerSource::Built {
                report.source = LayerSource::Cache;
            }
        }
        None
    }

    fn finish(&mut self, now: Instant) -> Option<LayerReport> {
        self.open.end(now)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(lines: &[&str]) -> Vec<(u32, u32, String, LayerSource)> {
        let mut parser = StepParser::default();
        let t0 = Instant::now();
        let mut reports = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            reports.extend(parser.feed(line, t0 + Duration::from_secs(i as u64)));
        }
        reports.extend(parser.finish(t0 + Duration::from_secs(lines.len() as u64)));
        reports.into_iter().map(|r| (r.number, r.of, r.instruction, r.source)).collect()
    }

    #[test]
    fn steps_are_told_apart_by_where_their_layer_came_from() {
        // As buildah 1.28 prints a build after a wipe of local storage, with a registry cache.
        let reports = parse(&[
            "STEP 1/4: FROM 127.0.0.1:5000/base:1",
            "STEP 2/4: RUN sleep 2",
            "--> Cache pulled from remote 127.0.0.1:5000/cache:c572a3",
            "--> Using cache 883a7aaf0ed5",
            "STEP 3/4: COPY a.txt /a.txt",
            "--> Using cache 8e9d17a176cd",
            "--> Pushing cache 127.0.0.1:5000/cache:387447",
            "STEP 4/4: COPY b.txt /b.txt",
            "--> 49a37e44377",
            "COMMIT 127.0.0.1:5000/app:1",
            "Successfully tagged 127.0.0.1:5000/app:1",
        ]);
        assert_eq!(
            reports,
            [
                (1, 4, "FROM 127.0.0.1:5000/base:1".to_owned(), LayerSource::BaseImage),
                (2, 4, "RUN sleep 2".to_owned(), LayerSource::RegistryCache),
                (3, 4, "COPY a.txt /a.txt".to_owned(), LayerSource::Cache),
                (4, 4, "COPY b.txt /b.txt".to_owned(), LayerSource::Built),
            ]
        );
    }

    #[test]
    fn multi_stage_builds_keep_their_stage() {
        let reports =
            parse(&["[1/2] STEP 1/2: FROM base AS deps", "[1/2] STEP 2/2: RUN make", "[2/2] STEP 1/1: FROM x"]);
        assert_eq!(reports[1].2, "[1/2] RUN make");
        assert_eq!(reports.len(), 3);
        assert_eq!(step_line("STEP x/2: RUN"), None);
        assert_eq!(step_line("STEPS 1/2: RUN"), None);
    }

    #[test]
    fn failures_are_named_by_their_cause() {
        let request = BuildRequest::new("/ctx", "/ctx/Containerfile");
        let failed = |lines: &[&str]| Finished {
            status: std::os::unix::process::ExitStatusExt::from_raw(1 << 8),
            tail: lines.iter().map(|l| (*l).to_owned()).collect(),
        };
        let e = classify_build(
            &request,
            failed(&[
                "STEP 3/3: RUN echo failing; exit 3",
                "failing",
                "Error: building at STEP \"RUN echo failing; exit 3\": while running runtime: exit status 3",
            ]),
        );
        assert!(
            matches!(&e, BuildError::StepFailed { instruction, why, tail }
                if instruction == "RUN echo failing; exit 3" && why == "exit status 3" && tail == &["failing"]),
            "{e:?}"
        );
        // A step whose own words look like a registry's (no registry named) is still the step's failure.
        let e = classify_build(
            &request,
            failed(&[
                "STEP 2/2: RUN curl http://db:5432",
                "curl: dial tcp 10.0.0.5:5432: connection refused; permission denied",
                "Error: building at STEP \"RUN curl http://db:5432\": while running runtime: exit status 7",
            ]),
        );
        assert!(matches!(&e, BuildError::StepFailed { why, .. } if why == "exit status 7"), "{e:?}");
        let e = classify_build(
            &request,
            failed(&[
                "Error: building at STEP \"RUNN \": Build error: Unknown instruction: \"RUNN\" &imagebuilder.Step{...}",
            ]),
        );
        assert_eq!(
            e.to_string(),
            "the Containerfile `/ctx/Containerfile` is invalid: at `RUNN`: Build error: Unknown instruction: \"RUNN\""
        );
        let to = ImageRef::parse("127.0.0.1:5999/x:1").unwrap();
        let e = classify_push(
            &to,
            failed(&[
                "Error: pushing image \"x\": pinging container registry 127.0.0.1:5999: Get \"http://127.0.0.1:5999/v2/\": dial tcp 127.0.0.1:5999: connect: connection refused",
            ]),
            false,
        );
        assert!(
            matches!(&e, BuildError::RegistryUnreachable { registry, .. } if registry == "127.0.0.1:5999"),
            "{e:?}"
        );
        let e =
            classify_push(&to, failed(&["Error: ... 127.0.0.1:5999/x: unauthorized: authentication required"]), true);
        assert_eq!(e.to_string(), "the registry 127.0.0.1:5999 refused the credentials");
    }
}
