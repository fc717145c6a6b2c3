#![allow(missing_docs, clippy::print_stdout)]
use futures::StreamExt;
use gantry::core::{Context, Pipeline, Run, Step, StepContext, StepError, async_trait};
use std::sync::Arc;
use std::time::{Duration, Instant};
struct Y;
#[async_trait]
impl Step for Y {
    async fn run(&self, _ctx: &StepContext) -> Result<(), StepError> {
        tokio::task::yield_now().await;
        Ok(())
    }
}
fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let n = 10_002;
    let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    let mut b = Pipeline::builder("bench").shared_step(names[0].as_str(), Arc::new(Y) as Arc<dyn Step>);
    for i in 1..n - 1 {
        b = b.shared_step(names[i].as_str(), Arc::new(Y) as Arc<dyn Step>).after([&names[0]]);
    }
    b = b.shared_step(names[n - 1].as_str(), Arc::new(Y) as Arc<dyn Step>).after(&names[1..n - 1]);
    let p = b.build().unwrap();
    let reader_on = std::env::var("NOREADER").is_err();
    let mut t = Vec::new();
    for _ in 0..101 {
        let p = p.clone();
        t.push(rt.block_on(async move {
            let run = Run::new(&p, Context::new());
            let reader = if reader_on {
                let mut s = run.subscribe();
                Some(tokio::spawn(async move { while s.next().await.is_some() {} }))
            } else {
                None
            };
            let t0 = Instant::now();
            run.execute().await.unwrap();
            if let Some(r) = reader {
                r.await.unwrap();
            }
            t0.elapsed()
        }));
    }
    t.sort();
    println!("fan/yield here: {:.0} ns/step", t[50].as_nanos() as f64 / n as f64);
    let _ = Duration::ZERO;
}
