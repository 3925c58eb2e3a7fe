//! Tests of the log: the writer and reader, then the corruption matrix.

use super::*;
use std::fs::File;

fn records(n: usize, tag: &str) -> Vec<Bytes> {
    (0..n).map(|i| Bytes::from(format!("{tag}-{i}"))).collect()
}

async fn read_all(reader: &mut WalReader) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(batch) = reader.next_batch(1 << 20).await.unwrap() {
        out.extend(
            batch
                .into_iter()
                .map(|r| String::from_utf8(r.data.to_vec()).unwrap()),
        );
    }
    out
}

#[tokio::test]
async fn appended_records_read_back_in_order_with_arrival_times() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), None, WalOptions::new(1 << 30)).unwrap();
    let ids = wal.append(records(3, "a"), 1000).await.unwrap();
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    wal.append(records(2, "b"), 2000).await.unwrap();
    let mut reader = wal.reader(None);
    let batch = reader.next_batch(1 << 20).await.unwrap().unwrap();
    assert_eq!(batch.len(), 5);
    assert_eq!(batch[0].arrival_ms, 1000);
    assert_eq!(batch[4].arrival_ms, 2000);
    assert_eq!(&batch[3].data[..], b"b-0");
    // The batch's records are slices of one buffer of payloads, each after
    // the previous one and its own arrival time: one allocation per batch.
    for w in batch.windows(2) {
        let gap = w[1].data.as_ptr() as usize - (w[0].data.as_ptr() as usize + w[0].data.len());
        assert_eq!(gap, format::ARRIVAL);
    }
    // A record's `next` is the following record's id.
    assert_eq!(batch[0].position, Position::Wal(ids[1]));
    wal.close().await;
    assert!(reader.next_batch(1 << 20).await.unwrap().is_none());
}

#[tokio::test]
async fn reopen_resumes_after_committed_position_and_cuts_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), None, WalOptions::new(1 << 30)).unwrap();
    let ids = wal.append(records(4, "a"), 1).await.unwrap();
    wal.close().await;
    // Simulate a crash mid-write: half a frame at the end.
    let seg = segment_path(dir.path(), 1);
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
    drop(f);

    let wal = Wal::open(dir.path(), Some(ids[2]), WalOptions::new(1 << 30)).unwrap();
    let mut reader = wal.reader(Some(ids[2]));
    wal.append(records(1, "b"), 1).await.unwrap();
    wal.close().await;
    assert_eq!(read_all(&mut reader).await, vec!["a-2", "a-3", "b-0"]);
}

#[tokio::test]
async fn cap_rejects_appends_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), None, WalOptions::new(SEGMENT_HEADER + 100)).unwrap();
    let ids = wal
        .append(vec![Bytes::from(vec![0u8; 60])], 1)
        .await
        .unwrap();
    let err = wal
        .append(vec![Bytes::from(vec![0u8; 60])], 1)
        .await
        .unwrap_err();
    assert!(matches!(err, WalError::Full { .. }), "{err}");
    assert!(err.is_retriable());
    // Delivering the first record frees its space.
    let mut reader = wal.reader(None);
    let batch = reader.next_batch(1 << 20).await.unwrap().unwrap();
    let Position::Wal(next) = batch[0].position else {
        panic!("WAL position expected")
    };
    assert_eq!(next.offset, ids[0].offset + 76);
    wal.release(next).unwrap();
    assert_eq!(wal.live_bytes(), 0);
    wal.append(vec![Bytes::from(vec![0u8; 60])], 1)
        .await
        .unwrap();
}

#[tokio::test]
async fn concurrent_appends_share_commits_and_all_survive() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), None, WalOptions::new(1 << 30)).unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let wal = wal.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                wal.append(records(3, &format!("{t}-{i}")), 1)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut reader = wal.reader(None);
    wal.close().await;
    let mut got = read_all(&mut reader).await;
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 8 * 50 * 3);
}

#[tokio::test]
async fn reader_crosses_segments_and_release_deletes_them() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, ids) = small_log(dir.path(), 30).await;
    assert!(segment_path(dir.path(), 3).exists());
    let mut reader = wal.reader(None);
    wal.close().await;
    let got = read_all(&mut reader).await;
    assert_eq!(got, expected(30));
    let last = reader.position();
    assert_eq!(last.segment, ids.last().unwrap().segment);
    wal.release(last).unwrap();
    assert!(!segment_path(dir.path(), 1).exists());
    assert!(segment_path(dir.path(), last.segment).exists());
}

