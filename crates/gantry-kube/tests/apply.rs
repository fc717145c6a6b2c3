//! Server-side apply of manifests against the simulated cluster (and a real one with `GANTRY_E2E_KUBECONFIG`).

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use gantry_core::{Context, Event, Pipeline, Run, RunReport, RunStatus, StepStatus, step_fn};
use gantry_kube::{APPLIED, Applied, Apply, Cluster, FIELD_MANAGER, ObjectChange};
use gantry_testkit::test_cluster::TestCluster;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::Api;

const RELEASE: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  release: "{{release}}"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: app, image: "web:{{release}}"}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#;

/// Runs `apply` and returns the report, what it published, and its log lines.
async fn run(apply: Apply, ctx: Context) -> (RunReport, Option<Vec<Applied>>, Vec<String>) {
    let seen = Arc::new(Mutex::new(None));
    let keep = Arc::clone(&seen);
    let pipeline = Pipeline::builder("apply")
        .step("apply", apply)
        .step(
            "read",
            step_fn(move |ctx| {
                let keep = Arc::clone(&keep);
                async move {
                    *keep.lock().unwrap() = Some(ctx.output("apply", APPLIED)?.as_ref().clone());
                    Ok(())
                }
            }),
        )
        .after(["apply"])
        .build()
        .unwrap();
    let run = Run::new(&pipeline, ctx);
    let events = run.subscribe();
    let report = run.execute().await.unwrap();
    let lines = events
        .filter_map(|e| async move { if let Event::Log { line, .. } = e { Some(line.to_string()) } else { None } })
        .collect()
        .await;
    let applied = seen.lock().unwrap().take();
    (report, applied, lines)
}

fn changes(applied: &[Applied]) -> Vec<(&str, &ObjectChange)> {
    applied.iter().map(|a| (a.kind.as_str(), &a.change)).collect()
}

fn cluster(c: &TestCluster) -> Cluster {
    Cluster::new(c.client.clone(), c.namespace.clone())
}

/// Multi-document YAML is applied in order as field manager `gantry`: created, then unchanged, then configured with
/// the changed fields named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_are_created_then_unchanged_then_configured() {
    let c = TestCluster::new("apply").await.unwrap();
    let apply = || Apply::yaml(cluster(&c), RELEASE);
    let (report, applied, lines) = run(apply(), Context::new().var("release", "1.0")).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let applied = applied.unwrap();
    assert_eq!(
        changes(&applied),
        [
            ("ConfigMap", &ObjectChange::Created),
            ("Deployment", &ObjectChange::Created),
            ("Service", &ObjectChange::Created)
        ]
    );
    assert!(applied.iter().all(|a| a.namespace.as_deref() == Some(c.namespace.as_str())));
    assert!(lines.contains(&"deployment.apps/web created".to_owned()), "{lines:?}");
    let cm: ConfigMap = Api::namespaced(c.client.clone(), &c.namespace).get("web-config").await.unwrap();
    assert_eq!(cm.data.unwrap()["release"], "1.0");
    let managers: Vec<String> =
        cm.metadata.managed_fields.unwrap_or_default().into_iter().filter_map(|m| m.manager).collect();
    assert!(managers.contains(&FIELD_MANAGER.to_owned()), "{managers:?}");

    let (_, applied, lines) = run(apply(), Context::new().var("release", "1.0")).await;
    assert!(applied.unwrap().iter().all(|a| a.change == ObjectChange::Unchanged), "{lines:?}");

    let (_, applied, lines) = run(apply(), Context::new().var("release", "1.1")).await;
    let applied = applied.unwrap();
    assert_eq!(applied[0].change, ObjectChange::Configured(vec!["data.release: 1.0 → 1.1".into()]));
    let ObjectChange::Configured(fields) = &applied[1].change else { panic!("{:?}", applied[1]) };
    assert!(fields.contains(&"spec.template.spec.containers[0].image: web:1.0 → web:1.1".to_owned()), "{fields:?}");
    assert_eq!(applied[2].change, ObjectChange::Unchanged);
    assert!(lines.contains(&"configmap/web-config configured".to_owned()), "{lines:?}");
    c.cleanup().await;
}

