//! Event-time partitioning: the time in a record, not its arrival, names its object.
//!
//! Role: with `[destination.dynamic_partitioning.event_time]`, the prefix's
//! `!{timestamp:...}` expressions are evaluated with a time read from each record,
//! from a JSON field of the delivered data or from one of its partition keys (the jq
//! query's or a transform's). Records whose times give different prefixes go to
//! different objects; the partitioner in `buffer` makes the formatted timestamp part of
//! a partition's identity ([`crate::partition::Prefix::time_bucket`]).
//!
//! The lateness horizon: a record whose event time is more than
//! [`EventTime::lateness`] before (or after) its arrival would open an object in a
//! partition that is long closed, one small file per straggler. Such records go, as
//! configured, to the partition of their arrival time (the newest one; nothing lost,
//! the prefix says when it arrived) or to the `late` error output. The horizon is
//! measured against the arrival time, not the clock, so a replay after a crash routes
//! every record as the first pass did: exactly-once needs the same record to land in
//! the same object.
//!
//! Neighbours: `config` builds [`EventTime`] from the native table; `buffer::route`
//! calls [`EventTime::place`] for every kept record of a partitioned stream.

use std::time::Duration;

use crate::partition::PartitionKeys;
use crate::process::Failure;

/// Error output type of records outside the lateness horizon (with
/// [`LateRecords::ErrorOutput`]).
pub const LATE: &str = "late";
/// `errorCode` of a record outside the lateness horizon.
pub const LATE_CODE: &str = "EventTime.OutsideLatenessHorizon";
/// `errorCode` of a record whose event time is missing or unreadable.
pub const INVALID_CODE: &str = "EventTime.InvalidTimestamp";

/// Epoch numbers at or above this are milliseconds, below it seconds: 1e11 seconds is
/// the year 5138, 1e11 milliseconds is March 1973, so no real timestamp is ambiguous.
const MILLIS_FROM: f64 = 1e11;

/// Where a record's event time is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTimeSource {
    /// A field of the record's JSON (after transforms), as a path of object keys:
    /// `ts`, `event.time`.
    Field(Vec<String>),
    /// A partition key: the jq query's, else a transform's.
    Key(String),
}

/// What happens to a record outside the lateness horizon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateRecords {
    /// Into the partition of its arrival time.
    Arrival,
    /// To the `late` error output.
    ErrorOutput,
}

impl LateRecords {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            LateRecords::Arrival => "arrival",
            LateRecords::ErrorOutput => "error_output",
        }
    }
}

/// Event-time partitioning of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTime {
    /// Where the time is read.
    pub source: EventTimeSource,
    /// How far an event time may be from its arrival.
    pub lateness: Duration,
    /// Where records outside the horizon go.
    pub late: LateRecords,
}

/// Where [`EventTime::place`] puts a record.
#[derive(Debug, PartialEq, Eq)]
pub enum Placement {
    /// Named with this time (milliseconds since the epoch).
    At(i64),
    /// Outside the horizon, named with its arrival time.
    LateAtArrival(i64),
    /// To an error output: `late`, or `processing-failed` for a missing time.
    Error(&'static str, Failure),
}

impl EventTime {
    /// Default lateness horizon: an hour, the width of Firehose's default prefix's
    /// finest partition.
    pub const DEFAULT_LATENESS: Duration = Duration::from_secs(3600);

    /// The time a record's object is named with.
    pub fn place(&self, data: &[u8], keys: PartitionKeys<'_>, arrival_ms: i64) -> Placement {
        let event_ms = match self.read(data, keys) {
            Ok(ms) => ms,
            Err(why) => {
                return Placement::Error(
                    crate::buffer::PROCESSING_FAILED,
                    Failure::new(INVALID_CODE, why),
                );
            }
        };
        let lateness = i64::try_from(self.lateness.as_millis()).unwrap_or(i64::MAX);
        let early = event_ms.saturating_sub(arrival_ms);
        let late = arrival_ms.saturating_sub(event_ms);
        if late <= lateness && early <= lateness {
            return Placement::At(event_ms);
        }
        match self.late {
            LateRecords::Arrival => Placement::LateAtArrival(arrival_ms),
            LateRecords::ErrorOutput => {
                let (amount, side) = if late > lateness {
                    (late, "before")
                } else {
                    (early, "after")
                };
                Placement::Error(
                    LATE,
                    Failure::new(
                        LATE_CODE,
                        format!(
                            "event time {} is {} s {side} the record's arrival, beyond the lateness horizon of {} s",
                            render(event_ms),
                            amount / 1000,
                            self.lateness.as_secs()
                        ),
                    ),
                )
            }
        }
    }

