//! What the API server refuses and what it fills in, through the real `kube::Client`: one test per rule, each citing
//! the page of the Kubernetes documentation it follows. With `GANTRY_E2E_KUBECONFIG` set they run against that real
//! cluster too.

use gantry_testkit::test_cluster::TestCluster;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

fn deployment_body(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}
        }
    })
}

/// Creates `body` as a Deployment and returns the refusal: code, and `field: message` of each cause.
async fn refused_deployment(c: &TestCluster, body: Value) -> (u16, Vec<String>) {
    let api: Api<DynamicObject> = Api::namespaced_with(
        c.client.clone(),
        &c.namespace,
        &ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment")),
    );
    let object: DynamicObject = serde_json::from_value(body).unwrap();
    match api.create(&PostParams::default(), &object).await {
        Ok(o) => panic!("accepted: {:?}", o.metadata.name),
        Err(kube::Error::Api(s)) => {
            let causes = s.details.map(|d| d.causes).unwrap_or_default();
            (s.code, causes.into_iter().map(|c| format!("{}: {}", c.field, c.message)).collect())
        }
        Err(other) => panic!("{other}"),
    }
}

/// <https://kubernetes.io/docs/concepts/overview/working-with-objects/names/#dns-subdomain-names>
#[tokio::test]
async fn a_name_that_is_not_a_dns_subdomain_is_invalid() {
    let c = TestCluster::new("adm-name").await.unwrap();
    let (code, causes) = refused_deployment(&c, deployment_body("Web_1")).await;
    assert_eq!(code, 422);
    assert!(
        causes[0].starts_with("metadata.name: Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain"),
        "{causes:?}"
    );
    // A Service's name is an RFC 1123 label: no dots.
    let services: Api<Service> = Api::namespaced(c.client.clone(), &c.namespace);
    let svc: Service =
        serde_json::from_value(json!({"metadata": {"name": "web.v1"}, "spec": {"ports": [{"port": 80}]}})).unwrap();
    let err = services.create(&PostParams::default(), &svc).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 422 && s.message.contains("RFC 1123 label")), "{err}");
    c.cleanup().await;
}

/// <https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set>
#[tokio::test]
async fn a_bad_label_value_is_invalid() {
    let c = TestCluster::new("adm-label").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "x", "labels": {"team": "web team!"}}})).unwrap();
    let err = cms.create(&PostParams::default(), &cm).await.unwrap_err();
    let kube::Error::Api(s) = err else { panic!("{err}") };
    assert_eq!(s.code, 422);
    assert!(
        s.message.starts_with("ConfigMap \"x\" is invalid: metadata.labels: Invalid value: \"web team!\""),
        "{}",
        s.message
    );
    c.cleanup().await;
}

/// <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#writing-a-deployment-spec>
#[tokio::test]
async fn negative_replicas_are_invalid() {
    let c = TestCluster::new("adm-replicas").await.unwrap();
    let mut body = deployment_body("web");
    body["spec"]["replicas"] = json!(-1);
    let (code, causes) = refused_deployment(&c, body).await;
    assert_eq!(
        (code, causes),
        (422, vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0".to_owned()])
    );
    c.cleanup().await;
}

/// <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#selector>
#[tokio::test]
async fn a_selector_that_does_not_match_the_template_is_invalid() {
    let c = TestCluster::new("adm-selector").await.unwrap();
    let mut body = deployment_body("web");
    body["spec"]["selector"] = json!({"matchLabels": {"app": "api"}});
    let (code, causes) = refused_deployment(&c, body).await;
    assert_eq!(code, 422);
    assert!(causes[0].starts_with("spec.template.metadata.labels: Invalid value: "), "{causes:?}");
    assert!(causes[0].ends_with("`selector` does not match template `labels`"), "{causes:?}");
    c.cleanup().await;
}

/// <https://kubernetes.io/docs/concepts/workloads/pods/#pod-templates> (a container needs an image)
#[tokio::test]
async fn an_empty_image_is_required() {
    let c = TestCluster::new("adm-image").await.unwrap();
    let mut body = deployment_body("web");
    body["spec"]["template"]["spec"]["containers"][0]["image"] = json!("");
    let (code, causes) = refused_deployment(&c, body).await;
    assert_eq!((code, causes), (422, vec!["spec.template.spec.containers[0].image: Required value".to_owned()]));
    c.cleanup().await;
}

/// <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#label-selector-updates> ("In API version
/// apps/v1, a Deployment's label selector is immutable after it gets created.")
#[tokio::test]
async fn a_deployments_selector_is_immutable() {
    let c = TestCluster::new("adm-immutable").await.unwrap();
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), &c.namespace);
    deploys.create(&PostParams::default(), &serde_json::from_value(deployment_body("web")).unwrap()).await.unwrap();
    let change = json!({"spec": {"selector": {"matchLabels": {"app": "web", "tier": "front"}}, "template": {"metadata": {"labels": {"tier": "front"}}}}});
    let err = deploys.patch("web", &PatchParams::default(), &Patch::Strategic(change)).await.unwrap_err();
    let kube::Error::Api(s) = err else { panic!("{err}") };
    assert_eq!(s.code, 422);
    assert!(
        s.message.contains("spec.selector: Invalid value: ") && s.message.contains("field is immutable"),
        "{}",
        s.message
    );
    c.cleanup().await;
}

