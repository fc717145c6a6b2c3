//! The statistics the judges use: the Mann-Whitney (Wilcoxon rank-sum) test with the Hodges-Lehmann shift and its
//! confidence interval, as R's `wilcox.test(x, y, conf.int = TRUE, exact = FALSE, correct = TRUE)` computes them
//! (which is what Kayenta ports); the normal distribution; IQR outlier fences.

/// The result of a Mann-Whitney test of `x` (canary) against `y` (baseline).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct MannWhitney {
    /// U of `x`: the number of pairs in which `x` is larger (ties count half).
    pub(crate) u: f64,
    /// Two-sided p-value for no shift (normal approximation, tie and continuity corrected).
    pub(crate) p: f64,
    /// The Hodges-Lehmann estimate of the shift `x - y`.
    pub(crate) shift: f64,
    /// Its confidence interval.
    pub(crate) interval: (f64, f64),
}

/// Why the test cannot be computed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum TestError {
    /// A sample is empty.
    Empty,
    /// Every observation is tied: the variance is zero.
    AllTied,
    /// A value is NaN or infinite (the judges drop such points first; this guards the rank loops).
    NotFinite,
}

/// The rank sum of `x - mu` in the combined sample with `y` (ties get their average rank), and the tie term
/// Σ(t³ - t). Both samples sorted ascending: one merge, no sort.
fn rank_sum(mu: f64, x: &[f64], y: &[f64]) -> (f64, f64) {
    let (mut i, mut j, mut position) = (0, 0, 0.0);
    let (mut sum, mut ties) = (0.0, 0.0);
    while i < x.len() || j < y.len() {
        let next_x = x.get(i).map(|v| v - mu);
        let v = match (next_x, y.get(j)) {
            (Some(a), Some(b)) => a.min(*b),
            (Some(a), None) => a,
            (None, Some(b)) => *b,
            (None, None) => break,
        };
        let mut cx = 0.0;
        while i < x.len() && x[i] - mu == v {
            i += 1;
            cx += 1.0;
        }
        let mut cy = 0.0;
        while j < y.len() && y[j] == v {
            j += 1;
            cy += 1.0;
        }
        let t = cx + cy;
        if t == 0.0 {
            break; // Only a NaN compares unequal to itself; `mann_whitney` refuses them, this bounds the loop anyway.
        }
        sum += cx * (position + (t + 1.0) / 2.0);
        ties += t * t * t - t;
        position += t;
    }
    (sum, ties)
}

/// R's `wdiff`: the standardised rank-sum of `x - mu` against `y`, minus `zq`. Decreasing in `mu`. Both sorted.
fn wilcoxon_diff(mu: f64, zq: f64, x: &[f64], y: &[f64], continuity: bool) -> Result<f64, TestError> {
    let (nx, ny) = (x.len() as f64, y.len() as f64);
    let (rank_sum, ties) = rank_sum(mu, x, y);
    let dz = rank_sum - nx * (nx + 1.0) / 2.0 - nx * ny / 2.0;
    let correction = if continuity && dz != 0.0 { dz.signum() * 0.5 } else { 0.0 };
    let n = nx + ny;
    let sigma = (nx * ny / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)))).sqrt();
    if sigma == 0.0 || !sigma.is_finite() {
        return Err(TestError::AllTied);
    }
    Ok((dz - correction) / sigma - zq)
}

