//! age identities, found as sops finds them: in code, `SOPS_AGE_KEY`, `SOPS_AGE_KEY_FILE`, or the default keys file.

use std::io::Read;
use std::path::PathBuf;
use std::str::FromStr;

use age::x25519;
use zeroize::Zeroizing;

use crate::error::SopsError;

/// age X25519 identities (`AGE-SECRET-KEY-1…`) to decrypt with. `Debug` shows only their public recipients.
#[derive(Clone, Default)]
pub struct Identities {
    keys: Vec<x25519::Identity>,
}

impl Identities {
    /// No identities yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The identities in `text`: an age keys file (one `AGE-SECRET-KEY-1…` per line, `#` comments allowed).
    pub fn parse(text: &str) -> Result<Self, SopsError> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = x25519::Identity::from_str(line).map_err(|_| SopsError::Key {
                source_name: "keys".into(),
                why: format!("line {} is not an age X25519 secret key (AGE-SECRET-KEY-1...)", n + 1),
            })?;
            keys.push(key);
        }
        Ok(Self { keys })
    }

    /// Adds the identities in `text`.
    pub fn with(mut self, text: &str) -> Result<Self, SopsError> {
        self.keys.extend(Self::parse(text)?.keys);
        Ok(self)
    }

    /// As sops looks them up: `SOPS_AGE_KEY` (keys inline), `SOPS_AGE_KEY_FILE` (a path), and the default keys file
    /// (`$XDG_CONFIG_HOME/sops/age/keys.txt`, else `~/.config/sops/age/keys.txt`), all that exist, in that order.
    pub fn from_environment() -> Result<Self, SopsError> {
        Self::from_variables(|name| std::env::var_os(name))
    }

    /// [`from_environment`](Self::from_environment) with the variables from `var` (testable without touching the
    /// process environment).
    pub(crate) fn from_variables(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<Self, SopsError> {
        let mut found = Self::new();
        if let Some(inline) = var("SOPS_AGE_KEY") {
            let inline = Zeroizing::new(inline.to_string_lossy().into_owned());
            found.keys.extend(Self::parse(&inline).map_err(|e| e.within("SOPS_AGE_KEY"))?.keys);
        }
        if let Some(path) = var("SOPS_AGE_KEY_FILE") {
            found.keys.extend(Self::read(PathBuf::from(path))?.keys);
        }
        let config =
            var("XDG_CONFIG_HOME").map(PathBuf::from).or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config")));
        if let Some(default) = config.map(|c| c.join("sops/age/keys.txt"))
            && default.is_file()
        {
            found.keys.extend(Self::read(default)?.keys);
        }
        Ok(found)
    }

    /// The identities in a keys file.
    pub fn read(path: PathBuf) -> Result<Self, SopsError> {
        let text = Zeroizing::new(
            std::fs::read_to_string(&path)
                .map_err(|e| SopsError::Key { source_name: path.display().to_string(), why: e.to_string() })?,
        );
        Self::parse(&text).map_err(|e| e.within(&path.display().to_string()))
    }

    /// How many identities there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The public recipients (`age1…`) of these identities.
    pub fn recipients(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.to_public().to_string()).collect()
    }

    /// Decrypts an (ASCII-armored or binary) age file with any of these identities.
    pub(crate) fn decrypt(&self, file: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let reader = age::armor::ArmoredReader::new(file);
        let decryptor = age::Decryptor::new_buffered(std::io::BufReader::new(reader)).ok()?;
        let mut out = Zeroizing::new(Vec::new());
        let mut stream = decryptor.decrypt(self.keys.iter().map(|k| k as &dyn age::Identity)).ok()?;
        stream.read_to_end(&mut out).ok()?;
        Some(out)
    }
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities").field("recipients", &self.recipients()).finish()
    }
}

#[cfg(test)]
mod environment_tests {
    use std::collections::HashMap;
    use std::ffi::OsString;

    use super::*;

    fn key() -> (String, String) {
        let identity = x25519::Identity::generate();
        (age::secrecy::ExposeSecret::expose_secret(&identity.to_string()).to_owned(), identity.to_public().to_string())
    }

    #[test]
    fn keys_are_found_as_sops_finds_them_inline_then_the_key_file_then_the_default_file() {
        let dir = std::env::temp_dir().join(format!("gantry-sops-env-{}", std::process::id()));
        let (inline, inline_pub) = key();
        let (in_file, in_file_pub) = key();
        let (default, default_pub) = key();
        std::fs::create_dir_all(dir.join("xdg/sops/age")).unwrap();
        std::fs::write(dir.join("keys.txt"), format!("# created: today\n{in_file}\n")).unwrap();
        std::fs::write(dir.join("xdg/sops/age/keys.txt"), format!("{default}\n")).unwrap();
        let vars = HashMap::from([
            ("SOPS_AGE_KEY", OsString::from(inline)),
            ("SOPS_AGE_KEY_FILE", dir.join("keys.txt").into_os_string()),
            ("XDG_CONFIG_HOME", dir.join("xdg").into_os_string()),
            ("HOME", OsString::from("/nonexistent")),
        ]);
        let found = Identities::from_variables(|name| vars.get(name).cloned()).unwrap();
        assert_eq!(found.recipients(), [inline_pub.clone(), in_file_pub, default_pub.clone()]);

        // Without XDG_CONFIG_HOME, the default file is under $HOME/.config.
        std::fs::create_dir_all(dir.join("home/.config/sops/age")).unwrap();
        std::fs::write(dir.join("home/.config/sops/age/keys.txt"), format!("{default}\n")).unwrap();
        let home = HashMap::from([("HOME", dir.join("home").into_os_string())]);
        assert_eq!(Identities::from_variables(|name| home.get(name).cloned()).unwrap().recipients(), [default_pub]);

        // Nothing set: no identities, no error (decryption then says no identity matched).
        assert!(Identities::from_variables(|_| None).unwrap().is_empty());

        // A bad inline key is named by where it came from, and not shown.
        let bad = HashMap::from([("SOPS_AGE_KEY", OsString::from("AGE-SECRET-KEY-1NOTAKEY"))]);
        let err = Identities::from_variables(|name| bad.get(name).cloned()).unwrap_err().to_string();
        assert!(err.contains("SOPS_AGE_KEY"), "{err}");
        assert!(!err.contains("NOTAKEY"), "{err}");
        // A missing key file is named.
        let missing = HashMap::from([("SOPS_AGE_KEY_FILE", dir.join("nope.txt").into_os_string())]);
        let err = Identities::from_variables(|name| missing.get(name).cloned()).unwrap_err().to_string();
        assert!(err.contains("nope.txt"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