    /// The record's event time in milliseconds, or why there is none.
    fn read(&self, data: &[u8], keys: PartitionKeys<'_>) -> Result<i64, String> {
        match &self.source {
            EventTimeSource::Key(key) => {
                let value = keys
                    .get(crate::partition::KeySource::Query, key)
                    .or_else(|| keys.get(crate::partition::KeySource::Lambda, key))
                    .ok_or_else(|| {
                        format!("the record has no partition key {key:?} for its event time")
                    })?;
                parse_text(value).map_err(|why| format!("partition key {key:?}: {why}"))
            }
            EventTimeSource::Field(path) => {
                let value: serde_json::Value = serde_json::from_slice(data)
                    .map_err(|e| format!("the record is not JSON, so it has no event time: {e}"))?;
                let dotted = path.join(".");
                let mut at = &value;
                for step in path {
                    at = at.get(step).ok_or_else(|| {
                        format!("the record has no field {dotted:?} for its event time")
                    })?;
                }
                parse_value(at).map_err(|why| format!("field {dotted:?}: {why}"))
            }
        }
    }
}

/// A JSON value as an event time.
fn parse_value(value: &serde_json::Value) -> Result<i64, String> {
    match value {
        serde_json::Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| format!("{n} is not a number of seconds or milliseconds"))
            .and_then(from_epoch),
        serde_json::Value::String(s) => parse_text(s),
        other => Err(format!(
            "{} is not a timestamp (epoch seconds, epoch milliseconds or an RFC 3339 string)",
            clip(&other.to_string())
        )),
    }
}

/// Text as an event time: an epoch number, an RFC 3339 timestamp, or a date and time
/// without an offset, taken as UTC.
fn parse_text(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(number) = text.parse::<f64>() {
        return from_epoch(number);
    }
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    match text.parse::<jiff::civil::DateTime>() {
        Ok(civil) => civil
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_millisecond())
            .map_err(|e| format!("{:?}: {e}", clip(text))),
        Err(_) => Err(format!(
            "{:?} is not a timestamp (epoch seconds, epoch milliseconds or an RFC 3339 string)",
            clip(text)
        )),
    }
}

/// Epoch seconds or milliseconds (see [`MILLIS_FROM`]) as milliseconds, within the
/// years jiff (and the prefix's formatting) can name.
fn from_epoch(number: f64) -> Result<i64, String> {
    if !number.is_finite() {
        return Err(format!("{number} is not a time"));
    }
    let ms = if number.abs() >= MILLIS_FROM {
        number
    } else {
        number * 1000.0
    };
    let min = jiff::Timestamp::MIN.as_millisecond() as f64;
    let max = jiff::Timestamp::MAX.as_millisecond() as f64;
    if !(min..=max).contains(&ms) {
        return Err(format!("{number} is outside the years -9999 to 9999"));
    }
    Ok(ms.floor() as i64)
}

