//! The Nash bargaining solution for `n` players.
//!
//! The solution maximises the Nash product `Π_i (u_i − d_i)` over feasible utility vectors that give
//! every player strictly more than the disagreement point `d`. Two feasible sets are supported:
//!
//! - [`Feasible::Finite`]: only the listed outcomes, no lotteries; any number of players. The
//!   maximiser is found by scanning, ties going to the lowest index.
//! - [`Feasible::ConvexHull`]: lotteries over the listed outcomes, for at most
//!   [`NASH_HULL_PLAYERS_MAX`] players, solved exactly. The product is strictly quasi-concave on the
//!   positive orthant, so its maximiser over the hull is unique and lies on the hull's boundary, in
//!   the convex hull of at most `n` listed points (Carathéodory on a face of dimension `n − 1`).
//!   Every such simplex is searched in closed form: at a vertex; inside an edge, where the product
//!   is a polynomial of degree `n` whose stationary points are roots of a polynomial of degree at
//!   most 2; inside a triangle (n = 3), where on the plane `N·y = c` the product peaks at
//!   `y_i = c / (3 N_i)` (each player gets an equal share of the plane's "budget"). The best
//!   candidate over all simplices is the solution. The cost is `O(m^n)` for `m` points, hence the
//!   player and point limits; beyond three players this closed form no longer exists and the
//!   function refuses rather than approximating.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most players [`Feasible::ConvexHull`] solves exactly.
pub const NASH_HULL_PLAYERS_MAX: usize = 3;
/// Most points for [`Feasible::Finite`] and for two-player hulls (quadratic search).
pub const NASH_N_POINTS_MAX: usize = 2_000;
/// Most points for a three-player hull (cubic search: about 550,000 triangles).
pub const NASH_HULL3_POINTS_MAX: usize = 150;

/// Which utility vectors are feasible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Feasible {
    /// Exactly the listed outcomes.
    Finite,
    /// Every lottery over the listed outcomes (their convex hull).
    ConvexHull,
}

/// The bargaining problem cannot be solved as stated.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum NashNError {
    /// The disagreement point has no players.
    #[error("the disagreement point is empty; give one utility per player")]
    NoPlayers,
    /// A utility is NaN or infinite.
    #[error("utilities must be finite numbers")]
    NotFinite,
    /// A point has a different number of utilities than the disagreement point.
    #[error("point {index} has {found} utilities, the disagreement point has {expected}")]
    Dimension {
        /// Index of the offending point.
        index: usize,
        /// Utilities it has.
        found: usize,
        /// Players in the problem.
        expected: usize,
    },
    /// No points, or more than the search allows for this problem.
    #[error("{points} feasible points; this problem allows 1..={max}")]
    Size {
        /// Points given.
        points: usize,
        /// Most allowed.
        max: usize,
    },
    /// Lotteries over outcomes are solved exactly only for up to three players.
    #[error("{players} players: the convex hull is solved exactly for at most {NASH_HULL_PLAYERS_MAX}; use Feasible::Finite and list the lotteries you allow as points")]
    TooManyPlayersForHull {
        /// Players in the problem.
        players: usize,
    },
}

/// The agreement, or the fact that none improves on disagreement for everyone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NashNOutcome {
    /// Agreed utilities and the lottery reaching them: `(point index, probability)` pairs, ordered
    /// by index, probabilities summing to 1.
    Agreement {
        /// Utility of each player.
        utilities: Vec<f64>,
        /// The lottery over the listed points.
        mix: Vec<(usize, f64)>,
    },
    /// No feasible vector gives every player strictly more than the disagreement point.
    Disagreement,
}