// --- the corruption matrix ------------------------------------------------------------------
//
// Each case damages a log that holds acknowledged, undelivered records and
// reopens it: it must either recover with every acknowledged record read back
// exactly once, or refuse with an error naming the position.

/// Segments of about 300 bytes, so a few records span several segments.
fn small(max_bytes: u64) -> WalOptions {
    WalOptions {
        segment_bytes: 300,
        ..WalOptions::new(max_bytes)
    }
}

fn expected(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("record-{i:04}")).collect()
}

/// A log with `n` acknowledged records (`record-0000`...), 3 per append.
async fn small_log(dir: &Path, n: usize) -> (Wal, Vec<WalPosition>) {
    let wal = Wal::open(dir, None, small(1 << 30)).unwrap();
    let mut ids = Vec::new();
    let all = expected(n);
    for chunk in all.chunks(3) {
        let batch = chunk.iter().map(|s| Bytes::from(s.clone())).collect();
        ids.extend(wal.append(batch, 1_700_000_000_000).await.unwrap());
    }
    (wal, ids)
}

/// Builds a closed log of `n` records and returns the frame starts.
async fn closed_log(dir: &Path, n: usize) -> Vec<WalPosition> {
    let (wal, ids) = small_log(dir, n).await;
    wal.close().await;
    // The writer thread finishes the queue and syncs the mark.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    ids
}

/// Reopens and reads everything, or the error.
async fn reopen(
    dir: &Path,
    committed: Option<WalPosition>,
    reset: bool,
) -> Result<Vec<String>, WalError> {
    let options = WalOptions {
        reset_positions: reset,
        ..small(1 << 30)
    };
    let wal = Wal::open(dir, committed, options)?;
    let mut reader = wal.reader(committed);
    wal.close().await;
    let mut out = Vec::new();
    while let Some(batch) = reader.next_batch(1 << 20).await? {
        out.extend(batch.into_iter().map(|r| {
            let text = String::from_utf8_lossy(&r.data).into_owned();
            if r.damaged.is_some() {
                format!("DAMAGED:{text}")
            } else {
                text
            }
        }));
    }
    Ok(out)
}

fn flip(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn assert_corrupt(result: Result<Vec<String>, WalError>, segment: u64, case: &str) {
    match result {
        Err(WalError::Corrupt { position, message }) => {
            assert_eq!(position.segment, segment, "{case}: {message}");
            assert!(
                message.contains("sluice wal"),
                "{case}: no way forward in {message}"
            );
        }
        other => panic!("{case}: expected a refusal for corruption, got {other:?}"),
    }
}

#[tokio::test]
async fn a_changed_byte_in_any_field_of_any_frame_refuses_to_start() {
    // Fields: length, CRC, arrival time, data.
    let fields = [(0, "length"), (5, "crc"), (9, "arrival"), (17, "data")];
    for (frame_pick, label) in [
        (1usize, "an older segment"),
        (usize::MAX, "the last segment"),
    ] {
        for (field, name) in fields {
            for last_frame in [false, true] {
                let dir = tempfile::tempdir().unwrap();
                let ids = closed_log(dir.path(), 30).await;
                let last_seg = ids.last().unwrap().segment;
                let in_seg: Vec<_> = ids
                    .iter()
                    .filter(|p| {
                        if frame_pick == 1 {
                            p.segment == 1
                        } else {
                            p.segment == last_seg
                        }
                    })
                    .collect();
                let target = if last_frame {
                    **in_seg.last().unwrap()
                } else {
                    *in_seg[in_seg.len() / 2]
                };
                flip(
                    &segment_path(dir.path(), target.segment),
                    target.offset + field,
                );
                let case = format!(
                    "{name} of the {} frame in {label}",
                    if last_frame { "last" } else { "middle" }
                );
                assert_corrupt(reopen(dir.path(), None, false).await, target.segment, &case);
            }
        }
    }
}

#[tokio::test]
async fn a_changed_segment_header_byte_refuses_to_start() {
    for at in [0, 9, 17, 25] {
        let dir = tempfile::tempdir().unwrap();
        closed_log(dir.path(), 30).await;
        flip(&segment_path(dir.path(), 2), at);
        assert_corrupt(
            reopen(dir.path(), None, false).await,
            2,
            &format!("header byte {at}"),
        );
    }
}

#[tokio::test]
async fn truncation_at_every_frame_boundary_and_inside_frames_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let ids = closed_log(dir.path(), 30).await;
    let pristine = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), pristine.path());
    let last_seg = ids.last().unwrap().segment;
    for id in &ids {
        for inside in [0, 3, 12] {
            copy_dir(pristine.path(), dir.path());
            let cut = id.offset + inside;
            truncate(&segment_path(dir.path(), id.segment), cut);
            // A cut older segment is refused by its successor's header; a cut
            // last segment by the durable-end mark.
            let case = format!("cut at {}:{cut}", id.segment);
            let expect = if id.segment == last_seg {
                last_seg
            } else {
                id.segment
            };
            assert_corrupt(reopen(dir.path(), None, false).await, expect, &case);
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(to).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::remove_file(path).unwrap();
        }
    }
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[tokio::test]
async fn a_torn_unacknowledged_tail_is_cut_and_everything_acknowledged_survives() {
    for garbage in [&[1u8, 0, 0][..], &[200, 0, 0, 0, 1, 2, 3, 4, 5], &[0; 40]] {
        let dir = tempfile::tempdir().unwrap();
        let ids = closed_log(dir.path(), 30).await;
        let last = segment_path(dir.path(), ids.last().unwrap().segment);
        let mut f = OpenOptions::new().append(true).open(&last).unwrap();
        f.write_all(garbage).unwrap();
        drop(f);
        assert_eq!(reopen(dir.path(), None, false).await.unwrap(), expected(30));
    }
}