/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-uris>: an object's namespace is the one
/// in the URL; a body naming another is refused (400).
#[tokio::test]
async fn a_body_namespace_unlike_the_urls_is_refused() {
    let c = TestCluster::new("adm-namespace").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x", "namespace": "elsewhere"}})).unwrap();
    let err = cms.create(&PostParams::default(), &cm).await.unwrap_err();
    let kube::Error::Api(s) = err else { panic!("{err}") };
    assert_eq!(s.code, 400);
    assert!(s.message.contains("does not match the namespace sent on the request"), "{}", s.message);
    c.cleanup().await;
}

/// <https://kubernetes.io/docs/concepts/workloads/controllers/job/#pod-template>: "Only a RestartPolicy equal to
/// Never or OnFailure is allowed."
#[tokio::test]
async fn a_jobs_restart_policy_must_be_never_or_on_failure() {
    let c = TestCluster::new("adm-job").await.unwrap();
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), &c.namespace);
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "migrate"},
        "spec": {"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "m", "image": "busybox"}]}}}
    }))
    .unwrap();
    let err = jobs.create(&PostParams::default(), &job).await.unwrap_err();
    let kube::Error::Api(s) = err else { panic!("{err}") };
    assert_eq!(s.code, 422);
    assert!(
        s.message.contains(
            r#"spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#
        ),
        "{}",
        s.message
    );
    c.cleanup().await;
}

/// The Deployment defaults: a RollingUpdate strategy of 25%/25%, `revisionHistoryLimit` 10,
/// `progressDeadlineSeconds` 600, and the pod template's restart and pull policies.
/// <https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/deployment-v1/#DeploymentSpec>,
/// <https://kubernetes.io/docs/concepts/containers/images/#imagepullpolicy-defaulting>
#[tokio::test]
async fn a_deployment_gets_its_defaults() {
    let c = TestCluster::new("adm-defaults").await.unwrap();
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), &c.namespace);
    let mut body = deployment_body("web");
    body["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "app", "image": "nginx:1.27"}, {"name": "sidecar", "image": "envoy"}]);
    let created = deploys.create(&PostParams::default(), &serde_json::from_value(body).unwrap()).await.unwrap();
    let spec = created.spec.unwrap();
    let strategy = spec.strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let rolling = serde_json::to_value(strategy.rolling_update.unwrap()).unwrap();
    assert_eq!(rolling, json!({"maxSurge": "25%", "maxUnavailable": "25%"}));
    assert_eq!((spec.revision_history_limit, spec.progress_deadline_seconds), (Some(10), Some(600)));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Always"));
    let pulls: Vec<_> = pod.containers.iter().map(|c| c.image_pull_policy.clone().unwrap()).collect();
    assert_eq!(pulls, ["IfNotPresent", "Always"]);
    c.cleanup().await;
}

