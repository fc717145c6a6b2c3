//! How fast and how reliably the judges catch regressions, and how often they cry wolf: a simulation.
//!
//! Each run simulates 180 one-minute points per group: a latency level (mean 100, noise 5% per point) and an error
//! count (Poisson, 10 per minute), the canary's scaled by the effect under test. Optionally a load component shared
//! by both groups moves them together (a log-AR(1) with φ = 0.95 and a stationary sd of 0.25 on latency, and the same
//! factor on the error rate), as traffic peaks do. The analysis has both metrics (direction: increase).
//!
//! - **Classic** (Kayenta's schedule): judged on all data so far at 60, 120 and 180 minutes; detection = the first
//!   failing judgement.
//! - **Sequential**: judged every minute from the first; stops at the first conclusive verdict, as
//!   `Analysis::every` does (a pass ends the analysis, so a regression it then misses is not detected).
//!
//! Then the time to detect errors ×2 at other error volumes. Printed: detection rate and time to detect (median and 90th percentile of detected runs) per effect, and the
//! false-positive rate over A/A runs, with and without shared load. The classic judge is the baseline of the ratios.
//!
//! Run: `cargo bench --bench analysis` (`GANTRY_RUNS=500,4000` sets the runs per effect and per A/A cell).
#![allow(clippy::print_stdout)] // The bench prints the tables docs/PERFORMANCE.md records.

use std::time::{Duration, Instant, UNIX_EPOCH};

use gantry::core::analysis::{ClassicJudge, Direction, Judge, Metric, MetricData, Outcome, SequentialJudge, Series};