#[tokio::test]
async fn without_the_mark_a_torn_tail_is_still_told_from_damage_followed_by_valid_frames() {
    let dir = tempfile::tempdir().unwrap();
    let ids = closed_log(dir.path(), 30).await;
    std::fs::remove_file(dir.path().join(format::MARK_FILE)).unwrap();
    let last = ids.last().unwrap();
    let middle = ids
        .iter()
        .rev()
        .find(|p| p.segment == last.segment && p < &last)
        .unwrap();
    flip(
        &segment_path(dir.path(), middle.segment),
        middle.offset + 17,
    );
    // Valid frames follow the damage: corruption, not a torn tail.
    assert_corrupt(
        reopen(dir.path(), None, false).await,
        last.segment,
        "no mark",
    );
}

#[tokio::test]
async fn stray_empty_segments_are_set_aside_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let ids = closed_log(dir.path(), 30).await;
    let last = ids.last().unwrap().segment;
    File::create(segment_path(dir.path(), last + 1)).unwrap();
    File::create(segment_path(dir.path(), last + 7)).unwrap();
    let wal = Wal::open(dir.path(), None, small(1 << 30)).unwrap();
    wal.append(vec![Bytes::from_static(b"after")], 1)
        .await
        .unwrap();
    let mut reader = wal.reader(None);
    wal.close().await;
    let mut want = expected(30);
    want.push("after".into());
    assert_eq!(read_all(&mut reader).await, want);
    assert!(
        dir.path()
            .join(format!("{:020}.wal.stray", last + 7))
            .exists()
    );
}

#[tokio::test]
async fn a_missing_segment_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let ids = closed_log(dir.path(), 30).await;
    let last = ids.last().unwrap().segment;
    std::fs::remove_file(segment_path(dir.path(), 2)).unwrap();
    assert_corrupt(
        reopen(dir.path(), None, false).await,
        2,
        "middle segment removed",
    );
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 30).await;
    std::fs::remove_file(segment_path(dir.path(), last)).unwrap();
    assert_corrupt(
        reopen(dir.path(), None, false).await,
        last - 1,
        "last segment removed",
    );
}

fn assert_inconsistent(result: Result<Vec<String>, WalError>, case: &str) {
    match result {
        Err(WalError::Inconsistent { message }) => {
            assert!(message.contains("--reset-positions"), "{case}: {message}")
        }
        other => panic!("{case}: expected a refusal for disagreement, got {other:?}"),
    }
}

