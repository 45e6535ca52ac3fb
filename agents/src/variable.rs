//! Typed, constrained values that agents coordinate on: what a variable may hold, and the check
//! every value passes before anyone can see it.
//!
//! A [`VarType`] is a float or integer range, a choice from a set, a bool, or a record of named
//! typed fields. [`VarType::check`] is the one gate: a local write, a merge of a remote value and
//! a protocol's outcome all go through it, so a value outside its constraints is refused with a
//! [`VarError`] wherever it comes from (a misbehaving node included) and never becomes visible.
//! How concurrent writes are resolved is the variable's [`Policy`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Deepest nesting of records: a type or value deeper than this is refused, so checking one is
/// bounded work whatever a peer sends.
pub const RECORD_DEPTH_MAX: usize = 8;
/// Most fields in one record, and most options in one choice.
pub const WIDTH_MAX: usize = 256;
/// Longest field name, choice option or variable name, in bytes.
pub const NAME_BYTES_MAX: usize = 128;

/// What a variable may hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub enum VarType {
    /// A finite float in `[min, max]`.
    Float {
        /// Least value.
        min: f64,
        /// Greatest value.
        max: f64,
    },
    /// An integer in `[min, max]`.
    Int {
        /// Least value.
        min: i64,
        /// Greatest value.
        max: i64,
    },
    /// One of these options.
    Choice(BTreeSet<String>),
    /// True or false.
    Bool,
    /// Every one of these named fields, each of its type.
    Record(BTreeMap<String, VarType>),
}

/// A variable's value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub enum VarValue {
    /// For [`VarType::Float`].
    Float(f64),
    /// For [`VarType::Int`].
    Int(i64),
    /// For [`VarType::Choice`].
    Choice(String),
    /// For [`VarType::Bool`].
    Bool(bool),
    /// For [`VarType::Record`].
    Record(BTreeMap<String, VarValue>),
}

// Records nest, so a value from a peer could nest deep enough to overflow the stack while it
// decodes. Both types decode through a guard that refuses nesting past the bound.
thread_local! {
    static DECODE_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs one level of decoding, refusing more than [`RECORD_DEPTH_MAX`] + 1 levels.
fn nested<'de, D: serde::Deserializer<'de>, T>(
    deserializer: D,
    decode: impl FnOnce(D) -> Result<T, D::Error>,
) -> Result<T, D::Error> {
    let depth = DECODE_DEPTH.with(|d| d.replace(d.get() + 1));
    let result = if depth > RECORD_DEPTH_MAX {
        Err(serde::de::Error::custom("records nest too deep"))
    } else {
        decode(deserializer)
    };
    DECODE_DEPTH.with(|d| d.set(depth));
    result
}

impl Serialize for VarType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        VarType::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for VarType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        nested(deserializer, VarType::deserialize)
    }
}

impl Serialize for VarValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        VarValue::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for VarValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        nested(deserializer, VarValue::deserialize)
    }
}

/// How concurrent changes of a variable are resolved. Each is enforced, not a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Policy {
    /// The last writer by hybrid logical clock wins.
    Lww,
    /// Compare-and-set on a version: of concurrent writers expecting the same version, exactly
    /// one wins, and only with a majority of the cluster.
    Cas,
    /// Changed only as the outcome of a coordination protocol; a direct write is refused.
    Coordinated,
    /// A bounded resource counter (a budget or a pool): a non-negative integer that agents
    /// draw from and refill, never below zero cluster-wide (escrow: each node spends only the
    /// rights it holds).
    Counter,
}

