//! Graph export: DOT (Graphviz) and Mermaid, with trigger rules and conditions on the edges.
//!
//! Each step is a node; an edge runs from an upstream step to the step that waits for it and is labelled with the
//! downstream step's rule when it is not the default `all_success`, and with its condition. Sub-pipelines and
//! fan-outs are drawn as clusters (DOT) or subgraphs (Mermaid) holding their steps.

use std::fmt::Write as _;

use crate::compose::shown_items;
use crate::context::Context;
use crate::pipeline::{Children, Node, Pipeline};
use crate::rule::TriggerRule;
use crate::secret::Redactor;

fn edge_label(rule: TriggerRule, condition: Option<&str>) -> String {
    let mut parts = Vec::new();
    if rule != TriggerRule::AllSuccess {
        parts.push(rule.as_str().to_owned());
    }
    if let Some(c) = condition {
        parts.push(format!("when {c}"));
    }
    parts.join(", ")
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn mermaid_escape(s: &str) -> String {
    s.replace('"', "#quot;")
}

impl Pipeline {
    /// The pipeline as a Graphviz DOT digraph, as written in code: conditions and fan-out items are shown as they
    /// are. When one of them may hold a secret value, use [`to_dot_masked`](Self::to_dot_masked).
    ///
    /// ```
    /// use gantry_core::{step_fn, Pipeline, TriggerRule};
    /// let ok = || step_fn(|_| async { Ok(()) });
    /// let p = Pipeline::builder("p")
    ///     .step("deploy", ok())
    ///     .step("rollback", ok()).after(["deploy"]).rule(TriggerRule::OnFailure)
    ///     .build().unwrap();
    /// assert!(p.to_dot().contains(r#""deploy" -> "rollback" [label="on_failure"]"#));
    /// ```
    pub fn to_dot(&self) -> String {
        self.dot(&Redactor::new())
    }

    /// As [`to_dot`](Self::to_dot), with the secrets of `context` masked in condition labels and fan-out items.
    ///
    /// ```
    /// use gantry_core::{step_fn, Condition, Context, Pipeline, Secret};
    /// let p = Pipeline::builder("p")
    ///     .step("admin", step_fn(|_| async { Ok(()) })).when(Condition::var_equals("token", "t0p-s3cret"))
    ///     .build().unwrap();
    /// let context = Context::new().secret("token", Secret::new("t0p-s3cret"));
    /// assert!(p.to_dot_masked(&context).contains("when token == ********"));
    /// ```
    pub fn to_dot_masked(&self, context: &Context) -> String {
        self.dot(&context.redactor())
    }

    fn dot(&self, secrets: &Redactor) -> String {
        let mut out = format!("digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box];\n", dot_escape(self.name()));
        dot_body(self, "", &mut out, 1, secrets);
        out.push_str("}\n");
        out
    }

    /// The pipeline as a Mermaid flowchart, as written in code (see [`to_dot`](Self::to_dot)).
    pub fn to_mermaid(&self) -> String {
        self.mermaid(&Redactor::new())
    }

    /// As [`to_mermaid`](Self::to_mermaid), with the secrets of `context` masked in condition labels and fan-out
    /// items.
    pub fn to_mermaid_masked(&self, context: &Context) -> String {
        self.mermaid(&context.redactor())
    }

    fn mermaid(&self, secrets: &Redactor) -> String {
        let mut out = String::from("flowchart LR\n");
        let mut ids = 0usize;
        mermaid_body(self, "", &mut out, &mut ids, secrets);
        out
    }
}

/// A step's edge label, with secrets masked.
fn label_of(node: &Node, secrets: &Redactor) -> String {
    secrets.redact(&edge_label(node.rule, node.condition().map(|c| c.label()))).into_owned()
}

fn dot_body(p: &Pipeline, prefix: &str, out: &mut String, depth: usize, secrets: &Redactor) {
    let indent = "  ".repeat(depth);
    for i in 0..p.len() {
        let node = p.node(i);
        let id = format!("{prefix}{}", node.name);
        match node.children() {
            Children::None => {
                let _ = writeln!(out, "{indent}\"{}\" [label=\"{}\"];", dot_escape(&id), dot_escape(&node.name));
            }
            Children::Pipeline(sub) => {
                let _ = writeln!(
                    out,
                    "{indent}\"{}\" [label=\"{}\", shape=component];",
                    dot_escape(&id),
                    dot_escape(&node.name)
                );
                let _ = writeln!(
                    out,
                    "{indent}subgraph \"cluster_{}\" {{\n{indent}  label=\"{}\";",
                    dot_escape(&id),
                    dot_escape(&id)
                );
                dot_body(sub, &format!("{id}/"), out, depth + 1, secrets);
                let _ = writeln!(out, "{indent}}}");
            }
            Children::FanOut { var, runs } => {
                let label = format!("{} (fan-out over {var})", node.name);
                let _ = writeln!(
                    out,
                    "{indent}\"{}\" [label=\"{}\", shape=component];",
                    dot_escape(&id),
                    dot_escape(&label)
                );
                let shown = shown_items(runs.iter().map(|(item, _)| item.as_str()), secrets);
                for ((_, sub), item) in runs.iter().zip(shown) {
                    let sub_id = format!("{id}[{item}]");
                    let _ = writeln!(
                        out,
                        "{indent}subgraph \"cluster_{}\" {{\n{indent}  label=\"{}\";",
                        dot_escape(&sub_id),
                        dot_escape(&sub_id)
                    );
                    dot_body(sub, &format!("{sub_id}/"), out, depth + 1, secrets);
                    let _ = writeln!(out, "{indent}}}");
                }
            }
        }
    }
    for i in 0..p.len() as u32 {
        let node = p.node(i as usize);
        let label = label_of(node, secrets);
        let mut ups: Vec<u32> = p.upstream(i).collect();
        ups.sort_unstable();
        for u in ups {
            let from = format!("{prefix}{}", p.node(u as usize).name);
            let to = format!("{prefix}{}", node.name);
            let _ = write!(out, "{indent}\"{}\" -> \"{}\"", dot_escape(&from), dot_escape(&to));
            if label.is_empty() {
                out.push_str(";\n");
            } else {
                let _ = writeln!(out, " [label=\"{}\"];", dot_escape(&label));
            }
        }
        if ups_is_empty(p, i) && node.condition().is_some() {
            let _ = writeln!(
                out,
                "{indent}\"{}\" [xlabel=\"{}\"];",
                dot_escape(&format!("{prefix}{}", node.name)),
                dot_escape(&label)
            );
        }
    }
}

fn ups_is_empty(p: &Pipeline, i: u32) -> bool {
    p.upstream(i).next().is_none()
}

fn mermaid_body(p: &Pipeline, prefix: &str, out: &mut String, ids: &mut usize, secrets: &Redactor) -> Vec<String> {
    let mut node_ids = Vec::with_capacity(p.len());
    for i in 0..p.len() {
        let node = p.node(i);
        let id = format!("n{ids}");
        *ids += 1;
        let full = format!("{prefix}{}", node.name);
        match node.children() {
            Children::None => {
                let _ = writeln!(out, "  {id}[\"{}\"]", mermaid_escape(&node.name));
            }
            Children::Pipeline(sub) => {
                let _ = writeln!(out, "  {id}[[\"{}\"]]", mermaid_escape(&node.name));
                let _ = writeln!(out, "  subgraph {id}_sub [\"{}\"]", mermaid_escape(&full));
                mermaid_body(sub, &format!("{full}/"), out, ids, secrets);
                let _ = writeln!(out, "  end\n  {id} -.- {id}_sub");
            }
            Children::FanOut { var, runs } => {
                let _ = writeln!(out, "  {id}[[\"{} (fan-out over {var})\"]]", mermaid_escape(&node.name));
                let shown = shown_items(runs.iter().map(|(item, _)| item.as_str()), secrets);
                for (k, ((_, sub), item)) in runs.iter().zip(shown).enumerate() {
                    let sub_full = format!("{full}[{item}]");
                    let _ = writeln!(out, "  subgraph {id}_sub{k} [\"{}\"]", mermaid_escape(&sub_full));
                    mermaid_body(sub, &format!("{sub_full}/"), out, ids, secrets);
                    let _ = writeln!(out, "  end\n  {id} -.- {id}_sub{k}");
                }
            }
        }
        node_ids.push(id);
    }
    for i in 0..p.len() as u32 {
        let node = p.node(i as usize);
        let label = label_of(node, secrets);
        let mut ups: Vec<u32> = p.upstream(i).collect();
        ups.sort_unstable();
        let arrow = if node.rule == TriggerRule::OnFailure { "-.->" } else { "-->" };
        for u in ups {
            let (from, to) = (&node_ids[u as usize], &node_ids[i as usize]);
            if label.is_empty() {
                let _ = writeln!(out, "  {from} {arrow} {to}");
            } else {
                let _ = writeln!(out, "  {from} {arrow}|\"{}\"| {to}", mermaid_escape(&label));
            }
        }
    }
    node_ids
}