#[tokio::test]
async fn a_checkpoint_ahead_of_the_log_refuses_and_reset_writes_above_it() {
    let dir = tempfile::tempdir().unwrap();
    let ids = closed_log(dir.path(), 30).await;
    let checkpoint = *ids.last().unwrap();
    // The log was restored from an older copy: its last segment is gone and
    // the mark with it.
    std::fs::remove_file(segment_path(dir.path(), checkpoint.segment)).unwrap();
    std::fs::remove_file(dir.path().join(format::MARK_FILE)).unwrap();
    assert_inconsistent(
        reopen(dir.path(), Some(checkpoint), false).await,
        "log behind",
    );
    assert_reset_writes_above(dir.path(), checkpoint).await;
}

/// With --reset-positions, a new record lands after `checkpoint` and is read.
async fn assert_reset_writes_above(dir: &Path, checkpoint: WalPosition) {
    let options = WalOptions {
        reset_positions: true,
        ..small(1 << 30)
    };
    let wal = Wal::open(dir, Some(checkpoint), options).unwrap();
    let id = wal
        .append(vec![Bytes::from_static(b"new")], 1)
        .await
        .unwrap()[0];
    assert!(id > checkpoint, "{id} not above {checkpoint}");
    let mut reader = wal.reader(Some(checkpoint));
    wal.close().await;
    assert_eq!(read_all(&mut reader).await, vec!["new"]);
}

#[tokio::test]
async fn a_missing_log_with_a_checkpoint_refuses_and_reset_starts_above_it() {
    let dir = tempfile::tempdir().unwrap();
    let ids = closed_log(dir.path(), 30).await;
    let checkpoint = ids[10];
    std::fs::remove_dir_all(dir.path()).unwrap();
    assert_inconsistent(
        reopen(dir.path(), Some(checkpoint), false).await,
        "log gone",
    );
    assert_reset_writes_above(dir.path(), checkpoint).await;
}

#[tokio::test]
async fn a_lost_or_older_checkpoint_is_noticed_from_the_logs_delivered_mark() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, ids) = small_log(dir.path(), 30).await;
    // Records before ids[20] were delivered.
    wal.release(ids[20]).unwrap();
    wal.close().await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_inconsistent(reopen(dir.path(), None, false).await, "checkpoint lost");
    assert_inconsistent(
        reopen(dir.path(), Some(ids[5]), false).await,
        "older checkpoint",
    );
    // Resetting resumes after what the log delivered: nothing twice.
    let got = reopen(dir.path(), None, true).await.unwrap();
    assert_eq!(got, expected(30)[20..].to_vec());
}

#[tokio::test]
async fn repair_salvages_damage_as_error_records_and_keeps_every_intact_record() {
    let dir = tempfile::tempdir().unwrap();
    let ids = closed_log(dir.path(), 30).await;
    let victim = ids[7];
    flip(
        &segment_path(dir.path(), victim.segment),
        victim.offset + 17,
    );
    let report = check::check(dir.path(), None).unwrap();
    assert!(
        report
            .problems()
            .iter()
            .any(|p| matches!(p, check::Problem::Corrupt { position, .. } if *position == victim)),
        "{report}"
    );
    let done = check::repair(dir.path(), None).unwrap();
    assert_eq!(done.stretches, 1);
    assert!(
        check::check(dir.path(), None)
            .unwrap()
            .problems()
            .is_empty()
    );
    let got = reopen(dir.path(), None, false).await.unwrap();
    let mut want = expected(30);
    // The damaged frame's bytes come back as one damaged record in its place.
    assert!(got[7].starts_with("DAMAGED:"), "{got:?}");
    want.remove(7);
    let intact: Vec<String> = got
        .into_iter()
        .filter(|r| !r.starts_with("DAMAGED:"))
        .collect();
    assert_eq!(intact, want);
}

