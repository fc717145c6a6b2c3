//! The OpenAPI documents the simulated API server publishes, as kubectl reads them
//! (<https://kubernetes.io/docs/concepts/overview/kubernetes-api/#openapi-interface-definition>).
//!
//! - `/openapi/v3` (an index) and `/openapi/v3/apis/<group>/<version>`: each served type's object path, whose
//!   `get`, `put` and `patch` operations carry `x-kubernetes-group-version-kind` and the `fieldValidation` query
//!   parameter (kubectl 1.27+ learns from them that the server validates fields), and `components.schemas` with the
//!   built-in types' schemas (from `k8s-openapi`'s JSON schemas, which follow Kubernetes' own OpenAPI), the kinds
//!   marked with `x-kubernetes-group-version-kind` as upstream marks them: `kubectl explain` reads these.
//! - `/openapi/v2`: the same paths as one Swagger 2.0 document, as JSON or, when asked for
//!   `application/com.github.proto-openapi.spec.v2@v1.0+protobuf` (or the `.v1.0` form), in gnostic's protobuf encoding (`OpenAPIv2.proto`
//!   of github.com/google/gnostic-models), which is what kubectl 1.27 and 1.28 fetch before any write. It carries
//!   no definitions: kubectl then validates on the server (`fieldValidation`), not against schemas.
//!
//! Not modelled: schemas for custom resources (served as objects that keep unknown fields), `x-kubernetes-patch-*`
//! extensions (kubectl's client-side apply then computes list patches as replacements; the server still merges
//! them), and the v3 documents' `hash` (always `gantry`: clients re-read them freely).

use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};

use super::Sim;
use super::protobuf::{put_bytes, put_key, put_varint};
use super::resources::ResourceType;

/// The media type clients ask for the protobuf OpenAPI v2 document with (client-go's `Accept`).
pub(super) const V2_PROTOBUF_ACCEPT: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// The media type the document is served as: kube-openapi answers the `@` form with this one, which Go's
/// `mime.ParseMediaType` (client-go reads the answer's `Content-Type` with it) accepts.
pub(super) const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The object path of a type, as the API server's OpenAPI names it.
fn object_path(t: &ResourceType) -> String {
    let prefix = if t.group.is_empty() { "/api/v1".to_owned() } else { format!("/apis/{}/{}", t.group, t.version) };
    if t.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
    } else {
        format!("{prefix}/{}/{{name}}", t.plural)
    }
}