fn render(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARRIVAL: i64 = 1_714_564_800_000; // 2024-05-01T12:00:00Z

    fn field(path: &str, late: LateRecords) -> EventTime {
        EventTime {
            source: EventTimeSource::Field(path.split('.').map(str::to_owned).collect()),
            lateness: Duration::from_secs(3600),
            late,
        }
    }

    fn code(p: &Placement) -> (&'static str, &str, &str) {
        match p {
            Placement::Error(kind, f) => (kind, f.code, &f.message),
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn reads_the_forms_users_write() {
        let e = field("ts", LateRecords::Arrival);
        let keys = PartitionKeys::default();
        let at = |doc: &str| e.place(doc.as_bytes(), keys, ARRIVAL);
        let expect = Placement::At(ARRIVAL - 60_000);
        for doc in [
            r#"{"ts": 1714564740}"#,
            r#"{"ts": 1714564740000}"#,
            r#"{"ts": 1714564740.5}"#,
            r#"{"ts": "1714564740"}"#,
            r#"{"ts": "2024-05-01T11:59:00Z"}"#,
            r#"{"ts": "2024-05-01T13:59:00+02:00"}"#,
            r#"{"ts": "2024-05-01 11:59:00"}"#,
        ] {
            let got = at(doc);
            let ok = match got {
                Placement::At(ms) => (ms - (ARRIVAL - 60_000)).abs() < 1000,
                _ => false,
            };
            assert!(ok, "{doc}: {got:?}, want {expect:?}");
        }
        let nested = field("event.time", LateRecords::Arrival);
        assert_eq!(
            nested.place(br#"{"event": {"time": 1714564800}}"#, keys, ARRIVAL),
            Placement::At(ARRIVAL)
        );
    }

    #[test]
    fn a_missing_or_unreadable_time_is_a_processing_failure() {
        let e = field("event.time", LateRecords::Arrival);
        let keys = PartitionKeys::default();
        for (doc, why) in [
            (&b"not json"[..], "is not JSON"),
            (br#"{"event": {}}"#, r#"no field "event.time""#),
            (
                br#"{"event": {"time": "soon"}}"#,
                r#""soon" is not a timestamp"#,
            ),
            (br#"{"event": {"time": [1]}}"#, "[1] is not a timestamp"),
            (br#"{"event": {"time": 1e300}}"#, "outside the years"),
            (br#"{"event": {"time": null}}"#, "null is not a timestamp"),
        ] {
            let p = e.place(doc, keys, ARRIVAL);
            let (kind, code, message) = code(&p);
            assert_eq!(
                (kind, code),
                (crate::buffer::PROCESSING_FAILED, INVALID_CODE)
            );
            assert!(message.contains(why), "{message}");
        }
    }

    #[test]
    fn the_horizon_sends_stragglers_to_arrival_or_the_late_output() {
        let keys = PartitionKeys::default();
        let doc = |ms: i64| format!(r#"{{"ts": {ms}}}"#).into_bytes();
        let arrival = field("ts", LateRecords::Arrival);
        let hour = 3_600_000;
        assert_eq!(
            arrival.place(&doc(ARRIVAL - hour), keys, ARRIVAL),
            Placement::At(ARRIVAL - hour)
        );
        assert_eq!(
            arrival.place(&doc(ARRIVAL - hour - 1000), keys, ARRIVAL),
            Placement::LateAtArrival(ARRIVAL)
        );
        assert_eq!(
            arrival.place(&doc(ARRIVAL + 2 * hour), keys, ARRIVAL),
            Placement::LateAtArrival(ARRIVAL)
        );
        let error = field("ts", LateRecords::ErrorOutput);
        let p = error.place(&doc(ARRIVAL - 3 * hour), keys, ARRIVAL);
        let (kind, code, message) = code(&p);
        assert_eq!((kind, code), (LATE, LATE_CODE));
        assert!(
            message.contains("2024-05-01T09:00:00Z is 10800 s before"),
            "{message}"
        );
    }

    #[test]
    fn keys_come_from_the_query_first_then_the_transform() {
        let e = EventTime {
            source: EventTimeSource::Key("t".into()),
            lateness: Duration::from_secs(3600),
            late: LateRecords::Arrival,
        };
        let query = vec![("t".to_string(), "2024-05-01T12:00:00Z".to_string())];
        let lambda = vec![("t".to_string(), "0".to_string())];
        let both = PartitionKeys {
            query: &query,
            lambda: &lambda,
        };
        assert_eq!(e.place(b"", both, ARRIVAL), Placement::At(ARRIVAL));
        let only_lambda = PartitionKeys {
            query: &[],
            lambda: &lambda,
        };
        assert_eq!(
            e.place(b"", only_lambda, ARRIVAL),
            Placement::LateAtArrival(ARRIVAL)
        );
        let p = e.place(b"", PartitionKeys::default(), ARRIVAL);
        assert!(code(&p).2.contains(r#"no partition key "t""#));
    }
}
