//! A pipeline step that decrypts a SOPS file into the run's secrets.

use std::path::PathBuf;

use async_trait::async_trait;
use gantry_core::{Step, StepContext, StepError, Template, TemplateError};

use crate::decrypt::Decryptor;
use crate::format::Format;
use crate::keys::Identities;

/// Decrypts a SOPS file (its path is a template) and adds every encrypted value to the run as a secret named by the
/// step and the value's path: a step `secrets` decrypting `db: {password: …}` gives
/// `{{secrets.secrets.db.password}}` to the steps after it. Those values are masked in every event, log line, error
/// and report from then on. Values the file keeps in plaintext (`_unencrypted` keys, ...) become step variables
/// (`{{secrets.note_unencrypted}}` for a step `secrets`). The MAC is verified first; nothing is written to disk.
///
/// ```no_run
/// use gantry_core::{CommandStep, Pipeline};
/// use gantry_sops::{Identities, SopsSecrets};
///
/// let pipeline = Pipeline::builder("release")
///     .step("secrets", SopsSecrets::file("deploy/{{env}}/secrets.enc.yaml", Identities::from_environment().unwrap()))
///     .step("migrate", CommandStep::new("migrate").env("DATABASE_PASSWORD", "{{secrets.secrets.db.password}}"))
///     .after(["secrets"])
///     .build()
///     .unwrap();
/// # let _ = pipeline;
/// ```
#[derive(Debug, Clone)]
pub struct SopsSecrets {
    path: String,
    format: Option<Format>,
    decryptor: Decryptor,
}

impl SopsSecrets {
    /// Decrypts the file at `path` (a template), in the format its name says, with `identities`.
    pub fn file(path: impl Into<String>, identities: Identities) -> Self {
        Self { path: path.into(), format: None, decryptor: Decryptor::new(identities) }
    }

    /// Reads the file as `format`, whatever its name.
    #[must_use]
    pub fn format(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }
}

#[async_trait]
impl Step for SopsSecrets {
    async fn run(&self, ctx: &StepContext) -> Result<(), StepError> {
        let path = PathBuf::from(ctx.render(&Template::parse(&self.path)?)?);
        let document = (self.decryptor.decrypt_file_off_thread(path.clone(), self.format).await)
            .map_err(|e| StepError::new(e.to_string()))?;
        let secrets = document.secrets();
        let count = secrets.len();
        for (key, secret) in secrets {
            ctx.set_secret(&key, secret);
        }
        let plain = document.plain_values();
        for (key, value) in &plain {
            ctx.set_var(key, value.clone());
        }
        ctx.log(format!(
            "decrypted {count} values from {} (MAC verified); {} more are plaintext by the file's rules",
            path.display(),
            plain.len()
        ));
        Ok(())
    }

    fn describe(&self, ctx: &StepContext) -> String {
        let path = Template::parse(&self.path).map(|t| ctx.render_masked(&t)).unwrap_or_else(|_| self.path.clone());
        format!("decrypts the SOPS file {path} into the run's secrets")
    }

    fn variables(&self) -> Result<Vec<String>, TemplateError> {
        Ok(Template::parse(&self.path)?.variables().map(str::to_owned).collect())
    }
}
