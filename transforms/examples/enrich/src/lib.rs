//! `enrich`: adds partition keys read from JSON fields, for a stream whose S3
//! prefix uses `!{partitionKeyFromLambda:KEY}` (Firehose's dynamic
//! partitioning with a Lambda). The record's data passes through untouched.
//!
//! Option `keys=customer_id,region,device.id` (required): each key is a field
//! or a dotted path into nested objects, and is also the key's name. Strings
//! are used as they are; numbers and booleans as their JSON text. A record
//! without one of the fields, or where it is null, an object or an array,
//! fails to `processing-failed` with a message naming the field (sluice could
//! not place it under a prefix anyway).

use serde_json::Value;
use sluice_transform::{
    BatchContext, InputRecord, Mapped, OutputRecord, Transform, config, map_records,
};

pub struct Enrich {
    /// (key name as configured, its path)
    keys: Vec<(String, Vec<String>)>,
}

impl Transform for Enrich {
    fn init(cfg: &[(String, String)]) -> Result<Self, String> {
        config::reject_unknown(cfg, &["keys"])?;
        let keys = config::list(config::get(cfg, "keys").unwrap_or(""));
        if keys.is_empty() {
            return Err("keys: give at least one JSON field, e.g. keys=customer_id,region".into());
        }
        let keys = keys
            .into_iter()
            .map(|k| {
                let path = k.split('.').map(String::from).collect();
                (k, path)
            })
            .collect();
        Ok(Enrich { keys })
    }

    fn transform(&mut self, _ctx: &BatchContext, records: Vec<InputRecord>) -> Vec<OutputRecord> {
        map_records(records, |r| {
            let doc: Value =
                serde_json::from_slice(&r.data).map_err(|e| format!("record is not JSON: {e}"))?;
            let mut keys = Vec::with_capacity(self.keys.len());
            for (name, path) in &self.keys {
                let value = path
                    .iter()
                    .try_fold(&doc, |v, k| v.as_object()?.get(k))
                    .ok_or_else(|| format!("partition key field {name:?} is missing"))?;
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    Value::Null => return Err(format!("partition key field {name:?} is null")),
                    _ => {
                        return Err(format!(
                            "partition key field {name:?} is an object or array, not a value"
                        ));
                    }
                };
                keys.push((name.clone(), text));
            }
            Ok(Mapped::Ok {
                data: r.data,
                partition_keys: keys,
            })
        })
    }
}

sluice_transform::export!(Enrich);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_transform::Outcome;
    use sluice_transform::testing::{batch, check_answer, config, context};

    fn run(keys: &str, data: &[&[u8]]) -> Vec<OutputRecord> {
        let input = batch(data);
        let out = Enrich::init(&config(&[("keys", keys)]))
            .unwrap()
            .transform(&context(), input.clone());
        check_answer(&input, &out).unwrap();
        out
    }

    #[test]
    fn adds_keys_and_keeps_the_data_byte_for_byte() {
        let data =
            b"{ \"customer_id\": \"c-42\", \"region\": \"eu\", \"n\": 7, \"d\": {\"ok\": true} }\n";
        let out = run("customer_id, region,n,d.ok", &[data]);
        assert_eq!(
            out[0],
            OutputRecord::ok("0", data.to_vec())
                .with_partition_key("customer_id", "c-42")
                .with_partition_key("region", "eu")
                .with_partition_key("n", "7")
                .with_partition_key("d.ok", "true")
        );
    }

    #[test]
    fn fails_records_naming_the_missing_field() {
        let out = run(
            "customer_id,region",
            &[
                br#"{"customer_id":"c"}"#,
                br#"{"customer_id":null,"region":"x"}"#,
                br#"{"customer_id":{},"region":"x"}"#,
                b"nope",
                br#"{"customer_id":"c","region":"r"}"#,
            ],
        );
        assert_eq!(
            out[0].outcome,
            Outcome::ProcessingFailed("partition key field \"region\" is missing".into())
        );
        assert_eq!(
            out[1].outcome,
            Outcome::ProcessingFailed("partition key field \"customer_id\" is null".into())
        );
        assert!(
            matches!(&out[2].outcome, Outcome::ProcessingFailed(m) if m.contains("object or array"))
        );
        assert!(
            matches!(&out[3].outcome, Outcome::ProcessingFailed(m) if m.starts_with("record is not JSON"))
        );
        assert!(out[0].partition_keys.is_empty());
        assert_eq!(out[4].partition_keys.len(), 2);
    }

    #[test]
    fn needs_keys() {
        assert!(Enrich::init(&[]).err().unwrap().contains("at least one"));
        assert!(Enrich::init(&config(&[("keys", " , ")])).is_err());
    }
}
