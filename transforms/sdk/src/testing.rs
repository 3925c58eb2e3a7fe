//! Helpers for plugin unit tests on the host: build a batch in one line, and
//! check an answer obeys the contract the way sluice will (one answer per
//! record id, no duplicates, no strangers).
//!
//! They are ordinary functions, usable on `wasm32` too, so a plugin's tests
//! may also run in a wasm runtime if its author wants.

use crate::{BatchContext, InputRecord, KinesisMetadata, OutputRecord};
use std::collections::HashSet;

/// Records with ids `"0"`, `"1"`, ... and the given data, arrival time 0,
/// no Kinesis metadata (a Direct PUT stream's batch).
pub fn batch(data: &[&[u8]]) -> Vec<InputRecord> {
    data.iter()
        .enumerate()
        .map(|(i, d)| record(&i.to_string(), d))
        .collect()
}

/// One record with this id and data.
pub fn record(id: &str, data: &[u8]) -> InputRecord {
    InputRecord {
        record_id: id.to_string(),
        approximate_arrival_timestamp: 0,
        data: data.to_vec(),
        kinesis: None,
    }
}

/// The same record as read from a Kinesis Data Stream shard.
pub fn with_kinesis(mut record: InputRecord, shard_id: &str, partition_key: &str) -> InputRecord {
    record.kinesis = Some(KinesisMetadata {
        shard_id: shard_id.to_string(),
        partition_key: partition_key.to_string(),
        sequence_number: "0".to_string(),
        subsequence_number: None,
        approximate_arrival_timestamp: record.approximate_arrival_timestamp,
    });
    record
}

/// A batch context with plausible values.
pub fn context() -> BatchContext {
    BatchContext {
        invocation_id: "test-invocation".to_string(),
        delivery_stream_arn: "arn:aws:firehose:us-east-1:123456789012:deliverystream/test"
            .to_string(),
        region: "us-east-1".to_string(),
        source_kinesis_stream_arn: None,
    }
}

/// Pairs from `key=value` strings, for `Transform::init` in tests.
pub fn config(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `Err` with the reason sluice would fail the whole batch for, if the answer
/// breaks the contract: an unknown or duplicated record id (Firehose's
/// `Lambda.DuplicatedRecordId`) or a record left unanswered
/// (`Lambda.MissingRecordId`).
pub fn check_answer(input: &[InputRecord], output: &[OutputRecord]) -> Result<(), String> {
    let ids: HashSet<&str> = input.iter().map(|r| r.record_id.as_str()).collect();
    let mut seen = HashSet::with_capacity(output.len());
    for o in output {
        if !ids.contains(o.record_id.as_str()) {
            return Err(format!("unknown record id {:?} in the answer", o.record_id));
        }
        if !seen.insert(o.record_id.as_str()) {
            return Err(format!(
                "record id {:?} answered twice (DuplicatedRecordId)",
                o.record_id
            ));
        }
    }
    if let Some(missing) = input.iter().find(|r| !seen.contains(r.record_id.as_str())) {
        return Err(format!(
            "record id {:?} not answered (MissingRecordId)",
            missing.record_id
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_answer_finds_each_contract_break() {
        let input = batch(&[b"a", b"b"]);
        let ok = [OutputRecord::dropped("1"), OutputRecord::ok("0", "x")];
        assert!(check_answer(&input, &ok).is_ok());
        let dup = [OutputRecord::dropped("0"), OutputRecord::dropped("0")];
        assert!(check_answer(&input, &dup).unwrap_err().contains("twice"));
        let missing = [OutputRecord::dropped("0")];
        assert!(
            check_answer(&input, &missing)
                .unwrap_err()
                .contains("\"1\" not answered")
        );
        let unknown = [
            OutputRecord::dropped("0"),
            OutputRecord::dropped("1"),
            OutputRecord::dropped("9"),
        ];
        assert!(
            check_answer(&input, &unknown)
                .unwrap_err()
                .contains("unknown")
        );
    }
}
