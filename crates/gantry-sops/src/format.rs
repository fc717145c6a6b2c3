//! The stores: how each file format holds the values and the metadata. Every parser returns an error, never panics.

use crate::error::SopsError;
use crate::metadata::unflatten;
use crate::tree::Value;

/// A SOPS file's format, as sops' `--input-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// YAML (one or more documents).
    Yaml,
    /// JSON.
    Json,
    /// dotenv: `KEY=value` lines.
    Dotenv,
    /// INI: sections of `key = value`.
    Ini,
    /// Any file, stored as JSON `{"data": …, "sops": …}`.
    Binary,
}

impl Format {
    /// The format sops assumes for a file name: `.yaml`/`.yml`, `.json`, `.env`, `.ini`, else binary.
    pub fn from_path(path: &std::path::Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Self::Yaml,
            Some("json") => Self::Json,
            Some("env") => Self::Dotenv,
            Some("ini") => Self::Ini,
            _ => Self::Binary,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Yaml => "yaml",
            Self::Json => "json",
            Self::Dotenv => "dotenv",
            Self::Ini => "ini",
            Self::Binary => "binary",
        }
    }
}

/// A parsed file: its documents (the `sops` key removed) and its metadata tree.
pub(crate) struct Parsed {
    /// Whether the fast YAML path read it (the full parser is the fallback if anything then fails to verify).
    pub(crate) fast: bool,
    pub(crate) documents: Vec<Value>,
    pub(crate) metadata: Value,
    /// Encrypted comments with the path of the map that holds them (YAML and dotenv).
    pub(crate) comments: Vec<(Vec<String>, String)>,
}

fn parse_error(format: Format, why: impl Into<String>) -> SopsError {
    SopsError::Parse { format: format.name(), why: why.into() }
}

/// Takes the `sops` entry out of a map document.
fn split_metadata(document: &mut Value) -> Option<Value> {
    let Value::Map(entries) = document else { return None };
    let i = entries.iter().position(|(k, _)| k == "sops")?;
    Some(entries.remove(i).1)
}

pub(crate) fn parse(text: &str, format: Format) -> Result<Parsed, SopsError> {
    match format {
        Format::Yaml => yaml(text, true),
        Format::Json | Format::Binary => json(text, format),
        Format::Dotenv => dotenv(text),
        Format::Ini => ini(text),
    }
}

/// serde-saphyr set to read YAML as sops (go-yaml v3) does: YAML 1.2 booleans only, so `yes`, `no`, `y`, `n`, `on`
/// and `off` stay strings (serde-saphyr's default reads them as YAML 1.1 booleans, even as keys).
pub(crate) fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options
}

/// Parses YAML with the full parser, not the fast path.
pub(crate) fn parse_full_yaml(text: &str) -> Result<Parsed, SopsError> {
    yaml(text, false)
}

fn yaml(text: &str, fast: bool) -> Result<Parsed, SopsError> {
    if fast
        && let Some(mut document) = crate::fast_yaml::parse(text)
        && let Some(metadata) = split_metadata(&mut document)
    {
        return Ok(Parsed { fast: true, documents: vec![document], metadata, comments: yaml_comments(text) });
    }
    let mut documents: Vec<Value> = serde_saphyr::from_multiple_with_options(text, yaml_options())
        .map_err(|e| parse_error(Format::Yaml, e.to_string()))?;
    documents.retain(|d| *d != Value::Null);
    let mut metadata = None;
    for (i, d) in documents.iter_mut().enumerate() {
        let found = split_metadata(d);
        if i == 0 {
            metadata = found;
        }
    }
    let metadata = metadata.ok_or_else(|| SopsError::Metadata("the first document has no `sops` key".into()))?;
    Ok(Parsed { fast: false, documents, metadata, comments: yaml_comments(text) })
}

