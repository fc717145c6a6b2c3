"""The information limit behind issue #13's detection targets (see docs/PERFORMANCE.md).

An oracle judge: the best constant (Pocock) boundary over one-minute looks, calibrated by simulation to exactly
the false-positive rate allowed, on Gaussian noise with no tails, spikes or lingering, for one metric. Nothing a
real judge can do beats it on these data; a real judge also has to survive heavy tails, spikes, gaps and
dependence, which only ever costs time.

Run: pip install numpy && python3 docs/analysis/information_limit.py   (about a minute; fixed seeds)
"""
import numpy as np

LOOKS = 55  # one look a minute up to the horizon


def first_crossings(z, c):
    hit = z >= c
    return np.where(hit.any(1), hit.argmax(1) + 1, 10**6)


def best_boundary(null, alt, alpha, first_looks):
    """The first look and constant boundary (one-sided level alpha over all looks) with the smallest median time
    to detect; returns (median minutes, first look, boundary)."""
    best = None
    for n0 in first_looks:
        c = np.quantile(null[:, n0 - 1:].max(1), 1 - alpha)
        alt_from = alt.copy()
        alt_from[:, : n0 - 1] = -np.inf
        median = np.median(first_crossings(alt_from, c))
        if best is None or median < best[0]:
            best = (median, n0, c)
    return best


def latency(rng, runs, effect, known_variance):
    sd = 0.1 * np.sqrt(2)  # 10% noise per point in each group, paired log-ratios
    d = rng.normal(effect, sd, (runs, LOOKS))
    n = np.arange(1, LOOKS + 1)
    s = np.cumsum(d, 1)
    if known_variance:
        return s / (sd * np.sqrt(n))
    m = s / n
    var = (np.cumsum(d * d, 1) - n * m * m) / np.maximum(n - 1, 1)
    z = m / np.sqrt(np.maximum(var, 1e-300) / n)
    z[:, 0] = -np.inf
    return z


def counts(rng, runs, baseline_rate, canary_rate, ratio):
    q = canary_rate / baseline_rate
    p0 = q / (1 + q)
    b = np.cumsum(rng.poisson(baseline_rate, (runs, LOOKS)), 1)
    c = np.cumsum(rng.poisson(canary_rate * ratio, (runs, LOOKS)), 1)
    t = b + c
    return (c - t * p0) / np.sqrt(np.maximum(t * p0 * (1 - p0), 1e-9))


def main():
    rng = np.random.default_rng(13)
    print("latency +10% at 10% noise, one-minute looks up to 55 min: median minutes to detect")
    for known in (True, False):
        null = latency(rng, 200_000, 0.0, known)
        alt = latency(rng, 100_000, np.log(1.1), known)
        for alpha in (0.01, 0.02):
            median, n0, c = best_boundary(null, alt, alpha, range(2, 21))
            label = "known variance" if known else "estimated variance"
            print(f"  {label:18} one-sided alpha {alpha}: {median:.0f} min (looks from minute {n0}, boundary {c:.2f})")
    print("errors x2, Poisson, dispersion known to be 1: median minutes to detect")
    for name, (b, c) in {"10 a minute each, equal traffic": (10, 10), "10/90 (2 and 18 a minute)": (18, 2)}.items():
        null = counts(rng, 200_000, b, c, 1.0)
        alt = counts(rng, 100_000, b, c, 2.0)
        for alpha in (0.01, 0.02):
            median, n0, cc = best_boundary(null, alt, alpha, range(1, 5))
            print(f"  {name:32} one-sided alpha {alpha}: {median:.0f} min (boundary {cc:.2f})")


if __name__ == "__main__":
    main()
