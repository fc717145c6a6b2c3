//! Writing trees as YAML and JSON, in document order: for encrypted files and for decrypted documents.

use std::fmt::Write as _;

use crate::decrypt::format_float;
use crate::tree::Value;

/// A string as a YAML or JSON double-quoted scalar.
pub(crate) fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

pub(crate) fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.is_finite() && f.fract() == 0.0 => format!("{f:.1}"),
        Value::Float(f) => format_float(*f),
        Value::Str(s) => quoted(s),
        Value::Bytes(b) => quoted(&String::from_utf8_lossy(b)),
        Value::Map(_) | Value::Seq(_) => String::new(),
    }
}

pub(crate) fn yaml_value(out: &mut String, v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Value::Map(entries) if !entries.is_empty() => {
            for (k, v) in entries {
                match v {
                    Value::Map(e) if !e.is_empty() => {
                        let _ = writeln!(out, "{pad}{}:", quoted(k));
                        yaml_value(out, v, indent + 4);
                    }
                    Value::Seq(items) if !items.is_empty() => {
                        let _ = writeln!(out, "{pad}{}:", quoted(k));
                        yaml_value(out, v, indent + 4);
                    }
                    other => {
                        let _ = writeln!(out, "{pad}{}: {}", quoted(k), inline(other));
                    }
                }
            }
        }
        Value::Seq(items) if !items.is_empty() => {
            for item in items {
                match item {
                    Value::Map(_) | Value::Seq(_) => {
                        let mut nested = String::new();
                        yaml_value(&mut nested, item, indent + 2);
                        let nested = nested.trim_start();
                        let _ = write!(out, "{pad}- {nested}");
                    }
                    other => {
                        let _ = writeln!(out, "{pad}- {}", inline(other));
                    }
                }
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", inline(other));
        }
    }
}

fn inline(v: &Value) -> String {
    match v {
        Value::Map(_) => "{}".into(),
        Value::Seq(_) => "[]".into(),
        other => scalar(other),
    }
}

pub(crate) fn json_value(out: &mut String, v: &Value, indent: usize) {
    let pad = "\t".repeat(indent + 1);
    match v {
        Value::Map(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                let _ = write!(out, "{}\n{pad}{}: ", if i > 0 { "," } else { "" }, quoted(k));
                json_value(out, v, indent + 1);
            }
            let _ = write!(out, "\n{}}}", "\t".repeat(indent));
        }
        Value::Seq(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                let _ = write!(out, "{}\n{pad}", if i > 0 { "," } else { "" });
                json_value(out, item, indent + 1);
            }
            let _ = write!(out, "\n{}]", "\t".repeat(indent));
        }
        Value::Float(f) if !f.is_finite() => out.push_str("null"),
        other => out.push_str(&scalar(other)),
    }
}