/// A dry run sends `dryRun=All`: it reports what would change, and the cluster keeps what it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reports_what_would_change_and_changes_nothing() {
    let c = TestCluster::new("dryrun").await.unwrap();
    run(Apply::yaml(cluster(&c), RELEASE), Context::new().var("release", "1.0")).await;
    let extra = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: new-config}\ndata: {a: b}\n";
    let dry = Apply::yaml(cluster(&c), format!("{RELEASE}{extra}")).dry_run(true);
    let (report, applied, lines) = run(dry, Context::new().var("release", "2.0")).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let applied = applied.unwrap();
    assert_eq!(applied[0].change, ObjectChange::Configured(vec!["data.release: 1.0 → 2.0".into()]));
    assert_eq!(applied[3].change, ObjectChange::Created);
    assert!(lines.contains(&"configmap/new-config created (dry run)".to_owned()), "{lines:?}");
    let configmaps: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    assert_eq!(configmaps.get("web-config").await.unwrap().data.unwrap()["release"], "1.0", "nothing persisted");
    assert!(configmaps.get_opt("new-config").await.unwrap().is_none(), "nothing created");
    let image = Api::<Deployment>::namespaced(c.client.clone(), &c.namespace).get("web").await.unwrap().spec.unwrap();
    assert_eq!(image.template.spec.unwrap().containers[0].image.as_deref(), Some("web:1.0"));
    let plan = Pipeline::builder("p")
        .step("apply", Apply::yaml(cluster(&c), RELEASE).dry_run(true))
        .build()
        .unwrap()
        .plan(&Context::new().var("release", "2.0"))
        .to_string();
    assert!(plan.contains("applies ConfigMap web-config, Deployment web, Service web"), "{plan}");
    assert!(plan.contains("dryRun=All"), "{plan}");
    c.cleanup().await;
}

/// Typed objects apply as they are; a Secret's values never show in what the step reports or logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_objects_apply_and_secret_values_never_show() {
    let c = TestCluster::new("typed").await.unwrap();
    let secret = |password: &str| -> Secret {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
            "stringData": {"password": password}
        }))
        .unwrap()
    };
    let service: Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
        "spec": {"selector": {"app": "db"}, "ports": [{"port": 5432}]}
    }))
    .unwrap();
    let first = Apply::objects(
        cluster(&c),
        [serde_json::to_value(secret("hunter2-old")).unwrap(), serde_json::to_value(&service).unwrap()],
    )
    .unwrap();
    let (report, applied, _) = run(first, Context::new()).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(changes(&applied.unwrap()), [("Secret", &ObjectChange::Created), ("Service", &ObjectChange::Created)]);

    let (report, applied, lines) =
        run(Apply::objects(cluster(&c), [secret("hunter2-new")]).unwrap(), Context::new()).await;
    let applied = applied.unwrap();
    let ObjectChange::Configured(fields) = &applied[0].change else { panic!("{applied:?}") };
    let everything = format!("{report}\n{report:?}\n{applied:?}\n{}", lines.join("\n"));
    for value in ["hunter2-old", "hunter2-new", "aHVudGVyMi1vbGQ=", "aHVudGVyMi1uZXc="] {
        assert!(!everything.contains(value), "{value} leaked: {everything}");
    }
    assert!(fields.iter().all(|f| f.ends_with(": changed")), "{fields:?}");
    c.cleanup().await;
}

