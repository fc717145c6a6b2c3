//! Serves a simulated cluster for a while, for kubectl and other clients:
//! `cargo run -p gantry-testkit --example serve -- /tmp/kubeconfig 120`, then `KUBECONFIG=/tmp/kubeconfig kubectl get ns`.
//! It stops by itself after the given number of seconds (default 60).
#![allow(clippy::print_stdout)] // An example prints.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "kubeconfig.testkit".to_owned());
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(60);
    let cluster = gantry_testkit::kube::ClusterSim::start().await?;
    std::fs::write(&path, cluster.kubeconfig_yaml())?;
    println!("simulated cluster at {}, kubeconfig in {path}, stopping in {seconds} s", cluster.url());
    tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
    Ok(())
}
