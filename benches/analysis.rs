//! How fast and how reliably the judges catch regressions, how often they cry wolf, and how often and how soon they
//! promote a healthy canary: a simulation over scenarios of messy metrics.
//!
//! Each run simulates 180 one-minute points per group of two metrics, both judged for an increase:
//! - **latency**, a level: mean 100, multiplicative noise of 10% per point (5% in the `quiet` scenario);
//! - **errors**, a count: Poisson, 10 per minute in each group at equal traffic (the two groups' 20 per minute split
//!   by the traffic share otherwise).
//!
//! The scenarios change one thing each (see [`Scenario`]): heavy tails, diurnal and shared load, rare spikes, missing
//! points, late points, unequal traffic shares (10/90, 60/40, and 10/90 judged per request), noise that lingers in
//! one group, values that are not numbers.
//!
//! - **Classic** (Kayenta's schedule): judged on all data so far at 60, 120 and 180 minutes; the first failing
//!   judgement detects, the first passing one promotes.
//! - **Sequential**: judged every minute from the first; stops at the first conclusive verdict, as
//!   `Analysis::every` does (a pass promotes, so a regression it then misses is not detected).
//!
//! Printed per scenario: over A/A runs, the false-positive rate of both judges and the share of healthy canaries
//! promoted within 60 minutes, with the median time to promote; over runs with an effect (latency +10%, errors ×2),
//! the detection rate and time to detect (median and 90th percentile of detected runs). Then the time to detect
//! errors ×2 at other error volumes.
//!
//! Run: `cargo bench --bench analysis` (`GANTRY_RUNS=500,4000` sets the runs per effect and per A/A cell;
//! `GANTRY_SCENARIOS=clean,late` picks scenarios by name; `GANTRY_METRIC=latency` or `errors` judges that metric
//! alone; `GANTRY_ALPHA=0.05` sets the sequential judge's alpha).
#![allow(clippy::print_stdout)] // The bench prints the tables docs/PERFORMANCE.md records.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gantry::core::analysis::{ClassicJudge, Direction, Judge, Metric, MetricData, Outcome, SequentialJudge, Series};

const MINUTES: usize = 180;
/// Healthy canaries count as promoted when a judge passes them within this many minutes.
const PROMOTE_BY: usize = 60;

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (((z ^ (z >> 31)) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next(), self.next());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// Student's t with `nu` degrees of freedom, scaled to unit variance.
    fn student(&mut self, nu: f64) -> f64 {
        let chi2: f64 = (0..nu as usize).map(|_| self.normal().powi(2)).sum();
        self.normal() / (chi2 / nu).sqrt() / (nu / (nu - 2.0)).sqrt()
    }

    /// A gamma variate of shape `k` ≥ 1 and mean 1 (Marsaglia and Tsang).
    fn gamma(&mut self, k: f64) -> f64 {
        let d = k - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v > 0.0 && self.next().ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v / k;
            }
        }
    }

    fn poisson(&mut self, lambda: f64) -> f64 {
        if lambda > 50.0 {
            return (lambda + lambda.sqrt() * self.normal()).round().max(0.0);
        }
        let limit = (-lambda).exp();
        let (mut k, mut p) = (0.0, 1.0);
        loop {
            p *= self.next();
            if p <= limit {
                return k;
            }
            k += 1.0;
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Effect {
    None,
    Latency(f64),
    Errors(f64),
}

/// One thing that makes metrics messy; `Clean` has none of them.
#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    /// Independent noise, equal traffic.
    Clean,
    /// Clean, with 5% latency noise instead of 10%.
    Quiet,
    /// Latency noise from Student's t with 3 degrees of freedom; error counts over-dispersed (gamma-Poisson, the
    /// rate varying by 30% from minute to minute, independently in each group).
    HeavyTails,
    /// Load shared by both groups: a log-AR(1) (φ 0.95, sd 0.25) plus a diurnal swing of ±30% (a 6-hour period),
    /// on latency and on the error rate.
    SharedLoad,
    /// Rare spikes in one group at a time: 1% of minutes per group have latency ×3 and 30 extra errors.
    Spikes,
    /// 10% of each group's points missing, independently.
    Missing,
    /// At every look, each group's last 0, 1 or 2 minutes have not arrived yet (independently).
    Late,
    /// The canary takes 10% of the traffic (stated to the judges).
    Share10,
    /// The canary takes 60% of the traffic (stated).
    Share60,
    /// The canary takes 10% of the traffic, judged per request (each group's requests queried, ±5% noise).
    PerRequest10,
    /// Noise that lingers in one group: the canary's latency noise and its error rate follow a log-AR(1) of
    /// coefficient 0.7 (a slow pod, a warming cache).
    Lingering,
    /// 2% of each group's points are NaN, +Inf or -Inf.
    NotFinite,
}

impl Scenario {
    const ALL: [Self; 12] = [
        Self::Clean,
        Self::Quiet,
        Self::HeavyTails,
        Self::SharedLoad,
        Self::Spikes,
        Self::Missing,
        Self::Late,
        Self::Share10,
        Self::Share60,
        Self::PerRequest10,
        Self::Lingering,
        Self::NotFinite,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Clean => "clean",
            Self::Quiet => "quiet",
            Self::HeavyTails => "heavy-tails",
            Self::SharedLoad => "shared-load",
            Self::Spikes => "spikes",
            Self::Missing => "missing",
            Self::Late => "late",
            Self::Share10 => "share-10/90",
            Self::Share60 => "share-60/40",
            Self::PerRequest10 => "per-request-10/90",
            Self::Lingering => "lingering",
            Self::NotFinite => "not-finite",
        }
    }

    /// The canary's share of the traffic.
    fn share(self) -> f64 {
        match self {
            Self::Share10 | Self::PerRequest10 => 0.1,
            Self::Share60 => 0.6,
            _ => 0.5,
        }
    }
}

