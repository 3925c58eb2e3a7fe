//! The Firehose API's request decoding on arbitrary bodies, for every
//! operation: never panics, and a PutRecordBatch it accepts stays within
//! Firehose's limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::api::{self, MAX_BATCH_RECORDS};

fuzz_target!(|data: &[u8]| {
    let body = bytes::Bytes::copy_from_slice(data);
    for operation in ["PutRecord", "PutRecordBatch", "DescribeDeliveryStream", "ListDeliveryStreams"] {
        if let Ok(records) = api::decode_request(operation, &body) {
            assert!(records <= MAX_BATCH_RECORDS);
        }
    }
});