const MINUTES: usize = 180;

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

    fn poisson(&mut self, lambda: f64) -> f64 {
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

#[derive(Clone, Copy)]
enum Effect {
    None,
    Latency(f64),
    Errors(f64),
}

/// One run's data: (baseline latency, canary latency, baseline errors, canary errors).
fn simulate(rng: &mut Rng, effect: Effect, load: bool) -> [Series; 4] {
    simulate_at(rng, effect, load, 10.0)
}

fn simulate_at(rng: &mut Rng, effect: Effect, load: bool, errors_per_minute: f64) -> [Series; 4] {
    let at = |t: usize| UNIX_EPOCH + Duration::from_secs(60 * t as u64);
    let (lat, err) = match effect {
        Effect::None => (1.0, 1.0),
        Effect::Latency(x) => (1.0 + x, 1.0),
        Effect::Errors(x) => (1.0, 1.0 + x),
    };
    let mut level = 0.0f64;
    let (phi, sd) = (0.95f64, 0.25f64);
    let mut out: [Vec<(std::time::SystemTime, f64)>; 4] = Default::default();
    for t in 0..MINUTES {
        if load {
            level = phi * level + sd * (1.0 - phi * phi).sqrt() * rng.normal();
        }
        let factor = level.exp();
        out[0].push((at(t), 100.0 * factor * (1.0 + 0.05 * rng.normal())));
        out[1].push((at(t), 100.0 * lat * factor * (1.0 + 0.05 * rng.normal())));
        out[2].push((at(t), rng.poisson(errors_per_minute * factor)));
        out[3].push((at(t), rng.poisson(errors_per_minute * err * factor)));
    }
    out.map(Series::new)
}

fn metrics() -> [Metric; 2] {
    [Metric::new("latency", "q", Direction::Increase), Metric::new("errors", "q", Direction::Increase).counts()]
}

fn judge_at(judge: &dyn Judge, data: &[Series; 4], minutes: usize) -> Outcome {
    let cut = |s: &Series| Ok(Series::new(s.points[..minutes].to_vec()));
    let [latency, errors] = metrics();
    judge
        .judge(&[
            MetricData::new(latency, ("b".into(), "c".into()), cut(&data[0]), cut(&data[1])),
            MetricData::new(errors, ("b".into(), "c".into()), cut(&data[2]), cut(&data[3])),
        ])
        .outcome
}

/// The minute of the first failing judgement, if any, for each judge's schedule.
fn detect_classic(data: &[Series; 4]) -> Option<usize> {
    let judge = ClassicJudge::new();
    [60, 120, 180].into_iter().find(|&t| judge_at(&judge, data, t) == Outcome::Fail)
}

fn detect_sequential(data: &[Series; 4]) -> Option<usize> {
    let judge = SequentialJudge::new();
    for t in 1..=MINUTES {
        match judge_at(&judge, data, t) {
            Outcome::Fail => return Some(t),
            Outcome::Pass => return None,
            Outcome::Inconclusive => {}
        }
    }
    None
}

struct Cell {
    rate: f64,
    median: Option<usize>,
    p90: Option<usize>,
}

fn cell(times: &[Option<usize>]) -> Cell {
    let mut detected: Vec<usize> = times.iter().flatten().copied().collect();
    detected.sort_unstable();
    let pick = |q: f64| (!detected.is_empty()).then(|| detected[((detected.len() - 1) as f64 * q).round() as usize]);
    Cell { rate: detected.len() as f64 / times.len() as f64, median: pick(0.5), p90: pick(0.9) }
}

fn show(t: Option<usize>) -> String {
    t.map_or("-".into(), |t| format!("{t} min"))
}

fn main() {
    let runs: Vec<usize> = std::env::var("GANTRY_RUNS")
        .map(|s| s.split(',').map(|n| n.parse().expect("a number")).collect())
        .unwrap_or_else(|_| vec![500, 4000]);
    let (per_effect, per_aa) = (runs[0], runs[1]);
    let started = Instant::now();
    println!("detection: {per_effect} runs per effect; 180 one-minute points; latency noise 5%, errors 10/min\n");
    println!(
        "| effect | load | classic: detected, median, p90 | sequential: detected, median, p90 | median ×classic |"
    );
    println!("|---|---|---|---|---:|");
    let effects = [
        ("latency +5%", Effect::Latency(0.05)),
        ("latency +10%", Effect::Latency(0.10)),
        ("latency +20%", Effect::Latency(0.20)),
        ("errors +20%", Effect::Errors(0.20)),
        ("errors +50%", Effect::Errors(0.50)),
        ("errors ×2", Effect::Errors(1.00)),
    ];
    let mut seed = 1;
    for load in [false, true] {
        for (name, effect) in effects {
            let mut classic = Vec::with_capacity(per_effect);
            let mut sequential = Vec::with_capacity(per_effect);
            for _ in 0..per_effect {
                seed += 1;
                let data = simulate(&mut Rng(seed), effect, load);
                classic.push(detect_classic(&data));
                sequential.push(detect_sequential(&data));
            }
            let (c, s) = (cell(&classic), cell(&sequential));
            let ratio = match (c.median, s.median) {
                (Some(c), Some(s)) => format!("{:.2}", s as f64 / c as f64),
                _ => "-".into(),
            };
            println!(
                "| {name} | {} | {:.1}%, {}, {} | {:.1}%, {}, {} | {ratio} |",
                if load { "shared" } else { "none" },
                c.rate * 100.0,
                show(c.median),
                show(c.p90),
                s.rate * 100.0,
                show(s.median),
                show(s.p90),
            );
        }
    }
    println!(
        "\nerrors ×2 by error volume (sequential judge, no load; {per_effect} runs each): the information limit\n"
    );
    println!("| errors per minute (baseline) | detected | median | p90 |");
    println!("|---:|---:|---:|---:|");
    for rate in [5.0, 10.0, 30.0, 100.0] {
        let times: Vec<Option<usize>> = (0..per_effect)
            .map(|_| {
                seed += 1;
                detect_sequential(&simulate_at(&mut Rng(seed), Effect::Errors(1.0), false, rate))
            })
            .collect();
        let c = cell(&times);
        println!("| {rate} | {:.1}% | {} | {} |", c.rate * 100.0, show(c.median), show(c.p90));
    }
    println!("\nfalse positives: {per_aa} A/A runs per cell (a run counts once, at its first failing judgement)\n");
    println!("| load | classic (3 looks) | sequential (180 looks) |");
    println!("|---|---:|---:|");
    for load in [false, true] {
        let (mut c, mut s) = (0, 0);
        for _ in 0..per_aa {
            seed += 1;
            let data = simulate(&mut Rng(seed), Effect::None, load);
            c += usize::from(detect_classic(&data).is_some());
            s += usize::from(detect_sequential(&data).is_some());
        }
        println!(
            "| {} | {:.2}% ({c}) | {:.2}% ({s}) |",
            if load { "shared" } else { "none" },
            c as f64 / per_aa as f64 * 100.0,
            s as f64 / per_aa as f64 * 100.0
        );
    }
    println!("\n(simulated in {:.1?})", started.elapsed());
}
