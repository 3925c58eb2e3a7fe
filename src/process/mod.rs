//! Processors: what happens to records between their source and their buffer.
//!
//! Firehose's order is de-aggregation -> transform (Lambda; WASM plugins
//! here, to come) -> partition keys -> delimiter. The chain works on a whole
//! source batch at once ([`Processors::run`]), because transforms are called
//! once per batch, and answers with an [`Outcome`] per resulting record:
//! kept (new data and partition keys), dropped on purpose, or failed to the
//! `processing-failed` error output with Firehose's error document
//! ([`error_document`]); one record's failure never stops the others.
//!
//! Neighbours: the [`crate::buffer`] stage runs the chain off the async
//! reactor on each batch it reads, then appends each source record's outcomes
//! to one object, so an object never ends in the middle of a source record
//! (the committed source position always covers whole records, dropped and
//! failed ones included).
//!
//! KPL de-aggregation is not here: it belongs to the Kinesis source, because
//! its sub-records have their own positions (sub-sequence numbers).
//! `AppendDelimiterToRecord` is applied by the raw encoder, which writes the
//! delimiter without copying the record.

pub mod wasm;

use base64::Engine as _;
use bytes::Bytes;

use crate::record::Record;

/// Firehose's `RecordDeAggregation` processor: one record holding several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deaggregation {
    /// `SubRecordType` `JSON`: consecutive JSON objects, on one line or
    /// separated by whitespace/newlines (JSON Lines). A JSON array is not
    /// valid input, as in Firehose.
    Json,
    /// `SubRecordType` `DELIMITED`: split on a delimiter (given base64-encoded
    /// in the Firehose shape). Empty pieces are dropped.
    Delimited(Vec<u8>),
}

/// Firehose caps de-aggregation at 500 sub-records per record.
pub const MAX_SUB_RECORDS: usize = 500;

/// The processor chain of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Processors {
    /// `RecordDeAggregation`, when configured.
    pub deaggregation: Option<Deaggregation>,
}

/// Why a record could not be processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `errorCode` of the error document.
    pub code: &'static str,
    /// `errorMessage` of the error document.
    pub message: String,
}

/// A record the chain hands on to the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    /// The data to encode.
    pub data: Bytes,
    /// Keys a transform gave it, for `!{partitionKeyFromLambda:KEY}`.
    pub partition_keys: Vec<(String, String)>,
}

/// What became of one record (a source record, or one of its sub-records
/// after de-aggregation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered as this.
    Ok(Processed),
    /// Dropped on purpose (a transform's `dropped`): not delivered, and its
    /// source position is committed with the rest.
    Dropped,
    /// To the `processing-failed` error output.
    Failed {
        /// The bytes that failed (the sub-record, or the source record).
        raw: Bytes,
        /// Why.
        failure: Failure,
    },
}

/// The chain's answer for one batch: the outcomes of source record `i` are
/// `outcomes[starts[i]..starts[i + 1]]`, in order. Flat, so a batch costs two
/// allocations, not one per record.
#[derive(Debug, Default)]
pub struct BatchOutcomes {
    outcomes: Vec<Outcome>,
    starts: Vec<usize>,
}

impl BatchOutcomes {
    /// The outcomes of source record `i`.
    pub fn of(&self, i: usize) -> &[Outcome] {
        match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(&start), Some(&end)) => &self.outcomes[start..end],
            _ => &[],
        }
    }

    fn push_record(&mut self, outcomes: impl IntoIterator<Item = Outcome>) {
        if self.starts.is_empty() {
            self.starts.push(0);
        }
        self.outcomes.extend(outcomes);
        self.starts.push(self.outcomes.len());
    }
}

impl Processors {
    /// Whether records pass through unchanged.
    pub fn is_empty(&self) -> bool {
        self.deaggregation.is_none()
    }

