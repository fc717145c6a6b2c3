//! Real kubectl (the machine image's, 1.27 to 1.33) against the simulator: the evidence of its fidelity. With
//! `GANTRY_E2E_KUBECONFIG` set, the same commands run against that real cluster.

use std::process::{Command, Output};
use std::time::Duration;

use gantry_testkit::test_cluster::TestCluster;

struct Kubectl {
    kubeconfig: std::path::PathBuf,
    namespace: String,
    binary: std::path::PathBuf,
}

/// Each kubectl client of the machine image: the `kubectl.1.NN` binaries beside the dispatcher on the PATH (which
/// runs the one matching the server's minor version), oldest first.
fn clients() -> Vec<std::path::PathBuf> {
    let dispatcher = std::fs::canonicalize(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join("kubectl"))
            .find(|p| p.exists())
            .expect("kubectl is on the PATH (see docs/ENVIRONMENT in shared/)"),
    )
    .unwrap();
    let dir = dispatcher.parent().unwrap();
    let mut found: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            let minor = path.file_name()?.to_str()?.strip_prefix("kubectl.1.")?.parse().ok()?;
            Some((minor, path))
        })
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no kubectl.1.NN binaries beside {}", dispatcher.display());
    found.into_iter().map(|(_, p)| p).collect()
}

impl Kubectl {
    fn new(cluster: &TestCluster) -> Self {
        Self::with_binary(cluster, "kubectl".into())
    }

    /// A particular kubectl binary (one of [`clients`]).
    fn with_binary(cluster: &TestCluster, binary: std::path::PathBuf) -> Self {
        let tag = binary.file_name().unwrap().to_string_lossy().into_owned();
        let kubeconfig = std::env::temp_dir().join(format!("gantry-kubectl-{}-{tag}.yaml", cluster.namespace));
        std::fs::write(&kubeconfig, &cluster.kubeconfig).unwrap();
        Self { kubeconfig, namespace: cluster.namespace.clone(), binary }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(["-n", &self.namespace]).args(args);
        c
    }

