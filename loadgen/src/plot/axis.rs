//! Axis math for the matrix plot: mapping data values to pixels on a linear or log10 scale, and
//! choosing tick positions and labels. Pure functions, no SVG.

/// A linear or logarithmic map from a data domain onto a pixel range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    /// Domain ends; for a log scale both are > 0.
    lo: f64,
    hi: f64,
    /// Pixel positions of `lo` and `hi` (`px_hi < px_lo` for a y axis, which grows upwards).
    px_lo: f64,
    px_hi: f64,
    log: bool,
}

impl Scale {
    pub fn linear(lo: f64, hi: f64, px_lo: f64, px_hi: f64) -> Scale {
        Scale {
            lo,
            hi,
            px_lo,
            px_hi,
            log: false,
        }
    }

    /// A log10 scale. Non-positive ends are replaced by the smallest positive one (or 1).
    pub fn log(lo: f64, hi: f64, px_lo: f64, px_hi: f64) -> Scale {
        let floor = [lo, hi]
            .into_iter()
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        let floor = if floor.is_finite() { floor } else { 1.0 };
        Scale {
            lo: if lo > 0.0 { lo } else { floor },
            hi: if hi > 0.0 { hi } else { floor },
            px_lo,
            px_hi,
            log: true,
        }
    }

    fn transform(&self, v: f64) -> f64 {
        if self.log { v.log10() } else { v }
    }

    /// Pixel position of `v`. A degenerate domain (`lo == hi`) maps everything to its middle.
    pub fn px(&self, v: f64) -> f64 {
        let (lo, hi) = (self.transform(self.lo), self.transform(self.hi));
        let span = hi - lo;
        if span.abs() < f64::EPSILON || !span.is_finite() {
            return (self.px_lo + self.px_hi) / 2.0;
        }
        self.px_lo + (self.transform(v) - lo) / span * (self.px_hi - self.px_lo)
    }

    /// True when `v` lies in the domain (and is drawable on a log scale).
    pub fn contains(&self, v: f64) -> bool {
        (!self.log || v > 0.0) && v >= self.lo.min(self.hi) && v <= self.lo.max(self.hi)
    }
}

/// Round tick positions 1-2-5 × 10^k apart, covering `[lo, hi]` with at most about
/// `max_ticks` ticks. The first and last ticks are the domain a plot should use.
pub fn linear_ticks(lo: f64, hi: f64, max_ticks: usize) -> Vec<f64> {
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo, lo + 1.0) };
    let rough = (hi - lo) / max_ticks.saturating_sub(1).max(1) as f64;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).floor() as i64;
    let last = (hi / step).ceil() as i64;
    // Multiplying an integer by the step (rather than adding steps) keeps 0.3 from being
    // 0.30000000000000004 more often than necessary.
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Ticks of a log10 axis inside `[lo, hi]` (both > 0): the powers of ten, with 2× and 5×
/// between them when the domain spans fewer than three decades, or round linear steps when
/// that leaves fewer than two ticks (a domain narrower than a decade).
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo > 0.0 && hi > 0.0) {
        return Vec::new();
    }
    let (lo, hi) = (lo.min(hi), lo.max(hi));
    // A relative slack so that a domain end equal to a tick keeps it despite rounding.
    let inside = |t: f64| t >= lo * (1.0 - 1e-9) && t <= hi * (1.0 + 1e-9);
    let mantissas: &[f64] = if (hi / lo).log10() < 3.0 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    let ticks: Vec<f64> = (lo.log10().floor() as i32..=hi.log10().ceil() as i32)
        .flat_map(|exp| mantissas.iter().map(move |m| m * 10f64.powi(exp)))
        .filter(|t| inside(*t))
        .collect();
    if ticks.len() >= 2 {
        return ticks;
    }
    linear_ticks(lo, hi, 4)
        .into_iter()
        .filter(|t| *t > 0.0 && inside(*t))
        .collect()
}

/// A tick label: three significant digits at most, no trailing zeros, no exponent.
pub fn label(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".to_owned();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (2 - magnitude).clamp(0, 6) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
    }

    #[test]
    fn linear_scale_maps_ends_and_middle() {
        let s = Scale::linear(0.0, 10.0, 400.0, 100.0);
        assert_eq!(s.px(0.0), 400.0);
        assert_eq!(s.px(10.0), 100.0);
        assert_eq!(s.px(5.0), 250.0);
    }

    #[test]
    fn log_scale_puts_the_geometric_mean_in_the_middle() {
        let s = Scale::log(10.0, 1000.0, 0.0, 200.0);
        assert!((s.px(100.0) - 100.0).abs() < 1e-9);
        assert!((s.px(10.0)).abs() < 1e-9);
        assert!(s.contains(500.0));
        assert!(!s.contains(0.0));
    }

    #[test]
    fn degenerate_domain_maps_to_the_middle() {
        let s = Scale::log(500.0, 500.0, 100.0, 300.0);
        assert_eq!(s.px(500.0), 200.0);
        let s = Scale::log(0.0, 0.0, 100.0, 300.0);
        assert_eq!(s.px(1.0), 200.0);
    }

    #[test]
    fn linear_ticks_are_round_and_cover_the_data() {
        assert!(close(
            &linear_ticks(0.0, 0.22, 6),
            &[0.0, 0.05, 0.1, 0.15, 0.2, 0.25]
        ));
        assert!(close(
            &linear_ticks(0.0, 1.0, 6),
            &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
        ));
        assert!(close(&linear_ticks(3.0, 3.0, 5), &[3.0, 3.5, 4.0]));
    }

    #[test]
    fn log_ticks_use_decades_or_one_two_five() {
        assert!(close(&log_ticks(0.7, 5200.0), &[1.0, 10.0, 100.0, 1000.0]));
        assert!(close(
            &log_ticks(80.0, 2600.0),
            &[100.0, 200.0, 500.0, 1000.0, 2000.0]
        ));
        assert!(close(
            &log_ticks(120.0, 180.0),
            &[120.0, 140.0, 160.0, 180.0]
        ));
        assert!(log_ticks(0.0, 10.0).is_empty());
    }

    #[test]
    fn labels_drop_trailing_zeros() {
        assert_eq!(label(0.0), "0");
        assert_eq!(label(0.05), "0.05");
        assert_eq!(label(0.15), "0.15");
        assert_eq!(label(2000.0), "2000");
        assert_eq!(label(0.1), "0.1");
        assert_eq!(label(1.5), "1.5");
        assert_eq!(label(0.1 + 0.2), "0.3");
    }
}
