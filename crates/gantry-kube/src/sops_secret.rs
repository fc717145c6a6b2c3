//! A Kubernetes Secret straight from a SOPS file: decrypted in memory, applied, never written to disk or shown.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use gantry_core::{Step, StepContext, StepError, Template, TemplateError};
use gantry_sops::{Decryptor, Format, Identities};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::apply::FIELD_MANAGER;
use crate::cluster::Cluster;
use crate::retry::retrying;

/// Creates or updates the Kubernetes Secret `name` (a template) from a SOPS file (a template path): every value of
/// the file becomes a key of the Secret's `data`, named by its dotted path (`db.password`), applied with server-side
/// apply as field manager `gantry`. The values are registered with the run first, so none can show in its events,
/// logs or errors; the step logs only the Secret's name and keys.
///
/// ```no_run
/// # fn demo(cluster: gantry_kube::Cluster) -> Result<(), gantry_sops::SopsError> {
/// use gantry_kube::SecretFromSops;
/// use gantry_sops::Identities;
/// let step = SecretFromSops::new(cluster, "web-secrets", "deploy/{{env}}/web.enc.yaml", Identities::from_environment()?);
/// # let _ = step; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SecretFromSops {
    cluster: Cluster,
    name: String,
    path: String,
    format: Option<Format>,
    decryptor: Decryptor,
}

impl SecretFromSops {
    /// The Secret `name` in the cluster's namespace, from the SOPS file at `path`, decrypted with `identities`.
    pub fn new(cluster: Cluster, name: impl Into<String>, path: impl Into<String>, identities: Identities) -> Self {
        Self { cluster, name: name.into(), path: path.into(), format: None, decryptor: Decryptor::new(identities) }
    }

    /// Reads the file as `format`, whatever its name.
    #[must_use]
    pub fn format(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }
}

#[async_trait]
impl Step for SecretFromSops {
    async fn run(&self, ctx: &StepContext) -> Result<(), StepError> {
        let render = |s: &str| Template::parse(s).and_then(|t| ctx.render(&t));
        let (name, path) = (render(&self.name)?, PathBuf::from(render(&self.path)?));
        let document = (self.decryptor.decrypt_file_off_thread(path.clone(), self.format).await)
            .map_err(|e| StepError::new(e.to_string()))?;
        let mut data = BTreeMap::new();
        for (key, secret) in document.secrets() {
            ctx.add_secret(format!("{name}/{key}"), secret.clone());
            data.insert(key, ByteString(secret.expose().as_bytes().to_vec()));
        }
        for (key, value) in document.plain_values() {
            data.insert(key, ByteString(value.into_bytes()));
        }
        let keys: Vec<String> = data.keys().cloned().collect();
        let secret: Secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.cluster.namespace().to_owned()),
                labels: Some(BTreeMap::from([("app.kubernetes.io/managed-by".to_owned(), "gantry".to_owned())])),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(data),
            ..Default::default()
        };
        let secrets: Api<Secret> = Api::namespaced(self.cluster.client().clone(), self.cluster.namespace());
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(&secret);
        retrying(&format!("apply Secret `{name}`"), || secrets.patch(&name, &params, &patch)).await?;
        ctx.log(format!("applied Secret {name} with keys {} from {}", keys.join(", "), path.display()));
        Ok(())
    }

    fn describe(&self, ctx: &StepContext) -> String {
        let show = |s: &str| Template::parse(s).map(|t| ctx.render_masked(&t)).unwrap_or_else(|_| s.to_owned());
        format!("applies Secret {} from the SOPS file {}", show(&self.name), show(&self.path))
    }

    fn variables(&self) -> Result<Vec<String>, TemplateError> {
        let mut names: Vec<String> = Template::parse(&self.name)?.variables().map(str::to_owned).collect();
        names.extend(Template::parse(&self.path)?.variables().map(str::to_owned));
        Ok(names)
    }
}
