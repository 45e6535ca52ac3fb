//! Variables as plain JSON for HTTP and the CLI: a value is the JSON a person would write (`5`,
//! `0.25`, `"gpu"`, `true`, `{"rate": 0.1, "mode": "fast"}`), read against the variable's type.
//! The type's own check still runs after, on the machine's path.

use std::collections::BTreeMap;

use foundation_agents::variable::{VarType, VarValue, RECORD_DEPTH_MAX};
use serde_json::Value;

/// The value `json` means for a variable of type `ty`, or why it means none.
pub fn value_from_json(ty: &VarType, json: &Value) -> Result<VarValue, String> {
    from_json_at(ty, json, 0)
}

fn from_json_at(ty: &VarType, json: &Value, depth: usize) -> Result<VarValue, String> {
    let wrong = |want: &str| Err(format!("expected {want}, got {json}"));
    match (ty, json) {
        (VarType::Float { .. }, Value::Number(n)) => n
            .as_f64()
            .map(VarValue::Float)
            .ok_or_else(|| format!("{n} is not a float")),
        (VarType::Int { .. }, Value::Number(n)) => n
            .as_i64()
            .map(VarValue::Int)
            .ok_or_else(|| format!("{n} is not a 64-bit integer")),
        (VarType::Choice(_), Value::String(s)) => Ok(VarValue::Choice(s.clone())),
        (VarType::Bool, Value::Bool(b)) => Ok(VarValue::Bool(*b)),
        (VarType::Record(_), _) if depth >= RECORD_DEPTH_MAX => {
            Err(format!("records nest deeper than {RECORD_DEPTH_MAX}"))
        }
        (VarType::Record(fields), Value::Object(object)) => {
            let mut values = BTreeMap::new();
            for (name, json) in object {
                let field = fields
                    .get(name)
                    .ok_or_else(|| format!("unknown field {name:?}"))?;
                values.insert(name.clone(), from_json_at(field, json, depth + 1)?);
            }
            Ok(VarValue::Record(values))
        }
        (VarType::Float { .. }, _) => wrong("a number"),
        (VarType::Int { .. }, _) => wrong("an integer"),
        (VarType::Choice(_), _) => wrong("a string"),
        (VarType::Bool, _) => wrong("true or false"),
        (VarType::Record(_), _) => wrong("an object"),
    }
}

/// `value` as plain JSON (a float that is not finite, which no type admits, becomes null).
pub fn value_to_json(value: &VarValue) -> Value {
    match value {
        VarValue::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        VarValue::Int(i) => Value::from(*i),
        VarValue::Choice(s) => Value::from(s.clone()),
        VarValue::Bool(b) => Value::from(*b),
        VarValue::Record(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, v)| (name.clone(), value_to_json(v)))
                .collect(),
        ),
    }
}

/// `ty` as JSON, for listings: `{"int": [0, 100]}`, `{"choice": ["a", "b"]}`, `"bool"`, …
pub fn type_to_json(ty: &VarType) -> Value {
    match ty {
        VarType::Float { min, max } => serde_json::json!({ "float": [min, max] }),
        VarType::Int { min, max } => serde_json::json!({ "int": [min, max] }),
        VarType::Choice(options) => serde_json::json!({ "choice": options }),
        VarType::Bool => Value::from("bool"),
        VarType::Record(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, field)| (name.clone(), type_to_json(field)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> VarType {
        VarType::Record(BTreeMap::from([
            ("rate".into(), VarType::Float { min: 0.0, max: 1.0 }),
            ("on".into(), VarType::Bool),
        ]))
    }

    #[test]
    fn plain_json_round_trips_through_the_type() {
        let json = serde_json::json!({ "rate": 0.25, "on": true });
        let value = value_from_json(&record(), &json).expect("reads");
        assert_eq!(value_to_json(&value), json);
        let int = VarType::Int { min: 0, max: 9 };
        assert_eq!(value_from_json(&int, &Value::from(7)), Ok(VarValue::Int(7)));
    }

    #[test]
    fn json_of_the_wrong_shape_says_what_was_expected() {
        let int = VarType::Int { min: 0, max: 9 };
        assert!(value_from_json(&int, &Value::from("7"))
            .unwrap_err()
            .contains("an integer"));
        assert!(value_from_json(&int, &Value::from(7.5)).is_err());
        let unknown = serde_json::json!({ "rate": 0.5, "colour": "red" });
        assert!(value_from_json(&record(), &unknown)
            .unwrap_err()
            .contains("unknown field"));
        let mut deep = VarType::Bool;
        let mut json = Value::from(true);
        for _ in 0..=RECORD_DEPTH_MAX {
            deep = VarType::Record(BTreeMap::from([("x".into(), deep)]));
            json = serde_json::json!({ "x": json });
        }
        assert!(value_from_json(&deep, &json).unwrap_err().contains("nest"));
    }
}
