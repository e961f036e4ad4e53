//! Checks of what an older version wrote against what this one writes, for the
//! wire-compatibility tests of both crates (Raft peer messages, DCS values).

use serde_json::Value;

/// Whether `new` carries every field of `old` with the same value (`new` may have more):
/// a reader of the older version finds everything it knew. `at` names the place in the
/// errors (`$`, `$.node.addr`, `$.entries[2]`).
pub fn covers(old: &Value, new: &Value, at: &str) -> Result<(), String> {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, ov) in o {
                let nv = n.get(k).ok_or_else(|| format!("{at}.{k}: no longer written"))?;
                covers(ov, nv, &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(o), Value::Array(n)) if o.len() == n.len() => o
            .iter()
            .zip(n)
            .enumerate()
            .try_for_each(|(i, (ov, nv))| covers(ov, nv, &format!("{at}[{i}]"))),
        (o, n) if o == n => Ok(()),
        (o, n) => Err(format!("{at}: was {o}, now {n}")),
    }
}

#[cfg(test)]
mod tests {
    use super::covers;
    use serde_json::json;

    #[test]
    fn covers_allows_new_fields_and_names_the_first_difference() {
        let old = json!({"a": 1, "b": [1, {"c": "x"}]});
        assert_eq!(
            covers(&old, &json!({"a": 1, "b": [1, {"c": "x", "d": 2}], "e": 0}), "$"),
            Ok(())
        );
        assert_eq!(
            covers(&old, &json!({"b": [1, {"c": "x"}]}), "$"),
            Err("$.a: no longer written".into())
        );
        assert_eq!(
            covers(&old, &json!({"a": 1, "b": [1, {"c": "y"}]}), "$"),
            Err("$.b[1].c: was \"x\", now \"y\"".into())
        );
        assert!(
            covers(&old, &json!({"a": 1, "b": [1]}), "$").is_err(),
            "an array of another length"
        );
    }
}
