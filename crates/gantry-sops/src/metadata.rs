//! The `sops` metadata: key groups and their age recipients, the Shamir threshold, the MAC, and which values are
//! encrypted. Read from a tree (YAML, JSON) or from flattened keys (`age__list_0__map_enc` in dotenv and INI).

use regex::Regex;

use crate::error::SopsError;
use crate::tree::Value;

/// One key group: its age recipients (public key and the data key, or a Shamir share, encrypted to it), and the
/// other key sources it names (which Gantry cannot open).
#[derive(Debug, Default)]
pub(crate) struct KeyGroup {
    pub(crate) age: Vec<(String, String)>,
    /// AWS KMS keys: ARN, the encrypted data key (base64), and the encryption context.
    pub(crate) kms: Vec<KmsKey>,
    pub(crate) others: Vec<String>,
}

/// One AWS KMS entry of a key group (read always; opened with the `kms` feature).
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "kms"), allow(dead_code))]
pub(crate) struct KmsKey {
    pub(crate) arn: String,
    pub(crate) enc: String,
    pub(crate) context: Vec<(String, String)>,
}

/// Which values are encrypted (sops allows one rule; none means `unencrypted_suffix: _unencrypted`).
#[derive(Debug, Clone)]
pub(crate) enum Rule {
    UnencryptedSuffix(String),
    EncryptedSuffix(String),
    UnencryptedRegex(Regex),
    EncryptedRegex(Regex),
    /// `encrypted_comment_regex` / `unencrypted_comment_regex` (sops 3.9+): the comments above a key decide. Gantry
    /// reads such files (which values were encrypted shows in the file itself) but does not write them.
    ByComments,
}

impl Rule {
    /// Whether the rule is decided by comments, which the key path cannot tell.
    pub(crate) fn by_comments(&self) -> bool {
        matches!(self, Rule::ByComments)
    }

    /// Whether the value at `path` is meant to be encrypted: any component of the path decides (a match applies to
    /// the whole subtree).
    pub(crate) fn encrypts<S: AsRef<str>>(&self, path: &[S]) -> bool {
        let mut path = path.iter().map(AsRef::as_ref);
        match self {
            Rule::UnencryptedSuffix(s) => !path.any(|p| p.ends_with(s.as_str())),
            Rule::EncryptedSuffix(s) => path.any(|p| p.ends_with(s.as_str())),
            Rule::UnencryptedRegex(r) => !path.any(|p| r.is_match(p)),
            Rule::EncryptedRegex(r) => path.any(|p| r.is_match(p)),
            // Not decidable from the path; callers look at the value instead (see `by_comments`).
            Rule::ByComments => true,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Metadata {
    pub(crate) groups: Vec<KeyGroup>,
    pub(crate) threshold: usize,
    pub(crate) lastmodified: String,
    pub(crate) mac: String,
    pub(crate) rule: Rule,
    pub(crate) mac_only_encrypted: bool,
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Str(s)) => matches!(s.as_str(), "true" | "True" | "TRUE" | "1" | "t" | "T"),
        Some(Value::Int(i)) => *i != 0,
        _ => false,
    }
}

const SOURCES: [&str; 6] = ["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms"];

fn group(v: &Value) -> KeyGroup {
    let mut group = KeyGroup::default();
    if let Some(Value::Seq(entries)) = v.get(&["age"]) {
        for entry in entries {
            if let (Some(recipient), Some(enc)) = (text(entry.get(&["recipient"])), text(entry.get(&["enc"]))) {
                group.age.push((recipient, enc));
            }
        }
    }
    if let Some(Value::Seq(entries)) = v.get(&["kms"]) {
        for entry in entries {
            if let (Some(arn), Some(enc)) = (text(entry.get(&["arn"])), text(entry.get(&["enc"]))) {
                let context = match entry.get(&["context"]) {
                    Some(Value::Map(pairs)) => {
                        pairs.iter().filter_map(|(k, v)| Some((k.clone(), text(Some(v))?))).collect()
                    }
                    _ => Vec::new(),
                };
                group.kms.push(KmsKey { arn, enc, context });
            }
        }
    }
    for source in SOURCES {
        if let Some(Value::Seq(entries)) = v.get(&[source])
            && !entries.is_empty()
        {
            group.others.push(source.to_owned());
        }
    }
    group
}

impl Metadata {
    /// Reads the metadata tree.
    pub(crate) fn read(sops: &Value) -> Result<Self, SopsError> {
        let groups = match sops.get(&["key_groups"]) {
            Some(Value::Seq(groups)) if !groups.is_empty() => groups.iter().map(group).collect(),
            _ => vec![group(sops)],
        };
        let threshold = text(sops.get(&["shamir_threshold"])).and_then(|t| t.parse().ok()).unwrap_or(groups.len());
        let lastmodified =
            text(sops.get(&["lastmodified"])).ok_or_else(|| SopsError::Metadata("no `lastmodified`".into()))?;
        let mac = text(sops.get(&["mac"])).unwrap_or_default();
        let regex = |field: &str, r: &str| {
            Regex::new(r).map_err(|e| SopsError::Metadata(format!("`{field}` is not a valid regular expression: {e}")))
        };
        let mut rules = Vec::new();
        if let Some(s) = text(sops.get(&["unencrypted_suffix"])) {
            rules.push(Rule::UnencryptedSuffix(s));
        }
        if let Some(s) = text(sops.get(&["encrypted_suffix"])) {
            rules.push(Rule::EncryptedSuffix(s));
        }
        if let Some(r) = text(sops.get(&["unencrypted_regex"])) {
            rules.push(Rule::UnencryptedRegex(regex("unencrypted_regex", &r)?));
        }
        if let Some(r) = text(sops.get(&["encrypted_regex"])) {
            rules.push(Rule::EncryptedRegex(regex("encrypted_regex", &r)?));
        }
        for field in ["unencrypted_comment_regex", "encrypted_comment_regex"] {
            if let Some(r) = text(sops.get(&[field])) {
                regex(field, &r)?;
                rules.push(Rule::ByComments);
            }
        }
        if rules.len() > 1 {
            return Err(SopsError::Metadata(
                "more than one of the encrypted/unencrypted suffix, regex and comment regex rules".into(),
            ));
        }
        let rule = rules.pop().unwrap_or_else(|| Rule::UnencryptedSuffix("_unencrypted".into()));
        Ok(Self {
            groups,
            threshold,
            lastmodified,
            mac,
            rule,
            mac_only_encrypted: truthy(sops.get(&["mac_only_encrypted"])),
        })
    }

