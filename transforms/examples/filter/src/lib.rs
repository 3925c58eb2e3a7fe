//! `filter`: drops records whose JSON field equals a value, e.g. debug logs
//! you do not want to pay to store. Dropped records count as processed
//! successfully (Firehose's `Dropped`), not as failures.
//!
//! Options (both required): `drop_if_field=level` (a field or dotted path)
//! and `equals=debug`. A string field matches its text; a number or boolean
//! matches its JSON text (`equals=0`, `equals=true`). A record without the
//! field is kept. A record that is not JSON fails to `processing-failed`:
//! the filter cannot tell whether it should have been dropped.

use serde_json::Value;
use sluice_transform::{
    BatchContext, InputRecord, Mapped, OutputRecord, Transform, config, map_records,
};

pub struct Filter {
    path: Vec<String>,
    equals: String,
}

impl Transform for Filter {
    fn init(cfg: &[(String, String)]) -> Result<Self, String> {
        config::reject_unknown(cfg, &["drop_if_field", "equals"])?;
        let field = config::get(cfg, "drop_if_field")
            .filter(|f| !f.is_empty())
            .ok_or("drop_if_field: required, the JSON field to test (e.g. drop_if_field=level)")?;
        let equals =
            config::get(cfg, "equals").ok_or("equals: required, the value that drops a record")?;
        Ok(Filter {
            path: field.split('.').map(String::from).collect(),
            equals: equals.to_string(),
        })
    }

    fn transform(&mut self, _ctx: &BatchContext, records: Vec<InputRecord>) -> Vec<OutputRecord> {
        map_records(records, |r| {
            let doc: Value =
                serde_json::from_slice(&r.data).map_err(|e| format!("record is not JSON: {e}"))?;
            let hit = match self
                .path
                .iter()
                .try_fold(&doc, |v, k| v.as_object()?.get(k))
            {
                Some(Value::String(s)) => *s == self.equals,
                Some(Value::Number(n)) => n.to_string() == self.equals,
                Some(Value::Bool(b)) => b.to_string() == self.equals,
                _ => false,
            };
            Ok(if hit {
                Mapped::Dropped
            } else {
                Mapped::ok(r.data)
            })
        })
    }
}

sluice_transform::export!(Filter);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_transform::Outcome;
    use sluice_transform::testing::{batch, check_answer, config, context};

    fn run(field: &str, equals: &str, data: &[&[u8]]) -> Vec<Outcome> {
        let input = batch(data);
        let cfg = config(&[("drop_if_field", field), ("equals", equals)]);
        let out = Filter::init(&cfg)
            .unwrap()
            .transform(&context(), input.clone());
        check_answer(&input, &out).unwrap();
        for (i, o) in input.iter().zip(&out) {
            if o.outcome == Outcome::Ok {
                assert_eq!(o.data, i.data, "kept records pass unchanged");
            }
        }
        out.into_iter().map(|o| o.outcome).collect()
    }

    #[test]
    fn drops_matching_records_and_keeps_the_rest() {
        let got = run(
            "level",
            "debug",
            &[
                br#"{"level":"debug"}"#,
                br#"{"level":"info"}"#,
                br#"{"msg":"no level"}"#,
                br#"{"level":"DEBUG"}"#,
            ],
        );
        assert_eq!(
            got,
            [Outcome::Dropped, Outcome::Ok, Outcome::Ok, Outcome::Ok]
        );
    }

    #[test]
    fn nested_fields_numbers_and_booleans() {
        assert_eq!(
            run(
                "a.b",
                "0",
                &[br#"{"a":{"b":0}}"#, br#"{"a":{"b":"0"}}"#, br#"{"a":1}"#]
            ),
            [Outcome::Dropped, Outcome::Dropped, Outcome::Ok]
        );
        assert_eq!(
            run("x", "true", &[br#"{"x":true}"#, br#"{"x":false}"#]),
            [Outcome::Dropped, Outcome::Ok]
        );
    }

    #[test]
    fn non_json_fails_and_options_are_required() {
        assert!(
            matches!(&run("level", "debug", &[b"plain text"])[0], Outcome::ProcessingFailed(m) if m.starts_with("record is not JSON"))
        );
        assert!(
            Filter::init(&config(&[("equals", "x")]))
                .err()
                .unwrap()
                .starts_with("drop_if_field")
        );
        assert!(
            Filter::init(&config(&[("drop_if_field", "x")]))
                .err()
                .unwrap()
                .starts_with("equals")
        );
    }
}
