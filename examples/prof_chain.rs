#![allow(missing_docs)]
use std::sync::Arc;
use futures::StreamExt;
use gantry::core::{Context, Pipeline, Run, Step, StepContext, StepError, async_trait};
struct Noop;
#[async_trait]
impl Step for Noop { async fn run(&self, _ctx: &StepContext) -> Result<(), StepError> { Ok(()) } }
fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let n = 10_000;
    let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    let mut b = Pipeline::builder("bench").shared_step(names[0].clone(), Arc::new(Noop) as Arc<dyn Step>);
    for i in 1..n { b = b.shared_step(names[i].clone(), Arc::new(Noop) as Arc<dyn Step>).after([names[i-1].clone()]); }
    let p = b.build().unwrap();
    let events = std::env::args().any(|a| a == "events");
    let t = std::time::Instant::now();
    for _ in 0..200 {
        let p = p.clone();
        rt.block_on(async move { tokio::spawn(async move {
            let run = Run::new(&p, Context::new());
            let drain = if events { let mut s = run.subscribe(); Some(tokio::spawn(async move { while s.next().await.is_some() {} })) } else { None };
            run.execute().await.unwrap();
            if let Some(d) = drain { d.await.unwrap(); }
        }).await.unwrap() });
    }
    println!("{:.0} ns/step", t.elapsed().as_nanos() as f64 / (200.0 * n as f64));
}