    /// Runs kubectl and returns stdout; panics with stderr if it fails.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("kubectl is on the machine image (see docs/ENVIRONMENT in shared/)")
    }

    fn apply(&self, yaml: &str) -> String {
        let file = std::env::temp_dir().join(format!("gantry-apply-{}-{}.yaml", self.namespace, yaml.len()));
        std::fs::write(&file, yaml).unwrap();
        self.ok(&["apply", "--server-side", "-f", file.to_str().unwrap()])
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

const WEB: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  labels: {app: web}
data:
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: nginx:1.27
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_version_and_discovery() {
    let c = TestCluster::new("kubectl-version").await.unwrap();
    let k = Kubectl::new(&c);
    let version = k.ok(&["version", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&version).unwrap();
    assert!(v["serverVersion"]["gitVersion"].as_str().unwrap().starts_with("v1."), "{version}");
    let resources = k.ok(&["api-resources", "-o", "name"]);
    for r in ["deployments.apps", "replicasets.apps", "jobs.batch", "pods", "configmaps", "namespaces"] {
        assert!(resources.lines().any(|l| l == r), "{r} missing from:\n{resources}");
    }
    let namespaces = k.ok(&["get", "namespaces", "-o", "name"]);
    assert!(namespaces.contains(&format!("namespace/{}", c.namespace)), "{namespaces}");
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply_get_patch_and_delete() {
    let c = TestCluster::new("kubectl-apply").await.unwrap();
    let k = Kubectl::new(&c);
    let first = k.apply(WEB);
    assert!(first.contains("deployment.apps/web serverside-applied"), "{first}");
    k.apply(WEB);
    let listed = k.ok(&["get", "deploy,cm", "-l", "app=web", "-o", "name"]);
    assert_eq!(listed.lines().collect::<Vec<_>>(), ["deployment.apps/web", "configmap/web-config"]);
    let deploy: serde_json::Value = serde_json::from_str(&k.ok(&["get", "deploy", "web", "-o", "json"])).unwrap();
    assert_eq!(deploy["metadata"]["generation"], 1, "re-applying the same configuration changes nothing");
    k.ok(&["patch", "deploy", "web", "--type", "merge", "-p", r#"{"spec":{"replicas":3}}"#]);
    k.ok(&["set", "image", "deploy/web", "app=nginx:1.28"]);
    let summary = k.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.metadata.generation} {.spec.replicas} {.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(summary, "3 3 nginx:1.28");
    let cm = k.ok(&["get", "cm", "web-config", "-o", "jsonpath={.data.greeting}"]);
    assert_eq!(cm, "hello");
    k.ok(&["delete", "cm", "web-config"]);
    let gone = k.run(&["get", "cm", "web-config"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("NotFound"), "{}", String::from_utf8_lossy(&gone.stderr));
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_watch_sees_changes() {
    let c = TestCluster::new("kubectl-watch").await.unwrap();
    let k = Kubectl::new(&c);
    let mut watch = k.command(&["get", "cm", "-w", "-o", "name", "--request-timeout=20s"]);
    watch.stdout(std::process::Stdio::piped());
    let mut child = watch.spawn().unwrap();
    // Wait until the watch is open (the simulator counts it; on a real cluster, give it time), then make the changes
    // it should see.
    match c.sim() {
        Some(sim) => {
            for _ in 0..200 {
                if sim.requests().get("WATCH configmaps").is_some_and(|n| *n > 0) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        None => tokio::time::sleep(Duration::from_secs(3)).await,
    }
    k.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\ndata:\n  a: b\n");
    k.ok(&["delete", "cm", "watched"]);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    child.kill().unwrap(); // kubectl -w runs until stopped; what it printed is in the pipe.
    let out = child.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(seen.lines().filter(|l| *l == "configmap/watched").count() >= 2, "added and deleted: {seen}");
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_all_and_wait() {
    let c = TestCluster::new("kubectl-wait").await.unwrap();
    let k = Kubectl::new(&c);
    k.apply(WEB);
    let all = k.ok(&["get", "all", "-o", "name"]);
    assert!(all.contains("deployment.apps/web"), "{all}");
    let waited = k.ok(&[
        "wait",
        "--for=jsonpath={.status.phase}=Active",
        &format!("namespace/{}", c.namespace),
        "--timeout=10s",
    ]);
    assert!(waited.contains("condition met"), "{waited}");
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_status_history_and_undo() {
    let c = TestCluster::new("kubectl-rollout").await.unwrap();
    let k = Kubectl::new(&c);
    k.apply(WEB);
    let status = k.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    k.ok(&["set", "image", "deploy/web", "app=nginx:1.28"]);
    assert!(k.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]).contains("successfully rolled out"));
    let history = k.ok(&["rollout", "history", "deploy/web"]);
    let revisions: Vec<&str> =
        history.lines().filter_map(|l| l.split_whitespace().next()).filter(|w| w.parse::<u32>().is_ok()).collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    k.ok(&["rollout", "undo", "deploy/web"]);
    assert!(k.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]).contains("successfully rolled out"));
    let image = k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
    assert_eq!(image, "nginx:1.27");
    let sets = k.ok(&["get", "rs", "-l", "app=web", "-o", "name"]);
    assert_eq!(sets.lines().count(), 2, "the undo reused the first ReplicaSet: {sets}");
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_wait_for_a_job_and_read_its_logs() {
    let c = TestCluster::new("kubectl-job").await.unwrap();
    let k = Kubectl::new(&c);
    if let Some(sim) = c.sim() {
        sim.script(
            "busybox:1.36",
            gantry_testkit::kube::PodScript::Exit {
                after: Duration::from_millis(50),
                code: 0,
                logs: vec!["preflight ok".into()],
            },
        );
    }
    k.apply("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: preflight\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: check\n        image: busybox:1.36\n        command: [sh, -c, 'echo preflight ok']\n");
    let waited = k.ok(&["wait", "--for=condition=complete", "job/preflight", "--timeout=60s"]);
    assert!(waited.contains("condition met"), "{waited}");
    assert_eq!(k.ok(&["logs", "job/preflight"]).trim(), "preflight ok");
    c.cleanup().await;
}

/// `kubectl set image` takes the image as field manager `kubectl-set`; a later `kubectl apply --server-side` of
/// another image meets that conflict, as kubectl reports it, until `--force-conflicts`.
/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply_meets_a_field_conflict_and_forces_it() {
    let c = TestCluster::new("kubectl-conflict").await.unwrap();
    let k = Kubectl::new(&c);
    k.apply(WEB);
    k.ok(&["set", "image", "deployment/web", "app=nginx:1.28"]);
    let managers = k.ok(&[
        "get",
        "deployment",
        "web",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert!(managers.contains("kubectl-set"), "{managers}");

    let file = std::env::temp_dir().join(format!("gantry-conflict-{}.yaml", c.namespace));
    std::fs::write(&file, WEB.replace("nginx:1.27", "nginx:1.29")).unwrap();
    let refused = k.run(&["apply", "--server-side", "-f", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("conflict with \"kubectl-set\""), "{stderr}");
    assert!(stderr.contains(".spec.template.spec.containers[name=\"app\"].image"), "{stderr}");
    let image = || k.ok(&["get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
    assert_eq!(image(), "nginx:1.28", "refused, so nothing changed");

    k.ok(&["apply", "--server-side", "--force-conflicts", "-f", file.to_str().unwrap()]);
    assert_eq!(image(), "nginx:1.29");
    let _ = std::fs::remove_file(&file);
    c.cleanup().await;
}

/// `kubectl apply --server-side` of a manifest without a field it applied before removes that field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply_removes_what_it_no_longer_applies() {
    let c = TestCluster::new("kubectl-prune").await.unwrap();
    let k = Kubectl::new(&c);
    k.apply(&WEB.replace("  greeting: hello\n", "  greeting: hello\n  farewell: bye\n"));
    let data = || k.ok(&["get", "configmap", "web-config", "-o", "jsonpath={.data}"]);
    assert!(data().contains("farewell"), "{}", data());
    k.apply(WEB);
    assert_eq!(data(), r#"{"greeting":"hello"}"#);
    c.cleanup().await;
}

/// `kubectl get --chunk-size` pages through a list with `limit` and `continue` and shows all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_in_chunks_sees_everything() {
    let c = TestCluster::new("kubectl-chunks").await.unwrap();
    let k = Kubectl::new(&c);
    let many: String =
        (0..5).map(|i| format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: chunk-{i}}}\n---\n")).collect();
    k.apply(&many);
    let listed = k.ok(&["get", "configmaps", "--chunk-size=2", "-o", "name"]);
    let chunks: Vec<&str> = listed.lines().filter(|l| l.starts_with("configmap/chunk-")).collect();
    assert_eq!(chunks, (0..5).map(|i| format!("configmap/chunk-{i}")).collect::<Vec<_>>());
    c.cleanup().await;
}

/// `kubectl logs -f` follows a running container's output line by line and returns when the container exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_follow_streams_lines_as_they_are_printed() {
    use std::io::{BufRead, BufReader};
    let c = TestCluster::new("kubectl-logs-f").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    let lines = vec!["one".to_owned(), "two".to_owned(), "three".to_owned()];
    sim.script(
        "busybox:slow",
        gantry_testkit::kube::PodScript::Exit { after: Duration::from_secs(3), code: 0, logs: lines },
    );
    let k = Kubectl::new(&c);
    k.apply("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: slow\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: check\n        image: busybox:slow\n");
    // Running first (a log of a pod not started yet is refused by kubectl's own wait, not followed).
    let waited = k.ok(&["wait", "--for=jsonpath={.status.active}=1", "job/slow", "--timeout=30s"]);
    assert!(waited.contains("condition met"), "{waited}");
    let started = std::time::Instant::now();
    let mut child = k.command(&["logs", "-f", "job/slow"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut read = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        read.push((line.unwrap(), started.elapsed()));
    }
    let status = child.wait().unwrap();
    assert!(status.success());
    let texts: Vec<&str> = read.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(texts, ["one", "two", "three"]);
    // "one" was printed before kubectl started; "three" about two seconds in; kubectl returned at the exit.
    assert!(read[0].1 < Duration::from_millis(700), "{read:?}");
    assert!(read[2].1 >= Duration::from_millis(1200), "followed, not read at the end: {read:?}");
    assert!(started.elapsed() >= Duration::from_millis(2000), "returned when the container exited");
    c.cleanup().await;
}

/// `kubectl scale` with every client, 1.27 to 1.33: it writes the `scale` subresource, and the Deployment's
/// replicas and pods follow. <https://kubernetes.io/docs/reference/kubectl/generated/kubectl_scale/>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_scale_with_every_client() {
    use k8s_openapi::api::apps::v1::Deployment;
    let c = TestCluster::new("kubectl-scale").await.unwrap();
    Kubectl::new(&c).apply(WEB);
    let deploys: kube::Api<Deployment> = kube::Api::namespaced(c.client.clone(), &c.namespace);
    for (i, binary) in clients().into_iter().enumerate() {
        let k = Kubectl::with_binary(&c, binary.clone());
        let replicas = (i % 3 + 1).to_string();
        let out = k.ok(&["scale", "deployment/web", "--replicas", &replicas]);
        assert!(out.contains("scaled"), "{}: {out}", binary.display());
        let spec = deploys.get("web").await.unwrap().spec.unwrap().replicas.unwrap();
        assert_eq!(spec.to_string(), replicas, "{} set spec.replicas", binary.display());
        let ready = k.ok(&[
            "wait",
            "deployment/web",
            "--for",
            &format!("jsonpath={{.status.readyReplicas}}={replicas}"),
            "--timeout",
            "20s",
        ]);
        assert!(ready.contains("condition met"), "{}: {ready}", binary.display());
        // With a precondition kubectl reads the Scale and writes it back whole (PUT, with its resourceVersion).
        let out = k.ok(&["scale", "deployment/web", "--current-replicas", &replicas, "--replicas", "4"]);
        assert!(out.contains("scaled"), "{}: {out}", binary.display());
        let spec = deploys.get("web").await.unwrap().spec.unwrap().replicas.unwrap();
        assert_eq!(spec, 4, "{} set spec.replicas through a PUT of the Scale", binary.display());
    }
    c.cleanup().await;
}

/// `kubectl rollout pause`, `set image`, `rollout resume` and `rollout status` with every client, 1.27 to 1.33: while
/// paused nothing rolls out; resumed, the new image is rolled out.
/// <https://kubernetes.io/docs/reference/kubectl/generated/kubectl_rollout/kubectl_rollout_pause/>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_pause_and_resume_with_every_client() {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    let c = TestCluster::new("kubectl-pause").await.unwrap();
    Kubectl::new(&c).apply(WEB);
    let sets: kube::Api<ReplicaSet> = kube::Api::namespaced(c.client.clone(), &c.namespace);
    for (i, binary) in clients().into_iter().enumerate() {
        let k = Kubectl::with_binary(&c, binary.clone());
        k.ok(&["rollout", "status", "deployment/web", "--timeout", "20s"]);
        let before = sets.list(&Default::default()).await.unwrap().items.len();
        k.ok(&["rollout", "pause", "deployment/web"]);
        let image = format!("app=nginx:1.{}", 30 + i);
        k.ok(&["set", "image", "deployment/web", &image]);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let during = sets.list(&Default::default()).await.unwrap().items.len();
        assert_eq!(during, before, "{}: a ReplicaSet was made while paused", binary.display());
        k.ok(&["rollout", "resume", "deployment/web"]);
        k.ok(&["rollout", "status", "deployment/web", "--timeout", "20s"]);
        let running = k.ok(&[
            "get",
            "deployment/web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image} {.status.updatedReplicas}",
        ]);
        assert_eq!(running, format!("nginx:1.{} 2", 30 + i), "{}", binary.display());
    }
    c.cleanup().await;
}

/// `kubectl delete --cascade=orphan` with every client, 1.27 to 1.33: the ReplicaSet and its pods stay, no longer
/// owned; the Deployment applied again adopts them instead of starting new pods.
/// <https://kubernetes.io/docs/tasks/administer-cluster/use-cascading-deletion/#set-orphan-deletion-policy>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_orphan_keeps_the_replica_set_and_it_is_adopted_again() {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::Pod;
    let c = TestCluster::new("kubectl-orphan").await.unwrap();
    let sets: kube::Api<ReplicaSet> = kube::Api::namespaced(c.client.clone(), &c.namespace);
    let pods: kube::Api<Pod> = kube::Api::namespaced(c.client.clone(), &c.namespace);
    let pod_names = || async {
        let mut names: Vec<String> =
            pods.list(&Default::default()).await.unwrap().items.into_iter().filter_map(|p| p.metadata.name).collect();
        names.sort();
        names
    };
    // Applied with the dispatcher's client: kubectl 1.27 and 1.28 validate on their side from `/openapi/v2`, which
    // the simulator does not serve yet.
    let applier = Kubectl::new(&c);
    for binary in clients() {
        let k = Kubectl::with_binary(&c, binary.clone());
        applier.apply(WEB);
        k.ok(&["rollout", "status", "deployment/web", "--timeout", "20s"]);
        let before = pod_names().await;
        k.ok(&["delete", "deployment", "web", "--cascade=orphan"]);
        let left = sets.list(&Default::default()).await.unwrap().items;
        assert_eq!(left.len(), 1, "{}: the ReplicaSet stays", binary.display());
        assert!(
            left[0].metadata.owner_references.as_ref().is_none_or(Vec::is_empty),
            "{}: no longer owned",
            binary.display()
        );
        assert_eq!(pod_names().await, before, "{}: its pods stay", binary.display());
        applier.apply(WEB);
        k.ok(&["rollout", "status", "deployment/web", "--timeout", "20s"]);
        let sets_now = sets.list(&Default::default()).await.unwrap().items;
        assert_eq!(sets_now.len(), 1, "{}: adopted, not replaced", binary.display());
        assert!(sets_now[0].metadata.owner_references.as_ref().is_some_and(|r| r.len() == 1), "{}", binary.display());
        assert_eq!(pod_names().await, before, "{}: the same pods serve", binary.display());
    }
    c.cleanup().await;
}

/// A Job whose image has no script runs as a plain container that exits 0: it completes, and `kubectl logs
/// job/NAME` reads its pod (found by the Job's selector), with every client.
/// <https://kubernetes.io/docs/concepts/workloads/controllers/job/#running-an-example-job>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_waits_for_a_plain_job_to_complete_with_every_client() {
    let c = TestCluster::new("kubectl-plain-job").await.unwrap();
    let applier = Kubectl::new(&c);
    for (i, binary) in clients().into_iter().enumerate() {
        let k = Kubectl::with_binary(&c, binary.clone());
        let name = format!("hello-{i}");
        applier.apply(&format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: hello\n        image: busybox:1.36\n        command: [echo, hi]\n"
        ));
        let waited = k.ok(&["wait", &format!("job/{name}"), "--for=condition=complete", "--timeout=20s"]);
        assert!(waited.contains("condition met"), "{}: {waited}", binary.display());
        k.ok(&["logs", &format!("job/{name}")]);
        let selector = k.ok(&[
            "get",
            "job",
            &name,
            "-o",
            "jsonpath={.spec.selector.matchLabels.batch\\.kubernetes\\.io/controller-uid}",
        ]);
        let uid = k.ok(&["get", "job", &name, "-o", "jsonpath={.metadata.uid}"]);
        assert_eq!(selector, uid, "{}", binary.display());
    }
    c.cleanup().await;
}

/// `kubectl get nodes` and `kubectl auth can-i` with every client, 1.27 to 1.33: one ready node, and every request
/// allowed (the simulator does not model authorization; a real cluster answers for the kubeconfig's user).
/// <https://kubernetes.io/docs/reference/access-authn-authz/authorization/#checking-api-access>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_nodes_and_auth_can_i_with_every_client() {
    let c = TestCluster::new("kubectl-nodes").await.unwrap();
    for binary in clients() {
        let k = Kubectl::with_binary(&c, binary.clone());
        let nodes =
            k.ok(&["get", "nodes", "-o", "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}"]);
        assert!(!nodes.is_empty() && nodes.split(' ').all(|s| s == "True"), "{}: {nodes}", binary.display());
        if c.sim().is_some() {
            // kubectl 1.32 and later send the SelfSubjectAccessReview as protobuf.
            let said = k.ok(&["auth", "can-i", "create", "deployments"]);
            assert_eq!(said.trim(), "yes", "{}", binary.display());
        }
    }
    c.cleanup().await;
}

/// kubectl's generator commands with every client: 1.32 and later send the objects as protobuf
/// (`application/vnd.kubernetes.protobuf`) and read the answers as protobuf; older clients send JSON. Each object is
/// then read back with kube-rs (JSON) and checked field by field.
/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#protobuf-encoding>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_generators_create_objects_with_every_client() {
    use k8s_openapi::api::{apps::v1::Deployment, batch::v1::Job, core::v1::*};
    use kube::Api;
    let c = TestCluster::new("kubectl-generators").await.unwrap();
    for (i, binary) in clients().into_iter().enumerate() {
        let k = Kubectl::with_binary(&c, binary.clone());
        let who = binary.display().to_string();
        let name = |what: &str| format!("{what}-{i}");
        k.ok(&["create", "configmap", &name("cm"), "--from-literal=greeting=hello"]);
        k.ok(&["create", "secret", "generic", &name("secret"), "--from-literal=password=hunter2"]);
        k.ok(&["create", "deployment", &name("web"), "--image=nginx:1.27", "--replicas=2", "--port=80"]);
        k.ok(&["create", "deployment", &name("idle"), "--image=nginx:1.27", "--replicas=0"]);
        k.ok(&["create", "job", &name("job"), "--image=busybox:1.36", "--", "echo", "hi"]);
        k.ok(&["create", "service", "clusterip", &name("svc"), "--tcp=80:8080"]);
        k.ok(&["create", "serviceaccount", &name("sa")]);

        let cm = Api::<ConfigMap>::namespaced(c.client.clone(), &c.namespace).get(&name("cm")).await.unwrap();
        assert_eq!(cm.data.unwrap()["greeting"], "hello", "{who}");
        let secret = Api::<Secret>::namespaced(c.client.clone(), &c.namespace).get(&name("secret")).await.unwrap();
        assert_eq!(secret.data.unwrap()["password"].0, b"hunter2", "{who}");
        assert_eq!(secret.type_.as_deref(), Some("Opaque"), "{who}");
        let deployments = Api::<Deployment>::namespaced(c.client.clone(), &c.namespace);
        let web = deployments.get(&name("web")).await.unwrap();
        let spec = web.spec.unwrap();
        assert_eq!(spec.replicas, Some(2), "{who}");
        let container = &spec.template.spec.unwrap().containers[0];
        assert_eq!(container.image.as_deref(), Some("nginx:1.27"), "{who}");
        assert_eq!(container.ports.as_ref().unwrap()[0].container_port, 80, "{who}");
        // An explicit zero survives the encoding (a pointer field set to 0, not left unset and defaulted to 1).
        let idle = deployments.get(&name("idle")).await.unwrap();
        assert_eq!(idle.spec.unwrap().replicas, Some(0), "{who}");
        let job = Api::<Job>::namespaced(c.client.clone(), &c.namespace).get(&name("job")).await.unwrap();
        let job_container = &job.spec.unwrap().template.spec.unwrap().containers[0];
        assert_eq!(job_container.command.as_deref(), Some(&["echo".to_owned(), "hi".to_owned()][..]), "{who}");
        let svc = Api::<Service>::namespaced(c.client.clone(), &c.namespace).get(&name("svc")).await.unwrap();
        let port = &svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.port, port.target_port.clone()),
            (80, Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080))),
            "{who}"
        );
        assert!(svc.spec.unwrap().cluster_ip.is_some_and(|ip| !ip.is_empty()), "{who}: a cluster IP is assigned");
        Api::<ServiceAccount>::namespaced(c.client.clone(), &c.namespace).get(&name("sa")).await.unwrap();

        // The Deployment rolls out and the Job completes, as kubectl sees them.
        k.ok(&["rollout", "status", &format!("deployment/{}", name("web")), "--timeout=30s"]);
        let waited = k.ok(&["wait", &format!("job/{}", name("job")), "--for=condition=complete", "--timeout=30s"]);
        assert!(waited.contains("condition met"), "{who}: {waited}");
    }
    if c.sim().is_some() {
        // A namespace, created and read back with protobuf.
        let k = Kubectl::with_binary(&c, clients().pop().unwrap());
        let ns = format!("{}-pb", c.namespace);
        k.ok(&["create", "namespace", &ns]);
        assert_eq!(k.ok(&["get", "namespace", &ns, "-o", "jsonpath={.status.phase}"]), "Active");
        k.ok(&["delete", "namespace", &ns]);
    }
    c.cleanup().await;
}

