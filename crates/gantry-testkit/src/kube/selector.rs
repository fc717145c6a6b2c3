//! Label and field selectors, as `labelSelector` and `fieldSelector` query parameters carry them.
//! <https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors>

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label or field selector.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Selector(Vec<Requirement>);

/// Splits on commas that are not inside parentheses.
fn terms(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().map(str::trim).filter(|t| !t.is_empty()).collect()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters; empty allowed when `empty_ok`.
pub(crate) fn label_text(s: &str, empty_ok: bool) -> bool {
    let b = s.as_bytes();
    if b.is_empty() {
        return empty_ok;
    }
    b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

fn set(values: &str) -> Result<Vec<String>, String> {
    let inner = values
        .trim()
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or(format!("expected (values), got `{values}`"))?;
    Ok(inner.split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect())
}

impl Selector {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for term in terms(text) {
            let req = if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==") {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once('=') {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), set(v)?)
            } else if let Some((k, v)) = term.split_once(" in ") {
                Requirement::In(k.trim().into(), set(v)?)
            } else if let Some(k) = term.strip_prefix('!') {
                Requirement::NotExists(k.trim().into())
            } else if term.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
                Requirement::Exists(term.into())
            } else {
                return Err(format!("unable to parse requirement: `{term}`"));
            };
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    /// A label selector's keys must be qualified names and its values label values.
    /// <https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set>
    pub(crate) fn check_labels(&self) -> Result<(), String> {
        for r in &self.0 {
            let (key, values): (&str, Vec<&str>) = match r {
                Requirement::Equals(k, v) | Requirement::NotEquals(k, v) => (k, vec![v.as_str()]),
                Requirement::In(k, vs) | Requirement::NotIn(k, vs) => (k, vs.iter().map(String::as_str).collect()),
                Requirement::Exists(k) | Requirement::NotExists(k) => (k, Vec::new()),
            };
            if key.is_empty() {
                return Err("unable to parse requirement: found '=', expected: identifier".into());
            }
            let name = key.rsplit_once('/').map_or(key, |(_, name)| name);
            if !label_text(name, false) {
                return Err(format!(
                    "unable to parse requirement: <nil>: Invalid value: {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
                ));
            }
            if let Some(bad) = values.into_iter().find(|v| !label_text(v, true)) {
                return Err(format!(
                    "unable to parse requirement: values[0][{key}]: Invalid value: {bad:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
                ));
            }
        }
        Ok(())
    }

    /// A field selector may name `metadata.name`, `metadata.namespace` and the fields the kind's registry adds, with
    /// `=`, `==` or `!=` only; `builtin` says whether the kind is one of the API server's own.
    /// <https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/#supported-fields>
    pub(crate) fn check_fields(&self, kind: &str, builtin: bool) -> Result<(), String> {
        let extra: &[&str] = match (builtin, kind) {
            (true, "Pod") => &[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.podIPs",
                "status.nominatedNodeName",
            ],
            (true, "Secret") => &["type"],
            (true, "Namespace") => &["status.phase"],
            (true, "Node") => &["spec.unschedulable"],
            (true, "ReplicaSet") => &["status.replicas"],
            (true, "Job") => &["status.successful"],
            (true, "Event") => &[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            _ => &[],
        };
        for r in &self.0 {
            let key = match r {
                Requirement::Equals(k, _) | Requirement::NotEquals(k, _) => k,
                Requirement::In(k, _)
                | Requirement::NotIn(k, _)
                | Requirement::Exists(k)
                | Requirement::NotExists(k) => {
                    return Err(format!("invalid selector: {k}: only =, == and != are supported for fields"));
                }
            };
            if !matches!(key.as_str(), "metadata.name" | "metadata.namespace") && !extra.contains(&key.as_str()) {
                return Err(format!("field label not supported: {key}"));
            }
        }
        Ok(())
    }

    /// Whether `lookup` (label or field value by key) satisfies every requirement.
    fn matches_with(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => lookup(k).as_deref() == Some(v.as_str()),
            Requirement::NotEquals(k, v) => lookup(k).as_deref() != Some(v.as_str()),
            Requirement::In(k, vs) => lookup(k).is_some_and(|x| vs.contains(&x)),
            Requirement::NotIn(k, vs) => lookup(k).is_none_or(|x| !vs.contains(&x)),
            Requirement::Exists(k) => lookup(k).is_some(),
            Requirement::NotExists(k) => lookup(k).is_none(),
        })
    }

    /// Label selector: matches the object's `metadata.labels`.
    pub(crate) fn matches_labels(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        self.matches_with(|k| labels.and_then(|l| l.get(k)).and_then(Value::as_str).map(str::to_owned))
    }

    /// Field selector: matches dotted paths (`metadata.name`, `status.phase`, `spec.nodeName`).
    pub(crate) fn matches_fields(&self, object: &Value) -> bool {
        self.matches_with(|path| {
            let pointer = format!("/{}", path.replace('.', "/"));
            object.pointer(&pointer).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let o = json!({"metadata": {"name": "a", "labels": {"app": "web", "tier": "front"}}});
        for (sel, want) in [
            ("app=web", true),
            ("app==web,tier=front", true),
            ("app!=web", false),
            ("app in (api, web)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("missing", false),
            ("", true),
        ] {
            assert_eq!(Selector::parse(sel).unwrap().matches_labels(&o), want, "{sel}");
        }
        assert!(Selector::parse("a b").is_err());
    }

    #[test]
    fn field_selectors() {
        let o = json!({"metadata": {"name": "a", "namespace": "prod"}, "status": {"phase": "Running"}});
        assert!(Selector::parse("metadata.name=a,status.phase=Running").unwrap().matches_fields(&o));
        assert!(!Selector::parse("metadata.namespace!=prod").unwrap().matches_fields(&o));
    }
}