/// Why a type or value was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum VarError {
    /// The value is of another kind than the type.
    #[error("{path}: expected {expected}, got {got}")]
    WrongType {
        /// Where in the value (`.` for the whole, `.field.sub` inside records).
        path: String,
        /// The kind the type wants.
        expected: &'static str,
        /// The kind given.
        got: &'static str,
    },
    /// A number outside its range, or a float that is not finite.
    #[error("{path}: {value} is outside [{min}, {max}]")]
    OutOfRange {
        /// Where in the value.
        path: String,
        /// The value, as text.
        value: String,
        /// Least allowed.
        min: String,
        /// Greatest allowed.
        max: String,
    },
    /// A choice that is not one of the options.
    #[error("{path}: {value:?} is not one of the options")]
    NotAnOption {
        /// Where in the value.
        path: String,
        /// The value given.
        value: String,
    },
    /// A record without a field its type has.
    #[error("{path}: missing field {field:?}")]
    MissingField {
        /// Where in the value.
        path: String,
        /// The field.
        field: String,
    },
    /// A record with a field its type does not have.
    #[error("{path}: unknown field {field:?}")]
    UnknownField {
        /// Where in the value.
        path: String,
        /// The field.
        field: String,
    },
    /// The type itself is unusable.
    #[error("{path}: invalid type: {problem}")]
    InvalidType {
        /// Where in the type.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

impl VarType {
    /// Checks the type itself: ranges with `min <= max` and finite float bounds, non-empty
    /// choices and records within [`WIDTH_MAX`], names within [`NAME_BYTES_MAX`], nesting within
    /// [`RECORD_DEPTH_MAX`].
    pub fn validate(&self) -> Result<(), VarError> {
        self.validate_at(".", 0)
    }

    fn validate_at(&self, path: &str, depth: usize) -> Result<(), VarError> {
        let invalid = |problem: String| {
            Err(VarError::InvalidType {
                path: path.to_owned(),
                problem,
            })
        };
        match self {
            VarType::Float { min, max } if !(min.is_finite() && max.is_finite()) => {
                invalid("float bounds must be finite".into())
            }
            VarType::Float { min, max } if min > max => invalid(format!("min {min} > max {max}")),
            VarType::Int { min, max } if min > max => invalid(format!("min {min} > max {max}")),
            VarType::Choice(options) => check_names(options.iter(), "option").or_else(invalid),
            VarType::Record(_) if depth >= RECORD_DEPTH_MAX => {
                invalid(format!("records nest deeper than {RECORD_DEPTH_MAX}"))
            }
            VarType::Record(fields) => {
                check_names(fields.keys(), "field").or_else(invalid)?;
                for (name, field) in fields {
                    field.validate_at(&child(path, name), depth + 1)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Checks `value` against this type: the one gate every value passes, from wherever it
    /// comes. The error says where in the value and why.
    pub fn check(&self, value: &VarValue) -> Result<(), VarError> {
        self.check_at(value, ".")
    }

    fn check_at(&self, value: &VarValue, path: &str) -> Result<(), VarError> {
        match (self, value) {
            (VarType::Float { min, max }, VarValue::Float(v)) => {
                in_range(path, v.is_finite() && min <= v && v <= max, v, min, max)
            }
            (VarType::Int { min, max }, VarValue::Int(v)) => {
                in_range(path, min <= v && v <= max, v, min, max)
            }
            (VarType::Choice(options), VarValue::Choice(v)) if options.contains(v) => Ok(()),
            (VarType::Choice(_), VarValue::Choice(v)) => Err(VarError::NotAnOption {
                path: path.to_owned(),
                value: v.clone(),
            }),
            (VarType::Bool, VarValue::Bool(_)) => Ok(()),
            (VarType::Record(fields), VarValue::Record(values)) => {
                check_record(fields, values, path)
            }
            (ty, value) => Err(VarError::WrongType {
                path: path.to_owned(),
                expected: ty.kind(),
                got: value.kind(),
            }),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            VarType::Float { .. } => "a float",
            VarType::Int { .. } => "an integer",
            VarType::Choice(_) => "a choice",
            VarType::Bool => "a bool",
            VarType::Record(_) => "a record",
        }
    }
}

impl VarValue {
    fn kind(&self) -> &'static str {
        match self {
            VarValue::Float(_) => "a float",
            VarValue::Int(_) => "an integer",
            VarValue::Choice(_) => "a choice",
            VarValue::Bool(_) => "a bool",
            VarValue::Record(_) => "a record",
        }
    }
}

fn check_record(
    fields: &BTreeMap<String, VarType>,
    values: &BTreeMap<String, VarValue>,
    path: &str,
) -> Result<(), VarError> {
    if let Some(extra) = values.keys().find(|k| !fields.contains_key(*k)) {
        return Err(VarError::UnknownField {
            path: path.to_owned(),
            field: extra.clone(),
        });
    }
    for (name, ty) in fields {
        let value = values.get(name).ok_or_else(|| VarError::MissingField {
            path: path.to_owned(),
            field: name.clone(),
        })?;
        // The type's depth is bounded by `validate`, and a value deeper than its type fails on
        // a kind mismatch first, so recursion stays within RECORD_DEPTH_MAX.
        ty.check_at(value, &child(path, name))?;
    }
    Ok(())
}

fn in_range<T: std::fmt::Display>(
    path: &str,
    ok: bool,
    value: &T,
    min: &T,
    max: &T,
) -> Result<(), VarError> {
    if ok {
        return Ok(());
    }
    Err(VarError::OutOfRange {
        path: path.to_owned(),
        value: value.to_string(),
        min: min.to_string(),
        max: max.to_string(),
    })
}

/// Checks a set of names: non-empty, at most [`WIDTH_MAX`], each 1 to [`NAME_BYTES_MAX`] bytes.
fn check_names<'a>(
    names: impl ExactSizeIterator<Item = &'a String>,
    what: &str,
) -> Result<(), String> {
    let count = names.len();
    if count == 0 || count > WIDTH_MAX {
        return Err(format!(
            "needs 1 to {WIDTH_MAX} of each {what}, has {count}"
        ));
    }
    for name in names {
        if name.is_empty() || name.len() > NAME_BYTES_MAX {
            return Err(format!(
                "{what} {name:?} must be 1 to {NAME_BYTES_MAX} bytes"
            ));
        }
    }
    Ok(())
}

fn child(path: &str, name: &str) -> String {
    if path == "." {
        format!(".{name}")
    } else {
        format!("{path}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn record(fields: &[(&str, VarType)]) -> VarType {
        VarType::Record(
            fields
                .iter()
                .map(|(k, t)| (k.to_string(), t.clone()))
                .collect(),
        )
    }

    fn value(fields: &[(&str, VarValue)]) -> VarValue {
        VarValue::Record(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    fn temperature() -> VarType {
        VarType::Float { min: 0.0, max: 2.0 }
    }

    #[test]
    fn values_inside_their_constraints_pass() {
        let model = record(&[
            ("temperature", temperature()),
            ("tokens", VarType::Int { min: 1, max: 4096 }),
            (
                "mode",
                VarType::Choice(["fast".into(), "careful".into()].into()),
            ),
            ("enabled", VarType::Bool),
        ]);
        model.validate().expect("a valid type");
        let ok = value(&[
            ("temperature", VarValue::Float(0.7)),
            ("tokens", VarValue::Int(512)),
            ("mode", VarValue::Choice("careful".into())),
            ("enabled", VarValue::Bool(true)),
        ]);
        model.check(&ok).expect("inside its constraints");
    }

    #[test]
    fn each_violation_is_named_with_where_it_is() {
        let model = record(&[("temperature", temperature()), ("enabled", VarType::Bool)]);
        let cases = [
            (
                value(&[
                    ("temperature", VarValue::Float(2.5)),
                    ("enabled", VarValue::Bool(true)),
                ]),
                ".temperature: 2.5 is outside [0, 2]",
            ),
            (
                value(&[
                    ("temperature", VarValue::Float(f64::NAN)),
                    ("enabled", VarValue::Bool(true)),
                ]),
                ".temperature: NaN is outside [0, 2]",
            ),
            (
                value(&[
                    ("temperature", VarValue::Int(1)),
                    ("enabled", VarValue::Bool(true)),
                ]),
                ".temperature: expected a float, got an integer",
            ),
            (
                value(&[("enabled", VarValue::Bool(true))]),
                ".: missing field \"temperature\"",
            ),
            (
                value(&[
                    ("temperature", VarValue::Float(1.0)),
                    ("enabled", VarValue::Bool(true)),
                    ("extra", VarValue::Bool(false)),
                ]),
                ".: unknown field \"extra\"",
            ),
            (VarValue::Bool(true), ".: expected a record, got a bool"),
        ];
        for (bad, message) in cases {
            assert_eq!(model.check(&bad).expect_err(message).to_string(), message);
        }
        let choice = VarType::Choice(["a".into()].into());
        assert!(matches!(
            choice.check(&VarValue::Choice("b".into())),
            Err(VarError::NotAnOption { .. })
        ));
    }

    #[test]
    fn unusable_types_are_refused() {
        let bad = [
            VarType::Float { min: 1.0, max: 0.0 },
            VarType::Float {
                min: f64::NEG_INFINITY,
                max: 0.0,
            },
            VarType::Int { min: 5, max: 4 },
            VarType::Choice(BTreeSet::new()),
            VarType::Record(BTreeMap::new()),
            record(&[("", VarType::Bool)]),
        ];
        for ty in bad {
            assert!(
                matches!(ty.validate(), Err(VarError::InvalidType { .. })),
                "{ty:?}"
            );
        }
        let mut deep = VarType::Bool;
        for _ in 0..=RECORD_DEPTH_MAX {
            deep = record(&[("x", deep)]);
        }
        assert!(deep.validate().is_err(), "nesting is bounded");
    }

    #[test]
    fn a_hostile_value_nested_a_hundred_thousand_deep_is_refused_without_overflowing() {
        // Record (variant 4), one field, named "x": then the next level.
        let level = [4u8, 1, 1, b'x'];
        let mut bytes: Vec<u8> = level.iter().copied().cycle().take(4 * 100_000).collect();
        bytes.extend([3, 1]); // Bool(true)
        assert!(postcard::from_bytes::<VarValue>(&bytes).is_err());
    }

    fn any_value() -> impl Strategy<Value = VarValue> {
        let leaf = prop_oneof![
            any::<f64>().prop_map(VarValue::Float),
            any::<i64>().prop_map(VarValue::Int),
            "[a-c]{0,2}".prop_map(VarValue::Choice),
            any::<bool>().prop_map(VarValue::Bool),
        ];
        leaf.prop_recursive(4, 16, 4, |inner| {
            proptest::collection::btree_map("[a-d]{1,2}", inner, 0..4).prop_map(VarValue::Record)
        })
    }

    proptest! {
        /// Whatever a peer sends, checking it never panics, and a value that passes is inside
        /// every range of its type.
        #[test]
        fn any_value_is_either_refused_or_inside_its_constraints(v in any_value()) {
            let ty = record(&[
                ("a", temperature()),
                ("b", VarType::Int { min: -3, max: 3 }),
                ("c", record(&[("a", VarType::Bool)])),
            ]);
            if ty.check(&v).is_ok() {
                let VarValue::Record(fields) = &v else { panic!("a record passed") };
                let VarValue::Float(a) = fields["a"] else { panic!("a float passed") };
                prop_assert!((0.0..=2.0).contains(&a));
                let VarValue::Int(b) = fields["b"] else { panic!("an integer passed") };
                prop_assert!((-3..=3).contains(&b));
            }
        }

        #[test]
        fn a_value_nested_past_the_bound_is_refused_while_decoding(depth in 0..64usize) {
            let mut v = VarValue::Bool(true);
            for _ in 0..depth {
                v = value(&[("x", v)]);
            }
            let bytes = postcard::to_stdvec(&v).expect("encodes");
            let decoded = postcard::from_bytes::<VarValue>(&bytes);
            prop_assert_eq!(decoded.is_ok(), depth <= RECORD_DEPTH_MAX, "depth {}", depth);
            if let Ok(decoded) = decoded {
                prop_assert_eq!(decoded, v);
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(v) = postcard::from_bytes::<VarValue>(&bytes) {
                let _ = temperature().check(&v);
            }
            if let Ok(t) = postcard::from_bytes::<VarType>(&bytes) {
                let _ = t.validate();
            }
        }
    }
}
