//! Unknown fields and the write options that govern them, as the API server treats them
//! (<https://kubernetes.io/docs/reference/using-api/api-concepts/#field-validation>).
//!
//! A built-in object never keeps a field its schema does not declare: Go's decoder drops it. What the client hears
//! about it depends on `fieldValidation`: `Strict` refuses the write (`400`, `strict decoding error: unknown field
//! "spec.foo"`, or `.spec.foo: field not declared in schema` for a server-side apply), `Warn` (the default) answers
//! a `Warning` header per field, `Ignore` says nothing. The schemas are the ones `/openapi/v3` publishes
//! (`k8s-openapi`'s). Custom resources keep every field (as a CRD with `x-kubernetes-preserve-unknown-fields`).
//!
//! The write options themselves are checked as upstream's `ValidateCreateOptions` (and its update and patch
//! siblings) do: `dryRun` only `All`, `fieldValidation` only `Ignore`, `Warn` or `Strict` (`422` for kind
//! `CreateOptions`, `UpdateOptions` or `PatchOptions`).
//!
//! Not modelled: duplicate fields in a JSON body (the body is parsed into a map, last one wins, and no warning).

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::http::HeaderValue;
use axum::response::Response;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

use super::admission::{Cause, invalid_status};
use super::api::bad_request;
use super::openapi;
use super::resources::{ResourceType, builtins};

/// What the client asked to hear about unknown fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Directive {
    Ignore,
    Warn,
    Strict,
}

/// The write's options checked: its `fieldValidation` directive, or the `422` for a bad `dryRun` or
/// `fieldValidation`. `options` names the kind (`CreateOptions`, `UpdateOptions`, `PatchOptions`).
pub(super) fn directive(params: &HashMap<String, String>, options: &str) -> Result<Directive, Box<Response>> {
    let mut causes = Vec::new();
    if let Some(dry_run) = params.get("dryRun").filter(|v| *v != "All") {
        causes.push(Cause::not_supported("dryRun", dry_run, &["All"]));
    }
    let directive = match params.get("fieldValidation").map(String::as_str) {
        None | Some("" | "Warn") => Directive::Warn,
        Some("Ignore") => Directive::Ignore,
        Some("Strict") => Directive::Strict,
        Some(other) => {
            causes.push(Cause::not_supported("fieldValidation", other, &["Ignore", "Strict", "Warn"]));
            Directive::Warn
        }
    };
    if causes.is_empty() { Ok(directive) } else { Err(Box::new(invalid_status("meta.k8s.io", options, "", &causes))) }
}

/// The schemas of the built-in types, by name, and each kind's schema name.
struct Schemas {
    definitions: Map<String, Value>,
    kinds: HashMap<(String, String), String>,
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let mut generator = SchemaSettings::openapi3().into_generator();
        let mut kinds = HashMap::new();
        for t in builtins() {
            if let Some(name) = openapi::builtin_schema(&t, &mut generator) {
                kinds.insert((t.api_version(), t.kind.clone()), name);
            }
        }
        Schemas { definitions: generator.take_definitions(true), kinds }
    })
}

/// Removes the fields `object` has and its type's schema does not declare; returns their paths
/// (`spec.template.spec.containers[0].foo`), in document order. A value of the wrong type (`replicas: "two"`) is
/// refused as Go's JSON decoder refuses it: `Err` holds the message of the API server's `400`.
pub(super) fn prune(t: &ResourceType, object: &mut Value) -> Result<Vec<String>, String> {
    let schemas = schemas();
    let Some(name) = schemas.kinds.get(&(t.api_version(), t.kind.clone())) else { return Ok(Vec::new()) };
    let mut walk = Walk { unknown: Vec::new(), wrong_type: None };
    if let Some(schema) = schemas.definitions.get(name) {
        walk.value(schema, short_name(name), object, "", "");
    }
    match walk.wrong_type {
        Some(error) => Err(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: {error}",
            kind = t.kind,
            version = t.version
        )),
        None => Ok(walk.unknown),
    }
}

/// The schema a schema refers to (`$ref`, or the `allOf: [{$ref}]` that carries a description beside it), and the
/// name it has if it is a named one.
fn resolve<'a>(schema: &'a Value, name: &'a str) -> (&'a Value, &'a str) {
    let reference = schema
        .get("$ref")
        .or_else(|| schema.get("allOf").and_then(Value::as_array).and_then(|a| a.first()).and_then(|s| s.get("$ref")));
    match reference.and_then(Value::as_str).and_then(|r| r.strip_prefix("#/components/schemas/")) {
        Some(target) => match schemas().definitions.get_key_value(target) {
            Some((target, schema)) => resolve(schema, short_name(target)),
            None => (schema, name),
        },
        None => (schema, name),
    }
}

