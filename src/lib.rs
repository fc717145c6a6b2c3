//! Gantry: continuous delivery as a Rust library.
//!
//! This facade re-exports the Gantry crates: [`core`] (always) and, behind features, the others: `kube` (Kubernetes
//! steps), `datadog` and `prometheus` (canary analysis), `sops`, `helm`, `aws`, `github` (webhook triggers and
//! deployment statuses), `slack` (notifications), `build` (image builds with layer caches), `web` (the run view), `term` (the terminal view), `store` (durable runs in SQLite), and `testkit` (the simulated Kubernetes API server and the other
//! stand-ins for tests).
//! Most programs need only `use gantry::prelude::*`.
//!
//! ```
//! use gantry::prelude::*;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::builder("hello")
//!     .step("greet", CommandStep::new("echo").arg("hello {{who}}"))
//!     .build()
//!     .unwrap();
//! let report = pipeline.run(Context::new().var("who", "world")).await.unwrap();
//! assert_eq!(report.status, RunStatus::Succeeded);
//! # });
//! ```

pub use gantry_core as core;

/// Kubernetes steps and target: apply, rolling deploys with automated rollback, Jobs as preflight checks and smoke
/// tests, and `KubeTarget` for canary and blue/green strategies (feature `kube`). The kube-rs client and the API types
/// they use come with it: `gantry::kube::kube` and `gantry::kube::k8s_openapi`.
#[cfg(feature = "kube")]
pub use gantry_kube as kube;

/// Stand-ins for the outside world in tests: the simulated Kubernetes API server and Datadog API (feature `testkit`).
#[cfg(feature = "testkit")]
pub use gantry_testkit as testkit;

/// Datadog: canary analysis on its metrics, deployment markers, monitor gates (feature `datadog`).
#[cfg(feature = "datadog")]
pub use gantry_datadog as datadog;

/// Prometheus: canary analysis on PromQL range queries (feature `prometheus`).
#[cfg(feature = "prometheus")]
pub use gantry_prometheus as prometheus;

/// SOPS: native decryption and encryption, and a step that loads a SOPS file as the run's secrets (feature `sops`).
#[cfg(feature = "sops")]
pub use gantry_sops as sops;

/// Helm: `upgrade --install` with SOPS values on stdin, rollbacks, render-and-apply (feature `helm`).
#[cfg(feature = "helm")]
pub use gantry_helm as helm;

/// AWS: accounts by STS AssumeRole and chains of them, EKS clusters (feature `aws`).
#[cfg(feature = "aws")]
pub use gantry_aws as aws;

/// GitHub: Deployment webhooks verified and routed to pipelines, deployment statuses (feature `github`).
#[cfg(feature = "github")]
pub use gantry_github as github;

/// Slack: each run told in a thread with links, never failing or slowing it (feature `slack`).
#[cfg(feature = "slack")]
pub use gantry_slack as slack;

/// Image builds: a build step on buildah with layer caches in a registry, build secrets, and the pushed digest for
/// the deploys after it (feature `build`).
#[cfg(feature = "build")]
pub use gantry_build as build;

/// The run view: the run history as JSON and each run's events as server-sent events, an axum `Router` to mount
/// (feature `web`).
#[cfg(feature = "web")]
pub use gantry_web as web;

/// Durable runs: the journals of runs in SQLite, to resume them after the host died (feature `store`).
#[cfg(feature = "store")]
pub use gantry_store as store;

/// The terminal view: a run told compactly in 80 columns, with spinners on a terminal (feature `term`).
#[cfg(feature = "term")]
pub use gantry_term as term;

/// The names most pipelines use.
pub mod prelude {
    pub use gantry_core::{
        Approval, Approvals, Breakpoint, CommandStep, Condition, Context, Debugger, Decision, Event, MemoryHistory,
        Notifier, OutputKey, Pipeline, RetryPolicy, Run, RunReport, RunStatus, Secret, Step, StepContext, StepError,
        StepStatus, TriggerRule, async_trait, step_fn,
    };
}

/// The code of the README and the guides under `docs/`, compiled and run as doctests (`tests/docs.rs` checks that
/// every Rust block of the docs is here or is a file of a crate that `cargo test` builds).
#[cfg(doctest)]
pub mod docs {
    #[doc = include_str!("../README.md")]
    pub struct Readme;
    #[doc = include_str!("../docs/guides/github-and-slack.md")]
    pub struct GithubAndSlack;
    #[doc = include_str!("../docs/guides/fan-out-and-sub-pipelines.md")]
    pub struct FanOutAndSubPipelines;
    #[doc = include_str!("../docs/guides/plans-and-exports.md")]
    pub struct PlansAndExports;
    #[doc = include_str!("../docs/guides/debugger.md")]
    pub struct Debugger;
    #[doc = include_str!("../docs/guides/kubernetes.md")]
    pub struct Kubernetes;
    #[doc = include_str!("../docs/guides/secrets.md")]
    pub struct Secrets;
    #[doc = include_str!("../docs/guides/image-builds.md")]
    pub struct ImageBuilds;
    #[doc = include_str!("../docs/guides/run-view.md")]
    pub struct RunView;
    #[doc = include_str!("../docs/guides/durable-runs.md")]
    pub struct DurableRuns;
}