/// Solves the `n`-player Nash bargaining problem over `points` with disagreement point `d`.
pub fn nash_bargaining_n(
    points: &[Vec<f64>],
    d: &[f64],
    feasible: Feasible,
) -> Result<NashNOutcome, NashNError> {
    validate(points, d, feasible)?;
    // The solution does not change when a player's utilities are scaled; at unit scale gains
    // and the product's coefficients stay within f64's range, where near its limits they
    // overflowed into wrong answers.
    let scale: Vec<f64> = (0..d.len()).map(|l| largest(points, d, l)).collect();
    let gains: Vec<Vec<f64>> = points
        .iter()
        .map(|p| {
            let unit = p.iter().zip(d).zip(&scale);
            unit.map(|((u, di), s)| u / s - di / s).collect()
        })
        .collect();
    let mut best = Best::default();
    for (i, g) in gains.iter().enumerate() {
        best.offer(g.clone(), vec![(i, 1.0)]);
    }
    if feasible == Feasible::ConvexHull {
        search_edges(&gains, &mut best);
        if d.len() == 3 {
            search_triangles(&gains, &mut best);
        }
    }
    Ok(best.into_outcome(points))
}

/// The largest magnitude of player `l`'s utilities among `points` and `d`; 1 if all are 0.
fn largest(points: &[Vec<f64>], d: &[f64], l: usize) -> f64 {
    super::unit_scale(points.iter().map(|p| p[l]).chain([d[l]]))
}

fn validate(points: &[Vec<f64>], d: &[f64], feasible: Feasible) -> Result<(), NashNError> {
    let n = d.len();
    if n == 0 {
        return Err(NashNError::NoPlayers);
    }
    if feasible == Feasible::ConvexHull && n > NASH_HULL_PLAYERS_MAX {
        return Err(NashNError::TooManyPlayersForHull { players: n });
    }
    let max = match (feasible, n) {
        (Feasible::ConvexHull, 3) => NASH_HULL3_POINTS_MAX,
        _ => NASH_N_POINTS_MAX,
    };
    if points.is_empty() || points.len() > max {
        let points = points.len();
        return Err(NashNError::Size { points, max });
    }
    if let Some((index, p)) = points.iter().enumerate().find(|(_, p)| p.len() != n) {
        let (found, expected) = (p.len(), n);
        return Err(NashNError::Dimension {
            index,
            found,
            expected,
        });
    }
    let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
    if !finite(d) || !points.iter().all(|p| finite(p)) {
        return Err(NashNError::NotFinite);
    }
    Ok(())
}

/// The best candidate so far; a later candidate must be strictly better, so ties keep the first
/// found in the fixed search order (vertices, edges, triangles, each by ascending indices).
struct Best {
    /// The Nash product's logarithm: over many players the product itself under- or
    /// overflows (1,100 gains of 0.5 made 0, and no agreement was found).
    log_product: f64,
    gains: Vec<f64>,
    mix: Vec<(usize, f64)>,
}

impl Default for Best {
    fn default() -> Self {
        let (gains, mix) = (Vec::new(), Vec::new());
        let log_product = f64::NEG_INFINITY;
        Best {
            log_product,
            gains,
            mix,
        }
    }
}

impl Best {
    fn offer(&mut self, gains: Vec<f64>, mix: Vec<(usize, f64)>) {
        if gains.iter().any(|g| *g <= 0.0) {
            return;
        }
        let log_product: f64 = gains.iter().map(|g| g.ln()).sum();
        if log_product > self.log_product {
            *self = Best {
                log_product,
                gains,
                mix,
            };
        }
    }

    /// The outcome: utilities are the lottery's over `points` as given (gains are scaled).
    fn into_outcome(self, points: &[Vec<f64>]) -> NashNOutcome {
        if self.mix.is_empty() {
            return NashNOutcome::Disagreement;
        }
        let mix: Vec<(usize, f64)> = self.mix.into_iter().filter(|(_, w)| *w > 0.0).collect();
        let utilities = (0..self.gains.len())
            .map(|l| mix.iter().map(|&(k, w)| w * points[k][l]).sum())
            .collect();
        NashNOutcome::Agreement { utilities, mix }
    }
}

/// Stationary points inside every segment between two points.
fn search_edges(gains: &[Vec<f64>], best: &mut Best) {
    for i in 0..gains.len() {
        for j in i + 1..gains.len() {
            let (a, b) = (&gains[i], &gains[j]);
            // Gains at weight w on `a`: b + w (a − b).
            let slope: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
            for w in edge_stationary_points(b, &slope) {
                let g = b.iter().zip(&slope).map(|(y, s)| y + w * s).collect();
                best.offer(g, vec![(i, w), (j, 1.0 - w)]);
            }
        }
    }
}