/// `io.k8s.api.apps.v1.DeploymentSpec` → `DeploymentSpec`.
fn short_name(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

struct Walk {
    unknown: Vec<String>,
    wrong_type: Option<String>,
}

impl Walk {
    /// `path` names the value as field validation does (`containers[0].image`), `go_path` as Go's decoder does
    /// (`containers.image`); `parent` is the Go struct the value is a field of.
    fn value(&mut self, schema: &Value, parent: &str, value: &mut Value, path: &str, go_path: &str) {
        let (schema, name) = resolve(schema, parent);
        if self.wrong_type.is_none() && !type_matches(schema, value) {
            self.wrong_type = Some(format!(
                "json: cannot unmarshal {} into Go struct field {parent}.{go_path} of type {}",
                json_kind(value),
                go_type(schema, name)
            ));
        }
        if schema.get("x-kubernetes-preserve-unknown-fields").is_some_and(|v| v == true) {
            return;
        }
        match value {
            Value::Object(fields) => {
                if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                    // In document order, as the decoder meets them.
                    for (key, field) in fields.iter_mut() {
                        match properties.get(key) {
                            Some(property) => self.value(property, name, field, &join(path, key), &join(go_path, key)),
                            None => self.unknown.push(join(path, key)),
                        }
                    }
                    fields.retain(|key, _| properties.contains_key(key));
                } else if let Some(values) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                    for (key, field) in fields.iter_mut() {
                        self.value(values, parent, field, &join(path, key), go_path);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter_mut().enumerate() {
                        self.value(item_schema, parent, item, &format!("{path}[{i}]"), go_path);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Whether a JSON value fits a schema's type as Go's decoder reads it: `null` fits anything (a nil pointer or
/// zero value), an int-or-string (`IntOrString`, `Quantity`) a number or a string, an integer no fraction.
fn type_matches(schema: &Value, value: &Value) -> bool {
    if value.is_null() {
        return true;
    }
    if schema.get("x-kubernetes-int-or-string").is_some_and(|v| v == true) {
        return value.is_string() || value.is_number();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        _ => true,
    }
}

/// How Go's decoder names a JSON value's kind in its errors.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
}

/// The Go type a schema stands for, as the decoder names it (`int32`, `string`, `v1.Container`, `[]string`).
fn go_type(schema: &Value, name: &str) -> String {
    if schema.get("properties").is_some() {
        return format!("v1.{name}");
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("integer") => schema.get("format").and_then(Value::as_str).unwrap_or("int64").to_owned(),
        Some("number") => "float64".into(),
        Some("boolean") => "bool".into(),
        Some("array") => {
            let items = schema.get("items").map(|i| resolve(i, name));
            format!("[]{}", items.map_or("interface {}".into(), |(s, n)| go_type(s, n)))
        }
        Some("object") => "map[string]string".into(),
        _ => "string".into(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// What the unknown fields of a write come to under `directive`: the `400` of `Strict`, or the warnings to send
/// (none for `Ignore`). `apply` words the refusal as a server-side apply does.
pub(super) fn judge(directive: Directive, unknown: &[String], apply: bool) -> Result<Vec<String>, Box<Response>> {
    if unknown.is_empty() || directive == Directive::Ignore {
        return Ok(Vec::new());
    }
    if directive == Directive::Strict {
        let message = if apply {
            unknown.iter().map(|p| format!(".{p}: field not declared in schema")).collect::<Vec<_>>().join("\n")
        } else {
            let each: Vec<String> = unknown.iter().map(|p| format!("unknown field {p:?}")).collect();
            format!("strict decoding error: {}", each.join(", "))
        };
        return Err(Box::new(bad_request(message)));
    }
    Ok(unknown.iter().map(|p| format!("unknown field {p:?}")).collect())
}

/// `response` with a `Warning: 299 - "..."` header per warning, as the API server sends them.
pub(super) fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for warning in warnings {
        let text = format!("299 - {warning:?}");
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append("warning", value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> ResourceType {
        builtins().into_iter().find(|t| t.kind == "Deployment").unwrap()
    }

    #[test]
    fn unknown_fields_are_removed_and_named_known_ones_kept() {
        let mut object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"a": "b"}, "colour": "red"},
            "spec": {"replicas": 2, "replica": 3, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"rollingUpdate": {"maxSurge": "25%"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "app", "image": "nginx", "imagee": "x",
                                                           "resources": {"limits": {"cpu": "1"}}}]}}},
        });
        let unknown = prune(&deployment(), &mut object).unwrap();
        assert_eq!(unknown, ["metadata.colour", "spec.replica", "spec.template.spec.containers[0].imagee"]);
        assert!(object.pointer("/spec/replica").is_none() && object.pointer("/metadata/colour").is_none());
        assert_eq!(object.pointer("/spec/template/spec/containers/0/resources/limits/cpu"), Some(&json!("1")));
        assert_eq!(object.pointer("/metadata/labels/a"), Some(&json!("b")), "a map's keys are not fields");
        assert_eq!(object.pointer("/spec/strategy/rollingUpdate/maxSurge"), Some(&json!("25%")));
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused_as_go_decodes_it() {
        let mut object = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": "two"}});
        assert_eq!(
            prune(&deployment(), &mut object).unwrap_err(),
            "Deployment in version \"v1\" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"
        );
        let mut object = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": 5}]}}}});
        let error = prune(&deployment(), &mut object).unwrap_err();
        assert!(error.ends_with("cannot unmarshal number into Go struct field Container.spec.template.spec.containers.image of type string"), "{error}");
        let mut fine = json!({"spec": {"replicas": null, "template": {"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": 1}}, "ports": [{"containerPort": 80}]}]}},
                                       "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}}}});
        assert_eq!(prune(&deployment(), &mut fine), Ok(Vec::new()));
    }

    #[test]
    fn custom_resources_keep_every_field() {
        let widget = ResourceType::custom("example.com", "v1", "Widget", "widgets");
        let mut object = json!({"spec": {"anything": 1}});
        assert!(prune(&widget, &mut object).unwrap().is_empty());
        assert_eq!(object, json!({"spec": {"anything": 1}}));
    }
}