/// Encrypted comment lines (`#ENC[...]`) with the keys of the maps around them, from indentation.
fn yaml_comments(text: &str) -> Vec<(Vec<String>, String)> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut found = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() || trimmed.starts_with("---") {
            continue;
        }
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            if crate::cipher::is_sealed(comment.trim()) {
                found.push((stack.iter().map(|(_, k)| k.clone()).collect(), comment.trim().to_owned()));
            }
            continue;
        }
        let body = trimmed.trim_start_matches("- ");
        let offset = trimmed.len() - body.len();
        if let Some((key, _)) = body.split_once(':')
            && !key.is_empty()
            && !key.contains(' ')
        {
            stack.push((indent + offset, key.trim_matches(['"', '\'']).to_owned()));
        }
    }
    found
}

fn json(text: &str, format: Format) -> Result<Parsed, SopsError> {
    let mut document: Value = serde_json::from_str(text).map_err(|e| parse_error(format, e.to_string()))?;
    let metadata =
        split_metadata(&mut document).ok_or_else(|| SopsError::Metadata("the document has no `sops` key".into()))?;
    if format == Format::Binary && document.get(&["data"]).is_none() {
        return Err(parse_error(format, "no `data` key"));
    }
    Ok(Parsed { fast: false, documents: vec![document], metadata, comments: Vec::new() })
}

fn dotenv(text: &str) -> Result<Parsed, SopsError> {
    let (mut entries, mut meta, mut comments) = (Vec::new(), Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if crate::cipher::is_sealed(comment.trim()) {
                comments.push((Vec::new(), comment.trim().to_owned()));
            }
            continue;
        }
        let (key, value) =
            line.split_once('=').ok_or_else(|| parse_error(Format::Dotenv, format!("line {} has no `=`", n + 1)))?;
        match key.strip_prefix("sops_") {
            Some(meta_key) => meta.push((meta_key.to_owned(), value.to_owned())),
            None => entries.push((key.to_owned(), Value::Str(value.replace("\\n", "\n")))),
        }
    }
    if meta.is_empty() {
        return Err(SopsError::Metadata("no `sops_` keys".into()));
    }
    Ok(Parsed { fast: false, documents: vec![Value::Map(entries)], metadata: unflatten(&meta), comments })
}

fn ini(text: &str) -> Result<Parsed, SopsError> {
    let mut sections: Vec<(String, Vec<(String, Value)>)> = Vec::new();
    let mut meta = Vec::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| parse_error(Format::Ini, format!("line {}: unclosed section header", n + 1)))?;
            current = Some(name.trim().to_owned());
            if name.trim() != "sops" {
                sections.push((name.trim().to_owned(), Vec::new()));
            }
            continue;
        }
        let (key, value) =
            line.split_once('=').ok_or_else(|| parse_error(Format::Ini, format!("line {} has no `=`", n + 1)))?;
        let (key, value) = (key.trim().to_owned(), value.trim().to_owned());
        match current.as_deref() {
            Some("sops") => meta.push((key, value)),
            Some(_) => {
                if let Some(section) = sections.last_mut() {
                    section.1.push((key, Value::Str(value.replace("\\n", "\n"))));
                }
            }
            None => return Err(parse_error(Format::Ini, format!("line {}: a key outside any section", n + 1))),
        }
    }
    if meta.is_empty() {
        return Err(SopsError::Metadata("no `[sops]` section".into()));
    }
    let document = Value::Map(sections.into_iter().map(|(name, entries)| (name, Value::Map(entries))).collect());
    Ok(Parsed { fast: false, documents: vec![document], metadata: unflatten(&meta), comments: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_know_the_map_around_them() {
        let text = "a:\n    b: 1\n    #ENC[AES256_GCM,x]\nlist:\n    - c\n#ENC[AES256_GCM,y]\n";
        let comments = yaml_comments(text);
        assert_eq!(
            comments,
            [(vec!["a".to_owned()], "ENC[AES256_GCM,x]".to_owned()), (vec![], "ENC[AES256_GCM,y]".to_owned())]
        );
    }
}