/// The OpenAPI v3 index: one document per group-version.
pub(super) fn v3_index(sim: &Sim) -> Value {
    let types = sim.types.read().unwrap_or_else(|e| e.into_inner());
    let mut paths = Map::new();
    for t in types.iter() {
        let gv = if t.group.is_empty() { "api/v1".to_owned() } else { format!("apis/{}/{}", t.group, t.version) };
        paths.insert(gv.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash=gantry")}));
    }
    json!({"paths": paths})
}

/// The OpenAPI v3 document of a group-version, `None` if the server serves no type in it.
pub(super) fn v3_group_version(sim: &Sim, group: &str, version: &str, server_version: &str) -> Option<Value> {
    let types: Vec<ResourceType> = {
        let all = sim.types.read().unwrap_or_else(|e| e.into_inner());
        all.iter().filter(|t| t.group == group && t.version == version).cloned().collect()
    };
    if types.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut kinds = Vec::new();
    for t in &types {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let params = json!([
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        ]);
        let name = schema_of(t, &mut generator);
        let body =
            json!({"content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}}});
        let op = json!({"x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": {"200": {"description": "OK", "content": body["content"]}}});
        paths.insert(object_path(t), json!({"patch": op, "put": op, "get": op}));
        kinds.push((name, gvk));
    }
    let mut schemas = generator.take_definitions(true);
    for (name, gvk) in kinds {
        let schema = schemas
            .entry(name)
            .or_insert_with(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
        if let Some(schema) = schema.as_object_mut() {
            schema.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": server_version},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// Adds a type's schema (and those it refers to) to `generator`; returns the schema's name
/// (`io.k8s.api.apps.v1.Deployment`). Custom resources get a name of their own and no schema (filled in by the
/// caller as an object that keeps unknown fields).
fn schema_of(t: &ResourceType, generator: &mut SchemaGenerator) -> String {
    builtin_schema(t, generator).unwrap_or_else(|| {
        let reversed: Vec<&str> = t.group.split('.').rev().collect();
        format!("{}.{}.{}", reversed.join("."), t.version, t.kind)
    })
}

/// A built-in type's schema added to `generator`, and its name; `None` for a type that is not built in.
pub(super) fn builtin_schema(t: &ResourceType, generator: &mut SchemaGenerator) -> Option<String> {
    use k8s_openapi::api::{apps, authorization, batch, core};
    fn add<T: JsonSchema>(generator: &mut SchemaGenerator) -> Option<String> {
        generator.subschema_for::<T>();
        Some(T::schema_name().into_owned())
    }
    match (t.group.as_str(), t.version.as_str(), t.kind.as_str()) {
        ("", "v1", "Namespace") => add::<core::v1::Namespace>(generator),
        ("", "v1", "Pod") => add::<core::v1::Pod>(generator),
        ("", "v1", "Service") => add::<core::v1::Service>(generator),
        ("", "v1", "ConfigMap") => add::<core::v1::ConfigMap>(generator),
        ("", "v1", "Secret") => add::<core::v1::Secret>(generator),
        ("", "v1", "Event") => add::<core::v1::Event>(generator),
        ("", "v1", "ServiceAccount") => add::<core::v1::ServiceAccount>(generator),
        ("", "v1", "Node") => add::<core::v1::Node>(generator),
        ("apps", "v1", "Deployment") => add::<apps::v1::Deployment>(generator),
        ("apps", "v1", "ReplicaSet") => add::<apps::v1::ReplicaSet>(generator),
        ("batch", "v1", "Job") => add::<batch::v1::Job>(generator),
        ("authorization.k8s.io", "v1", "SelfSubjectAccessReview") => {
            add::<authorization::v1::SelfSubjectAccessReview>(generator)
        }
        _ => None,
    }
}

/// The Swagger 2.0 document as JSON: the object paths with their PATCH, PUT and GET operations.
pub(super) fn v2_json(sim: &Sim, server_version: &str) -> Value {
    let types = sim.types.read().unwrap_or_else(|e| e.into_inner());
    let mut paths = Map::new();
    for t in types.iter() {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let params = json!([
            {"name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": true},
            {"name": "fieldManager", "in": "query", "type": "string", "uniqueItems": true},
            {"name": "dryRun", "in": "query", "type": "string", "uniqueItems": true},
        ]);
        let op = json!({"x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": {"200": {"description": "OK"}}});
        paths.insert(object_path(t), json!({"patch": op, "put": op, "get": op}));
    }
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": server_version}, "paths": paths, "definitions": {}})
}

/// The Swagger 2.0 document in gnostic's protobuf encoding: `Document{swagger=1, info=2, paths=8}`,
/// `Paths{path=2: NamedPathItem{name=1, value=2: PathItem{get=2, put=3, patch=8}}}`, and each `Operation` with
/// `parameters=8` (`ParametersItem{parameter=1: Parameter{non_body_parameter=2: NonBodyParameter{
/// query_parameter_sub_schema=3: {in=2, name=4, type=6, unique_items=20}}}}`), `responses=9` and
/// `vendor_extension=13` (`NamedAny{name=1, value=2: Any{yaml=2}}`).
pub(super) fn v2_protobuf(sim: &Sim, server_version: &str) -> Vec<u8> {
    let types = sim.types.read().unwrap_or_else(|e| e.into_inner());
    let mut paths = Vec::new();
    for t in types.iter() {
        let mut op = Vec::new();
        for name in ["fieldValidation", "fieldManager", "dryRun"] {
            let mut query = Vec::new();
            put_bytes(&mut query, 2, b"query");
            put_bytes(&mut query, 4, name.as_bytes());
            put_bytes(&mut query, 6, b"string");
            put_varint_field(&mut query, 20, 1);
            let non_body = message(3, &query);
            let parameter = message(2, &non_body);
            let item = message(1, &parameter);
            put_bytes(&mut op, 8, &item);
        }
        let mut ok = Vec::new();
        put_bytes(&mut ok, 1, b"OK");
        let response_value = message(1, &ok);
        let mut named_response = Vec::new();
        put_bytes(&mut named_response, 1, b"200");
        put_bytes(&mut named_response, 2, &response_value);
        put_bytes(&mut op, 9, &message(1, &named_response));
        // An operation's extension is one map (definitions carry a list), read by kubectl as YAML.
        let yaml = format!("group: \"{}\"\nkind: {}\nversion: {}\n", t.group, t.kind, t.version);
        let any = message(2, yaml.as_bytes());
        let mut extension = Vec::new();
        put_bytes(&mut extension, 1, b"x-kubernetes-group-version-kind");
        put_bytes(&mut extension, 2, &any);
        put_bytes(&mut op, 13, &extension);
        let mut item = Vec::new();
        for field in [2, 3, 8] {
            put_bytes(&mut item, field, &op);
        }
        let mut named = Vec::new();
        put_bytes(&mut named, 1, object_path(t).as_bytes());
        put_bytes(&mut named, 2, &item);
        put_bytes(&mut paths, 2, &named);
    }
    let mut info = Vec::new();
    put_bytes(&mut info, 1, b"Kubernetes");
    put_bytes(&mut info, 2, server_version.as_bytes());
    let mut document = Vec::new();
    put_bytes(&mut document, 1, b"2.0");
    put_bytes(&mut document, 2, &info);
    put_bytes(&mut document, 8, &paths);
    document
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    put_key(out, field, 0);
    put_varint(out, value);
}

/// A message holding one length-delimited field.
fn message(field: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_bytes(&mut out, field, bytes);
    out
}