/// The `mu` at which `wilcoxon_diff(mu, zq)` crosses zero, within `[lo, hi]` (bisection; the function is monotone).
fn root(zq: f64, x: &[f64], y: &[f64], lo: f64, hi: f64) -> Result<f64, TestError> {
    let f = |mu: f64| wilcoxon_diff(mu, zq, x, y, true);
    if f(lo)? <= 0.0 {
        return Ok(lo);
    }
    if f(hi)? >= 0.0 {
        return Ok(hi);
    }
    let (mut a, mut b) = (lo, hi);
    for _ in 0..200 {
        let mid = a + (b - a) / 2.0;
        if f(mid)? > 0.0 {
            a = mid
        } else {
            b = mid
        }
        if (b - a).abs() <= 1e-10 * (1.0 + mid.abs()) {
            break;
        }
    }
    // The rank statistic only changes at pairwise differences `x_i - y_j`, so the root is one of them: snap to it,
    // or discrete data (counts) leave it a rounding error away, which a strict comparison would take for a shift.
    let found = a + (b - a) / 2.0;
    let nearest = x
        .iter()
        .filter_map(|xi| {
            // The y nearest to xi - found, by binary search in the sorted y.
            let target = xi - found;
            let k = y.partition_point(|v| *v < target);
            [k.checked_sub(1), Some(k)]
                .into_iter()
                .flatten()
                .filter_map(|k| y.get(k))
                .map(|yj| xi - yj)
                .min_by(|p, q| (p - found).abs().total_cmp(&(q - found).abs()))
        })
        .min_by(|p, q| (p - found).abs().total_cmp(&(q - found).abs()))
        .unwrap_or(found);
    Ok(if (nearest - found).abs() <= 1e-8 * (1.0 + found.abs()) { nearest } else { found })
}

/// The Mann-Whitney test of `x` against `y` with a `confidence` interval (0.98 for Kayenta's judge).
pub(crate) fn mann_whitney(x: &[f64], y: &[f64], confidence: f64) -> Result<MannWhitney, TestError> {
    if x.is_empty() || y.is_empty() {
        return Err(TestError::Empty);
    }
    if !(x.iter().chain(y).all(|v| v.is_finite()) && confidence > 0.0 && confidence < 1.0) {
        return Err(TestError::NotFinite);
    }
    let (mut x, mut y) = (x.to_vec(), y.to_vec());
    x.sort_by(f64::total_cmp);
    y.sort_by(f64::total_cmp);
    let (x, y) = (x.as_slice(), y.as_slice());
    let nx = x.len() as f64;
    let z0 = wilcoxon_diff(0.0, 0.0, x, y, true)?;
    let u = rank_sum(0.0, x, y).0 - nx * (nx + 1.0) / 2.0;
    let p = (2.0 * normal_cdf(-z0.abs())).min(1.0);
    let (lo, hi) = (x[0] - y[y.len() - 1], x[x.len() - 1] - y[0]);
    let zq = normal_quantile((1.0 - confidence) / 2.0); // negative
    let interval = (root(-zq, x, y, lo, hi)?, root(zq, x, y, lo, hi)?);
    let shift = root(0.0, x, y, lo, hi)?;
    Ok(MannWhitney { u, p, shift, interval })
}

/// The long-run variance of a series whose points may be autocorrelated: the larger of Newey-West's estimate
/// (Bartlett weights, bandwidth ⌊√n⌋) and an AR(1) plug-in, never below the plain sample variance. For independent
/// points it is a little above the sample variance (the estimates' own noise only ever widens it); for noise that
/// lingers (a slow pod, a warming cache) it grows as the variance of their mean does.
pub(crate) fn long_run_variance(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 2 {
        return 0.0;
    }
    let variance = newey_west(values);
    let m = mean(values);
    let plain = values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n as f64 - 1.0);
    // With few points Newey-West's short bandwidth misses noise that lingers long; an AR(1) plug-in (its
    // coefficient between 0 and 0.9) covers that case. (Correcting the coefficient for its small-sample bias
    // inflated independent noise too, and cost a minute of detection for little gain.)
    let rho = lag1_autocorrelation(values).clamp(0.0, 0.9);
    let ar1 = plain * (1.0 + rho) / (1.0 - rho);
    variance.max(plain).max(ar1)
}

/// Newey-West's long-run variance alone (Bartlett weights, bandwidth ⌊√n⌋): about the variance for independent
/// points, with no floor; 0 for fewer than two points.
pub(crate) fn newey_west(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 2 {
        return 0.0;
    }
    let m = mean(values);
    let gamma = |lag: usize| (lag..n).map(|i| (values[i] - m) * (values[i - lag] - m)).sum::<f64>() / n as f64;
    let lags = ((n as f64).sqrt() as usize).min(n - 1);
    let mut variance = gamma(0);
    for lag in 1..=lags {
        variance += 2.0 * (1.0 - lag as f64 / (lags as f64 + 1.0)) * gamma(lag);
    }
    variance
}