/// A Service gets a cluster IP, its family, and each port a protocol and a target port.
/// <https://kubernetes.io/docs/concepts/services-networking/service/#defining-a-service>: "By default and for
/// convenience, the targetPort is set to the same value as the port field."
#[tokio::test]
async fn a_service_gets_a_cluster_ip_and_target_ports() {
    let c = TestCluster::new("adm-service").await.unwrap();
    let services: Api<Service> = Api::namespaced(c.client.clone(), &c.namespace);
    let svc: Service = serde_json::from_value(
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080}]}}),
    )
    .unwrap();
    let created = services.create(&PostParams::default(), &svc).await.unwrap().spec.unwrap();
    assert_eq!(created.type_.as_deref(), Some("ClusterIP"));
    let ip = created.cluster_ip.unwrap();
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip}");
    assert_eq!(created.cluster_ips, Some(vec![ip]));
    let port = &created.ports.unwrap()[0];
    assert_eq!(port.protocol.as_deref(), Some("TCP"));
    assert_eq!(serde_json::to_value(&port.target_port).unwrap(), json!(8080));
    c.cleanup().await;
}

/// A Job gets a selector on its own uid and its pods the labels that select them, so `kubectl logs job/NAME` finds
/// them; the defaults for completions, parallelism and backoff.
/// <https://kubernetes.io/docs/concepts/workloads/controllers/job/#specifying-your-own-pod-selector>,
/// <https://kubernetes.io/docs/concepts/workloads/controllers/job/#pod-backoff-failure-policy>
#[tokio::test]
async fn a_job_gets_a_selector_on_its_uid() {
    let c = TestCluster::new("adm-job-selector").await.unwrap();
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), &c.namespace);
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "migrate"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "busybox"}]}}}
    }))
    .unwrap();
    let created = jobs.create(&PostParams::default(), &job).await.unwrap();
    let uid = created.metadata.uid.unwrap();
    let spec = created.spec.unwrap();
    let selector = spec.selector.unwrap().match_labels.unwrap();
    assert_eq!(selector.get("batch.kubernetes.io/controller-uid"), Some(&uid));
    let labels = spec.template.metadata.unwrap().labels.unwrap();
    assert_eq!(labels.get("batch.kubernetes.io/job-name").map(String::as_str), Some("migrate"));
    assert_eq!(labels.get("controller-uid"), Some(&uid));
    assert_eq!((spec.completions, spec.parallelism, spec.backoff_limit), (Some(1), Some(1), Some(6)));
    c.cleanup().await;
}

/// A dry-run create answers what would be stored, uid and creationTimestamp included, and stores nothing.
/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#dry-run>
#[tokio::test]
async fn a_dry_run_create_answers_the_object_with_server_fields() {
    let c = TestCluster::new("adm-dry-run").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    let pp = PostParams { dry_run: true, ..Default::default() };
    let answered = cms.create(&pp, &cm).await.unwrap();
    assert!(answered.metadata.uid.is_some() && answered.metadata.creation_timestamp.is_some());
    assert!(cms.get_opt("x").await.unwrap().is_none());
    c.cleanup().await;
}