    /// Runs the chain on a batch of source records (blocking: call it off the
    /// async reactor).
    pub fn run(&self, records: &[Record]) -> BatchOutcomes {
        let mut out = BatchOutcomes {
            outcomes: Vec::with_capacity(records.len()),
            starts: Vec::with_capacity(records.len() + 1),
        };
        let mut subs = Vec::new();
        for record in records {
            if let Some(message) = &record.damaged {
                // Salvaged log bytes are no record anyone sent: straight to
                // the error output, with the repair's explanation.
                out.push_record([Outcome::Failed {
                    raw: record.data.clone(),
                    failure: Failure {
                        code: "WriteAheadLogDamaged",
                        message: message.to_string(),
                    },
                }]);
                continue;
            }
            subs.clear();
            match self.apply(&record.data, &mut subs) {
                Ok(()) => out.push_record(subs.drain(..).map(|data| {
                    Outcome::Ok(Processed {
                        data,
                        partition_keys: Vec::new(),
                    })
                })),
                Err(failure) => out.push_record([Outcome::Failed {
                    raw: record.data.clone(),
                    failure,
                }]),
            }
        }
        out
    }

    /// De-aggregates one record, appending its resulting records to `out`.
    ///
    /// # Errors
    /// [`Failure`] when the record cannot be processed; nothing was appended.
    fn apply(&self, data: &Bytes, out: &mut Vec<Bytes>) -> Result<(), Failure> {
        let start = out.len();
        let result = match &self.deaggregation {
            None => {
                out.push(data.clone());
                Ok(())
            }
            Some(Deaggregation::Json) => split_json(data, out),
            Some(Deaggregation::Delimited(delimiter)) => {
                split_delimited(data, delimiter, out);
                Ok(())
            }
        };
        let result = result.and_then(|()| {
            if out.len() - start > MAX_SUB_RECORDS {
                Err(Failure {
                    code: "RecordDeAggregation.TooManySubRecords",
                    message: format!(
                        "record holds {} sub-records; at most {MAX_SUB_RECORDS} are de-aggregated from one record",
                        out.len() - start
                    ),
                })
            } else {
                Ok(())
            }
        });
        if result.is_err() {
            out.truncate(start);
        }
        result
    }
}

/// Splits consecutive JSON objects; the slices keep no surrounding whitespace.
fn split_json(data: &Bytes, out: &mut Vec<Bytes>) -> Result<(), Failure> {
    let fail = |message: String| Failure {
        code: "RecordDeAggregation.InvalidJson",
        message,
    };
    let mut stream =
        serde_json::Deserializer::from_slice(data).into_iter::<serde::de::IgnoredAny>();
    let mut end = 0;
    while let Some(item) = stream.next() {
        item.map_err(|e| fail(format!("not a sequence of JSON objects: {e}")))?;
        let start = data[end..]
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .map_or(end, |p| end + p);
        end = stream.byte_offset();
        if data[start] != b'{' {
            return Err(fail(format!(
                "sub-record at byte {start} is not a JSON object"
            )));
        }
        out.push(data.slice(start..end));
    }
    Ok(())
}

fn split_delimited(data: &Bytes, delimiter: &[u8], out: &mut Vec<Bytes>) {
    let mut start = 0;
    let mut i = 0;
    while i + delimiter.len() <= data.len() {
        if !delimiter.is_empty() && data[i..].starts_with(delimiter) {
            if i > start {
                out.push(data.slice(start..i));
            }
            i += delimiter.len();
            start = i;
        } else {
            i += 1;
        }
    }
    if start < data.len() {
        out.push(data.slice(start..));
    }
}

