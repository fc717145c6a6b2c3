//! The Helm steps against a stand-in `helm` (no Helm binary can be installed here): these tests check the argv Helm
//! gets, what reaches its standard input, and what the run shows, not what Helm does with them.

use std::path::PathBuf;

use futures::StreamExt;
use gantry_core::{Context, Pipeline, Run, RunStatus, TriggerRule};
use gantry_helm::{Helm, HelmRelease, HelmRollback, SopsValues};
use gantry_sops::Identities;

const SOPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../gantry-sops/tests/data/");

struct FakeHelm {
    dir: PathBuf,
}

impl FakeHelm {
    /// A `helm` script that records its argv (one argument per line) and stdin, prints `history` from a file, echoes
    /// the first line of its values, and fails when `fail` exists.
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("gantry-helm-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let script = format!(
            r#"#!/bin/sh
d="{dir}"
printf '%s\n' "$@" >> "$d/argv"
echo --- >> "$d/argv"
if [ "$1" = history ]; then cat "$d/history.json"; exit 0; fi
if [ "$1" = upgrade ] && [ -f "$d/fail" ]; then echo "Error: UPGRADE FAILED: context deadline exceeded" >&2; exit 1; fi
case " $* " in *" - "*) cat > "$d/stdin"; echo "values seen: $(grep password "$d/stdin")";; esac
echo "Release \"$3\" has been upgraded. Happy Helming!"
"#,
            dir = dir.display()
        );
        let helm = dir.join("helm");
        std::fs::write(&helm, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helm, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self { dir }
    }

    fn helm(&self) -> Helm {
        Helm::at(self.dir.join("helm"))
    }

    fn calls(&self) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(self.dir.join("argv")).unwrap_or_default();
        text.split("---\n").filter(|c| !c.is_empty()).map(|c| c.lines().map(str::to_owned).collect()).collect()
    }
}

impl Drop for FakeHelm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn keys() -> Identities {
    Identities::parse(&std::fs::read_to_string(format!("{SOPS}key1.txt")).unwrap()).unwrap()
}

/// A SOPS file of Helm values, encrypted to the test key.
fn values_file(dir: &std::path::Path) -> String {
    let plain = "database:\n  host: db.internal\n  password: s3cr3t-p@ss\nreplicas: 3\n";
    let encrypted =
        gantry_sops::Encryptor::new(keys().recipients()).unwrap().encrypt(plain, gantry_sops::Format::Yaml).unwrap();
    let path = dir.join("web.secrets.enc.yaml");
    std::fs::write(&path, encrypted).unwrap();
    path.display().to_string()
}

fn release(helm: Helm, values: String) -> HelmRelease {
    HelmRelease::new(helm, "web", "./charts/web")
        .namespace("{{env}}")
        .version("1.4.2")
        .values_file("deploy/{{env}}/web.yaml")
        .sops_values(SopsValues::file(values, keys()))
        .atomic()
        .timeout("5m")
}

