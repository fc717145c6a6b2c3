//! Lining the two groups' series up in time before any test: only intervals both groups have are compared, so a gap
//! in one group, or a last interval that has arrived for one group and not yet for the other, cannot read as a
//! change.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use super::metric::{Exposure, Series};

/// One interval both groups have: their counts, and their exposure (requests, or the traffic share).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Interval {
    /// When it began (milliseconds since the epoch).
    pub(crate) at: u128,
    pub(crate) baseline: f64,
    pub(crate) canary: f64,
    pub(crate) baseline_exposure: f64,
    pub(crate) canary_exposure: f64,
}

/// The intervals both groups have, and the usable points of each left without a partner (no point of the other group
/// at that time, or, judged per request, no requests there).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Aligned {
    pub(crate) intervals: Vec<Interval>,
    pub(crate) unmatched: (usize, usize),
    /// For the routed share: the lowest and highest share of the intervals kept, or `None` when no share was
    /// recorded and equal traffic was assumed.
    pub(crate) routed: Option<(f64, f64)>,
}

impl Aligned {
    /// The canary's exposure over the baseline's, summed over the intervals: 1 for equal traffic.
    pub(crate) fn exposure_ratio(&self) -> f64 {
        let (b, c) =
            self.intervals.iter().fold((0.0, 0.0), |(b, c), i| (b + i.baseline_exposure, c + i.canary_exposure));
        if b > 0.0 { c / b } else { f64::NAN }
    }

    /// The assumption about traffic, in words, for the verdict's `traffic` field.
    pub(crate) fn describe(&self, exposure: &Exposure) -> String {
        let assumption = match (exposure, self.routed) {
            (Exposure::Routed, None) => "equal traffic assumed (no routed share was recorded)".to_owned(),
            (Exposure::Routed, Some((lo, hi))) if (hi - lo).abs() < 1e-9 => {
                format!("the share routed to the canary: {:.1}%", lo * 100.0)
            }
            (Exposure::Routed, Some((lo, hi))) => {
                format!("the share routed to the canary: {:.1}% to {:.1}%", lo * 100.0, hi * 100.0)
            }
            (other, _) => other.describe(),
        };
        format!("{assumption}; canary/baseline exposure {:.3}", self.exposure_ratio())
    }
}

/// How many intervals of the series' resolution the times (in order) span, first to last, gaps included, but never
/// more than twice the times there are: a point missing here and there does not delay a horizon counted in
/// intervals, and a few points far apart do not reach it. The resolution is the median step between consecutive
/// times (one jittered timestamp does not shrink it).
pub(crate) fn covered(times: &[u128]) -> usize {
    match (times.first(), times.last(), step(times)) {
        (Some(first), Some(last), Some(step)) => (((last - first) / step) as usize + 1).min(2 * times.len()),
        _ => times.len().min(1),
    }
}

/// The median positive step between consecutive times (in order), if any.
pub(crate) fn step(times: &[u128]) -> Option<u128> {
    let mut steps: Vec<u128> = times.windows(2).map(|w| w[1].saturating_sub(w[0])).filter(|d| *d > 0).collect();
    steps.sort_unstable();
    steps.get(steps.len().saturating_sub(1) / 2).copied()
}