/// Bad manifests fail the step naming the document and what is wrong; nothing after it is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_fail_naming_the_document() {
    let c = TestCluster::new("badapply").await.unwrap();
    let no_kind = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nmetadata: {name: b}\n";
    let (report, _, _) = run(Apply::yaml(cluster(&c), no_kind), Context::new()).await;
    assert_eq!(report.status_of("apply"), Some(StepStatus::Failed));
    assert_eq!(report.step("apply").unwrap().reason.as_deref(), Some("manifest document 2: no kind"));
    let configmaps: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    assert!(configmaps.get_opt("a").await.unwrap().is_none(), "checked before anything is applied");

    let unknown = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n";
    let (report, _, _) = run(Apply::yaml(cluster(&c), unknown), Context::new()).await;
    let reason = report.step("apply").unwrap().reason.clone().unwrap();
    assert!(reason.contains("Widget `w` (object 2 of the manifests)"), "{reason}");
    assert!(reason.contains("does not serve example.com/v1/Widget"), "{reason}");
    assert!(configmaps.get_opt("a").await.unwrap().is_some(), "the objects before it are applied, in order");
    assert!(configmaps.get_opt("c").await.unwrap().is_none(), "the ones after it are not");
    c.cleanup().await;
}

/// A Kubernetes Secret straight from a SOPS file: the cluster gets the values, nothing else does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_from_a_sops_file_reaches_the_cluster_and_nothing_else() {
    use futures::StreamExt;
    use gantry_kube::SecretFromSops;
    let c = TestCluster::new("sopssecret").await.unwrap();
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../gantry-sops/tests/data/");
    let keys = gantry_sops::Identities::parse(&std::fs::read_to_string(format!("{data}key1.txt")).unwrap()).unwrap();
    let pipeline = Pipeline::builder("secrets")
        .step("secret", SecretFromSops::new(cluster(&c), "web-{{env}}", format!("{data}secrets.enc.yaml"), keys))
        .build()
        .unwrap();
    let run = Run::new(&pipeline, Context::new().var("env", "prod"));
    let events = run.subscribe();
    let report = run.execute().await.unwrap();
    let shown: Vec<String> = events.map(|e| format!("{e:?}")).collect().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let secret: Secret = Api::namespaced(c.client.clone(), &c.namespace).get("web-prod").await.unwrap();
    let data = secret.data.unwrap();
    assert_eq!(data["db.password"].0, b"s3cr3t-p@ss");
    assert_eq!(data["db.port"].0, b"5432");
    assert_eq!(data["list.1"].0, b"b");
    assert_eq!(data["note_unencrypted"].0, b"visible");
    let all = format!("{}\n{report}\n{report:?}", shown.join("\n"));
    // The fixture's one-letter secrets (`a`, `b`) are masked wherever those letters appear; the key names show.
    assert!(all.contains("list.0, list.1, note_unencrypted from"), "{all}");
    assert!(!all.contains("s3cr3t-p@ss") && !all.contains("deploy"), "{all}");
    c.cleanup().await;
}

fn deployment_yaml(image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: app, image: \"{image}\"}}]}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: raw}}\ndata: {{template: \"{{{{ .Values.left.alone }}}}\"}}\n"
    )
}

/// Rendered manifests (as `helm template` prints them) are applied as they are, and with rollout tracking a
/// Deployment that crash-loops is put back on its previous template, as Argo CD's sync with health would need.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_manifests_with_rollout_tracking_roll_a_failed_deployment_back() {
    let c = TestCluster::new("tracked").await.unwrap();
    let Some(sim) = c.sim() else { return c.cleanup().await };
    sim.script(
        "web:bad",
        gantry_testkit::kube::PodScript::CrashLoop { runs_for: std::time::Duration::from_millis(100), exit_code: 1 },
    );
    let apply = |image: &str| Apply::rendered(cluster(&c), deployment_yaml(image)).track_rollouts();
    let (report, _, lines) = run(apply("web:1"), Context::new()).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert!(lines.contains(&"deployment.apps/web rolled out web:1".to_owned()), "{lines:?}");
    let configmap: ConfigMap = Api::namespaced(c.client.clone(), &c.namespace).get("raw").await.unwrap();
    assert_eq!(configmap.data.unwrap()["template"], "{{ .Values.left.alone }}", "rendered text is not a template");

    let (report, _, _) = run(apply("web:bad"), Context::new()).await;
    let reason = report.step("apply").unwrap().reason.clone().unwrap();
    assert!(
        reason.contains("the rollout of Deployment `web` failed") && reason.contains("CrashLoopBackOff"),
        "{reason}"
    );
    assert!(reason.contains("rolled back: web is back on web:1"), "{reason}");
    let live = Api::<Deployment>::namespaced(c.client.clone(), &c.namespace).get("web").await.unwrap();
    assert_eq!(live.spec.unwrap().template.spec.unwrap().containers[0].image.as_deref(), Some("web:1"));
    c.cleanup().await;
}