#[tokio::test]
async fn a_release_passes_decrypted_values_on_stdin_and_never_shows_them() {
    let fake = FakeHelm::new("release");
    let pipeline =
        Pipeline::builder("release").step("helm", release(fake.helm(), values_file(&fake.dir))).build().unwrap();
    let ctx = Context::new().var("env", "prod");
    let plan = pipeline.plan(&ctx).to_string();
    let run = Run::new(&pipeline, ctx);
    let events = run.subscribe();
    let report = run.execute().await.unwrap();
    let shown: Vec<String> = events.map(|e| format!("{e:?}")).collect().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let expected: Vec<String> = [
        "upgrade",
        "--install",
        "web",
        "./charts/web",
        "--namespace",
        "prod",
        "--version",
        "1.4.2",
        "--values",
        "deploy/prod/web.yaml",
        "--values",
        "-",
        "--atomic",
        "--timeout",
        "5m",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(fake.calls(), [expected], "argv only, the SOPS values as `--values -`, no file of them");
    let stdin = std::fs::read_to_string(fake.dir.join("stdin")).unwrap();
    assert!(stdin.contains("\"password\": \"s3cr3t-p@ss\""), "Helm got the decrypted values on stdin: {stdin}");
    let files: Vec<String> =
        std::fs::read_dir(&fake.dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    for file in &files {
        let text = std::fs::read(fake.dir.join(file)).unwrap();
        let plaintext = String::from_utf8_lossy(&text).contains("s3cr3t-p@ss");
        assert!(
            !plaintext || file == "stdin",
            "plaintext values on disk in {file} (only the stand-in's own record of its stdin may hold them)"
        );
    }
    let all = format!("{}\n{report}\n{report:?}\n{plan}", shown.join("\n"));
    assert!(all.contains("values seen: ") && all.contains("has been upgraded"), "{all}");
    assert!(!all.contains("s3cr3t-p@ss"), "the value Helm echoed is masked: {all}");
    assert!(plan.contains("--values - --atomic") && plan.contains("(values on stdin, decrypted from"), "{plan}");
}

#[tokio::test]
async fn a_failed_upgrade_says_why_and_takes_the_failure_path_to_a_rollback() {
    let fake = FakeHelm::new("rollback");
    std::fs::write(fake.dir.join("fail"), "").unwrap();
    std::fs::write(
        fake.dir.join("history.json"),
        r#"[{"revision":1,"status":"superseded"},{"revision":2,"status":"deployed"},{"revision":3,"status":"failed"}]"#,
    )
    .unwrap();
    let pipeline = Pipeline::builder("release")
        .step("helm", release(fake.helm(), values_file(&fake.dir)))
        .step("rollback", HelmRollback::new(fake.helm(), "web").namespace("{{env}}"))
        .after(["helm"])
        .rule(TriggerRule::OnFailure)
        .build()
        .unwrap();
    let report = pipeline.run(Context::new().var("env", "prod")).await.unwrap();
    let reason = report.step("helm").unwrap().reason.clone().unwrap();
    assert!(
        reason.contains("`helm upgrade` failed (exit 1): Error: UPGRADE FAILED: context deadline exceeded"),
        "{reason}"
    );
    assert_eq!(report.status_of("rollback"), Some(gantry_core::StepStatus::Succeeded), "{report}");
    let calls = fake.calls();
    assert_eq!(calls[1], ["history", "web", "--output", "json", "--namespace", "prod"]);
    assert_eq!(calls[2], ["rollback", "web", "2", "--wait", "--namespace", "prod"], "to the last good revision");
}

#[tokio::test]
async fn a_missing_helm_binary_is_a_clear_error() {
    let helm = Helm::at("/nonexistent/bin/helm");
    let report = Pipeline::builder("p")
        .step("helm", release(helm, "/nonexistent/values.enc.yaml".into()))
        .build()
        .unwrap()
        .run(Context::new().var("env", "prod"))
        .await
        .unwrap();
    let reason = report.step("helm").unwrap().reason.clone().unwrap();
    assert!(reason.contains("helm is not installed: no `/nonexistent/bin/helm`"), "{reason}");
}

/// The cluster Helm deploys to is the step's (`--kubeconfig`, `--kube-context`, templates), for the release, the
/// history it reads and the rollback; `Helm::env` reaches every command (Helm's `HELM_DRIVER`).
#[tokio::test]
async fn the_steps_name_their_cluster_and_pass_the_environment() {
    let fake = FakeHelm::new("cluster");
    std::fs::write(fake.dir.join("fail"), "").unwrap();
    std::fs::write(
        fake.dir.join("history.json"),
        r#"[{"revision":1,"status":"deployed"},{"revision":2,"status":"failed"}]"#,
    )
    .unwrap();
    let script = std::fs::read_to_string(fake.dir.join("helm")).unwrap();
    let script = script.replacen(
        "printf '%s\\n' \"$@\"",
        "printf 'HELM_DRIVER=%s\\n' \"$HELM_DRIVER\" >> \"$d/env\"; printf '%s\\n' \"$@\"",
        1,
    );
    std::fs::write(fake.dir.join("helm"), script).unwrap();
    let helm = fake.helm().env("HELM_DRIVER", "configmap");
    let pipeline = Pipeline::builder("release")
        .step(
            "helm",
            HelmRelease::new(helm.clone(), "web", "./charts/web")
                .namespace("{{env}}")
                .kubeconfig("/etc/gantry/{{env}}.kubeconfig")
                .kube_context("eks-{{env}}"),
        )
        .step(
            "rollback",
            HelmRollback::new(helm, "web")
                .namespace("{{env}}")
                .kubeconfig("/etc/gantry/{{env}}.kubeconfig")
                .kube_context("eks-{{env}}"),
        )
        .after(["helm"])
        .rule(TriggerRule::OnFailure)
        .build()
        .unwrap();
    let report = pipeline.run(Context::new().var("env", "prod")).await.unwrap();
    assert_eq!(report.status_of("rollback"), Some(gantry_core::StepStatus::Succeeded), "{report}");
    let flags = ["--kubeconfig", "/etc/gantry/prod.kubeconfig", "--kube-context", "eks-prod"].map(String::from);
    let calls = fake.calls();
    assert_eq!(calls.len(), 3);
    for call in &calls {
        assert!(call.windows(4).any(|w| w == flags), "{call:?}");
    }
    let env = std::fs::read_to_string(fake.dir.join("env")).unwrap();
    assert_eq!(env.lines().collect::<Vec<_>>(), ["HELM_DRIVER=configmap"; 3]);
}

/// A kubeconfig source is asked once per Helm command; Helm reads the kubeconfig from a private file (mode 0600)
/// that is gone after the command; the run shows a placeholder, never the file's content.
#[tokio::test]
async fn a_kubeconfig_source_is_made_for_each_command_and_removed_after_it() {
    #[derive(Debug, Default)]
    struct Source(std::sync::atomic::AtomicUsize);
    #[async_trait::async_trait]
    impl gantry_kube::KubeconfigSource for Source {
        async fn kubeconfig(&self) -> Result<gantry_core::Secret, gantry_core::StepError> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(gantry_core::Secret::new(format!("current-context: made-{n}\ntoken: s3cr3t-t0ken\n")))
        }
    }
    let fake = FakeHelm::new("source");
    let script = std::fs::read_to_string(fake.dir.join("helm")).unwrap();
    // The stand-in copies the kubeconfig it is given, with its mode, before anything else.
    let script = script.replacen(
        "printf '%s\\n' \"$@\"",
        "prev=; for a in \"$@\"; do if [ \"$prev\" = --kubeconfig ]; then cat \"$a\" >> \"$d/seen\"; stat -c %a \"$a\" >> \"$d/modes\"; fi; prev=$a; done; printf '%s\\n' \"$@\"",
        1,
    );
    std::fs::write(fake.dir.join("helm"), script).unwrap();
    std::fs::write(fake.dir.join("fail"), "").unwrap();
    std::fs::write(
        fake.dir.join("history.json"),
        r#"[{"revision":1,"status":"deployed"},{"revision":2,"status":"failed"}]"#,
    )
    .unwrap();
    let source = std::sync::Arc::new(Source::default());
    let pipeline = Pipeline::builder("release")
        .step("helm", HelmRelease::new(fake.helm(), "web", "./charts/web").cluster(source.clone()))
        .step("rollback", HelmRollback::new(fake.helm(), "web").cluster(source.clone()))
        .after(["helm"])
        .rule(TriggerRule::OnFailure)
        .build()
        .unwrap();
    let report = pipeline.run(Context::new()).await.unwrap();
    assert_eq!(report.status_of("rollback"), Some(gantry_core::StepStatus::Succeeded), "{report}");
    assert_eq!(
        source.0.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "upgrade, history and rollback each get a fresh one"
    );
    let seen = std::fs::read_to_string(fake.dir.join("seen")).unwrap();
    assert_eq!(seen.matches("current-context: made-").count(), 3, "{seen}");
    let modes = std::fs::read_to_string(fake.dir.join("modes")).unwrap();
    assert_eq!(modes.lines().collect::<Vec<_>>(), ["600"; 3]);
    for call in fake.calls() {
        let path = call.windows(2).find(|w| w[0] == "--kubeconfig").map(|w| w[1].clone()).expect("a --kubeconfig");
        assert!(!std::path::Path::new(&path).exists(), "{path} is removed after the command");
    }
    assert!(!format!("{report}{report:?}").contains("s3cr3t-t0ken"));
}
