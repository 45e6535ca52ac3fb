//! The Nash bargaining solution for two agents. For three players over lotteries, or any number
//! over a finite set of outcomes, see [`super::nash_n`].
//!
//! The feasible set is the convex hull of a finite list of utility pairs (lotteries over outcomes
//! are allowed, which is what makes the set convex). The solution maximises the Nash product
//! `(u1 − d1)(u2 − d2)` over feasible points that give both agents at least the disagreement point
//! `d`. The maximiser of this increasing, quasi-concave product lies on the hull's upper-right
//! boundary, which is made of segments between listed points, so searching every segment between two
//! points (where the product is a concave-or-convex quadratic in the mixing weight) is exact.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most points accepted; the search is quadratic in their number.
pub const NASH_POINTS_MAX: usize = 2_000;

/// A pair of utilities (agent 1, agent 2).
pub type Utilities = (f64, f64);

/// The bargaining problem cannot be solved as stated.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum NashError {
    /// A utility is NaN or infinite.
    #[error("utilities must be finite numbers")]
    NotFinite,
    /// No points, or more than [`NASH_POINTS_MAX`].
    #[error("{0} feasible points; need 1..={NASH_POINTS_MAX}")]
    Size(usize),
}

/// The agreement, or the fact that none improves on disagreement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NashOutcome {
    /// Utilities of the agreement and the mix that reaches it: `weight` on `from`, the rest on `to`
    /// (indices into the input points).
    Agreement {
        /// Agreed utilities.
        utilities: Utilities,
        /// First endpoint of the segment containing the agreement.
        from: usize,
        /// Second endpoint.
        to: usize,
        /// Probability of playing `from`.
        weight: f64,
    },
    /// No feasible point gives both agents strictly more than the disagreement point.
    Disagreement,
}

/// Solves the Nash bargaining problem over the convex hull of `points` with disagreement `d`.
pub fn nash_bargaining(points: &[Utilities], d: Utilities) -> Result<NashOutcome, NashError> {
    if points.is_empty() || points.len() > NASH_POINTS_MAX {
        return Err(NashError::Size(points.len()));
    }
    let finite = |(a, b): Utilities| a.is_finite() && b.is_finite();
    if !finite(d) || !points.iter().all(|&p| finite(p)) {
        return Err(NashError::NotFinite);
    }
    // The solution does not change when an axis is scaled; at unit scale gains and products
    // stay within f64's range, where near its limits they overflowed into wrong answers.
    let (unit, d_unit) = unit_scaled(points, d);
    let mut best: Option<(f64, NashOutcome)> = None;
    for i in 0..points.len() {
        for j in i..points.len() {
            let (weight, product) = best_on_segment(unit[i], unit[j], d_unit);
            if product > 0.0 && best.as_ref().is_none_or(|(b, _)| product > *b) {
                let (a, b) = (points[i], points[j]);
                let utilities = (
                    weight * a.0 + (1.0 - weight) * b.0,
                    weight * a.1 + (1.0 - weight) * b.1,
                );
                best = Some((
                    product,
                    NashOutcome::Agreement {
                        utilities,
                        from: i,
                        to: j,
                        weight,
                    },
                ));
            }
        }
    }
    Ok(best.map_or(NashOutcome::Disagreement, |(_, outcome)| outcome))
}

/// `points` and `d` with each axis divided by its largest magnitude among them.
fn unit_scaled(points: &[Utilities], d: Utilities) -> (Vec<Utilities>, Utilities) {
    let all = || points.iter().chain([&d]);
    let largest = |axis: fn(&Utilities) -> f64| super::unit_scale(all().map(axis));
    let (sx, sy) = (largest(|p| p.0), largest(|p| p.1));
    let scale = |p: &Utilities| (p.0 / sx, p.1 / sy);
    (points.iter().map(scale).collect(), scale(&d))
}

/// Best weight `w` on `a` (rest on `b`) for the Nash product, and the product; `0` if nowhere positive.
fn best_on_segment(a: Utilities, b: Utilities, d: Utilities) -> (f64, f64) {
    // Gains at weight w: x(w) = xb + w (xa − xb), y(w) = yb + w (ya − yb).
    let (xb, yb) = (b.0 - d.0, b.1 - d.1);
    let (dx, dy) = (a.0 - b.0, a.1 - b.1);
    let product = |w: f64| {
        let (x, y) = (xb + w * dx, yb + w * dy);
        if x > 0.0 && y > 0.0 {
            x * y
        } else {
            0.0
        }
    };
    let mut candidates = vec![0.0, 1.0];
    // Stationary point of (xb + w dx)(yb + w dy): w* = −(xb dy + yb dx) / (2 dx dy).
    if dx * dy != 0.0 {
        let w = -(xb * dy + yb * dx) / (2.0 * dx * dy);
        if (0.0..=1.0).contains(&w) {
            candidates.push(w);
        }
    }
    candidates
        .into_iter()
        .map(|w| (w, product(w)))
        .fold((0.0, 0.0), |best, c| if c.1 > best.1 { c } else { best })
}
