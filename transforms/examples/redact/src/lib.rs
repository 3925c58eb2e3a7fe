//! `redact`: hides and renames fields of JSON records before they are stored.
//!
//! Options (all optional; `redact` and `rename` are comma-separated lists):
//! - `redact=password,card.number`: replace each field's value with the mask
//!   (a dotted path walks into nested objects; an absent field is left alone);
//! - `rename=ip:client_ip,user.name:login`: rename a field within its object
//!   (the old name may be a dotted path; the new one is a plain key, and
//!   replaces a field already called that);
//! - `mask=***`: the replacement value, a string (default `[REDACTED]`).
//!
//! Redaction runs before renaming, so both options name fields as they arrive.
//! A record that is not a JSON object fails to `processing-failed` with the
//! parser's message; the others keep a trailing newline if they had one.

use serde_json::{Map, Value};
use sluice_transform::{
    BatchContext, InputRecord, Mapped, OutputRecord, Transform, config, map_records,
};

pub struct Redact {
    redact: Vec<Vec<String>>,
    rename: Vec<(Vec<String>, String)>,
    mask: String,
}

fn path(spec: &str) -> Vec<String> {
    spec.split('.').map(String::from).collect()
}

impl Transform for Redact {
    fn init(cfg: &[(String, String)]) -> Result<Self, String> {
        config::reject_unknown(cfg, &["redact", "rename", "mask"])?;
        let redact = config::list(config::get(cfg, "redact").unwrap_or(""))
            .iter()
            .map(|s| path(s))
            .collect();
        let mut rename = Vec::new();
        for pair in config::list(config::get(cfg, "rename").unwrap_or("")) {
            match pair.split_once(':') {
                Some((old, new)) if !old.is_empty() && !new.is_empty() && !new.contains('.') => {
                    rename.push((path(old), new.to_string()))
                }
                _ => {
                    return Err(format!(
                        "rename: {pair:?} is not old:new (old a field or dotted path, new a plain field name)"
                    ));
                }
            }
        }
        let mask = config::get(cfg, "mask").unwrap_or("[REDACTED]").to_string();
        Ok(Redact {
            redact,
            rename,
            mask,
        })
    }

    fn transform(&mut self, _ctx: &BatchContext, records: Vec<InputRecord>) -> Vec<OutputRecord> {
        map_records(records, |r| {
            let mut doc: Value =
                serde_json::from_slice(&r.data).map_err(|e| format!("record is not JSON: {e}"))?;
            let Value::Object(obj) = &mut doc else {
                return Err("record is JSON but not an object".to_string());
            };
            for p in &self.redact {
                if let Some(v) = field_mut(obj, p) {
                    *v = Value::String(self.mask.clone());
                }
            }
            for (old, new) in &self.rename {
                let Some((last, parents)) = old.split_last() else {
                    continue;
                };
                if let Some(parent) = object_mut(obj, parents)
                    && let Some(v) = parent.remove(last)
                {
                    parent.insert(new.clone(), v);
                }
            }
            let mut out = serde_json::to_vec(&doc)
                .map_err(|e| format!("cannot serialise the record: {e}"))?;
            if r.data.ends_with(b"\n") {
                out.push(b'\n');
            }
            Ok(Mapped::ok(out))
        })
    }
}

/// The object at `path` under `obj` (`obj` itself for an empty path).
fn object_mut<'a>(
    obj: &'a mut Map<String, Value>,
    path: &[String],
) -> Option<&'a mut Map<String, Value>> {
    let mut cur = obj;
    for key in path {
        cur = cur.get_mut(key)?.as_object_mut()?;
    }
    Some(cur)
}

/// The value at a non-empty `path` under `obj`.
fn field_mut<'a>(obj: &'a mut Map<String, Value>, path: &[String]) -> Option<&'a mut Value> {
    let (last, parents) = path.split_last()?;
    object_mut(obj, parents)?.get_mut(last)
}

sluice_transform::export!(Redact);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_transform::Outcome;
    use sluice_transform::testing::{batch, check_answer, config, context};

    fn run(cfg: &[(&str, &str)], data: &[&[u8]]) -> Vec<OutputRecord> {
        let input = batch(data);
        let out = Redact::init(&config(cfg))
            .unwrap()
            .transform(&context(), input.clone());
        check_answer(&input, &out).unwrap();
        out
    }

    fn json(o: &OutputRecord) -> Value {
        assert_eq!(o.outcome, Outcome::Ok, "{o:?}");
        serde_json::from_slice(&o.data).unwrap()
    }

    #[test]
    fn redacts_top_level_and_nested_fields_and_ignores_absent_ones() {
        let out = run(
            &[("redact", "password, card.number, nope, card.nope.deeper")],
            &[br#"{"user":"ann","password":"hunter2","card":{"number":"4111","exp":"12/30"}}"#],
        );
        assert_eq!(
            json(&out[0]),
            serde_json::json!({"user":"ann","password":"[REDACTED]","card":{"number":"[REDACTED]","exp":"12/30"}})
        );
    }

    #[test]
    fn renames_after_redacting_with_custom_mask() {
        let out = run(
            &[
                ("redact", "ip"),
                ("rename", "ip:client_ip,user.name:login"),
                ("mask", "***"),
            ],
            &[br#"{"ip":"10.0.0.1","user":{"name":"ann"}}"#],
        );
        assert_eq!(
            json(&out[0]),
            serde_json::json!({"client_ip":"***","user":{"login":"ann"}})
        );
    }

    #[test]
    fn keeps_a_trailing_newline() {
        let out = run(&[("redact", "a")], &[b"{\"a\":1}\n"]);
        assert_eq!(out[0].data, b"{\"a\":\"[REDACTED]\"}\n");
    }

    #[test]
    fn fails_only_the_records_that_are_not_json_objects() {
        let out = run(&[("redact", "a")], &[b"not json", b"[1,2]", b"{\"a\":1}"]);
        match &out[0].outcome {
            Outcome::ProcessingFailed(m) => assert!(m.starts_with("record is not JSON: "), "{m}"),
            o => panic!("{o:?}"),
        }
        assert_eq!(
            out[1].outcome,
            Outcome::ProcessingFailed("record is JSON but not an object".into())
        );
        assert_eq!(out[2].outcome, Outcome::Ok);
    }

    #[test]
    fn bad_options_are_init_errors() {
        let err = Redact::init(&config(&[("rename", "a")])).err().unwrap();
        assert!(err.contains("\"a\" is not old:new"), "{err}");
        let err = Redact::init(&config(&[("rename", "a:b.c")])).err().unwrap();
        assert!(err.contains("not old:new"), "{err}");
        let err = Redact::init(&config(&[("redcat", "a")])).err().unwrap();
        assert!(err.contains("unknown option(s) redcat"), "{err}");
    }
}