/// One simulated run: each group's latency and errors (and requests, judged per request), baseline first.
struct Run {
    latency: [Series; 2],
    errors: [Series; 2],
    requests: Option<[Series; 2]>,
}

fn simulate(rng: &mut Rng, scenario: Scenario, effect: Effect, errors_per_minute: f64) -> Run {
    let at = |t: usize| UNIX_EPOCH + Duration::from_secs(60 * t as u64);
    let (lat, err) = match effect {
        Effect::None => (1.0, 1.0),
        Effect::Latency(x) => (1.0 + x, 1.0),
        Effect::Errors(x) => (1.0, 1.0 + x),
    };
    let noise = if scenario == Scenario::Quiet { 0.05 } else { 0.10 };
    let share = scenario.share();
    let (mut load, mut linger) = (0.0f64, 0.0f64);
    let mut out: [Vec<(SystemTime, f64)>; 6] = Default::default();
    for t in 0..MINUTES {
        let factor = if scenario == Scenario::SharedLoad {
            load = 0.95 * load + 0.25 * (1.0 - 0.95f64 * 0.95).sqrt() * rng.normal();
            (load + 0.3 * (2.0 * std::f64::consts::PI * t as f64 / 360.0).sin()).exp()
        } else {
            1.0
        };
        let rho: f64 = 0.7;
        if scenario == Scenario::Lingering {
            linger = rho * linger + (1.0 - rho * rho).sqrt() * rng.normal();
        }
        for group in 0..2 {
            let canary = group == 1;
            let jitter = match scenario {
                Scenario::HeavyTails => rng.student(3.0),
                Scenario::Lingering if canary => linger,
                _ => rng.normal(),
            };
            let spike = scenario == Scenario::Spikes && rng.next() < 0.01;
            let mut latency = 100.0 * factor * (noise * jitter).exp() * if canary { lat } else { 1.0 };
            // Traffic: each group's share of 2 × errors_per_minute (equal traffic: errors_per_minute each).
            let traffic = if canary { share } else { 1.0 - share };
            let mut rate = 2.0 * errors_per_minute * traffic * factor * if canary { err } else { 1.0 };
            match scenario {
                Scenario::HeavyTails => rate *= rng.gamma(1.0 / 0.09),
                Scenario::Lingering if canary => rate *= (0.3 * linger).exp(),
                _ => {}
            }
            let mut errors = rng.poisson(rate);
            if spike {
                latency *= 3.0;
                errors += 30.0;
            }
            let requests = 2000.0 * traffic * factor * (1.0 + 0.05 * rng.normal());
            if scenario == Scenario::Missing && rng.next() < 0.1 {
                continue;
            }
            if scenario == Scenario::NotFinite && rng.next() < 0.02 {
                let bad = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][(rng.next() * 3.0) as usize];
                latency = bad;
                errors = bad;
            }
            out[group].push((at(t), latency));
            out[2 + group].push((at(t), errors));
            out[4 + group].push((at(t), requests));
        }
    }
    let [lb, lc, eb, ec, rb, rc] = out.map(Series::new);
    Run { latency: [lb, lc], errors: [eb, ec], requests: (scenario == Scenario::PerRequest10).then_some([rb, rc]) }
}

