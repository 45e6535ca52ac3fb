//! Axioms of the n-player Nash bargaining solution, checked for three players over lotteries, and
//! the finite-outcome variant for more players.

use foundation_agents::game::nash::{nash_bargaining, NashOutcome};
use foundation_agents::game::nash_n::{nash_bargaining_n, Feasible, NashNError, NashNOutcome};
use proptest::prelude::*;

type Point = Vec<f64>;
/// Agreed utilities and the lottery (point index, probability) that reaches them.
type Agreement = (Vec<f64>, Vec<(usize, f64)>);

fn solve(points: &[Point], d: &[f64]) -> Option<Agreement> {
    match nash_bargaining_n(points, d, Feasible::ConvexHull).expect("valid") {
        NashNOutcome::Agreement { utilities, mix } => Some((utilities, mix)),
        NashNOutcome::Disagreement => None,
    }
}

fn product(u: &[f64], d: &[f64]) -> f64 {
    u.iter().zip(d).map(|(x, y)| (x - y).max(0.0)).product()
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| (x - y).abs() <= tol * (1.0 + x.abs()))
}

fn mix_of(points: &[Point], weights: &[(usize, f64)]) -> Vec<f64> {
    (0..3)
        .map(|l| weights.iter().map(|(k, w)| w * points[*k][l]).sum())
        .collect()
}

fn points3() -> impl Strategy<Value = Vec<Point>> {
    prop::collection::vec(prop::collection::vec(0.0f64..10.0, 3), 2..9)
}

fn disagreement() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(0.0f64..2.0, 3)
}

#[test]
fn three_players_splitting_a_dollar_get_a_third_each() {
    let points = vec![
        vec![1.0, 0.0, 0.0],
        vec![0.0, 1.0, 0.0],
        vec![0.0, 0.0, 1.0],
    ];
    let (u, mix) = solve(&points, &[0.0; 3]).expect("agreement");
    assert!(close(&u, &[1.0 / 3.0; 3], 1e-12), "{u:?}");
    assert_eq!(mix.len(), 3, "a lottery over all three outcomes");
    // Without lotteries the best any single outcome does is leave someone at zero: no deal.
    let finite = nash_bargaining_n(&points, &[0.0; 3], Feasible::Finite).expect("valid");
    assert_eq!(finite, NashNOutcome::Disagreement);
}

#[test]
fn a_dominant_outcome_is_chosen_and_players_are_never_worse_than_disagreement() {
    let points = vec![
        vec![2.0, 2.0, 2.0],
        vec![1.0, 1.0, 1.0],
        vec![3.0, 0.0, 0.0],
    ];
    let (u, mix) = solve(&points, &[0.5, 0.5, 0.5]).expect("agreement");
    assert_eq!((u, mix), (vec![2.0, 2.0, 2.0], vec![(0, 1.0)]));
}

#[test]
fn bad_input_is_a_typed_error() {
    let four = vec![vec![1.0; 4]];
    assert_eq!(
        nash_bargaining_n(&four, &[0.0; 4], Feasible::ConvexHull),
        Err(NashNError::TooManyPlayersForHull { players: 4 })
    );
    assert!(nash_bargaining_n(&four, &[0.0; 4], Feasible::Finite).is_ok());
    assert!(matches!(
        nash_bargaining_n(&[vec![1.0, 2.0]], &[0.0; 3], Feasible::Finite),
        Err(NashNError::Dimension { index: 0, .. })
    ));
    assert_eq!(
        nash_bargaining_n(&[vec![f64::NAN; 3]], &[0.0; 3], Feasible::ConvexHull),
        Err(NashNError::NotFinite)
    );
    assert!(matches!(
        nash_bargaining_n(&[], &[0.0; 3], Feasible::ConvexHull),
        Err(NashNError::Size { .. })
    ));
    assert_eq!(
        nash_bargaining_n(&[vec![]], &[], Feasible::Finite),
        Err(NashNError::NoPlayers)
    );
    let too_many = vec![vec![1.0; 3]; 151];
    assert!(matches!(
        nash_bargaining_n(&too_many, &[0.0; 3], Feasible::ConvexHull),
        Err(NashNError::Size { max: 150, .. })
    ));
}

