//! Shapley values of a transferable-utility game: exact for small games, Monte Carlo over
//! permutations (with an injected seeded RNG) for large ones.
//!
//! Coalitions are bit masks over at most [`SHAPLEY_PLAYERS_MAX`] players. The exact method evaluates
//! every coalition once (`2^n` calls) and weighs marginal contributions by `|S|! (n−|S|−1)! / n!`.
//! Sampling averages marginal contributions over random orders; each sampled order distributes
//! exactly `v(N) − v(∅)`, so the estimate is efficient by construction.

use rand::seq::SliceRandom;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most players a coalition mask can name.
pub const SHAPLEY_PLAYERS_MAX: usize = 64;
/// Most players for the exact method (2^20 coalition values, 8 MiB).
pub const SHAPLEY_EXACT_PLAYERS_MAX: usize = 20;

/// A transferable-utility game: the worth of every coalition.
pub trait Game {
    /// Number of players, at most [`SHAPLEY_PLAYERS_MAX`].
    fn players(&self) -> usize;
    /// Worth of the coalition whose members are the set bits of `coalition`.
    fn value(&self, coalition: u64) -> f64;
}

/// The request cannot be computed as asked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShapleyError {
    /// Too many players for the method; use sampling, or fewer players.
    #[error("{players} players exceed the limit {limit} for this method")]
    TooManyPlayers {
        /// Players in the game.
        players: usize,
        /// The method's limit.
        limit: usize,
    },
    /// The game returned NaN or an infinite worth.
    #[error("the game returned a non-finite value for coalition {0:#x}")]
    NotFinite(u64),
    /// Sampling needs at least one permutation.
    #[error("at least one sample is required")]
    NoSamples,
    /// Every worth is finite, but a value (or, sampled, a marginal contribution's square) is
    /// beyond f64's range; rescale the game.
    #[error("the values or their spread leave f64's range; rescale the game")]
    OutOfRange,
}

/// Shapley values, with the standard error of each when estimated by sampling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShapleyValues {
    /// One value per player.
    pub values: Vec<f64>,
    /// Standard error per player (zero for the exact method).
    pub standard_errors: Vec<f64>,
    /// Permutations sampled (zero for the exact method).
    pub samples: usize,
}

fn worth(game: &dyn Game, coalition: u64) -> Result<f64, ShapleyError> {
    let v = game.value(coalition);
    if v.is_finite() {
        Ok(v)
    } else {
        Err(ShapleyError::NotFinite(coalition))
    }
}

/// Exact Shapley values by enumerating coalitions.
pub fn exact(game: &dyn Game) -> Result<ShapleyValues, ShapleyError> {
    let n = game.players();
    if n > SHAPLEY_EXACT_PLAYERS_MAX {
        return Err(ShapleyError::TooManyPlayers {
            players: n,
            limit: SHAPLEY_EXACT_PLAYERS_MAX,
        });
    }
    let table = (0..1u64 << n)
        .map(|s| worth(game, s))
        .collect::<Result<Vec<f64>, _>>()?;
    // weight[k] = k! (n − k − 1)! / n!, built by ratios to stay in floating range.
    let mut weight = vec![0.0; n.max(1)];
    if n > 0 {
        weight[0] = 1.0 / n as f64;
        for k in 1..n {
            weight[k] = weight[k - 1] * k as f64 / (n - k) as f64;
        }
    }
    let mut values = vec![0.0; n];
    for (s, &v_s) in table.iter().enumerate() {
        let size = (s as u64).count_ones() as usize;
        for (i, value) in values.iter_mut().enumerate() {
            if s & (1 << i) == 0 {
                *value += weight[size] * (table[s | (1 << i)] - v_s);
            }
        }
    }
    // Marginals of worths near f64's limits overflow, and infinities of both signs add to NaN.
    if !values.iter().all(|v| v.is_finite()) {
        return Err(ShapleyError::OutOfRange);
    }
    Ok(ShapleyValues {
        standard_errors: vec![0.0; n],
        values,
        samples: 0,
    })
}

/// Shapley values estimated from `samples` random player orders drawn from `rng`.
pub fn sampled(
    game: &dyn Game,
    samples: usize,
    rng: &mut dyn RngCore,
) -> Result<ShapleyValues, ShapleyError> {
    let n = game.players();
    if n > SHAPLEY_PLAYERS_MAX {
        return Err(ShapleyError::TooManyPlayers {
            players: n,
            limit: SHAPLEY_PLAYERS_MAX,
        });
    }
    if samples == 0 {
        return Err(ShapleyError::NoSamples);
    }
    let (mut sum, mut sum_sq) = (vec![0.0; n], vec![0.0; n]);
    let mut order: Vec<usize> = (0..n).collect();
    let empty = worth(game, 0)?;
    for _ in 0..samples {
        order.shuffle(rng);
        let (mut coalition, mut before) = (0u64, empty);
        for &i in &order {
            coalition |= 1 << i;
            let after = worth(game, coalition)?;
            let marginal = after - before;
            sum[i] += marginal;
            sum_sq[i] += marginal * marginal;
            before = after;
        }
    }
    let m = samples as f64;
    let values: Vec<f64> = sum.iter().map(|s| s / m).collect();
    let variances: Vec<f64> = values
        .iter()
        .zip(&sum_sq)
        .map(|(mean, sq)| sq / m - mean * mean)
        .collect();
    // An overflowed square made the variance NaN, which `max(0.0)` turned into a claimed zero.
    if !values.iter().chain(&variances).all(|x| x.is_finite()) {
        return Err(ShapleyError::OutOfRange);
    }
    let standard_errors = variances
        .iter()
        .map(|variance| (variance.max(0.0) / m).sqrt())
        .collect();
    Ok(ShapleyValues {
        values,
        standard_errors,
        samples,
    })
}

/// A game given by a closure, handy for tests and small programs.
pub struct FnGame<F: Fn(u64) -> f64> {
    /// Number of players.
    pub players: usize,
    /// Worth of a coalition mask.
    pub worth: F,
}

impl<F: Fn(u64) -> f64> Game for FnGame<F> {
    fn players(&self) -> usize {
        self.players
    }

    fn value(&self, coalition: u64) -> f64 {
        (self.worth)(coalition)
    }
}
