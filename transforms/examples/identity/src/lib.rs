//! `identity`: answers every record `ok` with its data unchanged. The smallest
//! useful plugin: what the host's tests and benchmarks run to measure the cost
//! of a call itself (lifting and lowering a batch) with no work in the guest.

use sluice_transform::{BatchContext, InputRecord, OutputRecord, Transform};

pub struct Identity;

impl Transform for Identity {
    fn init(config: &[(String, String)]) -> Result<Self, String> {
        // No options; refusing unknown ones makes a misrouted config visible.
        sluice_transform::config::reject_unknown(config, &[])?;
        Ok(Identity)
    }

    fn transform(&mut self, _ctx: &BatchContext, records: Vec<InputRecord>) -> Vec<OutputRecord> {
        // Moves each record's data into its answer: no copy of the bytes.
        records
            .into_iter()
            .map(|r| OutputRecord::ok(r.record_id, r.data))
            .collect()
    }
}

sluice_transform::export!(Identity);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_transform::testing::{batch, check_answer, config, context};

    #[test]
    fn returns_every_record_unchanged() {
        let input = batch(&[b"one", b"", b"\xff\x00binary"]);
        let out = Identity::init(&[])
            .unwrap()
            .transform(&context(), input.clone());
        check_answer(&input, &out).unwrap();
        for (i, o) in input.iter().zip(&out) {
            assert_eq!(*o, OutputRecord::ok(i.record_id.clone(), i.data.clone()));
        }
    }

    #[test]
    fn refuses_options() {
        let err = Identity::init(&config(&[("x", "1")])).err().unwrap();
        assert_eq!(err, "takes no options, got x");
    }
}