#[test]
fn finite_outcomes_work_for_any_number_of_players_and_ties_go_to_the_lowest_index() {
    let points = vec![
        vec![1.0, 4.0, 1.0, 1.0, 1.0],
        vec![2.0, 2.0, 1.0, 1.0, 1.0],
        vec![4.0, 1.0, 1.0, 1.0, 1.0],
        vec![9.0, 9.0, 9.0, 9.0, 0.0],
    ];
    let outcome = nash_bargaining_n(&points, &[0.0; 5], Feasible::Finite).expect("valid");
    let expected = NashNOutcome::Agreement {
        utilities: points[0].clone(),
        mix: vec![(0, 1.0)],
    };
    assert_eq!(
        outcome, expected,
        "three tie at product 4; the last leaves player 5 at 0"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Exactness: no lottery over any triple of points on a 0.05 grid beats the solution.
    #[test]
    fn no_lottery_on_a_grid_beats_the_solution(points in points3(), d in disagreement()) {
        let best = solve(&points, &d).map_or(0.0, |(u, _)| product(&u, &d));
        let m = points.len();
        for i in 0..m { for j in i..m { for k in j..m {
            for a in 0..=20 { for b in 0..=(20 - a) {
                let (wa, wb) = (f64::from(a) / 20.0, f64::from(b) / 20.0);
                let u = mix_of(&points, &[(i, wa), (j, wb), (k, 1.0 - wa - wb)]);
                prop_assert!(product(&u, &d) <= best * (1.0 + 1e-9) + 1e-12,
                    "mix {:?} beats {}", u, best);
            }}
        }}}
    }

    /// The reported lottery is a real lottery over the points and reaches the reported utilities.
    #[test]
    fn the_lottery_reaches_the_agreement(points in points3(), d in disagreement()) {
        if let Some((u, mix)) = solve(&points, &d) {
            let total: f64 = mix.iter().map(|(_, w)| w).sum();
            prop_assert!((total - 1.0).abs() < 1e-9 && mix.iter().all(|(_, w)| *w > 0.0));
            prop_assert!(close(&mix_of(&points, &mix), &u, 1e-9));
            prop_assert!(u.iter().zip(&d).all(|(x, y)| x > y), "individually rational");
        }
    }

    /// Pareto optimality: no listed point, and no midpoint of two, dominates the agreement.
    #[test]
    fn nash_solution_is_pareto_optimal(points in points3(), d in disagreement()) {
        let Some((u, _)) = solve(&points, &d) else { return Ok(()) };
        let m = points.len();
        for i in 0..m { for j in i..m {
            let v = mix_of(&points, &[(i, 0.5), (j, 0.5)]);
            let dominates = v.iter().zip(&u).all(|(a, b)| *a >= *b - 1e-9)
                && v.iter().zip(&u).any(|(a, b)| *a > *b + 1e-6);
            prop_assert!(!dominates, "{:?} dominates {:?}", v, u);
        }}
    }

    /// Symmetry: if the problem is symmetric under every permutation of players, so is the answer.
    #[test]
    fn nash_solution_of_a_symmetric_problem_is_symmetric(raw in prop::collection::vec(prop::collection::vec(0.0f64..10.0, 3), 1..4), c in 0.0f64..2.0) {
        const PERMUTATIONS: [[usize; 3]; 6] = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
        let points: Vec<Point> = raw.iter()
            .flat_map(|p| PERMUTATIONS.iter().map(move |perm| perm.iter().map(|&l| p[l]).collect()))
            .collect();
        if let Some((u, _)) = solve(&points, &[c; 3]) {
            prop_assert!(close(&u, &[u[0]; 3], 1e-9), "{:?}", u);
        }
    }

    /// Invariance to positive affine rescaling of each player's utility.
    #[test]
    fn nash_solution_is_invariant_to_positive_affine_rescaling(
        points in points3(), d in disagreement(),
        scale in prop::collection::vec(0.1f64..10.0, 3), shift in prop::collection::vec(-5.0f64..5.0, 3),
    ) {
        let map = |u: &[f64]| -> Vec<f64> { (0..3).map(|l| scale[l] * u[l] + shift[l]).collect() };
        let moved: Vec<Point> = points.iter().map(|p| map(p)).collect();
        match (solve(&points, &d), solve(&moved, &map(&d))) {
            (Some((u, _)), Some((v, _))) => prop_assert!(close(&map(&u), &v, 1e-7), "{:?} vs {:?}", map(&u), v),
            (None, None) => {}
            (a, b) => prop_assert!(false, "{:?} vs {:?}", a, b),
        }
    }

    /// Independence of irrelevant alternatives: dropping points outside the chosen lottery's support
    /// leaves the agreement where it was.
    #[test]
    fn nash_solution_is_independent_of_irrelevant_alternatives(points in points3(), d in disagreement(), keep in any::<u16>()) {
        let Some((u, mix)) = solve(&points, &d) else { return Ok(()) };
        let kept: Vec<Point> = points.iter().enumerate()
            .filter(|(k, _)| mix.iter().any(|(s, _)| s == k) || keep & (1 << k) != 0)
            .map(|(_, p)| p.clone())
            .collect();
        let (v, _) = solve(&kept, &d).expect("the agreement is still feasible");
        prop_assert!(close(&u, &v, 1e-9), "{:?} vs {:?}", u, v);
    }

    /// With two players the n-player solver agrees with the two-player one.
    #[test]
    fn two_player_hull_matches_the_two_player_solver(raw in prop::collection::vec((0.0f64..10.0, 0.0f64..10.0), 1..10), d in (0.0f64..2.0, 0.0f64..2.0)) {
        let points: Vec<Point> = raw.iter().map(|&(a, b)| vec![a, b]).collect();
        let n = nash_bargaining_n(&points, &[d.0, d.1], Feasible::ConvexHull).expect("valid");
        match (n, nash_bargaining(&raw, d).expect("valid")) {
            (NashNOutcome::Agreement { utilities, .. }, NashOutcome::Agreement { utilities: (a, b), .. }) => {
                prop_assert!(close(&utilities, &[a, b], 1e-9), "{:?} vs {:?}", utilities, (a, b));
            }
            (NashNOutcome::Disagreement, NashOutcome::Disagreement) => {}
            (x, y) => prop_assert!(false, "{:?} vs {:?}", x, y),
        }
    }
}

#[test]
fn utilities_near_f64s_limits_are_bargained_at_unit_scale() {
    // The product's coefficients overflowed: the symmetric problem was solved at an endpoint.
    let m = f64::MAX;
    let points = [vec![m, 1.0], vec![1.0, m]];
    let outcome = nash_bargaining_n(&points, &[0.0, 0.0], Feasible::ConvexHull).expect("valid");
    let NashNOutcome::Agreement { utilities, mix } = outcome else {
        panic!("agreement: {outcome:?}");
    };
    assert!(
        close(&utilities, &[m / 2.0, m / 2.0], 1e-9),
        "{utilities:?} {mix:?}"
    );
}

#[test]
fn many_players_small_gains_still_agree() {
    // 1,100 gains of half the largest magnitude: their product is below the smallest f64 and
    // was taken for none.
    let n = 1_100;
    let points = [vec![0.5; n], vec![-1.0; n]];
    let outcome = nash_bargaining_n(&points, &vec![0.0; n], Feasible::Finite).expect("valid");
    let NashNOutcome::Agreement { utilities, mix } = outcome else {
        panic!("agreement: {outcome:?}");
    };
    assert_eq!((utilities, mix), (vec![0.5; n], vec![(0, 1.0)]));
}
