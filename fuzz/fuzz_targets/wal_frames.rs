//! The write-ahead log's readers on arbitrary bytes: the segment scanner used
//! at start-up and by `sluice wal check|repair`, the streaming frame reader,
//! the header and mark decoders. None may panic, and every frame the scanner
//! accepts must be one the streaming reader accepts at the same place.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::source::direct_put::wal::{check, format, read_frame};

fuzz_target!(|data: &[u8]| {
    let _ = format::decode_header(data, 1);
    let _ = format::Mark::decode(data);
    for extent in check::scan_frames(data, 0) {
        if let check::Extent::Frames { start, end, frames } = extent {
            let mut reader = &data[start as usize..end as usize];
            let mut payload = Vec::new();
            let mut seen = 0;
            while let Ok(Some(_)) = read_frame(&mut reader, &mut payload) {
                let _ = format::decode_payload(&payload);
                seen += 1;
            }
            assert_eq!(seen, frames, "scanner and reader disagree");
        }
    }
});
