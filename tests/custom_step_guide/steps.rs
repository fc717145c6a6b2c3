// src/steps.rs
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use gantry::prelude::*;

use crate::promote::IMAGE_DIGEST;

/// Builds and pushes the image; publishes its digest as an output and as the variable `<step>.digest`.
pub fn build() -> impl Step {
    step_fn(|ctx| async move {
        let service = ctx.require_var("service")?;
        let sha = ctx.require_var("sha")?;
        ctx.log(format!("building {service} at {sha}"));
        let digest = format!("sha256:{sha}");
        ctx.publish(IMAGE_DIGEST, digest.clone());
        ctx.set_var("digest", digest);
        Ok(())
    })
    .describe("builds and pushes the image")
}

/// A closure step with shared state.
pub fn counted(calls: Arc<AtomicU32>) -> impl Step {
    step_fn(move |ctx| {
        let calls = Arc::clone(&calls);
        async move {
            let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
            ctx.log(format!("attempt {}, call {n}", ctx.attempt()));
            Ok(())
        }
    })
    .describe("counts its calls")
}
