//! The pipeline's graph: a layered layout computed from a run's [`Plan`], drawn as SVG.
//!
//! Sub-pipelines and fan-outs are folded: a step that holds a sub-pipeline, or fans out, is one node until it is
//! opened; an open fan-out shows a node per item, and an open item its steps. Layers follow the longest path from
//! the pipeline's first steps (each node one layer right of the last node it waits for); within a layer, nodes are
//! ordered by the mean position of what they wait for (the barycenter heuristic), which keeps most edges short and
//! uncrossed for the shapes pipelines have.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use gantry_core::Plan;

use crate::html::escape;

/// Width and height of a node, and the gaps between layers and between nodes of a layer, in SVG units.
const NODE_W: f64 = 184.0;
const NODE_H: f64 = 40.0;
const GAP_X: f64 = 56.0;
const GAP_Y: f64 = 16.0;
const MARGIN: f64 = 12.0;
/// Characters of a name shown in a node; the whole name is its tooltip.
const LABEL_CHARS: usize = 22;

/// What a node of the graph is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A step without children.
    Step,
    /// A step that holds a sub-pipeline or fans out.
    Group,
    /// One item of a fan-out (`deploy[web]`): not a step, the steps of its run are inside.
    Item,
}

/// A node placed on the canvas.
#[derive(Clone, Debug)]
pub(crate) struct PlacedNode {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) open: bool,
    pub(crate) layer: usize,
    pub(crate) x: f64,
    pub(crate) y: f64,
}

/// The laid-out graph.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub(crate) nodes: Vec<PlacedNode>,
    /// Edges by index into `nodes`.
    pub(crate) edges: Vec<(usize, usize)>,
    pub(crate) width: f64,
    pub(crate) height: f64,
}

/// The node that holds `name`: a fan-out's item for a step inside one (`deploy[web]` for `deploy[web]/check`), the
/// fan-out's step for an item (`deploy` for `deploy[web]`), the sub-pipeline's step otherwise; `None` at the top.
pub(crate) fn parent(name: &str) -> Option<&str> {
    if name.ends_with(']') {
        // An item: the fan-out step is the name before its last `[`.
        return name.rfind('[').map(|open| &name[..open]);
    }
    name.rfind('/').map(|slash| &name[..slash])
}

/// Lays out the plan's graph with the groups in `open` unfolded.
pub(crate) fn layout(plan: &Plan, open: &BTreeSet<String>) -> Layout {
    // Every node of the full graph, in plan order (a holder before what it holds), with its kind.
    let mut order: Vec<(String, Kind)> = Vec::with_capacity(plan.steps.len());
    let mut kinds: HashMap<String, usize> = HashMap::with_capacity(plan.steps.len());
    for step in &plan.steps {
        // A fan-out's item appears before its first step.
        if let Some(item) = parent(&step.name).filter(|p| p.ends_with(']'))
            && !kinds.contains_key(item)
        {
            kinds.insert(item.to_owned(), order.len());
            order.push((item.to_owned(), Kind::Item));
        }
        kinds.insert(step.name.clone(), order.len());
        order.push((step.name.clone(), Kind::Step));
    }
    for i in 0..order.len() {
        if let Some(holder) = parent(&order[i].0).and_then(|p| kinds.get(p)).copied()
            && order[holder].1 == Kind::Step
        {
            order[holder].1 = Kind::Group;
        }
    }
    // Visible: every holder up the chain is open.
    let visible = |name: &str| {
        let mut at = parent(name);
        while let Some(holder) = at {
            if !open.contains(holder) {
                return false;
            }
            at = parent(holder);
        }
        true
    };
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut nodes: Vec<PlacedNode> = Vec::new();
    for (name, kind) in &order {
        if visible(name) {
            index.insert(name.as_str(), nodes.len());
            let open = *kind != Kind::Step && open.contains(name);
            nodes.push(PlacedNode { name: name.clone(), kind: *kind, open, layer: 0, x: 0.0, y: 0.0 });
        }
    }
    // Edges: what a step waits for; a holder to what it holds that waits for nothing inside it.
    let mut edges = Vec::new();
    let mut has_upstream = vec![false; nodes.len()];
    for step in &plan.steps {
        let Some(&to) = index.get(step.name.as_str()) else { continue };
        for up in &step.after {
            if let Some(&from) = index.get(up.as_str()) {
                edges.push((from, to));
                has_upstream[to] = true;
            }
        }
    }
    for (to, node) in nodes.iter().enumerate() {
        if !has_upstream[to]
            && let Some(&from) = parent(&node.name).and_then(|p| index.get(p))
        {
            edges.push((from, to));
        }
    }
    // What waits for an open holder waits for what it holds: its edges start at the holder's last visible nodes
    // (those nothing inside the holder waits for), so that it is drawn after them.
    let inside = |holder: &str, name: &str| {
        name.len() > holder.len() && name.starts_with(holder) && matches!(name.as_bytes()[holder.len()], b'/' | b'[')
    };
    let mut rerouted = Vec::with_capacity(edges.len());
    for &(from, to) in &edges {
        let holder = &nodes[from];
        if !holder.open || inside(&holder.name, &nodes[to].name) {
            rerouted.push((from, to));
            continue;
        }
        let last = (0..nodes.len()).filter(|&n| {
            inside(&holder.name, &nodes[n].name)
                && !edges.iter().any(|&(f, t)| f == n && inside(&holder.name, &nodes[t].name))
        });
        let before = rerouted.len();
        rerouted.extend(last.map(|n| (n, to)));
        if rerouted.len() == before {
            rerouted.push((from, to));
        }
    }
    let mut edges = rerouted;
    edges.dedup();
    // Layers: one right of the furthest node waited for. Nodes are in an order where what a node waits for comes
    // first, so one pass suffices.
    edges.sort_unstable_by_key(|&(from, to)| (to, from));
    let mut incoming: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for &(from, to) in &edges {
        incoming[to].push(from);
    }
    for to in 0..nodes.len() {
        let layer = incoming[to].iter().map(|&from| nodes[from].layer + 1).max().unwrap_or(0);
        nodes[to].layer = layer;
    }
    // Rows: by the mean row of what a node waits for, in plan order otherwise.
    let layers = nodes.iter().map(|n| n.layer).max().map_or(0, |l| l + 1);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for (i, node) in nodes.iter().enumerate() {
        rows[node.layer].push(i);
    }
    let mut row_of = vec![0.0_f64; nodes.len()];
    for layer in &mut rows {
        let key = |i: usize| -> f64 {
            let ups = &incoming[i];
            if ups.is_empty() { f64::MAX } else { ups.iter().map(|&u| row_of[u]).sum::<f64>() / ups.len() as f64 }
        };
        let mut keyed: Vec<(f64, usize)> = layer.iter().map(|&i| (key(i), i)).collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (row, (_, i)) in keyed.iter().enumerate() {
            row_of[*i] = row as f64;
        }
        *layer = keyed.into_iter().map(|(_, i)| i).collect();
    }
    let tallest = rows.iter().map(Vec::len).max().unwrap_or(0);
    for (i, node) in nodes.iter_mut().enumerate() {
        node.x = MARGIN + node.layer as f64 * (NODE_W + GAP_X);
        node.y = MARGIN + row_of[i] * (NODE_H + GAP_Y);
    }
    let width = 2.0 * MARGIN + layers as f64 * (NODE_W + GAP_X) - GAP_X;
    let height = 2.0 * MARGIN + tallest as f64 * (NODE_H + GAP_Y) - GAP_Y;
    Layout { nodes, edges, width: width.max(NODE_W), height: height.max(NODE_H) }
}

