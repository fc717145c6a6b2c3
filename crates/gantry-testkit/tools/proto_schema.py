#!/usr/bin/env python3
"""Generates `src/kube/protobuf/schema.txt`: the protobuf wire schema of the built-in types the simulator serves.

Kubernetes' protobuf messages (generated.proto, from go-to-protobuf) name their fields after the JSON names. The
schema is taken from two crates of the kube-rs ecosystem, as published on crates.io:

- `k8s-pb` (prost bindings of Kubernetes' generated.proto): each message's fields, tags and wire types;
- `k8s-openapi` (serde bindings of Kubernetes' OpenAPI): the JSON name of each field, which prost snake-cased.

Usage: tools/proto_schema.py <k8s-pb src dir> <k8s-openapi src dir> > src/kube/protobuf/schema.txt
(the directories are in ~/.cargo/registry/src/*/k8s-pb-0.9.0/src and .../k8s-openapi-0.29.0/src).
"""
import os
import re
import sys

ROOTS = [
    "api.core.v1." + k for k in ["Namespace", "Pod", "Service", "ConfigMap", "Secret", "Event", "ServiceAccount", "Node"]
] + ["api.apps.v1.Deployment", "api.apps.v1.ReplicaSet", "api.batch.v1.Job",
     "api.authorization.v1.SelfSubjectAccessReview", "api.autoscaling.v1.Scale",
     "apimachinery.pkg.apis.meta.v1.Status", "apimachinery.pkg.apis.meta.v1.DeleteOptions",
     "apimachinery.pkg.apis.meta.v1.WatchEvent", "apimachinery.pkg.runtime.Unknown"]
# Every served kind's list type too.
ROOTS += [r + "List" for r in ROOTS if r.startswith("api.") and not r.endswith(("Review", "Scale"))]

ATTR = re.compile(r'#\[prost\(([^]]*)\)\]\s*pub (r#)?(\w+):\s*(.*?),\s*(?=///|#\[|$)', re.S)
STRUCT = re.compile(r'pub struct (\w+) \{(.*?)\n\}', re.S)


def rust_type_target(ty, module):
    """The message a field's Rust type names, as a dotted module path."""
    ty = re.sub(r'\s+', '', ty).replace(',>', '>')
    inner = ty
    for wrapper in ["::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"]:
        while inner.startswith(wrapper):
            inner = inner[len(wrapper):-1]
    m = re.match(r'::prost::alloc::collections::BTreeMap<::prost::alloc::string::String,(.*)>$', inner)
    if m:
        inner = m.group(1)
    parts = inner.split("::")
    path = list(module)
    while parts and parts[0] == "super":
        path.pop()
        parts.pop(0)
    return ".".join(path + parts)


def messages(pb):
    found = {}
    for dirpath, _, files in os.walk(pb):
        if "mod.rs" not in files:
            continue
        module = os.path.relpath(dirpath, pb).split(os.sep)
        text = open(os.path.join(dirpath, "mod.rs")).read()
        for name, body in STRUCT.findall(text):
            fields = []
            for attr, _, field, ty in ATTR.findall(body):
                tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
                kinds = [a.strip() for a in attr.split(",")]
                if attr.startswith("btree_map"):
                    key, value = re.search(r'btree_map = "(\w+), (\w+)"', attr).groups()
                    target = rust_type_target(ty, module) if value == "message" else value
                    kind = f"map {key} {target}"
                else:
                    base = kinds[0].split(" ")[0]
                    target = rust_type_target(ty, module) if base == "message" else base
                    kind = ("repeated " if "repeated" in kinds else "") + target
                fields.append((tag, field, kind))
            found[".".join(module + [name])] = fields
    return found


def json_names(openapi):
    """Per type (`api.core.v1.ServicePort`), its fields' JSON names keyed by the name in lower case."""
    names = {}
    for version in sorted(os.listdir(openapi)):
        root = os.path.join(openapi, version)
        if not os.path.isdir(root):
            continue
        for dirpath, _, files in os.walk(root):
            module = os.path.relpath(dirpath, root).split(os.sep)
            for f in files:
                if f.endswith(".rs"):
                    text = open(os.path.join(dirpath, f)).read()
                    for struct in re.findall(r'pub struct (\w+)', text):
                        fields = names.setdefault(".".join(module + [struct]).lower(), {})
                        for json in re.findall(r'"(\w+)" => Field::Key_', text):
                            fields.setdefault(json.lower(), json)
    return names


def main():
    pb, openapi = sys.argv[1], sys.argv[2]
    all_messages = messages(pb)
    names = json_names(openapi)
    # Names of the wrappers' fields, which have no JSON object of their own.
    wrappers = {"seconds": "seconds", "nanos": "nanos", "raw": "raw", "string": "string", "duration": "duration",
                "type": "type", "intval": "intVal", "strval": "strVal", "typemeta": "typeMeta", "apiversion": "apiVersion",
                "kind": "kind", "contentencoding": "contentEncoding", "contenttype": "contentType",
                "object": "object", "metadata": "metadata", "items": "items"}
    alias = {}  # a message with no JSON type of its own (an inlined Go struct) -> the type it is inlined in

    def table(name):
        if names.get(name.lower()):
            return names[name.lower()]
        return table(alias[name]) if name in alias else wrappers

    def json_name(name, field, kind):
        key = field.replace("_", "").lower()
        if key in table(name):
            return table(name)[key]
        if kind in all_messages:
            if not names.get(kind.lower()):
                alias[kind] = name
            if all(f.replace("_", "").lower() in table(name) for _, f, _ in all_messages[kind]):
                return "*"  # an embedded Go struct, inlined in JSON (`json:",inline"`), e.g. Volume's VolumeSource
        sys.exit(f"no JSON name for {name}.{field}")

    keep, todo, lines = [], list(ROOTS), {}
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        if name not in all_messages:
            sys.exit(f"no message {name}")
        keep.append(name)
        lines[name] = [f"{tag} {json_name(name, field, kind)} {kind}" for tag, field, kind in sorted(all_messages[name])]
        for _, _, kind in all_messages[name]:
            target = kind.split(" ")[-1]
            if "." in target:
                todo.append(target)
    print("# @generated by tools/proto_schema.py from k8s-pb 0.9.0 (tags, wire types) and k8s-openapi 0.29.0 (JSON names)")
    print("# message <module path>; then per field: <tag> <JSON name, or * if inlined> [repeated] <type> | map <key> <value>")
    for name in sorted(keep):
        print(f"message {name}")
        print("\n".join(lines[name]))


main()