/// Fields sent empty are unset, as Go's defaulting reads them (charts often render `type: ""`): defaulted, not
/// refused. A Service updated without its cluster IP keeps the allocated one.
/// <https://kubernetes.io/docs/concepts/services-networking/service/#type-clusterip>
#[tokio::test]
async fn empty_fields_are_defaulted_and_a_service_keeps_its_cluster_ip() {
    let c = TestCluster::new("adm-empty").await.unwrap();
    let services: Api<Service> = Api::namespaced(c.client.clone(), &c.namespace);
    let svc: Service = serde_json::from_value(
        json!({"metadata": {"name": "web"}, "spec": {"type": "", "selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    )
    .unwrap();
    let created = services.create(&PostParams::default(), &svc).await.unwrap();
    let ip = created.spec.as_ref().unwrap().cluster_ip.clone().unwrap();
    assert_eq!(created.spec.as_ref().unwrap().type_.as_deref(), Some("ClusterIP"));
    let mut replace: Service = serde_json::from_value(
        json!({"metadata": {"name": "web", "resourceVersion": created.metadata.resource_version}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080}]}}),
    )
    .unwrap();
    replace.metadata.resource_version = created.metadata.resource_version.clone();
    let replaced = services.replace("web", &PostParams::default(), &replace).await.unwrap();
    assert_eq!(replaced.spec.unwrap().cluster_ip, Some(ip), "the allocated IP is kept");
    c.cleanup().await;
}

/// A Job that sets only `parallelism` (a work queue) keeps `completions` unset.
/// <https://kubernetes.io/docs/concepts/workloads/controllers/job/#parallel-jobs>
#[tokio::test]
async fn a_work_queue_job_keeps_completions_unset() {
    let c = TestCluster::new("adm-work-queue").await.unwrap();
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), &c.namespace);
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "queue"},
        "spec": {"parallelism": 3, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "w", "image": "busybox"}]}}}
    }))
    .unwrap();
    let spec = jobs.create(&PostParams::default(), &job).await.unwrap().spec.unwrap();
    assert_eq!((spec.parallelism, spec.completions), (Some(3), None));
    c.cleanup().await;
}

