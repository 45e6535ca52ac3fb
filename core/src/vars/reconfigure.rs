//! Changing who decides a variable: what is built (nothing that changes a declared spec) and
//! the typed answer for the rest.
//!
//! A `cas` or `coordinated` variable's majority is counted against the acceptors its spec
//! names, and a counter's allowances against its holders; every message carries the spec's
//! fingerprint. Moving a variable to other acceptors safely needs a joint step — the old
//! majority must decide a final version that names the new set, after which only the new set
//! decides — and that step is not built. So a declared variable keeps its acceptors, and a
//! request to change them is answered with [`VarsError::Reconfiguration`], saying so. What
//! works today: declare a new variable with the new acceptors, copy the value over with a
//! compare-and-set, and move the writers to it.

use std::collections::BTreeSet;

use foundation_agents::variable::Policy;

use super::{Life, VarSpec, VarsError};

/// Whether `spec`'s variable `name` can be moved to `acceptors`: only if nothing changes.
pub fn check_acceptor_change(
    name: &str,
    spec: &VarSpec,
    acceptors: &BTreeSet<Life>,
) -> Result<(), VarsError> {
    if spec.policy == Policy::Lww {
        return Err(VarsError::WrongPolicy {
            name: name.to_owned(),
            policy: spec.policy,
            why: "an lww variable has no acceptors: every node writes",
        });
    }
    if &spec.acceptors == acceptors {
        return Ok(());
    }
    Err(VarsError::Reconfiguration {
        name: name.to_owned(),
        why: "changing a declared variable's acceptors needs a joint step of the old and new majorities, which is not built; declare a new variable with the new acceptors and copy the value with a compare-and-set",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vars::tests::life;
    use foundation_agents::variable::{VarType, VarValue};

    fn spec(policy: Policy, acceptors: &[u128]) -> VarSpec {
        VarSpec {
            ty: VarType::Int { min: 0, max: 9 },
            policy,
            initial: VarValue::Int(0),
            acceptors: acceptors.iter().map(|n| life(*n)).collect(),
        }
    }

    #[test]
    fn only_keeping_the_same_acceptors_is_accepted_and_the_rest_is_a_typed_error() {
        let cas = spec(Policy::Cas, &[1, 2, 3]);
        let same: BTreeSet<Life> = [1, 2, 3].map(life).into();
        assert_eq!(check_acceptor_change("x", &cas, &same), Ok(()));
        let replaced: BTreeSet<Life> = [1, 2, 4].map(life).into();
        assert!(matches!(
            check_acceptor_change("x", &cas, &replaced),
            Err(VarsError::Reconfiguration { .. })
        ));
        let counter = spec(Policy::Counter, &[1]);
        assert!(matches!(
            check_acceptor_change("pool", &counter, &same),
            Err(VarsError::Reconfiguration { .. })
        ));
        assert!(matches!(
            check_acceptor_change("t", &spec(Policy::Lww, &[]), &same),
            Err(VarsError::WrongPolicy { .. })
        ));
    }
}