#[tokio::test]
async fn a_reader_that_meets_damage_stops_the_log_taking_records() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, ids) = small_log(dir.path(), 9).await;
    // Damage after the open check, as a failing disk would.
    flip(
        &segment_path(dir.path(), ids[4].segment),
        ids[4].offset + 17,
    );
    let mut reader = wal.reader(None);
    let mut seen = 0;
    let err = loop {
        match reader.next_batch(1 << 20).await {
            Ok(Some(batch)) => seen += batch.len(),
            Ok(None) => panic!("damage not found"),
            Err(e) => break e,
        }
    };
    assert!(seen <= 4);
    assert!(matches!(err, WalError::Corrupt { .. }), "{err}");
    let refused = wal
        .append(vec![Bytes::from_static(b"x")], 1)
        .await
        .unwrap_err();
    assert!(matches!(refused, WalError::Corrupt { .. }), "{refused}");
}

// --- property: random appends, crashes and single-byte damage ------------------------------

mod property {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Damage {
        None,
        /// Flip one byte at this fraction of all bytes of all files.
        Flip(f64),
    }

    fn scenario() -> impl Strategy<Value = (Vec<Vec<usize>>, Vec<u8>, Damage)> {
        (
            prop::collection::vec(prop::collection::vec(0usize..80, 1..5), 1..12),
            prop::collection::vec(any::<u8>(), 0..40),
            prop_oneof![Just(Damage::None), (0.0f64..1.0).prop_map(Damage::Flip)],
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn reader_never_invents_or_silently_skips_acknowledged_records(
            (appends, torn, damage) in scenario()
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let wal = Wal::open(dir.path(), None, small(1 << 30)).unwrap();
                let mut acked = Vec::new();
                let mut n = 0;
                for sizes in &appends {
                    let batch: Vec<Bytes> = sizes.iter().map(|len| {
                        n += 1;
                        let mut s = format!("r{n}-");
                        s.extend(std::iter::repeat_n('x', *len));
                        Bytes::from(s)
                    }).collect();
                    wal.append(batch.clone(), 7).await.unwrap();
                    acked.extend(batch.into_iter().map(|b| String::from_utf8(b.to_vec()).unwrap()));
                }
                wal.close().await;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                // The crash: an unacknowledged write torn at a random length.
                let mut segs: Vec<_> = std::fs::read_dir(dir.path()).unwrap()
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|e| e == "wal"))
                    .collect();
                segs.sort();
                let last = segs.last().unwrap().clone();
                let acked_len = std::fs::metadata(&last).unwrap().len();
                let mut f = OpenOptions::new().append(true).open(&last).unwrap();
                f.write_all(&torn).unwrap();
                drop(f);
                // Single-byte damage anywhere in the acknowledged bytes or the mark.
                let mut damaged_acked = false;
                if let Damage::Flip(frac) = damage {
                    let mut files = segs.clone();
                    files.push(dir.path().join(format::MARK_FILE));
                    let sizes: Vec<u64> = files.iter().map(|p| {
                        let len = std::fs::metadata(p).unwrap().len();
                        if *p == last { acked_len } else { len }
                    }).collect();
                    let total: u64 = sizes.iter().sum();
                    let mut at = ((total as f64) * frac) as u64;
                    for (path, size) in files.iter().zip(&sizes) {
                        if at < *size {
                            flip(path, at);
                            damaged_acked = !path.ends_with(format::MARK_FILE);
                            break;
                        }
                        at -= size;
                    }
                }
                match reopen(dir.path(), None, false).await {
                    Ok(got) => {
                        prop_assert!(!damaged_acked, "damage went unnoticed");
                        prop_assert_eq!(got, acked);
                    }
                    Err(WalError::Corrupt { .. }) => prop_assert!(damaged_acked, "refused an intact log"),
                    Err(e) => prop_assert!(false, "unexpected error {}", e),
                }
                Ok(())
            })?;
        }
    }
}

#[tokio::test]
async fn a_log_of_only_empty_segment_files_starts_fresh_in_the_lowest() {
    let dir = tempfile::tempdir().unwrap();
    for n in [3, 4, 9] {
        File::create(segment_path(dir.path(), n)).unwrap();
    }
    let wal = Wal::open(dir.path(), None, small(1 << 30)).unwrap();
    let id = wal.append(vec![Bytes::from_static(b"x")], 1).await.unwrap()[0];
    assert_eq!(id.segment, 3);
    let mut reader = wal.reader(None);
    wal.close().await;
    assert_eq!(read_all(&mut reader).await, vec!["x"]);
    assert!(dir.path().join(format!("{:020}.wal.stray", 4)).exists());
}