fn metrics(scenario: Scenario) -> [Metric; 2] {
    let errors = Metric::new("errors", "q", Direction::Increase);
    let errors = match scenario {
        Scenario::Share10 | Scenario::Share60 => errors.traffic_share(scenario.share()),
        Scenario::PerRequest10 => errors.per_requests("r"),
        _ => errors.counts(),
    };
    [Metric::new("latency", "q", Direction::Increase), errors]
}

/// The judge's outcome on the first `minutes` minutes of `run`, as it would see them at that time.
fn judge_at(judge: &dyn Judge, scenario: Scenario, run: &Run, minutes: usize, rng: &mut Rng) -> Outcome {
    let end = UNIX_EPOCH + Duration::from_secs(60 * minutes as u64);
    // Late points: a group's newest 0 to 2 minutes have not arrived at this look.
    let lags: [u64; 2] =
        if scenario == Scenario::Late { [(rng.next() * 3.0) as u64, (rng.next() * 3.0) as u64] } else { [0, 0] };
    let cut = |s: &Series, group: usize| {
        let end = end - Duration::from_secs(60 * lags[group]);
        Ok(Series::new(s.points.iter().filter(|p| p.0 < end).copied().collect()))
    };
    let [latency, errors] = metrics(scenario);
    let mut errors = MetricData::new(errors, ("b".into(), "c".into()), cut(&run.errors[0], 0), cut(&run.errors[1], 1));
    if let Some(requests) = &run.requests {
        errors = errors.with_requests(cut(&requests[0], 0), cut(&requests[1], 1));
    }
    let latency = MetricData::new(latency, ("b".into(), "c".into()), cut(&run.latency[0], 0), cut(&run.latency[1], 1));
    let data = match std::env::var("GANTRY_METRIC").as_deref() {
        Ok("latency") => vec![latency],
        Ok("errors") => vec![errors],
        _ => vec![latency, errors],
    };
    judge.judge(&data).outcome
}

/// When a judge first failed and first passed a run, on its schedule (it stops at the first of them).
#[derive(Clone, Copy, Default)]
struct Ending {
    failed: Option<usize>,
    passed: Option<usize>,
}

fn classic(scenario: Scenario, run: &Run, rng: &mut Rng) -> Ending {
    let judge = ClassicJudge::new();
    for t in [60, 120, 180] {
        match judge_at(&judge, scenario, run, t, rng) {
            Outcome::Fail => return Ending { failed: Some(t), passed: None },
            Outcome::Pass => return Ending { failed: None, passed: Some(t) },
            Outcome::Inconclusive => {}
        }
    }
    Ending::default()
}

fn sequential(scenario: Scenario, run: &Run, rng: &mut Rng) -> Ending {
    let mut judge = SequentialJudge::new();
    if let Some(alpha) = std::env::var("GANTRY_ALPHA").ok().and_then(|a| a.parse().ok()) {
        judge = judge.alpha(alpha);
    }
    for t in 1..=MINUTES {
        match judge_at(&judge, scenario, run, t, rng) {
            Outcome::Fail => return Ending { failed: Some(t), passed: None },
            Outcome::Pass => return Ending { failed: None, passed: Some(t) },
            Outcome::Inconclusive => {}
        }
    }
    Ending::default()
}

/// The share of runs with a time, and the median and 90th percentile of the times.
struct Cell {
    rate: f64,
    median: Option<usize>,
    p90: Option<usize>,
}

fn cell(times: impl Iterator<Item = Option<usize>>) -> Cell {
    let mut count = 0;
    let mut seen: Vec<usize> = times.inspect(|_| count += 1).flatten().collect();
    seen.sort_unstable();
    let pick = |q: f64| (!seen.is_empty()).then(|| seen[((seen.len() - 1) as f64 * q).round() as usize]);
    Cell { rate: seen.len() as f64 / count.max(1) as f64, median: pick(0.5), p90: pick(0.9) }
}

fn show(t: Option<usize>) -> String {
    t.map_or("-".into(), |t| format!("{t} min"))
}

fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn main() {
    let runs: Vec<usize> = std::env::var("GANTRY_RUNS")
        .map(|s| s.split(',').map(|n| n.parse().expect("a number")).collect())
        .unwrap_or_else(|_| vec![500, 4000]);
    let (per_effect, per_aa) = (runs[0], runs[1]);
    let only: Option<Vec<String>> =
        std::env::var("GANTRY_SCENARIOS").ok().map(|s| s.split(',').map(str::to_owned).collect());
    let scenarios: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|s| only.as_ref().is_none_or(|names| names.iter().any(|n| n == s.name())))
        .collect();
    let started = Instant::now();
    let mut seed = 1;
    println!(
        "healthy canaries: {per_aa} A/A runs per scenario; false positive = a failing judgement before any pass; \
         promoted = passed within {PROMOTE_BY} min\n"
    );
    println!(
        "| scenario | classic: false positives | classic: promoted | sequential: false positives, median minute | sequential: promoted | sequential: time to promote, median / p90 |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for &scenario in &scenarios {
        let (mut c, mut s) = (Vec::with_capacity(per_aa), Vec::with_capacity(per_aa));
        for _ in 0..per_aa {
            seed += 1;
            let mut rng = Rng(seed);
            let run = simulate(&mut rng, scenario, Effect::None, 10.0);
            c.push(classic(scenario, &run, &mut rng));
            s.push(sequential(scenario, &run, &mut rng));
        }
        let false_positives = |e: &[Ending]| cell(e.iter().map(|e| e.failed));
        let promoted = |e: &[Ending]| cell(e.iter().map(|e| e.passed.filter(|t| *t <= PROMOTE_BY)));
        let (cf, cp, sf, sp) = (false_positives(&c), promoted(&c), false_positives(&s), promoted(&s));
        println!(
            "| {} | {} | {} | {}, {} | {} | {} / {} |",
            scenario.name(),
            percent(cf.rate),
            percent(cp.rate),
            percent(sf.rate),
            show(sf.median),
            percent(sp.rate),
            show(sp.median),
            show(sp.p90),
        );
    }
    println!(
        "\nregressions: {per_effect} runs per scenario and effect; detected = a failing judgement before any pass\n"
    );
    println!(
        "| scenario | effect | classic: detected, median | sequential: detected, median, p90 | sequential: promoted instead |"
    );
    println!("|---|---|---:|---:|---:|");
    for &scenario in &scenarios {
        for (name, effect) in [("latency +10%", Effect::Latency(0.10)), ("errors ×2", Effect::Errors(1.0))] {
            let (mut c, mut s) = (Vec::with_capacity(per_effect), Vec::with_capacity(per_effect));
            for _ in 0..per_effect {
                seed += 1;
                let mut rng = Rng(seed);
                let run = simulate(&mut rng, scenario, effect, 10.0);
                c.push(classic(scenario, &run, &mut rng));
                s.push(sequential(scenario, &run, &mut rng));
            }
            let (cd, sd) = (cell(c.iter().map(|e| e.failed)), cell(s.iter().map(|e| e.failed)));
            let missed = cell(s.iter().map(|e| e.passed));
            println!(
                "| {} | {name} | {}, {} | {}, {}, {} | {} |",
                scenario.name(),
                percent(cd.rate),
                show(cd.median),
                percent(sd.rate),
                show(sd.median),
                show(sd.p90),
                percent(missed.rate),
            );
        }
    }
    if only.is_none() {
        println!(
            "\nerrors ×2 by error volume (sequential judge, clean, equal traffic; {per_effect} runs each): the information limit\n"
        );
        println!("| errors per minute per group | detected | median | p90 |");
        println!("|---:|---:|---:|---:|");
        for volume in [5.0, 10.0, 30.0, 100.0] {
            let times: Vec<Option<usize>> = (0..per_effect)
                .map(|_| {
                    seed += 1;
                    let mut rng = Rng(seed);
                    let run = simulate(&mut rng, Scenario::Clean, Effect::Errors(1.0), volume);
                    sequential(Scenario::Clean, &run, &mut rng).failed
                })
                .collect();
            let c = cell(times.into_iter());
            println!("| {volume} | {} | {} | {} |", percent(c.rate), show(c.median), show(c.p90));
        }
    }
    println!("\n(simulated in {:.1?})", started.elapsed());
}
