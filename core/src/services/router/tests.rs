use std::time::Duration;

use proptest::prelude::*;
use rand10::rngs::StdRng;
use rand10::SeedableRng;

use super::*;
use crate::services::record::InstanceRecord;
use crate::NodeId;

const SERVICE: &str = "billing";

fn instance(node: u128) -> Instance {
    Instance {
        service: SERVICE.to_owned(),
        id: InstanceId {
            node: NodeId::from_u128(node),
            generation: 1,
            local: 1,
        },
        addr: format!("127.0.0.1:{}", 7000 + node).parse().unwrap(),
        record: InstanceRecord::default(),
        local: false,
    }
}

fn directory(nodes: u128) -> Directory {
    Directory::of_instances((1..=nodes).map(instance))
}

fn at(ms: u64) -> Instant {
    Instant::from_elapsed(Duration::from_millis(ms))
}

struct Fixture {
    router: Router,
    rng: StdRng,
    directory: Directory,
}

impl Fixture {
    fn new(nodes: u128) -> Self {
        Self {
            router: Router::new(BreakerConfig::default()).unwrap(),
            rng: StdRng::seed_from_u64(7),
            directory: directory(nodes),
        }
    }

    fn attempt(&mut self, now: Instant, call: &mut CallPlan<'_>) -> Attempt {
        match self.router.next(now, call, &self.directory, &mut self.rng) {
            Step::Attempt(attempt) => attempt,
            Step::Done(result) => panic!("expected an attempt, got {result:?}"),
        }
    }

    fn done(&mut self, now: Instant, call: &mut CallPlan<'_>) -> Result<Vec<u8>, RpcError> {
        match self.router.next(now, call, &self.directory, &mut self.rng) {
            Step::Done(result) => result,
            Step::Attempt(attempt) => panic!("expected the end, got {attempt:?}"),
        }
    }
}

fn call(options: CallOptions) -> CallPlan<'static> {
    CallPlan::new(
        SERVICE,
        std::borrow::Cow::Owned(options),
        at(0),
        Duration::from_millis(900),
    )
}

#[test]
fn an_answer_ends_the_call_after_one_attempt() {
    let mut f = Fixture::new(2);
    let mut plan = call(CallOptions::default());
    let attempt = f.attempt(at(1), &mut plan);
    assert_eq!(attempt.number, 1);
    let end = AttemptEnd::Reply(RpcReply::Ok(b"42".to_vec()));
    let answer = f.router.finish(at(2), &mut plan, attempt, end);
    assert_eq!(answer, Some(Ok(b"42".to_vec())));
    assert!(
        f.router.outstanding.is_empty(),
        "the attempt is no longer outstanding"
    );
}

#[test]
fn an_undelivered_request_moves_to_another_instance() {
    let mut f = Fixture::new(2);
    let mut plan = call(CallOptions::default());
    let first = f.attempt(at(1), &mut plan);
    let first_id = first.instance.id;
    let end = AttemptEnd::NotDelivered("connection refused".into());
    assert_eq!(f.router.finish(at(2), &mut plan, first, end), None);
    let second = f.attempt(at(3), &mut plan);
    assert_ne!(second.instance.id, first_id, "a retry goes elsewhere");
    assert_eq!(second.number, 2);
}

#[test]
fn a_lost_answer_is_not_retried_unless_the_call_is_idempotent() {
    let mut f = Fixture::new(3);
    let mut plan = call(CallOptions::default());
    let attempt = f.attempt(at(1), &mut plan);
    let answer = f.router.finish(
        at(2),
        &mut plan,
        attempt,
        AttemptEnd::Lost("timed out".into()),
    );
    assert!(
        matches!(answer, Some(Err(RpcError::Unavailable { .. }))),
        "the handler may have run: {answer:?}"
    );

    let mut plan = call(CallOptions::default().idempotent());
    let attempt = f.attempt(at(1), &mut plan);
    let answer = f.router.finish(
        at(2),
        &mut plan,
        attempt,
        AttemptEnd::Lost("timed out".into()),
    );
    assert_eq!(answer, None, "an idempotent call goes on");
}

