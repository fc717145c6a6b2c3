// Gantry's run view: fills the pages the server renders from its JSON API and the run's event stream.
// Every text from a run goes into the page as text (textContent, createTextNode), never as markup.
"use strict";
(() => {
  const body = document.body;
  const base = body.dataset.base || "";
  const runId = body.dataset.run || "";
  const csrf = body.dataset.csrf || "";
  const enc = encodeURIComponent;
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  function svgEl(tag, attrs, ...children) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const c of children) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  const secs = (d) => (d ? d.secs + d.nanos / 1e9 : 0);
  const epochMs = (t) => (t ? t.secs_since_epoch * 1000 + Math.floor(t.nanos_since_epoch / 1e6) : 0);
  function fmtDur(s) {
    if (s < 1) return Math.round(s * 1000) + " ms";
    if (s < 60) return s.toFixed(1) + " s";
    const m = Math.floor(s / 60);
    return m + " min " + Math.round(s % 60) + " s";
  }
  const fmtTime = (ms) => new Date(ms).toLocaleString();
  const fmtNum = (x) => (x === null || x === undefined ? "—" : x === 0 ? "0" : Number.isFinite(x) ? (Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(2) : x.toPrecision(3)) : String(x));
  async function getJSON(path) {
    const r = await fetch(base + path, { headers: { accept: "application/json" } });
    if (!r.ok) throw new Error(path + ": " + r.status);
    return r.json();
  }
  function badge(status) {
    return el("span", { class: "badge st-" + status }, status.replace(/_/g, " "));
  }

  // The run list -------------------------------------------------------------------------------------------------
  function listPage() {
    const limit = 20;
    let offset = 0;
    const form = $("filters");
    async function load() {
      const params = new URLSearchParams();
      for (const [k, v] of new FormData(form)) if (v) params.set(k, v);
      params.set("offset", offset);
      params.set("limit", limit);
      const page = await getJSON("/api/runs?" + params);
      $("runs").replaceChildren(
        ...page.runs.map((r) => {
          const v = r.vars || {};
          const commit = v.sha ? el("code", {}, v.sha.slice(0, 7)) : "";
          const trigger = v.trigger || (v.deployment_id ? "GitHub deployment" : v.event || "manual");
          const [ok, failed, skipped, cancelled] = r.steps;
          const steps = [ok && ok + " ok", failed && failed + " failed", skipped && skipped + " skipped", cancelled && cancelled + " cancelled"].filter(Boolean).join(", ");
          return el(
            "tr",
            { "data-run": r.run_id },
            el("td", {}, badge(r.status || "running")),
            el("td", {}, el("a", { href: base + "/runs/" + enc(r.run_id) }, r.pipeline)),
            el("td", {}, trigger),
            el("td", {}, commit),
            el("td", {}, v.environment || ""),
            el("td", {}, fmtTime(epochMs(r.started_at))),
            el("td", {}, r.duration ? fmtDur(secs(r.duration)) : "running"),
            el("td", {}, steps)
          );
        })
      );
      $("page-info").textContent = page.total ? `${offset + 1}–${offset + page.runs.length} of ${page.total}` : "no runs";
      $("prev").disabled = offset === 0;
      $("next").disabled = offset + limit >= page.total;
    }
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      offset = 0;
      load();
    });
    $("prev").addEventListener("click", () => {
      offset = Math.max(0, offset - limit);
      load();
    });
    $("next").addEventListener("click", () => {
      offset += limit;
      load();
    });
    load();
    setInterval(load, 3000);
  }

  // A run's events, shared by the run page and the canary page --------------------------------------------------
  function follow(onEvent, onBatchDone) {
    const source = new EventSource(base + "/api/runs/" + enc(runId) + "/events");
    let scheduled = false;
    source.onmessage = (message) => {
      const ev = JSON.parse(message.data);
      onEvent(ev);
      if (ev.type === "run_finished") source.close();
      if (!scheduled) {
        scheduled = true;
        requestAnimationFrame(() => {
          scheduled = false;
          onBatchDone();
        });
      }
    };
    return source;
  }

  // The run page ------------------------------------------------------------------------------------------------
  function runPage() {
    const steps = new Map(); // name -> {status, attempts, duration, reason, logs: [[stream, line]]}
    const rows = new Map(); // name -> <tr>
    const dirty = new Set();
    const open = new Set();
    const phases = [];
    let selected = null;
    let started = 0;
    let finished = null;
    let nodes = new Map(); // name -> <g>

    function step(name) {
      let s = steps.get(name);
      if (!s) {
        s = { status: "pending", attempts: 0, duration: null, reason: null, logs: [] };
        steps.set(name, s);
        addRow(name);
      }
      dirty.add(name);
      return s;
    }
    function addRow(name) {
      const tr = el("tr", { "data-step": name, onclick: () => select(name) }, el("td", {}, el("code", {}, name)), el("td"), el("td"), el("td"));
      rows.set(name, tr);
      $("steps").append(tr);
    }
    function paintRow(name) {
      const s = steps.get(name);
      const tr = rows.get(name);
      if (!s || !tr) return;
      tr.children[1].replaceChildren(badge(s.status));
      tr.children[2].textContent = s.attempts || "";
      tr.children[3].textContent = s.duration !== null ? fmtDur(s.duration) : s.status === "running" || s.status === "waiting" ? "…" : "";
      tr.classList.toggle("selected", name === selected);
    }
    // A group's or item's status: its own if it is a step, else from what it holds; waiting shows through.
    function statusOf(name, kind) {
      const own = steps.get(name);
      if (kind === "step") return own ? own.status : "pending";
      const inside = [];
      for (const [n, s] of steps) if (n.startsWith(name + "/") || n.startsWith(name + "[")) inside.push(s.status);
      if (inside.includes("waiting")) return "waiting";
      if (own) return own.status;
      if (inside.includes("failed")) return "failed";
      if (inside.includes("running")) return "running";
      if (inside.length && inside.every((s) => s === "skipped")) return "skipped";
      if (inside.length && inside.every((s) => s === "succeeded" || s === "skipped")) return "succeeded";
      return inside.length ? "running" : "pending";
    }
    function paintGraph() {
      for (const [name, g] of nodes) {
        const status = statusOf(name, g.dataset.kind);
        g.setAttribute("class", "node st-" + status + (name === selected ? " selected" : ""));
        g.dataset.status = status;
      }
    }
    async function loadGraph() {
      const q = [...open].map((n) => "open=" + enc(n)).join("&");
      const r = await fetch(base + "/runs/" + enc(runId) + "/graph.svg" + (q ? "?" + q : ""));
      if (!r.ok) {
        $("graph").replaceChildren(el("p", { class: "muted" }, "The history has no plan of this run to draw."));
        return;
      }
      const doc = new DOMParser().parseFromString(await r.text(), "image/svg+xml");
      const svg = document.importNode(doc.documentElement, true);
      $("graph").replaceChildren(svg);
      nodes = new Map([...svg.querySelectorAll("g.node")].map((g) => [g.dataset.step, g]));
      for (const [name, g] of nodes) {
        g.addEventListener("click", () => {
          if (g.dataset.kind !== "step") {
            if (open.has(name)) open.delete(name);
            else open.add(name);
            loadGraph();
          }
          if (g.dataset.kind !== "item") select(name);
        });
      }
      paintGraph();
    }
    // A line of a step's log: its output, and its phases (a deployment's story is told in them).
    function appendLog(name, entry) {
      const s = step(name);
      s.logs.push(entry);
      if (name === selected) {
        const pane = $("log");
        if (s.logs.length === 1) pane.replaceChildren();
        pane.append(logLine(entry));
      }
    }
    function logLine([stream, line]) {
      return el("span", { class: stream }, line + "\n");
    }
    function select(name) {
      const previous = selected;
      selected = name;
      if (previous) dirty.add(previous);
      step(name);
      $("log-step").textContent = name;
      const s = steps.get(name);
      const pane = $("log");
      pane.replaceChildren(...s.logs.map(logLine));
      if (!s.logs.length) pane.append(el("span", { class: "muted" }, s.status === "pending" ? "(not started)" : "(no output)"));
      const reason = $("log-reason");
      reason.hidden = !s.reason;
      reason.textContent = s.reason || "";
      render();
    }
    function onEvent(ev) {
      switch (ev.type) {
        case "run_started":
          started = ev.recorded_at;
          break;
        case "step_started": {
          const s = step(ev.step);
          s.status = "running";
          s.attempts = ev.attempt;
          break;
        }
        case "log":
        case "step_retrying":
        case "build_step": {
          const s = step(ev.step);
          let entry;
          if (ev.type === "log") entry = [ev.stream, ev.line];
          else if (ev.type === "step_retrying") entry = ["stderr", `attempt ${ev.attempt} failed: ${ev.error}; again in ${fmtDur(secs(ev.delay))}`];
          else entry = ["stdout", `[${ev.layer.number}/${ev.layer.of}] ${ev.layer.instruction}: ${ev.layer.source.replace(/_/g, " ")} (${fmtDur(secs(ev.layer.duration))})`];
          appendLog(ev.step, entry);
          break;
        }
        case "phase": {
          const s = step(ev.step);
          phases.push(ev);
          if (ev.phase === "waiting_for_approval" || ev.phase === "waiting_for_promotion") s.status = "waiting";
          else if (s.status === "waiting") s.status = "running";
          appendLog(ev.step, ["phase", `${ev.phase.replace(/_/g, " ")}: ${ev.message}`]);
          $("phases").append(el("li", { "data-phase": ev.phase }, el("b", {}, ev.phase.replace(/_/g, " ")), el("code", {}, ev.step), " ", ev.message));
          if (ev.phase.startsWith("waiting") || ev.phase === "approved" || ev.phase === "rejected") loadGates();
          break;
        }
        case "step_finished": {
          const s = step(ev.step);
          s.status = ev.status;
          s.attempts = ev.attempts;
          s.duration = secs(ev.duration);
          s.reason = ev.reason;
          if (ev.step === selected) select(ev.step);
          break;
        }
        case "run_finished":
          finished = ev;
          loadGates();
          break;
        default:
          break;
      }
    }
    function render() {
      for (const name of dirty) paintRow(name);
      dirty.clear();
      paintGraph();
      const status = finished ? finished.status : [...steps.values()].some((s) => s.status === "waiting") ? "waiting" : "running";
      const b = $("run-status");
      b.className = "badge st-" + status;
      b.textContent = status;
      let ok = 0;
      let failed = 0;
      for (const s of steps.values()) {
        if (s.status === "succeeded") ok++;
        if (s.status === "failed") failed++;
      }
      const when = started ? "started " + fmtTime(started) : "";
      const took = finished ? "took " + fmtDur(secs(finished.duration)) : started ? "running for " + fmtDur((Date.now() - started) / 1000) : "";
      $("run-facts").textContent = [when, took, `${steps.size} steps: ${ok} succeeded, ${failed} failed`].filter(Boolean).join(" · ");
    }
    // The waiting gates, reconciled by id: a row stays (with what is typed in it) while its gate waits.
    async function loadGates() {
      const section = $("gates");
      let answer;
      try {
        answer = await getJSON("/api/gates?run=" + enc(runId));
      } catch (e) {
        return;
      }
      if (!section.querySelector("h2")) section.append(el("h2", {}, "Waiting for a decision"));
      const waiting = new Set(answer.gates.map((g) => g.id));
      for (const row of section.querySelectorAll(".gate")) if (!waiting.has(row.dataset.gate)) row.remove();
      const shown = new Set([...section.querySelectorAll(".gate")].map((row) => row.dataset.gate));
      for (const g of answer.gates) if (!shown.has(g.id)) section.append(gateRow(g, answer.read_only));
      section.hidden = answer.gates.length === 0;
    }
    function gateRow(g, readOnly) {
      const comment = el("input", { placeholder: "comment (optional)", "aria-label": "comment" });
      const note = el("span", { class: "muted" });
      const buttons = [];
      const decide = async (approve) => {
        for (const b of buttons) b.disabled = true;
        const r = await fetch(base + "/api/gates/decide", {
          method: "POST",
          headers: { "content-type": "application/json", "x-gantry-csrf": csrf },
          body: JSON.stringify({ gate: g.id, approve, comment: comment.value }),
        });
        if (!r.ok) {
          const why = await r.json().catch(() => ({ error: String(r.status) }));
          note.textContent = "refused: " + why.error;
          for (const b of buttons) b.disabled = false;
        } else {
          note.textContent = approve ? "approved" : "rejected";
        }
      };
      let actions;
      if (g.can_act) {
        buttons.push(el("button", { class: "approve", type: "button", onclick: () => decide(true) }, "Approve"));
        buttons.push(el("button", { class: "reject", type: "button", onclick: () => decide(false) }, "Reject"));
        actions = [comment, ...buttons];
      } else {
        actions = [el("span", { class: "muted" }, readOnly ? "read-only view: decide from Slack or the host" : "you may not decide this gate")];
      }
      return el("div", { class: "gate", "data-gate": g.id }, el("span", { class: "q" }, g.message), el("code", {}, g.step), ...actions, note);
    }
    async function loadPlan() {
      try {
        const plan = await getJSON("/api/runs/" + enc(runId) + "/plan");
        for (const p of plan.steps) {
          step(p.name);
          const expected = p.status.verdict.replace(/_/g, " ") + (p.status.why ? ": " + p.status.why : "");
          $("plan").append(el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.after.join(", ")), el("td", {}, expected), el("td", {}, p.description)));
        }
      } catch (e) {
        $("plan").append(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "The history has no plan of this run.")));
      }
    }
    loadPlan().then(() => {
      loadGraph();
      follow(onEvent, render);
      loadGates();
    });
    setInterval(() => {
      if (!finished) {
        render();
        loadGates();
      }
    }, 2000);
  }

  // The canary page ---------------------------------------------------------------------------------------------
  // A line chart: each series is {cls, points: [[x, y]]}; markers are {x, label}.
  function chart(series, opts) {
    const w = opts.width || 440;
    const h = opts.height || 170;
    const pad = { l: 44, r: 10, t: 10, b: 24 };
    // Points without a number (JSON null for NaN or infinity) are left out.
    series = series.map((s) => ({ ...s, points: s.points.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1])) }));
    const range = (values) => values.reduce(([lo, hi], v) => [Math.min(lo, v), Math.max(hi, v)], [Infinity, -Infinity]);
    const xs = series.flatMap((s) => s.points.map((p) => p[0])).concat((opts.markers || []).map((m) => m.x));
    let [x0, x1] = range(xs);
    let [y0, y1] = opts.yRange || range(series.flatMap((s) => s.points.map((p) => p[1])));
    if (!Number.isFinite(x0)) [x0, x1] = [0, 1];
    if (!Number.isFinite(y0)) [y0, y1] = [0, 1];
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) [y0, y1] = [y0 - 1, y1 + 1];
    const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (w - pad.l - pad.r);
    const Y = (y) => h - pad.b - ((y - y0) / (y1 - y0)) * (h - pad.t - pad.b);
    const svg = svgEl("svg", { class: "chart", viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: "img", "aria-label": opts.label || "chart" });
    svg.append(svgEl("line", { class: "axis", x1: pad.l, y1: h - pad.b, x2: w - pad.r, y2: h - pad.b }));
    svg.append(svgEl("line", { class: "axis", x1: pad.l, y1: pad.t, x2: pad.l, y2: h - pad.b }));
    for (const y of [y0, (y0 + y1) / 2, y1]) svg.append(svgEl("text", { x: pad.l - 4, y: Y(y) + 3, "text-anchor": "end" }, fmtNum(y)));
    svg.append(svgEl("text", { x: pad.l, y: h - 6 }, opts.xLabel ? opts.xLabel(x0) : fmtNum(x0)));
    svg.append(svgEl("text", { x: w - pad.r, y: h - 6, "text-anchor": "end" }, opts.xLabel ? opts.xLabel(x1) : fmtNum(x1)));
    for (const s of series) {
      if (!s.points.length) continue;
      const d = s.points.map((p, i) => (i ? "L" : "M") + X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1)).join(" ");
      svg.append(svgEl("path", { class: s.cls, d }));
      if (s.dots !== false) for (const p of s.points) svg.append(svgEl("circle", { class: s.cls, cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: 2.6 }));
    }
    for (const m of opts.markers || []) {
      svg.append(svgEl("line", { class: "decided", x1: X(m.x), y1: pad.t, x2: X(m.x), y2: h - pad.b }));
      svg.append(svgEl("text", { x: X(m.x) + 3, y: pad.t + 9 }, m.label));
    }
    return svg;
  }

  function canaryPage() {
    const analyses = [];
    const traffic = [];
    let started = 0;
    let finished = false;
    const since = (at) => (at - started) / 1000;
    function onEvent(ev) {
      if (ev.type === "run_started") started = ev.recorded_at;
      if (ev.type === "analysis") analyses.push(ev);
      if (ev.type === "traffic") traffic.push(ev);
      if (ev.type === "run_finished") finished = true;
    }
    function renderRoutes() {
      const byStep = new Map();
      for (const t of traffic) {
        if (!byStep.has(t.step)) byStep.set(t.step, []);
        byStep.get(t.step).push(t);
      }
      const state = $("route-state");
      const weights = $("weights");
      if (!byStep.size) {
        state.replaceChildren(el("p", { class: "muted" }, "No traffic has moved yet."));
        weights.replaceChildren();
        return;
      }
      state.replaceChildren();
      weights.replaceChildren();
      for (const [name, moves] of byStep) {
        const last = moves[moves.length - 1].route;
        const active = last.weight === 100 ? last.candidate : last.stable;
        const other = last.weight === 100 ? last.stable : last.candidate;
        state.append(
          el("h3", {}, el("code", {}, name)),
          el(
            "div",
            { class: "state", "data-step": name },
            el("div", { "data-role": "active" }, el("b", {}, "active"), active, ` (${last.weight === 100 ? 100 : 100 - last.weight}%)`),
            el("div", { "data-role": "candidate" }, el("b", {}, last.weight === 100 ? "previous (kept)" : "preview / canary"), other, ` (${last.weight === 100 ? 0 : last.weight}%)`),
            el("div", { "data-role": "route" }, el("b", {}, "route"), last.matching || (last.weight ? `${last.weight}% by weight` : "all to the active version"))
          )
        );
        // The weight over time: a step function from the run's start to now (or its end).
        const points = [[Math.max(0, since(moves[0].recorded_at) - 1), 0]];
        for (const m of moves) {
          const x = since(m.recorded_at);
          points.push([x, points[points.length - 1][1]], [x, m.route.weight]);
        }
        const end = finished ? points[points.length - 1][0] : Math.max(points[points.length - 1][0], (Date.now() - started) / 1000);
        points.push([end, points[points.length - 1][1]]);
        const markers = analyses.filter((a) => a.step === name).map((a) => ({ x: since(a.recorded_at), label: a.verdict.outcome }));
        weights.append(
          el(
            "div",
            { class: "weight-chart", "data-step": name },
            el("div", { class: "legend" }, el("code", {}, name), el("span", {}, `% of traffic to ${last.candidate} by seconds since the run started; dashed: verdicts`)),
            chart([{ cls: "weight", points, dots: false }], { yRange: [0, 100], markers, label: "traffic weight over time", xLabel: (x) => fmtNum(x) + " s" })
          )
        );
      }
    }
    function renderAnalyses() {
      const box = $("analyses");
      $("no-analysis").hidden = analyses.length > 0;
      for (const old of box.querySelectorAll(".analysis")) old.remove();
      analyses.forEach((a, i) => {
        const v = a.verdict;
        const metrics = v.metrics.map((m) => {
          const e = m.evidence;
          const outcome = typeof m.outcome === "string" ? m.outcome : Object.keys(m.outcome)[0];
          const why = typeof m.outcome === "string" ? "" : Object.values(m.outcome)[0];
          const cls = outcome === "pass" ? "succeeded" : outcome === "high" || outcome === "low" ? "failed" : "waiting";
          const dl = el("dl", {});
          const add = (k, v) => v !== "" && v !== null && v !== undefined && dl.append(el("dt", {}, k), el("dd", {}, v));
          add("effect", `${fmtNum(e.shift)} (${e.scale.replace(/_/g, " ")})`);
          add("interval", `[${fmtNum(e.interval[0])}, ${fmtNum(e.interval[1])}]`);
          add("canary / baseline", fmtNum(e.ratio));
          add("statistic", e.statistic);
          add("decision", e.decision + (e.at_horizon ? " (at the horizon)" : ""));
          add("thresholds", e.thresholds);
          add("traffic", e.traffic);
          add("points", `baseline ${e.baseline.length}, canary ${e.canary.length}; dropped ${e.dropped[0]}/${e.dropped[1]}, unmatched ${e.unmatched[0]}/${e.unmatched[1]}`);
          add("why", why);
          return el(
            "div",
            { class: "metric", "data-metric": m.metric.name },
            el("h3", {}, m.metric.name, el("span", { class: "badge st-" + cls }, outcome.replace(/_/g, " "))),
            el("div", { class: "legend" }, el("span", {}, el("i", { class: "b" }), "baseline"), el("span", {}, el("i", { class: "c" }), "canary")),
            chart(
              [
                { cls: "baseline", points: e.baseline.map((y, j) => [j + 1, y]) },
                { cls: "canary", points: e.canary.map((y, j) => [j + 1, y]) },
              ],
              { label: m.metric.name + ": baseline and canary", xLabel: (x) => "point " + fmtNum(x) }
            ),
            dl
          );
        });
        box.append(
          el(
            "div",
            { class: "analysis", "data-index": i },
            el("h3", {}, badge(v.outcome === "pass" ? "succeeded" : v.outcome === "fail" ? "failed" : "waiting"), " ", el("code", {}, a.step), ` ${v.outcome}, score ${fmtNum(v.score)}: ${v.reason}`),
            el("p", { class: "muted" }, `decided ${fmtDur(Math.max(0, since(a.recorded_at)))} after the run started (${fmtTime(a.recorded_at)})`),
            el("div", { class: "metrics" }, ...metrics)
          )
        );
      });
    }
    follow(onEvent, () => {
      renderRoutes();
      renderAnalyses();
    });
  }

  if (body.dataset.page === "list") listPage();
  else if (body.dataset.page === "run") runPage();
  else if (body.dataset.page === "canary") canaryPage();
})();
