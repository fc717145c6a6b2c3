//! A soak of the simulated cluster: 100,000 writes (`GANTRY_WRITES` sets another count) from four clients while
//! Deployments roll out, reporting per window of writes the write latency (median and p99, as a ratio against the
//! first window: the baseline of the same run), the process's resident memory and the objects stored.
//!
//! The cluster holds 5 Deployments of 3 replicas and 100 ConfigMaps in one namespace and a second, idle namespace of
//! the same size; the writes are merge patches of the ConfigMaps' data and of the Deployments' annotations, and
//! every 500th write changes a Deployment's image (a rollout, with its ReplicaSet and pods). Flat latency means a
//! write does not cost in proportion to what the cluster holds or has seen; bounded memory means history is
//! compacted and old ReplicaSets are collected.
//!
//! Run: `cargo bench --bench kube_soak`. Figures are recorded in docs/PERFORMANCE.md.
#![allow(clippy::print_stdout)] // The bench prints the table docs/PERFORMANCE.md records.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gantry_testkit::kube::ClusterSim;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const CLIENTS: usize = 4;
const WINDOWS: usize = 10;
const DEPLOYMENTS: usize = 5;
const CONFIGMAPS: usize = 100;

fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN);
    kib / 1024.0
}

async fn populate(client: &kube::Client, namespace: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap();
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.unwrap();
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    for d in 0..DEPLOYMENTS {
        let name = format!("web-{d}");
        let body: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "web:0"}]}}
            }
        }))
        .unwrap();
        deploys.create(&PostParams::default(), &body).await.unwrap();
    }
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    for m in 0..CONFIGMAPS {
        let body: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("config-{m}")}, "data": {"k": "0"}})).unwrap();
        maps.create(&PostParams::default(), &body).await.unwrap();
    }
}

async fn write(client: &kube::Client, i: usize) {
    let params = PatchParams::default();
    if i.is_multiple_of(500) {
        let deploys: Api<Deployment> = Api::namespaced(client.clone(), "soak");
        let image =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": format!("web:{i}")}]}}}});
        deploys.patch(&format!("web-{}", (i / 500) % DEPLOYMENTS), &params, &Patch::Strategic(image)).await.unwrap();
    } else if i.is_multiple_of(4) {
        let deploys: Api<Deployment> = Api::namespaced(client.clone(), "soak");
        let patch = json!({"metadata": {"annotations": {"soak": i.to_string()}}});
        deploys.patch(&format!("web-{}", i % DEPLOYMENTS), &params, &Patch::Merge(patch)).await.unwrap();
    } else {
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "soak");
        let patch = json!({"data": {"k": i.to_string()}});
        maps.patch(&format!("config-{}", i % CONFIGMAPS), &params, &Patch::Merge(patch)).await.unwrap();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total: usize = std::env::var("GANTRY_WRITES").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let window = total / WINDOWS;
    let sim = ClusterSim::start().await.unwrap();
    let client = sim.client().await.unwrap();
    populate(&client, "soak").await;
    populate(&client, "idle").await;
    let started = Instant::now();
    println!("{total} writes from {CLIENTS} clients, in {WINDOWS} windows of {window}:");
    println!("| writes | median | p99 | median vs first window | resident MiB | objects in `soak` | ReplicaSets |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let next = Arc::new(AtomicUsize::new(0));
    let mut first_median = None;
    for w in 0..WINDOWS {
        let end = (w + 1) * window;
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (client, next) = (client.clone(), Arc::clone(&next));
                tokio::spawn(async move {
                    let mut took = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= end {
                            next.fetch_sub(1, Ordering::Relaxed);
                            break took;
                        }
                        let t = Instant::now();
                        write(&client, i).await;
                        took.push(t.elapsed());
                    }
                })
            })
            .collect();
        let mut took = Vec::new();
        for c in clients {
            took.extend(c.await.unwrap());
        }
        next.store(end, Ordering::Relaxed);
        took.sort();
        let median = percentile(&took, 0.5);
        let first = *first_median.get_or_insert(median);
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "soak");
        let sets: Api<k8s_openapi::api::apps::v1::ReplicaSet> = Api::namespaced(client.clone(), "soak");
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), "soak");
        let lp = ListParams::default();
        let (maps, sets, pods) = (
            maps.list(&lp).await.unwrap().items.len(),
            sets.list(&lp).await.unwrap().items.len(),
            pods.list(&lp).await.unwrap().items.len(),
        );
        println!(
            "| {end} | {median:.2?} | {:.2?} | {:.2} | {:.0} | {} | {sets} |",
            percentile(&took, 0.99),
            median.as_secs_f64() / first.as_secs_f64(),
            resident_mib(),
            maps + sets + pods + DEPLOYMENTS,
        );
    }
    println!("took {:.1?}", started.elapsed());
}
