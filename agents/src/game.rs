//! Cooperative game theory: the Nash bargaining solution and the Shapley value.

pub mod nash;
pub mod nash_n;
pub mod shapley;

/// The scale that brings `values` to unit size: their largest magnitude, or 1 when all are 0.
/// The bargaining solutions do not change when a player's utilities are scaled, and at unit
/// scale their gains and products stay within f64's range.
fn unit_scale(values: impl Iterator<Item = f64>) -> f64 {
    let largest = values.map(f64::abs).fold(0.0, f64::max);
    if largest > 0.0 {
        largest
    } else {
        1.0
    }
}