/// Client-side writes, `--validate=strict|warn`, `diff`, `edit` and `explain` with every client: kubectl 1.27 and 1.28 read `/openapi/v2` (as
/// gnostic protobuf) before any write, newer ones `/openapi/v3`; `explain` reads the schemas. The object is read
/// back after each command.
/// <https://kubernetes.io/docs/concepts/overview/kubernetes-api/#openapi-interface-definition>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_client_side_writes_diff_edit_and_explain_with_every_client() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let c = TestCluster::new("kubectl-openapi").await.unwrap();
    let configmaps = kube::Api::<ConfigMap>::namespaced(c.client.clone(), &c.namespace);
    let data = |cm: ConfigMap| cm.data.unwrap_or_default().into_iter().collect::<Vec<(String, String)>>();
    for (i, binary) in clients().into_iter().enumerate() {
        let k = Kubectl::with_binary(&c, binary.clone());
        let who = binary.display().to_string();
        let name = format!("settings-{i}");
        let file = std::env::temp_dir().join(format!("gantry-openapi-{}-{i}.yaml", c.namespace));
        let manifest = |greeting: &str| {
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  greeting: {greeting}\n")
        };
        std::fs::write(&file, manifest("hello")).unwrap();
        let path = file.to_str().unwrap();

        k.ok(&["apply", "-f", path]);
        assert_eq!(data(configmaps.get(&name).await.unwrap()), [("greeting".into(), "hello".into())], "{who}");
        // diff: exit 0 without differences, 1 with them (and the change shown), the object unchanged.
        assert_eq!(k.run(&["diff", "-f", path]).status.code(), Some(0), "{who}");
        std::fs::write(&file, manifest("bonjour")).unwrap();
        let diff = k.run(&["diff", "-f", path]);
        assert_eq!(diff.status.code(), Some(1), "{who}: {}", String::from_utf8_lossy(&diff.stderr));
        assert!(String::from_utf8_lossy(&diff.stdout).contains("+  greeting: bonjour"), "{who}");
        assert_eq!(data(configmaps.get(&name).await.unwrap())[0].1, "hello", "{who}: diff changes nothing");

        std::fs::write(&file, manifest("hello")).unwrap();
        k.ok(&["label", "configmap", &name, "tier=web"]);
        let labels = configmaps.get(&name).await.unwrap().metadata.labels.unwrap();
        assert_eq!(labels["tier"], "web", "{who}");
        for round in 0..3 {
            // Without a resourceVersion: never a conflict (it was 2 in 60 while controllers wrote).
            k.ok(&["annotate", "configmap", &name, &format!("note=round-{round}"), "--overwrite"]);
        }
        let annotations = configmaps.get(&name).await.unwrap().metadata.annotations.unwrap_or_default();
        assert_eq!(annotations.get("note").map(String::as_str), Some("round-2"), "{who}");
        k.ok(&["patch", "configmap", &name, "-p", r#"{"data":{"extra":"1"}}"#]);
        assert_eq!(data(configmaps.get(&name).await.unwrap()).len(), 2, "{who}");
        k.ok(&["replace", "-f", path]);
        assert_eq!(data(configmaps.get(&name).await.unwrap()), [("greeting".into(), "hello".into())], "{who}");

        // edit, with an editor that rewrites the greeting.
        let out = k
            .command(&["edit", "configmap", &name])
            .env("KUBE_EDITOR", "sed -i s/greeting:\\ hello/greeting:\\ hi/")
            .output()
            .unwrap();
        assert!(out.status.success(), "{who}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(data(configmaps.get(&name).await.unwrap())[0].1, "hi", "{who}");

        // A server-side dry run creates nothing.
        k.ok(&["create", "configmap", &format!("{name}-dry"), "--from-literal=a=b", "--dry-run=server"]);
        assert!(configmaps.get_opt(&format!("{name}-dry")).await.unwrap().is_none(), "{who}");

        // Unknown fields: `--validate=strict` (kubectl's default) refuses them on the server, `warn` prints the
        // server's warning and drops them.
        let typo = std::env::temp_dir().join(format!("gantry-openapi-{}-{i}-typo.yaml", c.namespace));
        let typo_manifest = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndataa: {{}}\ndata:\n  greeting: hello\n  colour: red\n"
        );
        std::fs::write(&typo, typo_manifest).unwrap();
        let strict = k.run(&["apply", "-f", typo.to_str().unwrap(), "--validate=strict"]);
        let said = String::from_utf8_lossy(&strict.stderr);
        assert!(!strict.status.success() && said.contains("unknown field \"dataa\""), "{who}: {said}");
        let warned = k.run(&["apply", "-f", typo.to_str().unwrap(), "--validate=warn"]);
        let said = String::from_utf8_lossy(&warned.stderr);
        assert!(warned.status.success() && said.contains("unknown field \"dataa\""), "{who}: {said}");
        let stored = serde_json::to_value(configmaps.get(&name).await.unwrap()).unwrap();
        assert!(stored.get("dataa").is_none() && stored["data"]["colour"] == "red", "{who}: {stored}");
        let _ = std::fs::remove_file(&typo);

        let explained = k.ok(&["explain", "deployment.spec.replicas"]);
        assert!(explained.contains("replicas") && explained.contains("<integer>"), "{who}: {explained}");
        let explained = k.ok(&["explain", "pods.spec.containers.image"]);
        assert!(explained.contains("<string>"), "{who}: {explained}");
        let _ = std::fs::remove_file(&file);
    }
    c.cleanup().await;
}

/// `kubectl get` prints the server's columns (Tables) with every client: READY, STATUS, RESTARTS for pods, READY,
/// UP-TO-DATE, AVAILABLE for Deployments, a Job's STATUS and COMPLETIONS, a Service's CLUSTER-IP and PORT(S),
/// `-o wide`'s extra columns, and `get -w` printing each change as a row.
/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_prints_the_servers_columns_with_every_client() {
    let c = TestCluster::new("kubectl-tables").await.unwrap();
    let applier = Kubectl::new(&c);
    applier.apply(WEB);
    applier.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n  - {port: 80, targetPort: 8080}\n");
    applier.apply("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: once\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - {name: once, image: busybox:1.36}\n");
    applier.ok(&["rollout", "status", "deployment/web", "--timeout=30s"]);
    applier.ok(&["wait", "job/once", "--for=condition=complete", "--timeout=30s"]);
    let header = |out: &str| out.lines().next().unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ");
    for binary in clients() {
        let k = Kubectl::with_binary(&c, binary.clone());
        let who = binary.display().to_string();
        let out = k.ok(&["get", "deployment", "web"]);
        assert_eq!(header(&out), "NAME READY UP-TO-DATE AVAILABLE AGE", "{who}: {out}");
        assert!(out.lines().nth(1).unwrap().split_whitespace().take(4).eq(["web", "2/2", "2", "2"]), "{who}: {out}");
        let out = k.ok(&["get", "deployment", "web", "-o", "wide"]);
        assert_eq!(header(&out), "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR", "{who}: {out}");
        assert!(out.contains("nginx:1.27") && out.contains("app=web"), "{who}: {out}");
        let out = k.ok(&["get", "pods", "-l", "app=web"]);
        assert_eq!(header(&out), "NAME READY STATUS RESTARTS AGE", "{who}: {out}");
        assert_eq!(
            out.lines().skip(1).filter(|l| l.contains(" 1/1 ") && l.contains(" Running ")).count(),
            2,
            "{who}: {out}"
        );
        let out = k.ok(&["get", "job", "once"]);
        assert!(out.contains("COMPLETIONS") && out.contains("1/1"), "{who}: {out}");
        let out = k.ok(&["get", "service", "web"]);
        assert_eq!(header(&out), "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE", "{who}: {out}");
        assert!(out.contains("ClusterIP") && out.contains("10.96.") && out.contains("80/TCP"), "{who}: {out}");
        let out = k.ok(&["get", "configmap", "web-config"]);
        assert_eq!(header(&out), "NAME DATA AGE", "{who}: {out}");
        if c.sim().is_some() {
            // The controllers' Events, as `get events` and `describe` show them.
            let out = k.ok(&["get", "events"]);
            assert_eq!(header(&out), "LAST SEEN TYPE REASON OBJECT MESSAGE", "{who}: {out}");
            assert!(out.contains("ScalingReplicaSet") && out.contains("deployment/web"), "{who}: {out}");
            let described = k.ok(&["describe", "deployment", "web"]);
            assert!(
                described.contains("deployment-controller") && described.contains("Scaled up replica set web-"),
                "{who}"
            );
        }
        // Labels come from the rows' objects (PartialObjectMetadata).
        let out = k.ok(&["get", "deployment", "web", "--show-labels"]);
        assert!(out.contains("app=web"), "{who}: {out}");
    }
    // get -w: a change arrives as a new row.
    let mut watch = applier.command(&["get", "deployment", "web", "-w", "--request-timeout=5s"]);
    let child = watch.stdout(std::process::Stdio::piped()).spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    applier.ok(&["scale", "deployment/web", "--replicas=3"]);
    applier.ok(&["rollout", "status", "deployment/web", "--timeout=30s"]);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.lines().any(|l| l.split_whitespace().nth(1) == Some("3/3")), "{printed}");
    c.cleanup().await;
}