/// Sends a JSON body; returns the status code, the `Warning` headers and the answer.
async fn send_json(
    c: &TestCluster,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> (u16, Vec<String>, Value) {
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(kube::client::Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap();
    let response = c.client.send(request).await.unwrap();
    let code = response.status().as_u16();
    let warnings = response.headers().get_all("warning").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let bytes = response.into_body().collect_bytes().await.unwrap();
    (code, warnings, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Unknown fields: dropped from what is stored; `fieldValidation=Strict` refuses the write (`400`, worded as the
/// JSON decoder or, for a server-side apply, as the schema check words it), `Warn` (the default) answers a
/// `Warning` header per field, `Ignore` says nothing.
/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#field-validation>
#[tokio::test]
async fn unknown_fields_are_dropped_warned_about_or_refused_as_field_validation_says() {
    let c = TestCluster::new("adm-fields").await.unwrap();
    let base = format!("/api/v1/namespaces/{}/configmaps", c.namespace);
    let configmaps: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    let body = |name: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "colour": "red"}, "data": {"a": "b"}, "spec": {"x": 1}});

    let (code, _, answer) =
        send_json(&c, "POST", &format!("{base}?fieldValidation=Strict"), "application/json", &body("strict")).await;
    assert_eq!(code, 400, "{answer}");
    assert_eq!(answer["reason"], "BadRequest");
    assert_eq!(answer["message"], "strict decoding error: unknown field \"metadata.colour\", unknown field \"spec\"");
    assert!(configmaps.get_opt("strict").await.unwrap().is_none(), "nothing is stored");

    let (code, warnings, _) = send_json(&c, "POST", &base, "application/json", &body("warned")).await;
    assert_eq!(code, 201);
    assert_eq!(warnings, ["299 - \"unknown field \\\"metadata.colour\\\"\"", "299 - \"unknown field \\\"spec\\\"\""]);
    let stored = serde_json::to_value(configmaps.get("warned").await.unwrap()).unwrap();
    assert!(stored.get("spec").is_none() && stored["metadata"].get("colour").is_none(), "{stored}");
    assert_eq!(stored["data"]["a"], "b");

    let (code, warnings, _) =
        send_json(&c, "POST", &format!("{base}?fieldValidation=Ignore"), "application/json", &body("quiet")).await;
    assert_eq!((code, warnings.len()), (201, 0));

    // A merge patch that adds an unknown field, refused under Strict: the object is unchanged.
    let path = format!("{base}/quiet?fieldValidation=Strict");
    let (code, _, answer) =
        send_json(&c, "PATCH", &path, "application/merge-patch+json", &json!({"data": {"c": "d"}, "dataa": {}})).await;
    assert_eq!(code, 400, "{answer}");
    assert_eq!(answer["message"], "strict decoding error: unknown field \"dataa\"");
    assert_eq!(configmaps.get("quiet").await.unwrap().data.unwrap().len(), 1);

    // A server-side apply of a Deployment with a misspelt field.
    let mut deployment = deployment_body("web");
    deployment["spec"]["replica"] = json!(3);
    let path =
        format!("/apis/apps/v1/namespaces/{}/deployments/web?fieldManager=test&fieldValidation=Strict", c.namespace);
    let (code, _, answer) = send_json(&c, "PATCH", &path, "application/apply-patch+yaml", &deployment).await;
    assert_eq!(code, 400, "{answer}");
    assert_eq!(answer["message"], ".spec.replica: field not declared in schema");
    let deployments: Api<Deployment> = Api::namespaced(c.client.clone(), &c.namespace);
    assert!(deployments.get_opt("web").await.unwrap().is_none());
    c.cleanup().await;
}

/// The write options are checked before anything is written: `dryRun` accepts only `All`, `fieldValidation` only
/// `Ignore`, `Warn` and `Strict` (`422` for kind `CreateOptions` or `PatchOptions`).
/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#dry-run>
#[tokio::test]
async fn write_options_with_unsupported_values_are_invalid() {
    let c = TestCluster::new("adm-options").await.unwrap();
    let base = format!("/api/v1/namespaces/{}/configmaps", c.namespace);
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "opts"}});
    let (code, _, answer) = send_json(&c, "POST", &format!("{base}?dryRun=Bogus"), "application/json", &body).await;
    assert_eq!(code, 422, "{answer}");
    assert_eq!(answer["details"]["kind"], "CreateOptions");
    assert_eq!(answer["details"]["group"], "meta.k8s.io");
    let cause = &answer["details"]["causes"][0];
    assert_eq!((cause["field"].as_str(), cause["reason"].as_str()), (Some("dryRun"), Some("FieldValueNotSupported")));
    assert!(cause["message"].as_str().unwrap().starts_with("Unsupported value: \"Bogus\": supported values: \"All\""));
    let configmaps: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.namespace);
    assert!(configmaps.get_opt("opts").await.unwrap().is_none());
    let (code, _, answer) =
        send_json(&c, "POST", &format!("{base}?fieldValidation=Loud"), "application/json", &body).await;
    assert_eq!(code, 422, "{answer}");
    assert_eq!(answer["details"]["causes"][0]["field"], "fieldValidation");
    configmaps.create(&PostParams::default(), &serde_json::from_value(body).unwrap()).await.unwrap();
    let (code, _, answer) = send_json(
        &c,
        "PATCH",
        &format!("{base}/opts?dryRun=all"),
        "application/merge-patch+json",
        &json!({"data": {"a": "b"}}),
    )
    .await;
    assert_eq!(code, 422, "{answer}");
    assert_eq!(answer["details"]["kind"], "PatchOptions");
    c.cleanup().await;
}

/// A value of the wrong type is refused as Go's JSON decoder refuses it (`400`), whatever `fieldValidation` says;
/// numbers and strings both fit an int-or-string (`maxSurge`, a `Quantity`).
/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#field-validation>
#[tokio::test]
async fn a_value_of_the_wrong_type_is_a_bad_request() {
    let c = TestCluster::new("adm-types").await.unwrap();
    let path = format!("/apis/apps/v1/namespaces/{}/deployments", c.namespace);
    let mut body = deployment_body("typed");
    body["spec"]["replicas"] = json!("two");
    let (code, _, answer) =
        send_json(&c, "POST", &format!("{path}?fieldValidation=Ignore"), "application/json", &body).await;
    assert_eq!(code, 400, "{answer}");
    assert_eq!(
        answer["message"],
        "Deployment in version \"v1\" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"
    );
    body["spec"]["replicas"] = json!(2);
    body["spec"]["strategy"] = json!({"rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}});
    body["spec"]["template"]["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": 1, "memory": "64Mi"}});
    let (code, _, answer) = send_json(&c, "POST", &path, "application/json", &body).await;
    assert_eq!(code, 201, "{answer}");
    c.cleanup().await;
}
