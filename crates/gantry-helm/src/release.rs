//! `helm upgrade --install`, with decrypted SOPS values on Helm's standard input.

use async_trait::async_trait;
use gantry_core::{Step, StepContext, StepError, Template, TemplateError};
use gantry_sops::{Decryptor, Identities};

use crate::command::{ClusterAccess, Helm};

/// Values from a SOPS file (a template path), decrypted in memory and handed to Helm as `--values -` on its standard
/// input: the plaintext is never written to disk. Every value is registered with the run first, so Helm's output
/// and errors show it masked.
#[derive(Clone, Debug)]
pub struct SopsValues {
    path: String,
    decryptor: Decryptor,
}

impl SopsValues {
    /// The SOPS file at `path`, decrypted with `identities`.
    pub fn file(path: impl Into<String>, identities: Identities) -> Self {
        Self { path: path.into(), decryptor: Decryptor::new(identities) }
    }
}

/// Installs or upgrades a Helm release: `helm upgrade --install <release> <chart>` with namespace, version, values
/// files, SOPS values on stdin, and `--atomic` / `--wait` / `--timeout` as set. All settings are templates. With
/// [`render_and_apply`](HelmRelease::render_and_apply), `helm template` renders instead and Gantry applies.
#[derive(Clone, Debug)]
pub struct HelmRelease {
    helm: Helm,
    release: String,
    chart: String,
    namespace: Option<String>,
    version: Option<String>,
    values_files: Vec<String>,
    sops: Option<SopsValues>,
    atomic: bool,
    wait: bool,
    timeout: Option<String>,
    create_namespace: bool,
    apply_to: Option<gantry_kube::Cluster>,
    cluster: ClusterAccess,
}

impl HelmRelease {
    /// Release `release` of `chart` (a path, `repo/chart`, or `oci://…`).
    pub fn new(helm: Helm, release: impl Into<String>, chart: impl Into<String>) -> Self {
        Self {
            helm,
            release: release.into(),
            chart: chart.into(),
            namespace: None,
            version: None,
            values_files: Vec::new(),
            sops: None,
            atomic: false,
            wait: false,
            timeout: None,
            create_namespace: false,
            apply_to: None,
            cluster: ClusterAccess::default(),
        }
    }

    /// The kubeconfig Helm deploys with (`--kubeconfig`, a template such as `{{kubeconfig_dir}}/{{env}}.yaml`);
    /// without it Helm looks up `KUBECONFIG`, then `~/.kube/config`.
    #[must_use]
    pub fn kubeconfig(mut self, path: impl Into<String>) -> Self {
        self.cluster.kubeconfig = Some(path.into());
        self
    }

    /// The kubeconfig context Helm deploys to (`--kube-context`, a template), instead of the kubeconfig's current
    /// one.
    #[must_use]
    pub fn kube_context(mut self, context: impl Into<String>) -> Self {
        self.cluster.context = Some(context.into());
        self
    }

    /// The cluster Helm deploys to, as a kubeconfig `source` makes for each run (gantry-aws' `EksCluster`, with a
    /// fresh token): written to a private file for the run and removed after it. It replaces [`kubeconfig`](Self::kubeconfig).
    #[must_use]
    pub fn cluster(mut self, source: impl gantry_kube::KubeconfigSource + 'static) -> Self {
        self.cluster.source = Some(std::sync::Arc::new(source));
        self
    }

    /// Renders with `helm template` instead and applies the manifests with Gantry's own server-side apply to
    /// `cluster`, following every Deployment's rollout and rolling back the ones that fail, as Argo CD syncs a Helm
    /// chart. `--atomic`, `--wait` and `--timeout` do not apply then (Gantry's rollout tracking replaces them).
    #[must_use]
    pub fn render_and_apply(mut self, cluster: gantry_kube::Cluster) -> Self {
        self.apply_to = Some(cluster);
        self
    }

    /// `--namespace`.
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// `--create-namespace`.
    #[must_use]
    pub fn create_namespace(mut self) -> Self {
        self.create_namespace = true;
        self
    }

    /// `--version` of the chart.
    #[must_use]
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// A plain values file (`--values`), in order; later ones win, the SOPS values last of all.
    #[must_use]
    pub fn values_file(mut self, path: impl Into<String>) -> Self {
        self.values_files.push(path.into());
        self
    }

    /// SOPS-encrypted values, passed on stdin.
    #[must_use]
    pub fn sops_values(mut self, values: SopsValues) -> Self {
        self.sops = Some(values);
        self
    }

