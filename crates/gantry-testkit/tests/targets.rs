//! The deploy-target conformance suite against `MemoryTarget`, with every capability and with none.

use gantry_core::strategy::Capabilities;
use gantry_testkit::targets::{MemoryPlatform, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_target_passes_the_conformance_suite() {
    conformance(&MemoryPlatform::new()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_target_without_a_router_passes_the_conformance_suite() {
    conformance(&MemoryPlatform::new().with_capabilities(Capabilities::NONE.with_weights())).await.unwrap();
}