/// Firehose's `processing-failed` error document for one record, as a JSON line.
pub fn error_document(raw: &[u8], arrival_ms: i64, failure: &Failure) -> Vec<u8> {
    let mut doc = serde_json::to_vec(&serde_json::json!({
        "attemptsMade": 1,
        "arrivalTimestamp": arrival_ms,
        "errorCode": failure.code,
        "errorMessage": failure.message,
        "attemptEndingTimestamp": jiff::Timestamp::now().as_millisecond(),
        "rawData": base64::engine::general_purpose::STANDARD.encode(raw),
    }))
    .unwrap_or_default();
    doc.push(b'\n');
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p: &Processors, data: &'static [u8]) -> Result<Vec<Vec<u8>>, Failure> {
        let mut out = Vec::new();
        p.apply(&Bytes::from_static(data), &mut out)?;
        Ok(out.iter().map(|b| b.to_vec()).collect())
    }

    fn record(data: &'static [u8]) -> Record {
        Record {
            data: Bytes::from_static(data),
            arrival_ms: 7,
            position: crate::record::Position::Wal(crate::record::WalPosition::START),
            kinesis: None,
            damaged: None,
        }
    }

    #[test]
    fn a_batch_gets_each_records_outcomes_in_order() {
        let p = Processors {
            deaggregation: Some(Deaggregation::Json),
        };
        let mut damaged = record(b"\x00\x01");
        damaged.damaged = Some("bytes 28..30 of segment 1".into());
        let batch = [
            record(b"{\"a\":1}{\"a\":2}"),
            record(b"not json"),
            damaged,
            record(b"{}"),
        ];
        let out = p.run(&batch);
        let kept = |i: usize| -> Vec<Vec<u8>> {
            out.of(i)
                .iter()
                .filter_map(|o| match o {
                    Outcome::Ok(p) => Some(p.data.to_vec()),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(kept(0), vec![b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec()]);
        match out.of(1) {
            [Outcome::Failed { raw, failure }] => {
                assert_eq!(&raw[..], b"not json");
                assert_eq!(failure.code, "RecordDeAggregation.InvalidJson");
            }
            other => panic!("{other:?}"),
        }
        match out.of(2) {
            [Outcome::Failed { failure, .. }] => assert_eq!(failure.code, "WriteAheadLogDamaged"),
            other => panic!("{other:?}"),
        }
        assert_eq!(kept(3), vec![b"{}".to_vec()]);
        assert!(out.of(4).is_empty());
    }

    #[test]
    fn no_processors_pass_the_record_through() {
        assert_eq!(
            run(&Processors::default(), b"abc").unwrap(),
            vec![b"abc".to_vec()]
        );
    }

    #[test]
    fn json_deaggregation_splits_concatenated_and_newline_separated_objects() {
        let p = Processors {
            deaggregation: Some(Deaggregation::Json),
        };
        assert_eq!(
            run(&p, b"{\"a\":1}{\"a\":2}\n {\"b\":{\"c\":[1,2]}}\n").unwrap(),
            vec![
                b"{\"a\":1}".to_vec(),
                b"{\"a\":2}".to_vec(),
                b"{\"b\":{\"c\":[1,2]}}".to_vec()
            ]
        );
        let err = run(&p, b"[{\"a\":1},{\"a\":2}]").unwrap_err();
        assert_eq!(err.code, "RecordDeAggregation.InvalidJson");
        let err = run(&p, b"{\"a\":1}{\"a\":").unwrap_err();
        assert_eq!(err.code, "RecordDeAggregation.InvalidJson");
    }

    #[test]
    fn delimited_deaggregation_splits_and_drops_empty_pieces() {
        let p = Processors {
            deaggregation: Some(Deaggregation::Delimited(b"####".to_vec())),
        };
        assert_eq!(
            run(&p, b"a####bb########c####").unwrap(),
            vec![b"a".to_vec(), b"bb".to_vec(), b"c".to_vec()]
        );
        assert_eq!(
            run(&p, b"no delimiter").unwrap(),
            vec![b"no delimiter".to_vec()]
        );
    }

    #[test]
    fn too_many_sub_records_fail_the_record_and_append_nothing() {
        let p = Processors {
            deaggregation: Some(Deaggregation::Delimited(b",".to_vec())),
        };
        let data = Bytes::from(b"x,".repeat(MAX_SUB_RECORDS + 1));
        let mut out = vec![Bytes::from_static(b"earlier")];
        let err = p.apply(&data, &mut out).unwrap_err();
        assert_eq!(err.code, "RecordDeAggregation.TooManySubRecords");
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn error_document_has_firehose_fields() {
        let doc = error_document(
            b"\x00raw",
            1700,
            &Failure {
                code: "C",
                message: "m".into(),
            },
        );
        let v: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(v["errorCode"], "C");
        assert_eq!(v["errorMessage"], "m");
        assert_eq!(v["arrivalTimestamp"], 1700);
        assert_eq!(v["attemptsMade"], 1);
        assert_eq!(v["rawData"], "AHJhdw==");
        assert!(doc.ends_with(b"\n"));
    }
}