/// Roots in (0, 1) of the derivative of `Π_l (b_l + w s_l)`, for at most three players.
fn edge_stationary_points(b: &[f64], s: &[f64]) -> Vec<f64> {
    // Coefficients of the product polynomial, lowest degree first.
    let mut poly = vec![1.0];
    for (bl, sl) in b.iter().zip(s) {
        let mut next = vec![0.0; poly.len() + 1];
        for (k, c) in poly.iter().enumerate() {
            next[k] += c * bl;
            next[k + 1] += c * sl;
        }
        poly = next;
    }
    let derivative: Vec<f64> = poly
        .iter()
        .enumerate()
        .skip(1)
        .map(|(k, c)| k as f64 * c)
        .collect();
    real_roots(&derivative)
        .into_iter()
        .filter(|w| *w > 0.0 && *w < 1.0)
        .collect()
}

/// Real roots of a polynomial of degree at most 2 (coefficients lowest first); none if it is
/// identically zero, since then every point is stationary and the vertices already cover it.
fn real_roots(c: &[f64]) -> Vec<f64> {
    let get = |k: usize| c.get(k).copied().unwrap_or(0.0);
    let (c0, c1, c2) = (get(0), get(1), get(2));
    if c2 == 0.0 {
        return if c1 == 0.0 { vec![] } else { vec![-c0 / c1] };
    }
    let disc = c1 * c1 - 4.0 * c2 * c0;
    if disc < 0.0 {
        return vec![];
    }
    let root = disc.sqrt();
    // The numerically stable pair: no cancellation between c1 and the square root.
    let q = -0.5 * (c1 + c1.signum() * root);
    let mut roots = vec![q / c2];
    if q != 0.0 {
        roots.push(c0 / q);
    }
    roots
}

/// The plane's peak inside every triangle of three points (three players only).
fn search_triangles(gains: &[Vec<f64>], best: &mut Best) {
    let m = gains.len();
    for i in 0..m {
        for j in i + 1..m {
            for k in j + 1..m {
                if let Some((g, s, t)) = triangle_peak(&gains[i], &gains[j], &gains[k]) {
                    best.offer(g, vec![(i, 1.0 - s - t), (j, s), (k, t)]);
                }
            }
        }
    }
}

fn sub(a: &[f64], b: &[f64]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn cross(u: [f64; 3], v: [f64; 3]) -> [f64; 3] {
    [
        u[1] * v[2] - u[2] * v[1],
        u[2] * v[0] - u[0] * v[2],
        u[0] * v[1] - u[1] * v[0],
    ]
}

fn dot(u: [f64; 3], v: [f64; 3]) -> f64 {
    u[0] * v[0] + u[1] * v[1] + u[2] * v[2]
}

/// Maximiser of the product on the plane through `a`, `b`, `c`, with its barycentric weights on `b`
/// and `c`, if it lies inside the triangle.
fn triangle_peak(a: &[f64], b: &[f64], c: &[f64]) -> Option<(Vec<f64>, f64, f64)> {
    let (ab, ac) = (sub(b, a), sub(c, a));
    let normal = cross(ab, ac);
    let norm2 = dot(normal, normal);
    let scale = dot(ab, ab).max(dot(ac, ac));
    // Collinear points span no plane; their segments are searched as edges.
    if norm2 <= 1e-24 * scale * scale {
        return None;
    }
    let level = dot(normal, [a[0], a[1], a[2]]);
    // Lagrange: 1/y_i = μ N_i, and N·y = level gives y_i = level / (3 N_i); all must be positive.
    if normal.iter().any(|n| level * n <= 0.0) {
        return None;
    }
    let y = normal.map(|n| level / (3.0 * n));
    let ay = sub(&y, a);
    let s = dot(cross(ay, ac), normal) / norm2;
    let t = dot(cross(ab, ay), normal) / norm2;
    (s >= 0.0 && t >= 0.0 && s + t <= 1.0).then(|| (y.to_vec(), s, t))
}