fn key(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

/// A series' finite points by time (milliseconds since the epoch); a repeated time keeps its last point.
pub(crate) fn finite(series: &Series) -> BTreeMap<u128, f64> {
    series.points.iter().filter(|(_, v)| v.is_finite()).map(|(t, v)| (key(*t), *v)).collect()
}

/// How many of a series' points are NaN or infinite.
pub(crate) fn not_finite(series: &Series) -> usize {
    series.points.iter().filter(|p| !p.1.is_finite()).count()
}

/// The counts of both groups at the times both have (and, judged per request, both groups' requests too, and more
/// than none; judged against the routed share, a share strictly between 0 and 1 in effect), with each interval's
/// exposure as `exposure` says.
pub(crate) fn counts(
    baseline: &Series,
    canary: &Series,
    exposure: &Exposure,
    requests: Option<(&Series, &Series)>,
    routed: &[(SystemTime, f64)],
) -> Aligned {
    // A count below zero is not a count: such points are left out like non-finite ones.
    let counted = |s: &Series| -> BTreeMap<u128, f64> { finite(s).into_iter().filter(|(_, v)| *v >= 0.0).collect() };
    let (b, c) = (counted(baseline), counted(canary));
    let (rb, rc) = match requests {
        Some((rb, rc)) => (Some(finite(rb)), Some(finite(rc))),
        None => (None, None),
    };
    let share = match exposure {
        Exposure::CanaryShare(share) => *share,
        _ => 0.5,
    };
    let by_route = matches!(exposure, Exposure::Routed) && !routed.is_empty();
    // An interval is judged at a routed share only if the share held over it, whether its time stamps its start
    // or its end (Prometheus' `increase` stamps the end): the same share one step before and one step after.
    let resolution = step(&b.keys().copied().collect::<Vec<_>>()).unwrap_or(60_000);
    let mut aligned = Aligned::default();
    for (t, bv) in &b {
        let Some(cv) = c.get(t) else { continue };
        let exposure = match (&rb, &rc) {
            (Some(rb), Some(rc)) => match (rb.get(t), rc.get(t)) {
                (Some(nb), Some(nc)) if *nb > 0.0 && *nc > 0.0 => (*nb, *nc),
                _ => continue,
            },
            _ if by_route => {
                // None yet, a change under way, all or nothing, or a change within a step: nothing to compare.
                let at = |ms: u128| UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
                let share = |ms: u128| super::routing::share_at(routed, at(ms));
                let (before, now, after) =
                    (share(t.saturating_sub(resolution)), share(*t), share(t + resolution.saturating_sub(1)));
                let held = before.is_some() && before == now && now == after;
                match now {
                    Some(share) if held && share > 0.0 && share < 1.0 => {
                        let (lo, hi) = aligned.routed.unwrap_or((share, share));
                        aligned.routed = Some((lo.min(share), hi.max(share)));
                        (1.0 - share, share)
                    }
                    _ => continue,
                }
            }
            _ => (1.0 - share, share),
        };
        aligned.intervals.push(Interval {
            at: *t,
            baseline: *bv,
            canary: *cv,
            baseline_exposure: exposure.0,
            canary_exposure: exposure.1,
        });
    }
    let n = aligned.intervals.len();
    aligned.unmatched = (b.len() - n, c.len() - n);
    aligned
}

/// The finite level points of both groups within the time range both cover (from the later first point to the
/// earlier last one; points sharing a time all kept), and how many each lost.
pub(crate) fn levels(baseline: &Series, canary: &Series) -> (Vec<f64>, Vec<f64>, (usize, usize)) {
    let finite = |s: &Series| -> Vec<(u128, f64)> {
        s.points.iter().filter(|(_, v)| v.is_finite()).map(|(t, v)| (key(*t), *v)).collect()
    };
    let (b, c) = (finite(baseline), finite(canary));
    let span = |points: &[(u128, f64)]| {
        let times = points.iter().map(|p| p.0);
        (times.clone().min(), times.max())
    };
    let ((Some(b0), Some(b1)), (Some(c0), Some(c1))) = (span(&b), span(&c)) else {
        return (b.iter().map(|p| p.1).collect(), c.iter().map(|p| p.1).collect(), (0, 0));
    };
    let (first, last) = (b0.max(c0), b1.min(c1));
    let within = |points: &[(u128, f64)]| {
        points.iter().filter(|(t, _)| (first..=last).contains(t)).map(|p| p.1).collect::<Vec<f64>>()
    };
    let (bw, cw) = (within(&b), within(&c));
    let unmatched = (b.len() - bw.len(), c.len() - cw.len());
    (bw, cw, unmatched)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn series(points: &[(u64, f64)]) -> Series {
        Series::new(points.iter().map(|(m, v)| (UNIX_EPOCH + Duration::from_secs(60 * m), *v)).collect())
    }

    #[test]
    fn only_the_intervals_both_groups_have_are_compared() {
        // The canary lacks minute 2 (a gap); the baseline's minute 4 has not arrived yet (lag).
        let b = series(&[(0, 10.0), (1, 11.0), (2, 9.0), (3, 10.0)]);
        let c = series(&[(0, 10.0), (1, 12.0), (3, 8.0), (4, 30.0)]);
        let a = counts(&b, &c, &Exposure::Equal, None, &[]);
        assert_eq!(
            a.intervals.iter().map(|i| (i.baseline, i.canary)).collect::<Vec<_>>(),
            [(10.0, 10.0), (11.0, 12.0), (10.0, 8.0)]
        );
        assert_eq!(a.unmatched, (1, 1));
        assert_eq!(a.exposure_ratio(), 1.0);
        let share = counts(&b, &c, &Exposure::CanaryShare(0.1), None, &[]);
        assert!((share.exposure_ratio() - 0.1 / 0.9).abs() < 1e-12);
        // Per request: minutes without requests in either group are left out.
        let (rb, rc) = (series(&[(0, 900.0), (1, 0.0), (3, 900.0)]), series(&[(0, 100.0), (1, 100.0), (3, 100.0)]));
        let per = counts(&b, &c, &Exposure::Requests("q".into()), Some((&rb, &rc)), &[]);
        assert_eq!(per.intervals.len(), 2);
        assert!((per.exposure_ratio() - 200.0 / 1800.0).abs() < 1e-12);
        // Routed: a third from 0:00, a change under way from 1:30, a half from 2:30 on. Minutes 1 to 3 touch the
        // change (stamped at their start or at their end) and are left out.
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let log = [(at(0), 1.0 / 3.0), (at(90), f64::NAN), (at(150), 0.5)];
        let b6 = series(&[(1, 10.0), (2, 11.0), (3, 9.0), (4, 10.0), (5, 10.0), (6, 10.0)]);
        let c6 = series(&[(1, 10.0), (2, 12.0), (3, 8.0), (4, 30.0), (5, 10.0), (6, 10.0)]);
        let routed = counts(&b6, &c6, &Exposure::Routed, None, &[(at(0), 1.0 / 3.0)]);
        assert_eq!(routed.intervals.len(), 6, "the share held over every interval: {routed:?}");
        let routed = counts(&b6, &c6, &Exposure::Routed, None, &log);
        assert_eq!(routed.intervals.iter().map(|i| i.at / 60_000).collect::<Vec<_>>(), [4, 5, 6]);
        assert_eq!(routed.intervals.iter().map(|i| i.canary_exposure).collect::<Vec<_>>(), [0.5, 0.5, 0.5]);
        assert_eq!(routed.unmatched, (3, 3), "minutes 1 to 3 held no one share");
        assert_eq!(routed.routed, Some((0.5, 0.5)));
        let two = counts(&b6, &c6, &Exposure::Routed, None, &[(at(0), 1.0 / 3.0), (at(240), 0.5)]);
        assert!(two.describe(&Exposure::Routed).starts_with("the share routed to the canary: 33.3% to 50.0%"));
        let unknown = counts(&b6, &c6, &Exposure::Routed, None, &[]);
        assert_eq!(unknown.intervals.len(), 6);
        assert!(unknown.describe(&Exposure::Routed).starts_with("equal traffic assumed (no routed share"));
        assert_eq!(covered(&[0, 60_000, 180_000, 240_000]), 5, "a gap counts as covered time");
        assert_eq!((covered(&[]), covered(&[7])), (0, 1));
        assert_eq!(covered(&[0, 60_000, 60_001, 120_000]), 3, "a jittered time does not shrink the resolution");
        assert_eq!(covered(&[0, 60_000, 3_540_000]), 6, "three points an hour apart do not span 60 intervals");
        let (bl, cl, unmatched) = levels(&b, &c);
        assert_eq!(
            (bl.len(), cl.len(), unmatched),
            (4, 3, (0, 1)),
            "the canary's minute 4 is past the baseline's last"
        );
    }
}
