//! Encryption to age recipients, writing files the real `sops` decrypts (and so, round trips both ways).

use std::fmt::Write as _;
use std::str::FromStr;

use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use crate::cipher::{self, Kind};
use crate::decrypt::format_float;
use crate::emit::{json_value, quoted, scalar, yaml_value};
use crate::error::SopsError;
use crate::format::Format;
use crate::metadata::Rule;
use crate::tree::Value;

/// The sops version Gantry's files say they were written by: the format they follow.
const SOPS_VERSION: &str = "3.11.0";

/// Encrypts plaintext documents to age recipients, as `sops encrypt --age …` does: a fresh data key per file, each
/// value sealed with its key path, the MAC over all values. Keys ending in `_unencrypted` stay in plaintext (or
/// another rule: [`encrypted_regex`](Encryptor::encrypted_regex), [`unencrypted_suffix`](Encryptor::unencrypted_suffix)).
///
/// ```
/// use gantry_sops::{Decryptor, Encryptor, Format, Identities};
/// # let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
/// let keys = Identities::parse(&std::fs::read_to_string(format!("{dir}key1.txt")).unwrap()).unwrap();
/// let encrypted = Encryptor::new(keys.recipients()).unwrap().encrypt("token: abc\n", Format::Yaml).unwrap();
/// assert!(!encrypted.contains("abc"));
/// let back = Decryptor::new(keys).decrypt(&encrypted, Format::Yaml).unwrap();
/// assert_eq!(back.get(&["token"]).unwrap().expose(), "abc");
/// ```
#[derive(Debug)]
pub struct Encryptor {
    recipients: Vec<age::x25519::Recipient>,
    rule: Rule,
    rule_field: (&'static str, String),
    mac_only_encrypted: bool,
}

impl Encryptor {
    /// Encrypts to these age recipients (`age1…`).
    pub fn new(recipients: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Self, SopsError> {
        let recipients = recipients
            .into_iter()
            .map(|r| {
                age::x25519::Recipient::from_str(r.as_ref().trim()).map_err(|_| SopsError::Key {
                    source_name: "recipients".into(),
                    why: format!("`{}` is not an age X25519 recipient (age1...)", r.as_ref()),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if recipients.is_empty() {
            return Err(SopsError::Key { source_name: "recipients".into(), why: "none given".into() });
        }
        Ok(Self {
            recipients,
            rule: Rule::UnencryptedSuffix("_unencrypted".into()),
            rule_field: ("unencrypted_suffix", "_unencrypted".into()),
            mac_only_encrypted: false,
        })
    }

    /// Leaves values whose key path has a component ending in `suffix` in plaintext.
    #[must_use]
    pub fn unencrypted_suffix(mut self, suffix: &str) -> Self {
        self.rule = Rule::UnencryptedSuffix(suffix.to_owned());
        self.rule_field = ("unencrypted_suffix", suffix.to_owned());
        self
    }

    /// Encrypts only values whose key path has a component matching `regex`.
    pub fn encrypted_regex(mut self, regex: &str) -> Result<Self, SopsError> {
        let compiled = regex::Regex::new(regex)
            .map_err(|e| SopsError::Metadata(format!("`encrypted_regex` is not a valid regular expression: {e}")))?;
        self.rule = Rule::EncryptedRegex(compiled);
        self.rule_field = ("encrypted_regex", regex.to_owned());
        Ok(self)
    }

    /// Computes the MAC over the encrypted values only.
    #[must_use]
    pub fn mac_only_encrypted(mut self) -> Self {
        self.mac_only_encrypted = true;
        self
    }

    /// Encrypts a plaintext document of `format` and returns the SOPS file.
    pub fn encrypt(&self, plaintext: &str, format: Format) -> Result<String, SopsError> {
        let mut root = parse_plain(plaintext, format)?;
        let mut key = Zeroizing::new([0u8; 32]);
        random(key.as_mut())?;
        let mut mac = Sha512::new();
        if self.mac_only_encrypted {
            mac.update(Sha256::digest(b"sops"));
        }
        seal_tree(&mut root, &key, self, &mut mac)?;
        let lastmodified = now_rfc3339();
        let digest: String = mac.finalize().iter().map(|b| format!("{b:02X}")).collect();
        let mut iv = [0u8; 32];
        random(&mut iv)?;
        let mac = cipher::seal(digest.as_bytes(), Kind::Str, &key, lastmodified.as_bytes(), iv);
        let mut age = Vec::new();
        for recipient in &self.recipients {
            let enc = age::encrypt_and_armor(recipient, key.as_slice())
                .map_err(|e| SopsError::Key { source_name: recipient.to_string(), why: e.to_string() })?;
            age.push((recipient.to_string(), enc));
        }
        let meta =
            Meta { age, lastmodified, mac, rule: self.rule_field.clone(), mac_only_encrypted: self.mac_only_encrypted };
        Ok(match format {
            Format::Yaml => write_yaml(&root, &meta),
            Format::Json | Format::Binary => write_json(&root, &meta),
            Format::Dotenv => write_dotenv(&root, &meta),
            Format::Ini => write_ini(&root, &meta),
        })
    }
}

struct Meta {
    age: Vec<(String, String)>,
    lastmodified: String,
    mac: String,
    rule: (&'static str, String),
    mac_only_encrypted: bool,
}

fn random(buffer: &mut [u8]) -> Result<(), SopsError> {
    getrandom::fill(buffer)
        .map_err(|e| SopsError::Key { source_name: "the system's random source".into(), why: e.to_string() })
}

fn now_rfc3339() -> String {
    gantry_core::time::rfc3339(std::time::SystemTime::now())
}

/// A plaintext document as a tree: YAML and JSON parsed; dotenv and INI by lines; binary as `{data: <text>}`.
fn parse_plain(text: &str, format: Format) -> Result<Value, SopsError> {
    let error = |why: String| SopsError::Parse { format: format.name(), why };
    match format {
        Format::Yaml => {
            serde_saphyr::from_str_with_options(text, crate::format::yaml_options()).map_err(|e| error(e.to_string()))
        }
        Format::Json => serde_json::from_str(text).map_err(|e| error(e.to_string())),
        Format::Binary => Ok(Value::Map(vec![("data".into(), Value::Str(text.to_owned()))])),
        Format::Dotenv => {
            let mut entries = Vec::new();
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() || line.starts_with('#') {
                    continue;
                }
                let (k, v) = line.split_once('=').ok_or_else(|| error(format!("line {} has no `=`", n + 1)))?;
                entries.push((k.to_owned(), Value::Str(v.to_owned())));
            }
            Ok(Value::Map(entries))
        }
        Format::Ini => {
            let mut sections: Vec<(String, Value)> = Vec::new();
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
                    continue;
                }
                if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                    sections.push((name.trim().to_owned(), Value::Map(Vec::new())));
                    continue;
                }
                let (k, v) = line.split_once('=').ok_or_else(|| error(format!("line {} has no `=`", n + 1)))?;
                match sections.last_mut() {
                    Some((_, Value::Map(entries))) => {
                        entries.push((k.trim().to_owned(), Value::Str(v.trim().to_owned())))
                    }
                    _ => return Err(error(format!("line {}: a key outside any section", n + 1))),
                }
            }
            Ok(Value::Map(sections))
        }
    }
}

fn seal_tree(value: &mut Value, key: &[u8; 32], how: &Encryptor, mac: &mut Sha512) -> Result<(), SopsError> {
    crate::tree::for_each_leaf(value, &mut Vec::new(), &mut |leaf, path| {
        let encrypts = how.rule.encrypts(path);
        let (plain, kind) = match leaf {
            Value::Str(s) => (Zeroizing::new(s.as_bytes().to_vec()), Kind::Str),
            Value::Int(i) => (Zeroizing::new(i.to_string().into_bytes()), Kind::Int),
            Value::Float(f) => (Zeroizing::new(format_float(*f).into_bytes()), Kind::Float),
            Value::Bool(b) => (Zeroizing::new(if *b { b"True".to_vec() } else { b"False".to_vec() }), Kind::Bool),
            Value::Bytes(b) => (Zeroizing::new(b.clone()), Kind::Bytes),
            Value::Null | Value::Map(_) | Value::Seq(_) => unreachable!("for_each_leaf visits scalars only"),
        };
        if encrypts || !how.mac_only_encrypted {
            mac.update(plain.as_slice());
        }
        // sops leaves empty strings as they are.
        if encrypts && !plain.is_empty() {
            let mut iv = [0u8; 32];
            random(&mut iv)?;
            *leaf = Value::Str(cipher::seal(&plain, kind, key, format!("{}:", path.join(":")).as_bytes(), iv));
        }
        Ok(())
    })
}

fn write_yaml(root: &Value, meta: &Meta) -> String {
    let mut out = String::new();
    if let Value::Map(entries) = root
        && !entries.is_empty()
    {
        yaml_value(&mut out, root, 0);
    }
    out.push_str("sops:\n    age:\n");
    for (recipient, enc) in &meta.age {
        let _ = writeln!(out, "        - recipient: {recipient}\n          enc: |");
        for line in enc.lines() {
            let _ = writeln!(out, "            {line}");
        }
    }
    let _ = writeln!(out, "    lastmodified: {}", quoted(&meta.lastmodified));
    let _ = writeln!(out, "    mac: {}", meta.mac);
    if meta.mac_only_encrypted {
        out.push_str("    mac_only_encrypted: true\n");
    }
    let _ = writeln!(out, "    {}: {}", meta.rule.0, quoted(&meta.rule.1));
    let _ = writeln!(out, "    version: {SOPS_VERSION}");
    out
}

fn metadata_tree(meta: &Meta) -> Value {
    let age = meta
        .age
        .iter()
        .map(|(r, e)| {
            Value::Map(vec![("recipient".into(), Value::Str(r.clone())), ("enc".into(), Value::Str(e.clone()))])
        })
        .collect();
    let mut entries = vec![
        ("age".to_owned(), Value::Seq(age)),
        ("lastmodified".to_owned(), Value::Str(meta.lastmodified.clone())),
        ("mac".to_owned(), Value::Str(meta.mac.clone())),
    ];
    if meta.mac_only_encrypted {
        entries.push(("mac_only_encrypted".to_owned(), Value::Bool(true)));
    }
    entries.push((meta.rule.0.to_owned(), Value::Str(meta.rule.1.clone())));
    entries.push(("version".to_owned(), Value::Str(SOPS_VERSION.into())));
    Value::Map(entries)
}

fn write_json(root: &Value, meta: &Meta) -> String {
    let mut entries = match root {
        Value::Map(entries) => entries.clone(),
        other => vec![("data".into(), other.clone())],
    };
    entries.push(("sops".into(), metadata_tree(meta)));
    let mut out = String::new();
    json_value(&mut out, &Value::Map(entries), 0);
    out.push('\n');
    out
}

/// Metadata flattened as sops does for dotenv and INI: `age__list_0__map_enc`, newlines as `\n`.
fn flattened(meta: &Meta) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for (i, (recipient, enc)) in meta.age.iter().enumerate() {
        pairs.push((format!("age__list_{i}__map_enc"), enc.replace('\n', "\\n")));
        pairs.push((format!("age__list_{i}__map_recipient"), recipient.clone()));
    }
    pairs.push(("lastmodified".into(), meta.lastmodified.clone()));
    pairs.push(("mac".into(), meta.mac.clone()));
    if meta.mac_only_encrypted {
        pairs.push(("mac_only_encrypted".into(), "true".into()));
    }
    pairs.push((meta.rule.0.into(), meta.rule.1.clone()));
    pairs.push(("version".into(), SOPS_VERSION.into()));
    pairs
}

fn text_of(v: &Value) -> String {
    match v {
        Value::Str(s) => s.replace('\n', "\\n"),
        other => scalar(other).trim_matches('"').to_owned(),
    }
}

fn write_dotenv(root: &Value, meta: &Meta) -> String {
    let mut out = String::new();
    if let Value::Map(entries) = root {
        for (k, v) in entries {
            let _ = writeln!(out, "{k}={}", text_of(v));
        }
    }
    for (k, v) in flattened(meta) {
        let _ = writeln!(out, "sops_{k}={v}");
    }
    out
}

fn write_ini(root: &Value, meta: &Meta) -> String {
    let mut out = String::new();
    if let Value::Map(sections) = root {
        for (name, section) in sections {
            let _ = writeln!(out, "[{name}]");
            if let Value::Map(entries) = section {
                for (k, v) in entries {
                    let _ = writeln!(out, "{k} = {}", text_of(v));
                }
            }
            out.push('\n');
        }
    }
    out.push_str("[sops]\n");
    for (k, v) in flattened(meta) {
        let _ = writeln!(out, "{k} = {v}");
    }
    out
}