#[test]
fn a_handler_error_is_an_answer() {
    let mut f = Fixture::new(2);
    let mut plan = call(CallOptions::default());
    let attempt = f.attempt(at(1), &mut plan);
    let end = AttemptEnd::Reply(RpcReply::Err(RemoteError::Handler("no".into())));
    let answer = f.router.finish(at(2), &mut plan, attempt, end);
    assert!(matches!(answer, Some(Err(RpcError::Handler { message, .. })) if message == "no"));
}

#[test]
fn attempts_stop_at_the_maximum_and_name_the_last_failure() {
    let mut f = Fixture::new(5);
    let mut plan = call(CallOptions::default());
    for n in 1..=3 {
        let attempt = f.attempt(at(n), &mut plan);
        let end = AttemptEnd::NotDelivered(format!("refused {n}"));
        assert_eq!(f.router.finish(at(n), &mut plan, attempt, end), None);
    }
    match f.done(at(4), &mut plan) {
        Err(RpcError::Unavailable { attempts, last, .. }) => {
            assert_eq!(attempts, 3);
            assert_eq!(last, "refused 3");
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[test]
fn no_routable_instance_is_reported_as_such() {
    let mut f = Fixture::new(0);
    let mut plan = call(CallOptions::default());
    assert!(matches!(
        f.done(at(1), &mut plan),
        Err(RpcError::NoInstances { .. })
    ));
}

/// A call dropped by its caller while an attempt ran (a timeout around it, a `select!`)
/// ends no attempt; the driver abandons it. It must stop counting as outstanding (least
/// outstanding would shun the instance for as long as it stays listed) and give back the
/// half-open trial it held.
#[test]
fn an_abandoned_attempt_is_no_longer_outstanding_and_gives_back_its_trial() {
    let breaker = BreakerConfig {
        consecutive_failures: Some(1),
        half_open_trials: 1,
        successes_to_close: 1,
        ..BreakerConfig::default()
    };
    let mut f = Fixture::new(1);
    f.router = Router::new(breaker).unwrap();
    let mut plan = call(CallOptions::default());
    let attempt = f.attempt(at(1), &mut plan);
    let end = AttemptEnd::Reply(RpcReply::Err(RemoteError::DeadlineExceeded));
    f.router.finish(at(2), &mut plan, attempt, end);
    let reopened = at(2) + breaker.open_for;
    let mut plan = call(CallOptions::default());
    plan.until = reopened + Duration::from_secs(1);
    let trial = f.attempt(reopened, &mut plan);
    assert_eq!(f.router.outstanding(&trial.instance.id), 1);
    let id = trial.instance.id;
    f.router.abandon(reopened, trial);
    assert_eq!(f.router.outstanding(&id), 0);
    let mut plan = call(CallOptions::default());
    plan.until = reopened + Duration::from_secs(1);
    let next = f.attempt(reopened, &mut plan);
    assert_eq!(next.instance.id, id, "the trial slot is free again");
}

#[test]
fn a_call_past_its_deadline_makes_no_attempt() {
    let mut f = Fixture::new(2);
    let mut plan = call(CallOptions::default());
    assert!(matches!(
        f.done(at(900), &mut plan),
        Err(RpcError::DeadlineExceeded { attempts: 0, .. })
    ));
}

#[test]
fn an_idempotent_call_keeps_time_for_later_attempts() {
    let mut f = Fixture::new(3);
    let mut plan = call(CallOptions::default().idempotent());
    let attempt = f.attempt(at(0), &mut plan);
    assert_eq!(attempt.budget, Duration::from_millis(300));
    let mut plan = call(CallOptions::default());
    assert_eq!(
        f.attempt(at(0), &mut plan).budget,
        Duration::from_millis(900)
    );
}

#[test]
fn open_breakers_turn_calls_away_without_an_attempt() {
    let mut f = Fixture::new(1);
    for n in 0..5 {
        let mut plan = call(CallOptions::default());
        let attempt = f.attempt(at(n), &mut plan);
        let end = AttemptEnd::NotDelivered("down".into());
        f.router.finish(at(n), &mut plan, attempt, end);
    }
    assert_eq!(f.router.take_transitions().len(), 1, "closed → open");
    let mut plan = call(CallOptions::default());
    assert!(matches!(
        f.done(at(10), &mut plan),
        Err(RpcError::CircuitOpen { .. })
    ));
}

/// An attempt that ends after its instance was forgotten (it left the directory while the call
/// ran: the usual end is a failure) makes no breaker for it.
#[test]
fn an_attempt_ending_after_its_instance_was_forgotten_makes_no_breaker() {
    let mut f = Fixture::new(1);
    let mut plan = call(CallOptions::default());
    let attempt = f.attempt(at(0), &mut plan);
    f.router.forget_missing(&directory(0));
    f.router
        .finish(at(1), &mut plan, attempt, AttemptEnd::Lost("gone".into()));
    assert!(
        f.router.breakers().is_empty(),
        "a breaker for a forgotten instance"
    );
}

#[test]
fn routing_state_of_vanished_instances_is_forgotten() {
    let mut f = Fixture::new(2);
    let mut plan = call(CallOptions::default());
    let attempt = f.attempt(at(0), &mut plan);
    f.router
        .finish(at(1), &mut plan, attempt, AttemptEnd::Lost("x".into()));
    assert_eq!(f.router.breakers().len(), 1);
    assert_eq!(
        f.router.balancer.len(),
        1,
        "the service's round-robin cursor"
    );
    f.router.forget_missing(&directory(2));
    assert_eq!(
        f.router.balancer.len(),
        1,
        "a listed service keeps its cursor"
    );
    f.router.forget_missing(&directory(0));
    assert!(f.router.breakers().is_empty());
    assert!(
        f.router.balancer.is_empty(),
        "an unlisted service's cursor is dropped"
    );
}

fn end_strategy() -> impl proptest::strategy::Strategy<Value = AttemptEnd> {
    prop_oneof![
        Just(AttemptEnd::Reply(RpcReply::Ok(vec![1]))),
        Just(AttemptEnd::Reply(RpcReply::Err(RemoteError::Overloaded))),
        Just(AttemptEnd::Reply(RpcReply::Err(
            RemoteError::DeadlineExceeded
        ))),
        Just(AttemptEnd::Reply(RpcReply::Err(RemoteError::Handler(
            "h".into()
        )))),
        Just(AttemptEnd::NotDelivered("refused".into())),
        Just(AttemptEnd::Lost("lost".into())),
    ]
}

proptest! {
    /// Whatever the attempts meet: a call ends, never tries one instance twice, never makes
    /// more than its maximum attempts, and a non-idempotent call never retries after an end
    /// where its handler may have run.
    #[test]
    fn calls_end_within_their_bounds(
        nodes in 0u128..6,
        max_attempts in 1u32..5,
        idempotent in any::<bool>(),
        ends in proptest::collection::vec(end_strategy(), 0..8),
    ) {
        let mut f = Fixture::new(nodes);
        let mut options = CallOptions { max_attempts, ..CallOptions::default() };
        options.idempotent = idempotent;
        let mut plan = call(options);
        let mut seen = BTreeSet::new();
        let mut ends = ends.into_iter();
        let mut now = 0;
        loop {
            now += 10;
            match f.router.next(at(now), &mut plan, &f.directory, &mut f.rng) {
                Step::Done(_) => break,
                Step::Attempt(attempt) => {
                    prop_assert!(seen.insert(attempt.instance.id), "an instance tried twice");
                    prop_assert!(attempt.number <= max_attempts);
                    let end = ends.next().unwrap_or(AttemptEnd::Reply(RpcReply::Ok(vec![])));
                    let may_have_run = matches!(
                        end,
                        AttemptEnd::Lost(_) | AttemptEnd::Reply(RpcReply::Err(RemoteError::DeadlineExceeded))
                    );
                    let answer = f.router.finish(at(now), &mut plan, attempt, end);
                    if may_have_run && !idempotent {
                        prop_assert!(answer.is_some(), "retried after the handler may have run");
                    }
                    if answer.is_some() {
                        break;
                    }
                }
            }
        }
        prop_assert!(f.router.outstanding.is_empty());
    }
}