/// The lag-1 autocorrelation of a series in time order (0 for fewer than three points or no variance).
pub(crate) fn lag1_autocorrelation(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 3 {
        return 0.0;
    }
    let m = mean(values);
    let variance: f64 = values.iter().map(|v| (v - m).powi(2)).sum();
    if variance <= 0.0 {
        return 0.0;
    }
    values.windows(2).map(|w| (w[0] - m) * (w[1] - m)).sum::<f64>() / variance
}

/// Φ(z), the standard normal distribution function (W. J. Cody's erfc rational approximations via `erfc`).
pub(crate) fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// The complementary error function, accurate to about 1e-15 (Numerical Recipes' Chebyshev fit, `erfccheb`).
#[allow(clippy::excessive_precision, clippy::unreadable_literal)] // Published coefficients, as printed.
fn erfc(x: f64) -> f64 {
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    const COF: [f64; 28] = [
        -1.3026537197817094,
        6.4196979235649026e-1,
        1.9476473204185836e-2,
        -9.561514786808631e-3,
        -9.46595344482036e-4,
        3.66839497852761e-4,
        4.2523324806907e-5,
        -2.0278578112534e-5,
        -1.624290004647e-6,
        1.303655835580e-6,
        1.5626441722e-8,
        -8.5238095915e-8,
        6.529054439e-9,
        5.059343495e-9,
        -9.91364156e-10,
        -2.27365122e-10,
        9.6467911e-11,
        2.394038e-12,
        -6.886027e-12,
        8.94487e-13,
        3.13092e-13,
        -1.12708e-13,
        3.81e-16,
        7.106e-15,
        -1.523e-15,
        -9.4e-17,
        1.21e-16,
        -2.8e-17,
    ];
    let t = 2.0 / (2.0 + x);
    let ty = 4.0 * t - 2.0;
    let (mut d, mut dd) = (0.0, 0.0);
    for &c in COF[1..].iter().rev() {
        let tmp = d;
        d = ty * d - dd + c;
        dd = tmp;
    }
    t * (-x * x + 0.5 * (COF[0] + ty * d) - dd).exp()
}

