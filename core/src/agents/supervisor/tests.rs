use proptest::prelude::{any, prop_assert, proptest, TestCaseError};

use super::*;

fn spec(name: &str, restart: Restart) -> ChildSpec {
    ChildSpec {
        name: name.into(),
        restart,
    }
}

fn config(strategy: Strategy) -> SupervisorConfig {
    SupervisorConfig {
        strategy,
        max_restarts: 3,
        period_ms: 1_000,
        backoff_initial_ms: 10,
        backoff_max_ms: 80,
    }
}

fn three(strategy: Strategy) -> Supervisor {
    let children = vec![
        spec("a", Restart::Permanent),
        spec("b", Restart::Permanent),
        spec("c", Restart::Permanent),
    ];
    Supervisor::new(config(strategy), children).expect("valid")
}

/// Stop actions for these children, in this order.
fn stops_of(children: &[usize]) -> Vec<Action> {
    children.iter().map(|&i| Action::Stop(ChildId(i))).collect()
}

fn failed() -> Exit {
    Exit::Failed("boom".into())
}

#[test]
fn children_start_in_order_and_stop_in_reverse() {
    let mut sup = three(Strategy::OneForOne);
    let started = sup.start(Time(0));
    assert_eq!(
        started,
        (0..3)
            .map(|i| Action::Start(ChildId(i)))
            .collect::<Vec<_>>()
    );
    let stops = sup.shutdown();
    assert_eq!(stops, stops_of(&[2, 1, 0]));
    for i in [2, 1] {
        sup.exited(Time(5), ChildId(i), Exit::Normal);
        assert_eq!(sup.state(), SupervisorState::ShuttingDown);
    }
    sup.exited(Time(5), ChildId(0), Exit::Normal);
    assert_eq!(sup.state(), SupervisorState::Stopped);
    sup.invariants().expect("invariants");
}

#[test]
fn one_for_one_restarts_only_the_failed_child_after_a_doubling_backoff() {
    let mut sup = three(Strategy::OneForOne);
    sup.start(Time(0));
    assert!(sup.exited(Time(100), ChildId(1), failed()).is_empty());
    assert_eq!(sup.poll_timeout(), Some(Time(110)));
    assert!(sup.handle_timeout(Time(109)).is_empty());
    assert_eq!(
        sup.handle_timeout(Time(110)),
        vec![Action::Start(ChildId(1))]
    );
    // Failing again soon after its restart, it waits twice as long.
    sup.exited(Time(120), ChildId(1), Exit::Panicked("oops".into()));
    assert_eq!(sup.poll_timeout(), Some(Time(140)));
    assert_eq!(
        sup.child_state(ChildId(0)),
        Some(&ChildState::Running { since: Time(0) })
    );
}

#[test]
fn a_child_that_ran_a_whole_period_starts_again_from_the_first_delay() {
    let mut sup = three(Strategy::OneForOne);
    sup.start(Time(0));
    sup.exited(Time(10), ChildId(0), failed());
    sup.handle_timeout(Time(20));
    sup.exited(Time(5_000), ChildId(0), failed());
    assert_eq!(sup.poll_timeout(), Some(Time(5_010)));
}

#[test]
fn too_many_restarts_in_a_period_gives_up_and_stops_everyone_in_reverse() {
    let mut sup = three(Strategy::OneForOne);
    sup.start(Time(0));
    let mut now = Time(0);
    for _ in 0..3 {
        now = now.plus_ms(20);
        assert!(!sup
            .exited(now, ChildId(2), failed())
            .iter()
            .any(|a| matches!(a, Action::GaveUp { .. })));
        now = sup.poll_timeout().expect("a restart is due");
        sup.handle_timeout(now);
    }
    let actions = sup.exited(now.plus_ms(1), ChildId(2), failed());
    assert!(matches!(&actions[0], Action::GaveUp { reason } if reason.contains("c failed")));
    assert_eq!(
        actions[1..],
        [Action::Stop(ChildId(1)), Action::Stop(ChildId(0))]
    );
    assert_eq!(sup.state(), SupervisorState::GivingUp);
    sup.exited(now, ChildId(1), Exit::Normal);
    sup.exited(now, ChildId(0), Exit::Normal);
    assert_eq!(sup.state(), SupervisorState::Stopped);
    assert_eq!(sup.poll_timeout(), None, "never retried");
}

#[test]
fn one_for_all_stops_the_others_waits_for_them_and_starts_all_in_order() {
    let mut sup = three(Strategy::OneForAll);
    sup.start(Time(0));
    let actions = sup.exited(Time(100), ChildId(1), failed());
    assert_eq!(
        actions,
        vec![Action::Stop(ChildId(2)), Action::Stop(ChildId(0))]
    );
    assert!(
        sup.handle_timeout(Time(200)).is_empty(),
        "c and a have not stopped yet"
    );
    assert!(sup.exited(Time(201), ChildId(2), Exit::Normal).is_empty());
    let restarted = sup.exited(Time(202), ChildId(0), Exit::Normal);
    assert_eq!(
        restarted,
        (0..3)
            .map(|i| Action::Start(ChildId(i)))
            .collect::<Vec<_>>()
    );
    assert_eq!(sup.restarts(), 1);
}

