//! Process-wide counters and gauges, served as Prometheus text on
//! `GET /metrics` of the API listener.
//!
//! Neighbours: every stage records what it did ([`inc`], [`set`]); the
//! [`crate::api`] router renders them ([`render`]). Updates happen per
//! request, batch, epoch or S3 call — never per record — so one mutex is
//! cheap enough and keeps this dependency-free. Labels are low-cardinality by
//! rule: stream, shard, operation, error code; never keys or record data.
//!
//! Names follow Firehose's CloudWatch metrics where one applies (FIREHOSE.md
//! §9), snake-cased with Prometheus' unit suffixes: `IncomingRecords` is
//! `sluice_incoming_records_total`, `DeliveryToS3.DataFreshness` is
//! `sluice_delivery_to_s3_data_freshness_seconds` (the local-directory
//! destination reports under the same `delivery_to_s3` names, so one dashboard
//! serves both). The README's metrics table lists every family and its
//! Firehose counterpart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Registry {
    /// name -> (help, kind, series)
    families: BTreeMap<&'static str, Family>,
}

struct Family {
    help: &'static str,
    kind: &'static str,
    series: BTreeMap<Labels, f64>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

fn update(
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    labels: &[(&'static str, &str)],
    f: impl FnOnce(&mut f64),
) {
    let labels: Labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    let mut registry = registry().lock().unwrap_or_else(|e| e.into_inner());
    let family = registry.families.entry(name).or_insert_with(|| Family {
        help,
        kind,
        series: BTreeMap::new(),
    });
    f(family.series.entry(labels).or_insert(0.0));
}

/// A counter family every stream has, so it can be shown at zero from the
/// start (a dashboard or alert should not have to wait for the first record
/// to learn the series exists).
#[derive(Debug)]
pub struct StreamCounter {
    /// Family name.
    pub name: &'static str,
    /// `# HELP` text.
    pub help: &'static str,
}

impl StreamCounter {
    /// Adds `by` to the stream's series.
    pub fn inc(&self, stream: &str, by: u64) {
        inc(self.name, self.help, &[("stream", stream)], by);
    }
}

/// Records acknowledged by the Direct PUT API.
pub const INCOMING_RECORDS: StreamCounter = StreamCounter {
    name: "sluice_incoming_records_total",
    help: "Records acknowledged by the Direct PUT API.",
};
/// Record bytes acknowledged by the Direct PUT API.
pub const INCOMING_BYTES: StreamCounter = StreamCounter {
    name: "sluice_incoming_bytes_total",
    help: "Record bytes acknowledged by the Direct PUT API.",
};
/// PutRecord and PutRecordBatch calls whose records were acknowledged.
pub const INCOMING_PUT_REQUESTS: StreamCounter = StreamCounter {
    name: "sluice_incoming_put_requests_total",
    help: "PutRecord and PutRecordBatch calls whose records were acknowledged (IncomingPutRequests).",
};
/// Records refused with ServiceUnavailableException.
pub const THROTTLED_RECORDS: StreamCounter = StreamCounter {
    name: "sluice_throttled_records_total",
    help: "Records refused with ServiceUnavailableException (log over its cap, disk full, or shutting down).",
};
/// Source records delivered.
pub const DELIVERED_RECORDS: StreamCounter = StreamCounter {
    name: "sluice_delivery_to_s3_records_total",
    help: "Source records delivered, committed and visible (DeliveryToS3.Records).",
};
/// Source bytes delivered.
pub const DELIVERED_BYTES: StreamCounter = StreamCounter {
    name: "sluice_delivery_to_s3_bytes_total",
    help: "Source record bytes delivered, before processing and compression (DeliveryToS3.Bytes).",
};
/// Objects made visible.
pub const DELIVERED_OBJECTS: StreamCounter = StreamCounter {
    name: "sluice_delivery_to_s3_objects_total",
    help: "Objects made visible: data, backup, error outputs (DeliveryToS3.ObjectCount).",
};
/// Records a transform returned `ok`.
pub const SUCCEED_PROCESSING_RECORDS: StreamCounter = StreamCounter {
    name: "sluice_succeed_processing_records_total",
    help: "Records the stream's transforms returned ok (SucceedProcessing.Records); failures are sluice_error_records_total{type=\"processing-failed\"}.",
};
/// Bytes of the records a transform returned `ok`.
pub const SUCCEED_PROCESSING_BYTES: StreamCounter = StreamCounter {
    name: "sluice_succeed_processing_bytes_total",
    help: "Bytes of the records the stream's transforms returned ok, as returned (SucceedProcessing.Bytes).",
};
/// Records converted to Parquet or ORC.
pub const SUCCEED_CONVERSION_RECORDS: StreamCounter = StreamCounter {
    name: "sluice_succeed_conversion_records_total",
    help: "Records converted to Parquet or ORC (SucceedConversion.Records).",
};
/// Their JSON bytes.
pub const SUCCEED_CONVERSION_BYTES: StreamCounter = StreamCounter {
    name: "sluice_succeed_conversion_bytes_total",
    help: "JSON bytes of the records converted to Parquet or ORC (SucceedConversion.Bytes).",
};
/// Records that did not fit the schema (to format-conversion-failed).
pub const FAILED_CONVERSION_RECORDS: StreamCounter = StreamCounter {
    name: "sluice_failed_conversion_records_total",
    help: "Records that did not fit the conversion schema, sent to format-conversion-failed (FailedConversion.Records).",
};
/// Their bytes.
pub const FAILED_CONVERSION_BYTES: StreamCounter = StreamCounter {
    name: "sluice_failed_conversion_bytes_total",
    help: "Bytes of the records that did not fit the conversion schema (FailedConversion.Bytes).",
};
/// Pipeline restarts.
pub const PIPELINE_RESTARTS: StreamCounter = StreamCounter {
    name: "sluice_pipeline_restarts_total",
    help: "Pipelines restarted from the last checkpoint after a failure.",
};

/// Shows every per-stream family of `stream` at zero.
pub fn init_stream(stream: &str, direct_put: bool) {
    let mut families = vec![
        &DELIVERED_RECORDS,
        &DELIVERED_BYTES,
        &DELIVERED_OBJECTS,
        &PIPELINE_RESTARTS,
    ];
    if direct_put {
        families.extend([
            &INCOMING_RECORDS,
            &INCOMING_BYTES,
            &INCOMING_PUT_REQUESTS,
            &THROTTLED_RECORDS,
        ]);
    }
    for family in families {
        family.inc(stream, 0);
    }
}

/// Adds `by` to a counter.
pub fn inc(name: &'static str, help: &'static str, labels: &[(&'static str, &str)], by: u64) {
    update(name, help, "counter", labels, |v| *v += by as f64);
}

/// Sets a gauge.
pub fn set(name: &'static str, help: &'static str, labels: &[(&'static str, &str)], value: f64) {
    update(name, help, "gauge", labels, |v| *v = value);
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let registry = registry().lock().unwrap_or_else(|e| e.into_inner());
    let mut out = String::new();
    for (name, family) in &registry.families {
        let _ = writeln!(out, "# HELP {name} {}", family.help);
        let _ = writeln!(out, "# TYPE {name} {}", family.kind);
        for (labels, value) in &family.series {
            out.push_str(name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let v = v
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n");
                    let _ = write!(out, "{k}=\"{v}\"");
                }
                out.push('}');
            }
            let _ = writeln!(out, " {value}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_render_as_prometheus_text() {
        inc(
            "sluice_test_total",
            "A test counter.",
            &[("stream", "a\"b")],
            2,
        );
        inc(
            "sluice_test_total",
            "A test counter.",
            &[("stream", "a\"b")],
            3,
        );
        set("sluice_test_gauge", "A test gauge.", &[], -1.5);
        init_stream("fresh", true);
        let text = render();
        assert!(
            text.contains("sluice_delivery_to_s3_records_total{stream=\"fresh\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("sluice_incoming_records_total{stream=\"fresh\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE sluice_test_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("sluice_test_total{stream=\"a\\\"b\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE sluice_test_gauge gauge\nsluice_test_gauge -1.5\n"),
            "{text}"
        );
    }
}
