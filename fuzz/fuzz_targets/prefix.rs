//! Prefix expressions: parse arbitrary text as `Prefix` and `ErrorOutputPrefix`
//! and evaluate what parses. Never panics, and an evaluated prefix never
//! escapes its destination (no leading `/`, no `.` or `..` segment).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::partition::{self, PrefixContext, PrefixKind};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = jiff::Timestamp::from_second(1_700_000_000)
        .expect("valid")
        .to_zoned(jiff::tz::TimeZone::UTC);
    for kind in [PrefixKind::Output, PrefixKind::ErrorOutput] {
        let Ok(prefix) = partition::parse(text, kind) else {
            continue;
        };
        let ctx = PrefixContext {
            timestamp: &now,
            error_output_type: Some("processing-failed"),
            partition_keys: None,
        };
        if let Ok(evaluated) = prefix.evaluate(&ctx) {
            assert!(!evaluated.starts_with('/'), "{evaluated:?}");
            assert!(
                evaluated.split('/').all(|s| s != ".." && s != "."),
                "{evaluated:?} escapes"
            );
        }
    }
});