/// The label shown in a node: the last part of its name (its place is shown by the graph), shortened.
fn label(name: &str) -> String {
    let short = match parent(name) {
        Some(holder) if name.ends_with(']') => &name[holder.len()..],
        Some(holder) => &name[holder.len() + 1..],
        None => name,
    };
    if short.chars().count() <= LABEL_CHARS {
        short.to_owned()
    } else {
        let mut cut: String = short.chars().take(LABEL_CHARS - 1).collect();
        cut.push('…');
        cut
    }
}

/// The layout as an SVG document. Nodes carry `data-step` (their name) and `data-kind`; the page colours them by
/// status with classes.
pub(crate) fn svg(layout: &Layout) -> String {
    let mut out = String::with_capacity(256 + layout.nodes.len() * 400);
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" role="img" aria-label="pipeline graph">"#,
        w = layout.width,
        h = layout.height
    );
    out.push_str(r#"<g class="edges">"#);
    for &(from, to) in &layout.edges {
        let (a, b) = (&layout.nodes[from], &layout.nodes[to]);
        let (x1, y1) = (a.x + NODE_W, a.y + NODE_H / 2.0);
        let (x2, y2) = (b.x, b.y + NODE_H / 2.0);
        let bend = (x2 - x1) / 2.0;
        let _ = write!(
            out,
            r#"<path d="M{x1:.1},{y1:.1} C{c1:.1},{y1:.1} {c2:.1},{y2:.1} {x2:.1},{y2:.1}" data-from="{f}" data-to="{t}"/>"#,
            c1 = x1 + bend,
            c2 = x2 - bend,
            f = escape(&a.name),
            t = escape(&b.name)
        );
    }
    out.push_str("</g>");
    for node in &layout.nodes {
        let kind = match node.kind {
            Kind::Step => "step",
            Kind::Group => "group",
            Kind::Item => "item",
        };
        let name = escape(&node.name);
        let _ = write!(
            out,
            r#"<g class="node st-pending" data-step="{name}" data-kind="{kind}" data-open="{open}" transform="translate({x:.1},{y:.1})" tabindex="0"><title>{name}</title><rect width="{NODE_W}" height="{NODE_H}" rx="7"/><circle class="dot" cx="16" cy="{cy}" r="5"/><text x="28" y="{ty}">{label}</text>"#,
            open = node.open,
            x = node.x,
            y = node.y,
            cy = NODE_H / 2.0,
            ty = NODE_H / 2.0 + 4.5,
            label = escape(&label(&node.name)),
        );
        if node.kind != Kind::Step {
            let _ = write!(
                out,
                r#"<text class="fold" x="{x}" y="{ty}">{sign}</text>"#,
                x = NODE_W - 18.0,
                ty = NODE_H / 2.0 + 5.0,
                sign = if node.open { "−" } else { "+" }
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::{CommandStep, Context, Pipeline};

    fn plan() -> Plan {
        let checks = Pipeline::builder("checks")
            .step("lint", CommandStep::new("true"))
            .step("unit", CommandStep::new("true"))
            .step("report", CommandStep::new("true"))
            .after(["lint", "unit"])
            .build()
            .unwrap();
        let per_service = |_: &str| {
            Pipeline::builder("svc")
                .step("deploy", CommandStep::new("true"))
                .step("smoke", CommandStep::new("true"))
                .after(["deploy"])
        };
        Pipeline::builder("release")
            .step("build", CommandStep::new("true"))
            .pipeline("checks", checks)
            .after(["build"])
            .fan_out("services", "service", ["web", "api"], per_service)
            .after(["checks"])
            .step("notify", CommandStep::new("true"))
            .after(["services"])
            .build()
            .unwrap()
            .plan(&Context::new())
    }

    fn names(layout: &Layout) -> Vec<(&str, usize)> {
        layout.nodes.iter().map(|n| (n.name.as_str(), n.layer)).collect()
    }

    #[test]
    fn holders_are_folded_until_opened() {
        let plan = plan();
        let folded = layout(&plan, &BTreeSet::new());
        assert_eq!(names(&folded), [("build", 0), ("checks", 1), ("services", 2), ("notify", 3)]);
        assert!(folded.nodes[1..3].iter().all(|n| n.kind == Kind::Group && !n.open));
        assert_eq!(folded.edges, [(0, 1), (1, 2), (2, 3)]);

        let open: BTreeSet<String> = ["checks", "services", "services[web]"].map(String::from).into();
        let unfolded = layout(&plan, &open);
        let layers: HashMap<&str, usize> = names(&unfolded).into_iter().collect();
        // A sub-pipeline's first steps hang off their holder; its last waits for them.
        assert_eq!((layers["checks/lint"], layers["checks/unit"], layers["checks/report"]), (2, 2, 3));
        // An open fan-out shows its items; an open item, its steps; a closed item, nothing inside.
        // What waits for the open sub-pipeline comes after its last step.
        assert_eq!(layers["services"], 4);
        assert_eq!((layers["services[web]"], layers["services[api]"]), (5, 5));
        assert_eq!((layers["services[web]/deploy"], layers["services[web]/smoke"]), (6, 7));
        assert!(!layers.contains_key("services[api]/deploy"));
        assert_eq!(unfolded.nodes.iter().find(|n| n.name == "services[web]").unwrap().kind, Kind::Item);
        // What waits for an open holder is drawn after what it holds, with edges from its last steps.
        assert!(layers["notify"] > layers["services[web]/smoke"], "{layers:?}");
        let into_notify: Vec<&str> = unfolded
            .edges
            .iter()
            .filter(|&&(_, to)| unfolded.nodes[to].name == "notify")
            .map(|&(from, _)| unfolded.nodes[from].name.as_str())
            .collect();
        assert_eq!(into_notify, ["services[web]/smoke", "services[api]"], "a closed item is its own last node");
    }

    #[test]
    fn nodes_of_a_layer_do_not_overlap_and_fit_the_canvas() {
        let plan = plan();
        let open: BTreeSet<String> = ["checks", "services", "services[web]", "services[api]"].map(String::from).into();
        let l = layout(&plan, &open);
        for (i, a) in l.nodes.iter().enumerate() {
            assert!(a.x + NODE_W <= l.width && a.y + NODE_H <= l.height, "{} is off the canvas", a.name);
            for b in &l.nodes[i + 1..] {
                let apart = (a.x - b.x).abs() >= NODE_W || (a.y - b.y).abs() >= NODE_H;
                assert!(apart, "{} overlaps {}", a.name, b.name);
            }
        }
        for &(from, to) in &l.edges {
            assert!(l.nodes[from].layer < l.nodes[to].layer, "edges go right");
        }
    }

    #[test]
    fn names_are_escaped_in_the_drawing() {
        let plan = Pipeline::builder("p")
            .step("<img src=x onerror=alert(1)>", CommandStep::new("true"))
            .build()
            .unwrap()
            .plan(&Context::new());
        let drawn = svg(&layout(&plan, &BTreeSet::new()));
        assert!(!drawn.contains("<img"), "{drawn}");
        assert!(drawn.contains("&lt;img src=x onerror=alert(1)&gt;"));
    }

    #[test]
    fn parents_of_names() {
        assert_eq!(parent("a"), None);
        assert_eq!(parent("a/b"), Some("a"));
        assert_eq!(parent("fan[x]"), Some("fan"));
        assert_eq!(parent("fan[x]/inner"), Some("fan[x]"));
        assert_eq!(parent("outer/fan[a/b]"), Some("outer/fan"));
    }
}