/// Φ⁻¹(p), the standard normal quantile (Acklam's rational approximation refined by one Halley step; about 1e-15).
#[allow(clippy::excessive_precision, clippy::unreadable_literal)] // Published coefficients, as printed.
pub(crate) fn normal_quantile(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383577518672690e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] =
        [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    let low = 0.02425;
    let x = if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    // One step of Halley's method on Φ(x) - p.
    let e = normal_cdf(x) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

/// The values inside the IQR fences Kayenta uses (`factor` 3, reduced sensitivity): below
/// `min(P1, Q1 - factor·IQR)` or above `max(P99, Q3 + factor·IQR)` is an outlier. Percentiles as R's type 7.
pub(crate) fn without_outliers(values: &[f64], factor: f64) -> Vec<f64> {
    if values.len() < 4 {
        return values.to_vec();
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let h = (sorted.len() - 1) as f64 * p;
        let (lo, frac) = (h.floor() as usize, h - h.floor());
        sorted[lo] + frac * (sorted[(lo + 1).min(sorted.len() - 1)] - sorted[lo])
    };
    let (q1, q3) = (pct(0.25), pct(0.75));
    let iqr = q3 - q1;
    let (lower, upper) = ((q1 - factor * iqr).min(pct(0.01)), (q3 + factor * iqr).max(pct(0.99)));
    values.iter().copied().filter(|v| *v >= lower && *v <= upper).collect()
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; about 1e-15 relative).
#[allow(clippy::excessive_precision, clippy::unreadable_literal)] // Published coefficients, as printed.
pub(crate) fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.99999999999980993,
        676.5203681218851,
        -1259.1392167224028,
        771.32342877765313,
        -176.61502916214059,
        12.507343278686905,
        -0.13857109526572012,
        9.9843695780195716e-6,
        1.5056327351493116e-7,
    ];
    if x < 0.5 {
        // Reflection.
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// ln B(a, b), the log of the beta function.
pub(crate) fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// The arithmetic mean (NaN for none).
pub(crate) fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn the_normal_distribution() {
        assert!(close(normal_cdf(0.0), 0.5, 1e-15));
        assert!(close(normal_cdf(1.959963984540054), 0.975, 1e-12));
        assert!(close(normal_cdf(-3.0), 0.0013498980316301, 1e-13));
        assert!(close(normal_quantile(0.01), -2.326347874040841, 1e-12));
        assert!(close(normal_quantile(0.975), 1.959963984540054, 1e-12));
        assert!(close(normal_quantile(1e-6), -4.753424308822899, 1e-9));
    }

    /// The example of R's `?wilcox.test` (Hollander & Wolfe, 1973, p. 69). SciPy 1.x,
    /// `mannwhitneyu(x, y, alternative='two-sided', use_continuity=True, method='asymptotic')`, gives U = 58 and
    /// p = 0.13291945818531892; the median of the 81 pairwise differences (the Hodges-Lehmann estimate) is 0.56.
    #[test]
    #[allow(clippy::approx_constant)] // 3.14 is a measurement here, not π.
    fn mann_whitney_agrees_with_scipy_on_a_textbook_example() {
        let x = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30];
        let y = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29];
        let t = mann_whitney(&x, &y, 0.95).unwrap();
        assert_eq!(t.u, 58.0);
        assert!(close(t.p, 0.132_919_458_185_318_92, 1e-12), "{t:?}");
        assert!(close(t.shift, 0.56, 1e-6), "{t:?}");
        // The interval's ends are pairwise differences (the rank statistic only changes there), around the estimate.
        let differences: Vec<f64> = x.iter().flat_map(|a| y.iter().map(move |b| a - b)).collect();
        for end in [t.interval.0, t.interval.1] {
            assert!(differences.iter().any(|d| close(*d, end, 1e-6)), "{end} is not a pairwise difference");
        }
        assert!(t.interval.0 < t.shift && t.shift < t.interval.1, "{t:?}");
        // A wider confidence level gives a wider interval.
        let wider = mann_whitney(&x, &y, 0.98).unwrap();
        assert!(wider.interval.0 <= t.interval.0 && wider.interval.1 >= t.interval.1, "{wider:?}");
        // No shift of a sample against itself.
        let same = mann_whitney(&x, &x, 0.98).unwrap();
        assert!(close(same.shift, 0.0, 1e-6) && same.interval.0 < 0.0 && same.interval.1 > 0.0, "{same:?}");
    }

    #[test]
    fn a_known_shift_is_estimated() {
        let y: Vec<f64> = (0..60).map(|i| 100.0 + f64::from(i % 13) * 1.7 - f64::from(i % 7)).collect();
        let x: Vec<f64> = y.iter().map(|v| v + 10.0).collect();
        let t = mann_whitney(&x, &y, 0.98).unwrap();
        assert!(close(t.shift, 10.0, 0.05), "{t:?}");
        assert!(t.interval.0 > 5.0 && t.interval.1 < 15.0, "{t:?}");
        assert!(t.p < 1e-6);
    }

    #[test]
    fn the_gamma_function() {
        assert!(close(ln_gamma(1.0), 0.0, 1e-14));
        assert!(close(ln_gamma(5.0), 24f64.ln(), 1e-13));
        assert!(close(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln(), 1e-13));
        assert!(close(ln_gamma(100.0), 359.134_205_369_575_4, 1e-9));
        assert!(close(ln_beta(2.0, 3.0), (1.0f64 / 12.0).ln(), 1e-13));
    }

    #[test]
    fn all_tied_and_empty_samples_are_errors() {
        assert_eq!(mann_whitney(&[1.0, 1.0], &[1.0], 0.98), Err(TestError::AllTied));
        assert_eq!(mann_whitney(&[], &[1.0], 0.98), Err(TestError::Empty));
    }

    #[test]
    fn outliers_beyond_the_fences_go() {
        let mut v: Vec<f64> = (0..100).map(f64::from).collect();
        v.push(10_000.0);
        let kept = without_outliers(&v, 3.0);
        assert_eq!(kept.len(), 100);
        assert!(!kept.contains(&10_000.0));
    }
}
