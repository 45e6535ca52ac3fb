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

/// `ty` as JSON: `{"int": [0, 100]}`, `{"float": [0.0, 1.0]}`, `{"choice": ["a", "b"]}`,
/// `"bool"`, `{"record": {"field": <type>, …}}`.
pub fn type_to_json(ty: &VarType) -> Value {
    match ty {
        VarType::Float { min, max } => serde_json::json!({ "float": [min, max] }),
        VarType::Int { min, max } => serde_json::json!({ "int": [min, max] }),
        VarType::Choice(options) => serde_json::json!({ "choice": options }),
        VarType::Bool => Value::from("bool"),
        VarType::Record(fields) => {
            let fields: serde_json::Map<String, Value> = fields
                .iter()
                .map(|(name, field)| (name.clone(), type_to_json(field)))
                .collect();
            serde_json::json!({ "record": fields })
        }
    }
}

/// The type `json` describes, in the form [`type_to_json`] writes; the type's own validation
/// (ranges, sizes, depth) runs when it is declared.
pub fn type_from_json(json: &Value) -> Result<VarType, String> {
    type_from_json_at(json, 0)
}

fn type_from_json_at(json: &Value, depth: usize) -> Result<VarType, String> {
    if depth > RECORD_DEPTH_MAX {
        return Err(format!("records nest deeper than {RECORD_DEPTH_MAX}"));
    }
    if json == "bool" {
        return Ok(VarType::Bool);
    }
    let unknown = || format!("not a type: {json} (int, float, choice, bool or record)");
    let Some((kind, body)) = json
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.iter().next())
    else {
        return Err(unknown());
    };
    let pair = |body: &Value| match body.as_array().map(Vec::as_slice) {
        Some([min, max]) => Ok((min.clone(), max.clone())),
        _ => Err(format!("{kind}: expected [min, max], got {body}")),
    };
    match kind.as_str() {
        "int" => match pair(body)? {
            (Value::Number(min), Value::Number(max)) => match (min.as_i64(), max.as_i64()) {
                (Some(min), Some(max)) => Ok(VarType::Int { min, max }),
                _ => Err(format!("int: bounds must be integers, got {body}")),
            },
            _ => Err(format!("int: bounds must be integers, got {body}")),
        },
        "float" => match pair(body)? {
            (Value::Number(min), Value::Number(max)) => Ok(VarType::Float {
                min: min.as_f64().unwrap_or(f64::NAN),
                max: max.as_f64().unwrap_or(f64::NAN),
            }),
            _ => Err(format!("float: bounds must be numbers, got {body}")),
        },
        "choice" => body
            .as_array()
            .and_then(|options| {
                options
                    .iter()
                    .map(|o| o.as_str().map(String::from))
                    .collect()
            })
            .map(VarType::Choice)
            .ok_or_else(|| format!("choice: expected a list of strings, got {body}")),
        "record" => {
            let fields = body
                .as_object()
                .ok_or_else(|| format!("record: expected an object of fields, got {body}"))?;
            let mut types = BTreeMap::new();
            for (name, field) in fields {
                types.insert(name.clone(), type_from_json_at(field, depth + 1)?);
            }
            Ok(VarType::Record(types))
        }
        _ => Err(unknown()),
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
    fn types_round_trip_through_json_and_nonsense_is_refused() {
        let ty = VarType::Record(BTreeMap::from([
            ("rate".into(), VarType::Float { min: 0.0, max: 1.0 }),
            (
                "mode".into(),
                VarType::Choice(["a".into(), "b".into()].into()),
            ),
            ("n".into(), VarType::Int { min: -1, max: 9 }),
            ("on".into(), VarType::Bool),
        ]));
        assert_eq!(type_from_json(&type_to_json(&ty)), Ok(ty));
        for bad in [
            serde_json::json!("boolean"),
            serde_json::json!({ "int": [1] }),
            serde_json::json!({ "int": [0.5, 2] }),
            serde_json::json!({ "choice": [1, 2] }),
            serde_json::json!({ "int": [0, 1], "float": [0, 1] }),
        ] {
            assert!(type_from_json(&bad).is_err(), "{bad}");
        }
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
