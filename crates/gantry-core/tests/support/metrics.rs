//! Synthetic metrics with known effects: a seeded generator and a `MetricProvider` over it.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use gantry_core::analysis::{Group, MetricError, MetricProvider, MetricQuery, Series};
use gantry_core::async_trait;

/// SplitMix64: small, seeded, good enough for test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// Poisson with mean `lambda` (Knuth; fine for small means).
    pub fn poisson(&mut self, lambda: f64) -> f64 {
        let limit = (-lambda).exp();
        let (mut k, mut p) = (0.0, 1.0);
        loop {
            p *= self.uniform();
            if p <= limit {
                return k;
            }
            k += 1.0;
        }
    }
}

/// How a metric behaves for a version: a latency-like normal, or an error count per interval.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// Normal with this mean and standard deviation.
    Normal { mean: f64, sd: f64 },
    /// Poisson counts with this mean per point.
    Counts { mean: f64 },
}

/// Points of `shape`, one per minute.
pub fn series(rng: &mut Rng, shape: Shape, points: usize) -> Series {
    Series::new(
        (0..points)
            .map(|i| {
                let v = match shape {
                    Shape::Normal { mean, sd } => mean + sd * rng.normal(),
                    Shape::Counts { mean } => rng.poisson(mean),
                };
                (UNIX_EPOCH + Duration::from_secs(60 * i as u64), v)
            })
            .collect(),
    )
}

/// A provider whose metrics are `metric -> version -> shape`; queries name the version as `version:<v>`.
#[derive(Debug)]
pub struct SyntheticProvider {
    shapes: BTreeMap<(String, String), Shape>,
    points: usize,
    seed: AtomicU64,
    /// While set, every query fails as an outage.
    pub down: AtomicBool,
    /// The queries received.
    pub queries: Mutex<Vec<(Group, String)>>,
}

impl SyntheticProvider {
    pub fn new(points: usize) -> Self {
        Self {
            shapes: BTreeMap::new(),
            points,
            seed: AtomicU64::new(7),
            down: AtomicBool::new(false),
            queries: Mutex::default(),
        }
    }

    pub fn shape(mut self, metric: &str, version: &str, shape: Shape) -> Self {
        self.shapes.insert((metric.into(), version.into()), shape);
        self
    }
}

#[async_trait]
impl MetricProvider for SyntheticProvider {
    async fn query(&self, query: &MetricQuery) -> Result<Series, MetricError> {
        self.queries.lock().unwrap().push((query.group, query.query.clone()));
        if self.down.load(Ordering::Relaxed) {
            return Err(MetricError::unavailable("503 Service Unavailable"));
        }
        let version = query.query.split("version:").nth(1).map(|v| v.trim_end_matches('}')).unwrap_or_default();
        let shape = self.shapes.get(&(query.metric.clone(), version.to_owned())).ok_or(MetricError::NoData)?;
        let mut rng = Rng::new(self.seed.fetch_add(1, Ordering::Relaxed));
        Ok(series(&mut rng, *shape, self.points))
    }
}