/// `kubectl delete --cascade=foreground` and `kubectl delete namespace` with every client: kubectl waits until the
/// object is gone, and by then its dependents (or the namespace's content) are gone too.
/// <https://kubernetes.io/docs/tasks/administer-cluster/use-cascading-deletion/#use-foreground-cascading-deletion>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_foreground_and_namespace_deletion_with_every_client() {
    use k8s_openapi::api::core::v1::Pod;
    let c = TestCluster::new("kubectl-delete").await.unwrap();
    let pods = kube::Api::<Pod>::namespaced(c.client.clone(), &c.namespace);
    for (i, binary) in clients().into_iter().enumerate() {
        let k = Kubectl::with_binary(&c, binary.clone());
        let who = binary.display().to_string();
        let name = format!("web-{i}");
        k.ok(&["create", "deployment", &name, "--image=nginx:1.27", "--replicas=2"]);
        k.ok(&["rollout", "status", &format!("deployment/{name}"), "--timeout=30s"]);
        k.ok(&["delete", "deployment", &name, "--cascade=foreground", "--timeout=30s"]);
        let left = pods.list(&kube::api::ListParams::default().labels(&format!("app={name}"))).await.unwrap();
        assert!(left.items.is_empty(), "{who}: pods left after a foreground delete");
        assert!(k.ok(&["get", "replicasets", "-o", "name"]).lines().all(|l| !l.contains(&name)), "{who}");

        if c.sim().is_some() {
            let ns = format!("{}-gone-{i}", c.namespace);
            k.ok(&["create", "namespace", &ns]);
            k.ok(&["-n", &ns, "create", "configmap", "settings", "--from-literal=a=b"]);
            k.ok(&["delete", "namespace", &ns, "--timeout=30s"]);
            let after = k.run(&["get", "namespace", &ns]);
            assert!(!after.status.success() && String::from_utf8_lossy(&after.stderr).contains("NotFound"), "{who}");
        }
    }
    c.cleanup().await;
}

/// `kubectl wait` with client-go's watch-list feature (`KUBE_FEATURE_WatchListClient=true`, kubectl 1.31 and later
/// use it): a streaming list (`sendInitialEvents=true`) that ends its initial events with the bookmark annotated
/// `k8s.io/initial-events-end`, after which the wait proceeds.
/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#streaming-lists>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_wait_with_streaming_lists_with_every_client() {
    let c = TestCluster::new("kubectl-watchlist").await.unwrap();
    let applier = Kubectl::new(&c);
    applier.apply("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: once\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - {name: once, image: busybox:1.36}\n");
    for binary in clients() {
        let k = Kubectl::with_binary(&c, binary.clone());
        let out = k
            .command(&["wait", "job/once", "--for=condition=complete", "--timeout=20s", "-v=6"])
            .env("KUBE_FEATURE_WatchListClient", "true")
            .output()
            .unwrap();
        let (said, log) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.contains("condition met"), "{}: {said} {log}", binary.display());
        let minor: u32 = binary.to_string_lossy().rsplit('.').next().unwrap().parse().unwrap();
        if minor >= 31 {
            assert!(log.contains("sendInitialEvents=true"), "{}: a streaming list was used", binary.display());
        }
    }
    c.cleanup().await;
}
