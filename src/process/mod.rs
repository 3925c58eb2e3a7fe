//! Processors: what happens to a record between its source and its buffer.
//!
//! Firehose's order is de-aggregation -> transform (Lambda; WASM plugins
//! here, later) -> partition keys. Neighbours: the [`crate::buffer`] stage
//! calls [`Processors::apply`] on every source record, inside the same
//! blocking task that encodes it, and appends all resulting sub-records to
//! the same object, so an object never ends in the middle of a source record
//! (the committed source position always covers whole records). A record
//! that fails goes to the `processing-failed` error output with Firehose's
//! error document ([`error_document`]); the other records go on.
//!
//! KPL de-aggregation is not here: it belongs to the Kinesis source, because
//! its sub-records have their own positions (sub-sequence numbers).
//! `AppendDelimiterToRecord` is applied by the raw encoder, which writes the
//! delimiter without copying the record.

pub mod wasm;

use base64::Engine as _;
use bytes::Bytes;

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

impl Processors {
    /// Whether records pass through unchanged.
    pub fn is_empty(&self) -> bool {
        self.deaggregation.is_none()
    }

    /// Runs the chain on one record, appending its resulting records to `out`.
    ///
    /// # Errors
    /// [`Failure`] when the record cannot be processed; nothing was appended.
    pub fn apply(&self, data: &Bytes, out: &mut Vec<Bytes>) -> Result<(), Failure> {
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
