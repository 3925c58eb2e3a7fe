//! Firehose's error documents: the JSON line the error output gets for each
//! record that failed, `processing-failed` (a transform, a partition key or
//! the lateness horizon failed it) or `format-conversion-failed` (it did not
//! fit the schema). One writer for both, so their shared fields cannot drift.
//!
//! Neighbours: the buffer ([`crate::buffer`]) builds one per failed record
//! and writes the lines into the error objects; `sluice convert`
//! ([`crate::convert::cli`]) writes them to `OUT.errors.jsonl`. The codes and
//! messages come from [`crate::process::Failure`] and the converters'
//! record errors ([`crate::convert::json::codes`]).

use base64::Engine as _;

/// Which document: it decides the error keys' names (Firehose spells them
/// `errorCode` for Lambda's failures and `lastErrorCode` for conversion's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// `processing-failed`: `errorCode`, `errorMessage`, `lambdaArn`.
    Processing,
    /// `format-conversion-failed`: `lastErrorCode`, `lastErrorMessage`,
    /// `sequenceNumber` and `subSequenceNumber` for a Kinesis record.
    FormatConversion,
}

/// One failed record's error document.
#[derive(Debug, Clone)]
pub struct ErrorDocument<'a> {
    /// Which document.
    pub failed: Failed,
    /// The record as it arrived (`rawData`, base64).
    pub raw: &'a [u8],
    /// `arrivalTimestamp`: when the record was received, epoch milliseconds.
    pub arrival_ms: i64,
    /// The error code (`errorCode` / `lastErrorCode`).
    pub code: &'a str,
    /// The error message (`errorMessage` / `lastErrorMessage`).
    pub message: &'a str,
    /// `attemptsMade`: transform invocations tried (1 when none failed it).
    pub attempts: u32,
    /// `lambdaArn`: the transform that failed the record, when one did.
    pub transform: Option<&'a str>,
    /// The record's Kinesis position (`sequenceNumber`, `subSequenceNumber`),
    /// when it came from a shard.
    pub kinesis: Option<(&'a str, u64)>,
}

impl<'a> ErrorDocument<'a> {
    /// A document of one attempt, without transform or Kinesis position.
    pub fn new(
        failed: Failed,
        raw: &'a [u8],
        arrival_ms: i64,
        code: &'a str,
        message: &'a str,
    ) -> Self {
        ErrorDocument {
            failed,
            raw,
            arrival_ms,
            code,
            message,
            attempts: 1,
            transform: None,
            kinesis: None,
        }
    }

    /// The document as one JSON line, keys in Firehose's documented order;
    /// `attemptEndingTimestamp` is now.
    pub fn to_line(&self) -> Vec<u8> {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let (code_key, message_key) = match self.failed {
            Failed::Processing => ("errorCode", "errorMessage"),
            Failed::FormatConversion => ("lastErrorCode", "lastErrorMessage"),
        };
        let mut out = Vec::with_capacity(self.raw.len() * 4 / 3 + self.message.len() + 200);
        out.extend_from_slice(b"{\"attemptsMade\":");
        out.extend_from_slice(self.attempts.to_string().as_bytes());
        out.extend_from_slice(b",\"arrivalTimestamp\":");
        out.extend_from_slice(self.arrival_ms.to_string().as_bytes());
        key(&mut out, code_key);
        json_string(&mut out, self.code);
        key(&mut out, message_key);
        json_string(&mut out, self.message);
        out.extend_from_slice(b",\"attemptEndingTimestamp\":");
        out.extend_from_slice(now_ms.to_string().as_bytes());
        out.extend_from_slice(b",\"rawData\":\"");
        out.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(self.raw)
                .as_bytes(),
        );
        out.push(b'"');
        if let Some(transform) = self.transform {
            key(&mut out, "lambdaArn");
            json_string(&mut out, transform);
        }
        if let Some((sequence, sub_sequence)) = self.kinesis {
            key(&mut out, "sequenceNumber");
            json_string(&mut out, sequence);
            out.extend_from_slice(b",\"subSequenceNumber\":");
            out.extend_from_slice(sub_sequence.to_string().as_bytes());
        }
        out.extend_from_slice(b"}\n");
        out
    }
}

/// `,"name":` (names are plain ASCII, nothing to escape).
fn key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    // Writing a &str as JSON into a Vec cannot fail.
    serde_json::to_writer(&mut *out, s).expect("a string serializes into a Vec");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(doc: &[u8]) -> serde_json::Map<String, serde_json::Value> {
        assert_eq!(doc.last(), Some(&b'\n'), "one line");
        serde_json::from_slice(doc).expect("valid JSON")
    }

    #[test]
    fn processing_failed_has_firehose_fields() {
        let doc = ErrorDocument::new(Failed::Processing, b"\x00raw", 1700, "C", "m").to_line();
        let v = parse(&doc);
        assert_eq!(v["errorCode"], "C");
        assert_eq!(v["errorMessage"], "m");
        assert_eq!(v["arrivalTimestamp"], 1700);
        assert_eq!(v["attemptsMade"], 1);
        assert_eq!(v["rawData"], "AHJhdw==");
        assert!(v["attemptEndingTimestamp"].as_i64().unwrap() > 1_700_000_000_000);
        assert_eq!(v.len(), 6, "{v:?}");
        let doc = ErrorDocument {
            attempts: 4,
            transform: Some("arn:aws:lambda:us-east-1:1:function:f"),
            ..ErrorDocument::new(
                Failed::Processing,
                b"x",
                1,
                "Lambda.FunctionError",
                "trapped",
            )
        }
        .to_line();
        let v = parse(&doc);
        assert_eq!(v["attemptsMade"], 4);
        assert_eq!(v["lambdaArn"], "arn:aws:lambda:us-east-1:1:function:f");
    }

    #[test]
    fn format_conversion_failed_has_firehose_fields() {
        let message = "column `a`: \"quoted\"\nline";
        let doc = ErrorDocument::new(
            Failed::FormatConversion,
            b"{\"a\":\"x\"}\xff",
            1_700_000_000_123,
            "DataFormatConversion.TypeMismatch",
            message,
        )
        .to_line();
        let v = parse(&doc);
        assert_eq!(v["attemptsMade"], 1);
        assert_eq!(v["arrivalTimestamp"], 1_700_000_000_123i64);
        assert_eq!(v["lastErrorCode"], "DataFormatConversion.TypeMismatch");
        assert_eq!(v["lastErrorMessage"], message);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v["rawData"].as_str().unwrap())
            .unwrap();
        assert_eq!(raw, b"{\"a\":\"x\"}\xff");
        assert_eq!(v.len(), 6, "{v:?}");
        let doc = ErrorDocument {
            kinesis: Some(("4959033827149025660855969253", 7)),
            ..ErrorDocument::new(Failed::FormatConversion, b"x", 1, "C", "m")
        }
        .to_line();
        let v = parse(&doc);
        assert_eq!(v["sequenceNumber"], "4959033827149025660855969253");
        assert_eq!(v["subSequenceNumber"], 7);
        assert_eq!(v.len(), 8);
    }
}
