//! Gantry's Helm steps: [`HelmRelease`] (`helm upgrade --install`, with SOPS-encrypted values decrypted in memory
//! and handed to Helm on its standard input, never as plaintext on disk) and [`HelmRollback`] (back to the previous
//! revision, as `helm history` tells it). The `helm` binary is found on the `PATH` (or given); a missing one is a
//! clear error. Each step names the cluster it deploys to (`kubeconfig`, `kube_context`, or `cluster` with a
//! [`KubeconfigSource`](gantry_kube::KubeconfigSource) such as gantry-aws' `EksCluster`); `Helm::env` sets Helm's
//! environment (`HELM_DRIVER` for ConfigMap release storage). The steps are tested against the real Helm v4 engine
//! (`tests/helm_engine.rs`, through `tools/helm`, a `helm` command line over PyPI's `helm-python-sdk`).
//!
//! ```no_run
//! use gantry_core::{Pipeline, TriggerRule};
//! use gantry_helm::{Helm, HelmRelease, HelmRollback, SopsValues};
//! use gantry_sops::Identities;
//!
//! let helm = Helm::on_path();
//! let values = SopsValues::file("deploy/{{env}}/web.secrets.enc.yaml", Identities::from_environment().unwrap());
//! let pipeline = Pipeline::builder("release")
//!     .step("helm", HelmRelease::new(helm.clone(), "web", "oci://registry.example/charts/web")
//!         .namespace("{{env}}").kubeconfig("/etc/gantry/{{env}}.kubeconfig").version("1.4.2")
//!         .values_file("deploy/{{env}}/web.yaml").sops_values(values).atomic())
//!     .step("rollback", HelmRollback::new(helm, "web").namespace("{{env}}"))
//!     .after(["helm"]).rule(TriggerRule::OnFailure)
//!     .build()
//!     .unwrap();
//! # let _ = pipeline;
//! ```

mod command;
mod release;
mod rollback;

pub use command::{Helm, HelmError};
pub use release::{HelmRelease, SopsValues};
pub use rollback::{HelmRollback, previous_revision};
