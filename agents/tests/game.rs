//! Axioms of the Nash bargaining solution and of the Shapley value.

use foundation_agents::game::nash::{nash_bargaining, NashError, NashOutcome, Utilities};
use foundation_agents::game::shapley::{self, FnGame, Game};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn agreement(points: &[Utilities], d: Utilities) -> Utilities {
    match nash_bargaining(points, d).expect("valid") {
        NashOutcome::Agreement { utilities, .. } => utilities,
        NashOutcome::Disagreement => panic!("expected agreement"),
    }
}

fn points() -> impl Strategy<Value = Vec<Utilities>> {
    prop::collection::vec((0.0f64..10.0, 0.0f64..10.0), 2..10)
}

fn close(a: Utilities, b: Utilities, tol: f64) -> bool {
    (a.0 - b.0).abs() <= tol && (a.1 - b.1).abs() <= tol
}

#[test]
fn splitting_a_dollar_gives_half_each() {
    let u = agreement(&[(1.0, 0.0), (0.0, 1.0)], (0.0, 0.0));
    assert!(close(u, (0.5, 0.5), 1e-12));
}

#[test]
fn no_gain_over_disagreement_means_no_deal_and_bad_input_is_an_error() {
    assert_eq!(
        nash_bargaining(&[(1.0, 1.0)], (2.0, 0.0)),
        Ok(NashOutcome::Disagreement)
    );
    assert_eq!(
        nash_bargaining(&[(f64::NAN, 1.0)], (0.0, 0.0)),
        Err(NashError::NotFinite)
    );
    assert_eq!(nash_bargaining(&[], (0.0, 0.0)), Err(NashError::Size(0)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn nash_solution_is_pareto_optimal(points in points()) {
        let d = (0.0, 0.0);
        if let NashOutcome::Agreement { utilities: u, .. } = nash_bargaining(&points, d).expect("valid") {
            // No feasible mix of two points dominates the solution strictly in both coordinates.
            for &a in &points {
                for &b in &points {
                    for k in 0..=10 {
                        let w = f64::from(k) / 10.0;
                        let p = (w * a.0 + (1.0 - w) * b.0, w * a.1 + (1.0 - w) * b.1);
                        prop_assert!(!(p.0 > u.0 + 1e-9 && p.1 > u.1 + 1e-9), "{:?} dominates {:?}", p, u);
                    }
                }
            }
        }
    }

    #[test]
    fn nash_solution_of_a_symmetric_problem_is_symmetric(points in points(), d in 0.0f64..2.0) {
        let mut sym = points.clone();
        sym.extend(points.iter().map(|&(x, y)| (y, x)));
        if let NashOutcome::Agreement { utilities: u, .. } = nash_bargaining(&sym, (d, d)).expect("valid") {
            prop_assert!((u.0 - u.1).abs() <= 1e-9 * (1.0 + u.0.abs()), "{:?}", u);
        }
    }

    #[test]
    fn nash_solution_is_invariant_to_positive_affine_rescaling(
        points in points(),
        (a1, b1, a2, b2) in (0.1f64..5.0, -5.0f64..5.0, 0.1f64..5.0, -5.0f64..5.0),
    ) {
        let d = (1.0, 1.0);
        let f = |(x, y): Utilities| (a1 * x + b1, a2 * y + b2);
        let original = nash_bargaining(&points, d).expect("valid");
        let scaled_points: Vec<Utilities> = points.iter().map(|&p| f(p)).collect();
        let scaled = nash_bargaining(&scaled_points, f(d)).expect("valid");
        match (original, scaled) {
            (NashOutcome::Agreement { utilities: u, .. }, NashOutcome::Agreement { utilities: v, .. }) => {
                prop_assert!(close(f(u), v, 1e-7 * (1.0 + v.0.abs() + v.1.abs())), "f(u) = {:?}, v = {:?}", f(u), v);
            }
            (NashOutcome::Disagreement, NashOutcome::Disagreement) => {}
            (o, s) => prop_assert!(false, "{:?} vs {:?}", o, s),
        }
    }

    #[test]
    fn nash_solution_is_independent_of_irrelevant_alternatives(points in points(), drop_mask in any::<u16>()) {
        let d = (0.0, 0.0);
        let NashOutcome::Agreement { utilities: u, from, to, .. } = nash_bargaining(&points, d).expect("valid") else {
            return Ok(());
        };
        // Keep the segment carrying the solution and a random subset of the rest.
        let kept: Vec<Utilities> = points.iter().enumerate()
            .filter(|(i, _)| *i == from || *i == to || drop_mask & (1 << (i % 16)) != 0)
            .map(|(_, p)| *p).collect();
        let v = agreement(&kept, d);
        prop_assert!(close(u, v, 1e-9 * (1.0 + u.0 + u.1)), "{:?} became {:?}", u, v);
    }
}

/// Glove game: players 0..left hold left gloves, the rest right gloves; a pair is worth 1.
fn gloves(players: usize, left: usize) -> impl Game {
    let left_mask = (1u64 << left) - 1;
    FnGame {
        players,
        worth: move |s: u64| {
            f64::from(
                (s & left_mask)
                    .count_ones()
                    .min((s & !left_mask).count_ones()),
            )
        },
    }
}

#[test]
fn shapley_of_the_one_left_two_right_glove_game_is_two_thirds_one_sixth_one_sixth() {
    let v = shapley::exact(&gloves(3, 1)).expect("small").values;
    let expected = [2.0 / 3.0, 1.0 / 6.0, 1.0 / 6.0];
    assert!(
        v.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-12),
        "{v:?}"
    );
}

#[test]
fn sampled_shapley_matches_exact_within_its_error_on_a_larger_game() {
    let game = gloves(12, 5);
    let exact = shapley::exact(&game).expect("12 players is exact");
    let mut rng = StdRng::seed_from_u64(42);
    let est = shapley::sampled(&game, 4_000, &mut rng).expect("valid");
    for (i, (e, s)) in exact.values.iter().zip(&est.values).enumerate() {
        let err = est.standard_errors[i];
        assert!(
            (e - s).abs() <= 5.0 * err + 1e-9,
            "player {i}: exact {e}, sampled {s} ± {err}"
        );
    }
    let total: f64 = est.values.iter().sum();
    assert!(
        (total - 5.0).abs() < 1e-9,
        "sampling is efficient by construction"
    );
    let mut again = StdRng::seed_from_u64(42);
    assert_eq!(
        shapley::sampled(&game, 4_000, &mut again).expect("valid"),
        est,
        "same seed, same estimate"
    );
}

#[test]
fn shapley_refuses_sizes_it_cannot_handle() {
    let big = FnGame {
        players: 30,
        worth: |s: u64| f64::from(s.count_ones()),
    };
    assert!(shapley::exact(&big).is_err());
    let mut rng = StdRng::seed_from_u64(1);
    assert!(shapley::sampled(&big, 0, &mut rng).is_err());
    let v = shapley::sampled(&big, 10, &mut rng).expect("valid").values;
    assert!(
        v.iter().all(|x| (x - 1.0).abs() < 1e-12),
        "additive game: each gets its own worth"
    );
    let nan = FnGame {
        players: 2,
        worth: |_| f64::NAN,
    };
    assert!(shapley::exact(&nan).is_err());
}

fn tu_game() -> impl Strategy<Value = (usize, Vec<f64>)> {
    (2usize..7).prop_flat_map(|n| (Just(n), prop::collection::vec(0.0f64..10.0, 1 << n)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn shapley_is_efficient(game in tu_game()) {
        let (n, table) = game;
        let v0 = table[0];
        let g = FnGame { players: n, worth: |s: u64| table[s as usize] - v0 };
        let values = shapley::exact(&g).expect("small").values;
        let total: f64 = values.iter().sum();
        prop_assert!((total - g.value((1 << n) - 1)).abs() < 1e-9);
    }

    #[test]
    fn shapley_gives_a_null_player_zero_and_symmetric_players_equal_shares(game in tu_game()) {
        let (n, table) = game;
        // Player 0 is made null: adding it never changes worth. Players 1 and 2 (when present) are
        // made symmetric: swapping them never changes worth.
        let swap12 = |s: u64| {
            let (b1, b2) = ((s >> 1) & 1, (s >> 2) & 1);
            (s & !0b110) | (b1 << 2) | (b2 << 1)
        };
        let base = |s: u64| table[(s & !1) as usize];
        let worth = |s: u64| if n >= 3 { base(s).max(base(swap12(s))) } else { base(s) };
        let g = FnGame { players: n, worth };
        let values = shapley::exact(&g).expect("small").values;
        prop_assert!(values[0].abs() < 1e-9, "null player got {}", values[0]);
        if n >= 3 {
            prop_assert!((values[1] - values[2]).abs() < 1e-9);
        }
    }
}

#[test]
fn nash_bargaining_near_f64s_limits_finds_the_solution_of_the_scaled_problem() {
    // Gains and Nash products here overflow f64 unscaled: the symmetric problem was solved at
    // an endpoint, and a problem with a positive-gain midpoint ended in disagreement.
    let m = f64::MAX;
    let symmetric = nash_bargaining(&[(m, 1.0), (1.0, m)], (0.0, 0.0)).expect("valid");
    let NashOutcome::Agreement { utilities, .. } = symmetric else {
        panic!("agreement: {symmetric:?}");
    };
    let half = m / 2.0;
    assert!((utilities.0 / half - 1.0).abs() < 1e-9, "{utilities:?}");
    assert!((utilities.1 / half - 1.0).abs() < 1e-9, "{utilities:?}");
    let crossing = nash_bargaining(&[(m, -m), (-m, m)], (-m, -m)).expect("valid");
    let NashOutcome::Agreement { utilities, .. } = crossing else {
        panic!("agreement: {crossing:?}");
    };
    assert!(
        utilities.0.abs() < 1e-9 * m && utilities.1.abs() < 1e-9 * m,
        "{utilities:?}"
    );
}

#[test]
fn shapley_values_beyond_f64s_range_are_refused_not_reported() {
    // Every worth is finite. Exact: player 0 adds MAX - (-MAX) to {1}, an infinite value.
    // Sampled: player 0 adds 1e200 or 3e200, whose squares overflowed, and the spread came
    // out as a standard error of exactly 0.
    let m = f64::MAX;
    let extreme = FnGame {
        players: 2,
        worth: |c: u64| [0.0, m, -m, m][c as usize],
    };
    assert_eq!(
        shapley::exact(&extreme),
        Err(shapley::ShapleyError::OutOfRange)
    );
    let spread = FnGame {
        players: 2,
        worth: |c: u64| [0.0, 1e200, 0.0, 3e200][c as usize],
    };
    let mut rng = StdRng::seed_from_u64(7);
    let sampled = shapley::sampled(&spread, 64, &mut rng);
    assert_eq!(
        sampled,
        Err(shapley::ShapleyError::OutOfRange),
        "{sampled:?}"
    );
}