/// Server-side apply's conflicts: a field someone else set (here `kubectl set image`, field manager `kubectl-set`)
/// is not taken by `force(false)`: the step fails at once naming the field and its manager, and changes nothing.
/// With `force(true)` (the default, as for a controller) the field becomes Gantry's.
/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_another_manager_set_is_a_conflict_unless_forced() {
    let c = TestCluster::new("conflict").await.unwrap();
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), &c.namespace);
    let (report, _, _) = run(Apply::rendered(cluster(&c), deployment_yaml("web:1")), Context::new()).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    // Someone hot-fixes the image by hand.
    let hotfix =
        serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "web:hotfix"}]}}}});
    let by_hand = kube::api::PatchParams { field_manager: Some("kubectl-set".into()), ..Default::default() };
    deploys.patch("web", &by_hand, &kube::api::Patch::Strategic(&hotfix)).await.unwrap();

    let started = std::time::Instant::now();
    let careful = Apply::rendered(cluster(&c), deployment_yaml("web:2")).force(false);
    let (report, _, _) = run(careful, Context::new()).await;
    let reason = report.step("apply").unwrap().reason.clone().unwrap();
    assert!(reason.contains("conflict with \"kubectl-set\""), "{reason}");
    assert!(reason.contains(".spec.template.spec.containers[name=\"app\"].image"), "{reason}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "a field conflict is not retried");
    let image = |d: Deployment| d.spec.unwrap().template.spec.unwrap().containers[0].image.clone().unwrap();
    assert_eq!(image(deploys.get("web").await.unwrap()), "web:hotfix", "nothing changed");

    // Applying the value that is live is no conflict, whoever set it.
    let (report, _, _) =
        run(Apply::rendered(cluster(&c), deployment_yaml("web:hotfix")).force(false), Context::new()).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");

    let (report, _, _) = run(Apply::rendered(cluster(&c), deployment_yaml("web:2")), Context::new()).await;
    assert_eq!(report.status, RunStatus::Succeeded, "forced, as by default: {report}");
    let live = deploys.get("web").await.unwrap();
    let managers: Vec<(String, String)> = live
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.manager.unwrap_or_default(), m.operation.unwrap_or_default()))
        .collect();
    assert!(managers.contains(&(FIELD_MANAGER.to_owned(), "Apply".to_owned())), "{managers:?}");
    assert_eq!(image(live), "web:2");
    c.cleanup().await;
}

/// Server-side apply removes what Gantry applied before and applies no more (a key dropped from a ConfigMap, a
/// sidecar dropped from a Deployment), and leaves what someone else set.
/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management>
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_no_longer_applied_is_removed_and_what_others_set_stays() {
    let c = TestCluster::new("prune").await.unwrap();
    let manifest =
        |keys: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\ndata: {{{keys}}}\n");
    let (report, _, _) = run(Apply::rendered(cluster(&c), manifest("a: '1', b: '2'")), Context::new()).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let maps: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    let by_hand = kube::api::PatchParams { field_manager: Some("kubectl-edit".into()), ..Default::default() };
    let extra = serde_json::json!({"data": {"c": "3"}});
    maps.patch("settings", &by_hand, &kube::api::Patch::Merge(&extra)).await.unwrap();

    let (report, _, lines) = run(Apply::rendered(cluster(&c), manifest("a: '1'")), Context::new()).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    let data = maps.get("settings").await.unwrap().data.unwrap();
    let keys: Vec<&str> = data.keys().map(String::as_str).collect();
    assert_eq!(keys, ["a", "c"], "b is gone; c, set by hand, stays");
    assert!(lines.iter().any(|l| l.contains("configmap/settings configured")), "{lines:?}");
    c.cleanup().await;
}
