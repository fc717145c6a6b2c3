//! `KubeTarget` against the deploy-target conformance suite (`gantry_testkit::targets`), on the simulated cluster:
//! traffic by replica shares, and through a Gateway API HTTPRoute. What the platform serves is read from the cluster
//! as a user's request would meet it: the route's weights, the Services' selectors and the ready pods they select.

mod support;

use gantry_testkit::targets::conformance;
use support::KubePlatform;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_target_with_replica_shares_passes_the_conformance_suite() {
    let Some(platform) = KubePlatform::new(false).await else { return };
    conformance(&platform).await.unwrap();
    platform.cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_target_behind_an_http_route_passes_the_conformance_suite() {
    let Some(platform) = KubePlatform::new(true).await else { return };
    conformance(&platform).await.unwrap();
    platform.cluster.cleanup().await;
}