#[test]
fn transient_children_end_normally_and_temporary_ones_are_never_restarted() {
    let children = vec![
        spec("t", Restart::Transient),
        spec("tmp", Restart::Temporary),
    ];
    let mut sup = Supervisor::new(config(Strategy::OneForOne), children).expect("valid");
    sup.start(Time(0));
    assert!(sup.exited(Time(1), ChildId(0), Exit::Normal).is_empty());
    assert!(sup.exited(Time(1), ChildId(1), failed()).is_empty());
    assert_eq!(sup.poll_timeout(), None);
    assert_eq!(sup.restarts(), 0);
}

#[test]
fn a_child_added_to_a_running_supervisor_starts_at_once_and_stops_first() {
    let mut sup = three(Strategy::OneForAll);
    sup.start(Time(0));
    let (id, actions) = sup
        .start_child(Time(50), spec("d", Restart::Permanent))
        .expect("joins");
    assert_eq!((id, actions), (ChildId(3), vec![Action::Start(ChildId(3))]));
    assert_eq!(sup.child("d"), Some(ChildId(3)));
    // One-for-all now takes it along: its failure restarts the others, and theirs it.
    let stops = sup.exited(Time(100), ChildId(3), failed());
    assert_eq!(stops, stops_of(&[2, 1, 0]));
    // Added while that restart waits for the others to stop: it starts with them.
    let (late, actions) = sup
        .start_child(Time(101), spec("e", Restart::Permanent))
        .expect("joins");
    assert!(actions.is_empty(), "not while the others are stopping");
    for i in [2, 1] {
        assert!(sup.exited(Time(102), ChildId(i), Exit::Normal).is_empty());
    }
    let restarted = sup.exited(Time(110), ChildId(0), Exit::Normal);
    assert_eq!(
        restarted,
        (0..=late.0)
            .map(|i| Action::Start(ChildId(i)))
            .collect::<Vec<_>>()
    );
    // Shutdown stops the last added first.
    let stops = sup.shutdown();
    assert_eq!(stops.first(), Some(&Action::Stop(late)));
    sup.invariants().expect("invariants");
}

#[test]
fn a_child_cannot_join_under_a_taken_name_or_a_stopping_supervisor() {
    let mut idle = three(Strategy::OneForOne);
    let (id, actions) = idle
        .start_child(Time(0), spec("d", Restart::Permanent))
        .expect("joins an idle supervisor");
    assert!(actions.is_empty());
    assert_eq!(idle.start(Time(1)).len(), 4, "it starts with the rest");
    assert_eq!(
        idle.child_state(id),
        Some(&ChildState::Running { since: Time(1) })
    );
    assert_eq!(
        idle.start_child(Time(2), spec("a", Restart::Permanent)),
        Err(SupervisorError::DuplicateName("a".into()))
    );
    idle.shutdown();
    assert_eq!(
        idle.start_child(Time(3), spec("x", Restart::Permanent)),
        Err(SupervisorError::NotRunning)
    );
    assert_eq!(idle.len(), 4, "nothing was added");
}

#[test]
fn bad_settings_and_duplicate_names_are_refused() {
    let zero = SupervisorConfig {
        period_ms: 0,
        ..SupervisorConfig::default()
    };
    assert!(matches!(
        Supervisor::new(zero, vec![]),
        Err(SupervisorError::Invalid {
            field: "period_ms",
            ..
        })
    ));
    let twins = vec![spec("x", Restart::Permanent), spec("x", Restart::Permanent)];
    assert_eq!(
        Supervisor::new(SupervisorConfig::default(), twins).err(),
        Some(SupervisorError::DuplicateName("x".into()))
    );
}

proptest! {
    /// Any sequence of exits (of any child, expected or not), timeouts and a shutdown: no
    /// panic, the invariants hold (no more restarts counted in a period than the intensity
    /// allows plus the one that gives up; nothing waits on a supervisor that stopped), and no
    /// child is started while another is being stopped.
    #[test]
    fn any_sequence_of_exits_keeps_the_bookkeeping(
        one_for_all in any::<bool>(),
        steps in proptest::collection::vec((0..5usize, 0..3u8, 0..400u64), 0..60),
        shutdown_at in 0..60usize,
    ) {
        let strategy = if one_for_all { Strategy::OneForAll } else { Strategy::OneForOne };
        let mut sup = three(strategy);
        let mut now = Time(0);
        sup.start(now);
        for (n, &(child, kind, wait)) in steps.iter().enumerate() {
            now = now.plus_ms(wait);
            if n == shutdown_at {
                sup.shutdown();
            }
            let actions = match kind {
                0 => sup.handle_timeout(now),
                1 => sup.exited(now, ChildId(child), failed()),
                _ => sup.exited(now, ChildId(child), Exit::Normal),
            };
            if actions.iter().any(|a| matches!(a, Action::Start(_))) {
                let stopping = (0..3).any(|i| sup.child_state(ChildId(i)) == Some(&ChildState::Stopping));
                prop_assert!(!stopping, "started while a child is stopping");
            }
            sup.invariants().map_err(TestCaseError::fail)?;
        }
        prop_assert!(sup.restarts() <= steps.len() as u64);
    }
}
