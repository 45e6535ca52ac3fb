//! Counting rules: plurality, Borda, approval and Schulze, over weighted ballots.
//!
//! Every rule returns one score per candidate and a winner; ties go to the lowest candidate index, a
//! fixed order every node agrees on. [`crate::voting::Election`] validates ballots before counting;
//! called directly, these functions ignore references to unknown candidates instead of panicking.

use serde::{Deserialize, Serialize};

/// A voter's ballot. Candidates are indices into the election's candidate list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ballot {
    /// A single choice (plurality).
    Choice(usize),
    /// A strict ranking, best first; unranked candidates tie below all ranked ones.
    Ranking(Vec<usize>),
    /// The set of approved candidates.
    Approval(Vec<usize>),
}

/// Index of the highest score; the lowest index wins ties.
pub fn argmax(scores: &[f64]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &s) in scores.iter().enumerate() {
        if best.is_none_or(|b| s > scores[b]) {
            best = Some(i);
        }
    }
    best
}

/// Plurality: each voter's weight goes to its first choice.
pub fn plurality(candidates: usize, ballots: &[(f64, &Ballot)]) -> Vec<f64> {
    let mut scores = vec![0.0; candidates];
    for (weight, ballot) in ballots {
        let first = match ballot {
            Ballot::Choice(c) => Some(*c),
            Ballot::Ranking(r) => r.first().copied(),
            Ballot::Approval(_) => None,
        };
        if let Some(slot) = first.and_then(|c| scores.get_mut(c)) {
            *slot += weight;
        }
    }
    scores
}

/// Borda: position `k` in a ranking of `n` candidates earns `n − 1 − k` points; unranked earn 0.
pub fn borda(candidates: usize, ballots: &[(f64, &Ballot)]) -> Vec<f64> {
    let mut scores = vec![0.0; candidates];
    for (weight, ballot) in ballots {
        if let Ballot::Ranking(ranking) = ballot {
            for (position, &c) in ranking.iter().enumerate() {
                let points = candidates.saturating_sub(1 + position) as f64;
                if let Some(slot) = scores.get_mut(c) {
                    *slot += weight * points;
                }
            }
        }
    }
    scores
}

/// Approval: each approved candidate receives the voter's weight.
pub fn approval(candidates: usize, ballots: &[(f64, &Ballot)]) -> Vec<f64> {
    let mut scores = vec![0.0; candidates];
    for (weight, ballot) in ballots {
        if let Ballot::Approval(approved) = ballot {
            for &c in approved {
                if let Some(slot) = scores.get_mut(c) {
                    *slot += weight;
                }
            }
        }
    }
    scores
}

/// `d[a][b]`: total weight of voters ranking `a` above `b`.
pub fn pairwise(candidates: usize, ballots: &[(f64, &Ballot)]) -> Vec<Vec<f64>> {
    let mut d = vec![vec![0.0; candidates]; candidates];
    for (weight, ballot) in ballots {
        let Ballot::Ranking(ranking) = ballot else {
            continue;
        };
        let mut rank = vec![usize::MAX; candidates];
        for (position, &c) in ranking.iter().enumerate() {
            if let Some(slot) = rank.get_mut(c) {
                *slot = position;
            }
        }
        for a in 0..candidates {
            for b in 0..candidates {
                if rank[a] < rank[b] {
                    d[a][b] += weight;
                }
            }
        }
    }
    d
}

/// Schulze: strongest beatpath strengths by a widest-path Floyd–Warshall; the score of a candidate
/// is how many others it beats or ties on beatpaths. A Condorcet winner always has the top score.
pub fn schulze(candidates: usize, ballots: &[(f64, &Ballot)]) -> Vec<f64> {
    let d = pairwise(candidates, ballots);
    let n = candidates;
    let mut p = vec![vec![0.0; n]; n];
    for a in 0..n {
        for b in 0..n {
            if a != b && d[a][b] > d[b][a] {
                p[a][b] = d[a][b];
            }
        }
    }
    for k in 0..n {
        for a in (0..n).filter(|&a| a != k) {
            for b in (0..n).filter(|&b| b != k && b != a) {
                p[a][b] = f64::max(p[a][b], f64::min(p[a][k], p[k][b]));
            }
        }
    }
    (0..n)
        .map(|a| (0..n).filter(|&b| b != a && p[a][b] >= p[b][a]).count() as f64)
        .collect()
}

/// The Condorcet winner, if one exists: beats every other candidate in a strict pairwise majority.
pub fn condorcet_winner(candidates: usize, ballots: &[(f64, &Ballot)]) -> Option<usize> {
    let d = pairwise(candidates, ballots);
    (0..candidates).find(|&a| (0..candidates).all(|b| b == a || d[a][b] > d[b][a]))
}