    /// `--atomic`: Helm rolls the release back itself if the upgrade fails (implies `--wait`).
    #[must_use]
    pub fn atomic(mut self) -> Self {
        self.atomic = true;
        self
    }

    /// `--wait`.
    #[must_use]
    pub fn wait(mut self) -> Self {
        self.wait = true;
        self
    }

    /// `--timeout` (`5m`, `300s`).
    #[must_use]
    pub fn timeout(mut self, timeout: impl Into<String>) -> Self {
        self.timeout = Some(timeout.into());
        self
    }

    fn templates(&self) -> impl Iterator<Item = &String> {
        [&self.release, &self.chart]
            .into_iter()
            .chain(&self.namespace)
            .chain(&self.version)
            .chain(&self.values_files)
            .chain(self.sops.as_ref().map(|s| &s.path))
            .chain(&self.timeout)
            .chain(self.cluster.templates())
    }

    /// The argv after `helm`, rendered with `render`.
    fn args(&self, render: &dyn Fn(&str) -> Result<String, TemplateError>) -> Result<Vec<String>, TemplateError> {
        let template = self.apply_to.is_some();
        let mut args = if template {
            vec!["template".to_owned(), render(&self.release)?, render(&self.chart)?]
        } else {
            vec!["upgrade".to_owned(), "--install".to_owned(), render(&self.release)?, render(&self.chart)?]
        };
        if let Some(ns) = &self.namespace {
            args.extend(["--namespace".to_owned(), render(ns)?]);
        }
        args.extend(self.cluster.args(render)?);
        if self.create_namespace && !template {
            args.push("--create-namespace".into());
        }
        if let Some(v) = &self.version {
            args.extend(["--version".to_owned(), render(v)?]);
        }
        for file in &self.values_files {
            args.extend(["--values".to_owned(), render(file)?]);
        }
        if self.sops.is_some() {
            args.extend(["--values".to_owned(), "-".to_owned()]);
        }
        if template {
            return Ok(args);
        }
        if self.atomic {
            args.push("--atomic".into());
        }
        if self.wait {
            args.push("--wait".into());
        }
        if let Some(t) = &self.timeout {
            args.extend(["--timeout".to_owned(), render(t)?]);
        }
        Ok(args)
    }
}

#[async_trait]
impl Step for HelmRelease {
    async fn run(&self, ctx: &StepContext) -> Result<(), StepError> {
        let render = |s: &str| Template::parse(s).and_then(|t| ctx.render(&t));
        let args = self.args(&render)?;
        self.helm.resolve()?; // Before decrypting anything.
        let stdin = match &self.sops {
            None => None,
            Some(values) => {
                let path = std::path::PathBuf::from(render(&values.path)?);
                let document = (values.decryptor.decrypt_file_off_thread(path.clone(), None).await)
                    .map_err(|e| StepError::new(e.to_string()))?;
                for (key, secret) in document.secrets() {
                    ctx.add_secret(format!("helm-values/{key}"), secret);
                }
                Some(document.to_yaml())
            }
        };
        ctx.log(format!("helm {}", args.join(" ")));
        let mut args = args;
        let _kubeconfig = self.cluster.made_for_the_run(&mut args).await?;
        let output = self.helm.run(&args, stdin.as_ref().map(|s| s.as_bytes())).await?;
        let Some(cluster) = &self.apply_to else {
            for line in output.lines().filter(|l| !l.trim().is_empty()) {
                ctx.log(line);
            }
            return Ok(());
        };
        let output = zeroize::Zeroizing::new(output);
        let mut apply = gantry_kube::Apply::rendered(cluster.clone(), output.as_str()).track_rollouts();
        if let Some(ns) = &self.namespace {
            apply = apply.namespace(render(ns)?);
        }
        apply.run(ctx).await
    }

    fn describe(&self, ctx: &StepContext) -> String {
        let show = |s: &str| Ok(Template::parse(s).map(|t| ctx.render_masked(&t)).unwrap_or_else(|_| s.to_owned()));
        let args = self.args(&show).unwrap_or_default();
        let stdin =
            self.sops.as_ref().map(|v| format!(" (values on stdin, decrypted from {})", v.path)).unwrap_or_default();
        let apply =
            if self.apply_to.is_some() { ", then applies the manifests and follows their rollouts" } else { "" };
        format!("runs helm {}{stdin}{apply}", args.join(" "))
    }

    fn variables(&self) -> Result<Vec<String>, TemplateError> {
        let mut names = Vec::new();
        for t in self.templates() {
            names.extend(Template::parse(t)?.variables().map(str::to_owned));
        }
        Ok(names)
    }
}