    /// The MAC's additional data: `lastmodified` as Go formats RFC 3339 (no fraction, `Z` for UTC).
    pub(crate) fn mac_aad(&self) -> String {
        let t = self.lastmodified.trim();
        let (main, zone) = match t.find(['Z', 'z']) {
            Some(i) => (&t[..i], "Z".to_owned()),
            None => match t.rfind(['+', '-']).filter(|i| *i > 10) {
                Some(i) if &t[i..] == "+00:00" || &t[i..] == "-00:00" => (&t[..i], "Z".to_owned()),
                Some(i) => (&t[..i], t[i..].to_owned()),
                None => (t, String::new()),
            },
        };
        let main = main.split('.').next().unwrap_or(main);
        format!("{main}{zone}")
    }
}

/// Rebuilds a tree from flattened keys: `age__list_0__map_enc = …` becomes `age: [{enc: …}]`. Values have their
/// escaped newlines (`\n`) restored.
pub(crate) fn unflatten(pairs: &[(String, String)]) -> Value {
    let mut root = Value::Map(Vec::new());
    for (key, value) in pairs {
        let mut steps = Vec::new();
        let mut parts = key.split("__");
        if let Some(first) = parts.next() {
            steps.push(Step::Key(first.to_owned()));
        }
        for part in parts {
            if let Some(i) = part.strip_prefix("list_").and_then(|n| n.parse().ok()) {
                steps.push(Step::Index(i));
            } else if let Some(k) = part.strip_prefix("map_") {
                steps.push(Step::Key(k.to_owned()));
            } else {
                steps.push(Step::Key(part.to_owned()));
            }
        }
        insert(&mut root, &steps, Value::Str(value.replace("\\n", "\n")));
    }
    root
}

enum Step {
    Key(String),
    Index(usize),
}

fn insert(at: &mut Value, steps: &[Step], value: Value) {
    let Some((step, rest)) = steps.split_first() else {
        *at = value;
        return;
    };
    let empty = |next: Option<&Step>| match next {
        Some(Step::Index(_)) => Value::Seq(Vec::new()),
        _ => Value::Map(Vec::new()),
    };
    match step {
        Step::Key(k) => {
            if !matches!(at, Value::Map(_)) {
                *at = Value::Map(Vec::new());
            }
            let Value::Map(entries) = at else { return };
            let i = match entries.iter().position(|(key, _)| key == k) {
                Some(i) => i,
                None => {
                    entries.push((k.clone(), empty(rest.first())));
                    entries.len() - 1
                }
            };
            insert(&mut entries[i].1, rest, value);
        }
        Step::Index(i) => {
            if !matches!(at, Value::Seq(_)) {
                *at = Value::Seq(Vec::new());
            }
            let Value::Seq(items) = at else { return };
            while items.len() <= *i {
                items.push(empty(rest.first()));
            }
            insert(&mut items[*i], rest, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattened_keys_rebuild_the_tree() {
        let pairs = vec![
            ("age__list_0__map_enc".to_owned(), "-----BEGIN\\nX\\n-----END".to_owned()),
            ("age__list_0__map_recipient".to_owned(), "age1abc".to_owned()),
            ("key_groups__list_1__map_age__list_0__map_recipient".to_owned(), "age1def".to_owned()),
            ("lastmodified".to_owned(), "2026-11-26T06:22:17Z".to_owned()),
        ];
        let tree = unflatten(&pairs);
        let Some(Value::Seq(age)) = tree.get(&["age"]) else { panic!("{tree:?}") };
        assert_eq!(age[0].get(&["enc"]).and_then(Value::as_str), Some("-----BEGIN\nX\n-----END"));
        let Some(Value::Seq(groups)) = tree.get(&["key_groups"]) else { panic!() };
        assert_eq!(groups.len(), 2);
    }

    #[test]
    fn the_mac_aad_is_go_rfc3339() {
        let at = |t: &str| {
            Metadata {
                groups: vec![],
                threshold: 1,
                lastmodified: t.into(),
                mac: String::new(),
                rule: Rule::UnencryptedSuffix("_unencrypted".into()),
                mac_only_encrypted: false,
            }
            .mac_aad()
        };
        assert_eq!(at("2026-11-26T06:22:17Z"), "2026-11-26T06:22:17Z");
        assert_eq!(at("2026-11-26T06:22:17.123456Z"), "2026-11-26T06:22:17Z");
        assert_eq!(at("2026-11-26T06:22:17+00:00"), "2026-11-26T06:22:17Z");
        assert_eq!(at("2026-11-26T08:22:17+02:00"), "2026-11-26T08:22:17+02:00");
    }
}
