//! KPL de-aggregation of arbitrary Kinesis record data: never panics, and what
//! it accepts re-aggregates to records with the same data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::source::kinesis::kpl;

fuzz_target!(|data: &[u8]| {
    let bytes = bytes::Bytes::copy_from_slice(data);
    if let Ok(records) = kpl::deaggregate(&bytes) {
        let parts: Vec<_> = records
            .iter()
            .map(|r| (r.partition_key.as_str(), r.explicit_hash_key.as_deref(), &r.data[..]))
            .collect();
        let again = kpl::deaggregate(&bytes::Bytes::from(kpl::aggregate(&parts)))
            .expect("re-aggregated records decode");
        assert_eq!(again.len(), records.len());
        for (a, b) in again.iter().zip(&records) {
            assert_eq!(a.data, b.data);
        }
    }
});
