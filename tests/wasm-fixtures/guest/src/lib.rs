//! The test guest of sluice's WASM host (src/process/wasm.rs).
//!
//! One component for every host test, so CI builds one crate. The behaviour is `init`'s
//! `mode` entry, or, when the batch's first record is `!MODE`, that mode for this batch
//! only: one instance can then serve a hostile batch and then a good one.
//! Well-behaved modes: `identity` (the default), `upper`, `drop-odd`, `count` (answers
//! how many batches this instance has seen), `meta` (answers each record's arrival time
//! and Kinesis metadata). Hostile modes try what a buggy or malicious
//! transform would: `loop`, `alloc`, `panic`, `huge`, `dup`, `missing`, `unknown`,
//! `init-fail` (init only), `file`, `socket` (connects to `addr`), `env`, `chatty`.
//! The sandbox probes (`file`, `socket`, `env`) answer with what they saw as record data,
//! so the host test can check the guest saw nothing.
//!
//! It is a component of the `packed-transformer` world: `transform-packed` unpacks the
//! batch, runs the same modes as `transform` and packs their answer by position, so
//! every mode is reachable through both calls (the host can be told to use `transform`).
//! Modes only the packed answer can express break its shape: `bad-end`, `short`,
//! `long`, `extra-data`, `no-message` and `key-outside`.

// The generated export glue takes one argument per flattened field.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "packed-transformer",
    path: "../../../transforms/wit",
});

use std::cell::{Cell, RefCell};

use sluice::transform::packed::{Disposition, PartitionKey};
use sluice::transform::types::Outcome;

struct Fixture;

thread_local! {
    /// Set by `init`: the mode and the whole configuration.
    static CONFIG: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
    /// Batches this instance has transformed.
    static BATCHES: Cell<u64> = const { Cell::new(0) };
}

fn get(key: &str) -> Option<String> {
    CONFIG.with(|c| {
        c.borrow()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    })
}

fn ok(id: String, data: Vec<u8>) -> OutputRecord {
    OutputRecord {
        record_id: id,
        outcome: Outcome::Ok,
        data,
        partition_keys: Vec::new(),
    }
}

impl Guest for Fixture {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        CONFIG.with(|c| *c.borrow_mut() = config);
        match get("mode").as_deref() {
            Some("init-fail") => Err("init-fail mode: refusing to start".into()),
            _ => Ok(()),
        }
    }

    fn transform_packed(
        ctx: BatchContext,
        packed: PackedRecords,
    ) -> Result<PackedAnswer, AnswerError> {
        let n = packed.ends.len();
        let mut ranges = Vec::with_capacity(n);
        let mut start = 0;
        for &end in &packed.ends {
            ranges.push(start..end as usize);
            start = end as usize;
        }
        let slice = |i: usize| &packed.data[ranges[i].clone()];
        let everything = |d: Disposition| PackedAnswer {
            dispositions: vec![d; n],
            data: Vec::new(),
            ends: Vec::new(),
            messages: Vec::new(),
            partition_keys: Vec::new(),
        };
        match (n > 0).then(|| slice(0)) {
            Some(b"!bad-end") => {
                return Ok(PackedAnswer {
                    data: b"x".to_vec(),
                    ends: vec![5; n],
                    ..everything(Disposition::Replaced)
                });
            }
            Some(b"!short") => {
                let mut answer = everything(Disposition::Unchanged);
                answer.dispositions.pop();
                return Ok(answer);
            }
            Some(b"!long") => {
                let mut answer = everything(Disposition::Unchanged);
                answer.dispositions.push(Disposition::Dropped);
                return Ok(answer);
            }
            Some(b"!extra-data") => {
                return Ok(PackedAnswer {
                    data: b"junk".to_vec(),
                    ..everything(Disposition::Unchanged)
                });
            }
            Some(b"!no-message") => return Ok(everything(Disposition::Failed)),
            Some(b"!key-outside") => {
                return Ok(PackedAnswer {
                    partition_keys: vec![PartitionKey {
                        index: n as u32,
                        key: "k".into(),
                        value: "v".into(),
                    }],
                    ..everything(Disposition::Unchanged)
                });
            }
            _ => {}
        }
        let mut kinesis = packed.kinesis.iter().cloned();
        let records: Vec<InputRecord> = (0..n)
            .map(|i| InputRecord {
                record_id: i.to_string(),
                approximate_arrival_timestamp: packed.approximate_arrival_timestamps[i],
                data: slice(i).to_vec(),
                kinesis: kinesis.next(),
            })
            .collect();
        let mut answers: Vec<Option<OutputRecord>> = (0..n).map(|_| None).collect();
        for o in Self::transform(ctx, records) {
            let i = match o.record_id.parse::<usize>() {
                Ok(i) if i < n && i.to_string() == o.record_id => i,
                _ => return Err(AnswerError::UnknownRecordId(o.record_id)),
            };
            if answers[i].is_some() {
                return Err(AnswerError::DuplicatedRecordId(o.record_id));
            }
            answers[i] = Some(o);
        }
        let missing: Vec<u32> = (0..n as u32)
            .filter(|&i| answers[i as usize].is_none())
            .collect();
        if !missing.is_empty() {
            return Err(AnswerError::MissingRecordIds(missing));
        }
        let mut answer = everything(Disposition::Unchanged);
        for (i, o) in answers.into_iter().flatten().enumerate() {
            answer.dispositions[i] = match o.outcome {
                Outcome::Ok if o.data == slice(i) => Disposition::Unchanged,
                Outcome::Ok => {
                    answer.data.extend_from_slice(&o.data);
                    answer.ends.push(answer.data.len() as u32);
                    Disposition::Replaced
                }
                Outcome::Dropped => Disposition::Dropped,
                Outcome::ProcessingFailed(m) => {
                    answer.messages.push(m);
                    Disposition::Failed
                }
            };
            for (key, value) in o.partition_keys {
                answer.partition_keys.push(PartitionKey {
                    index: i as u32,
                    key,
                    value,
                });
            }
        }
        Ok(answer)
    }

    fn transform(_ctx: BatchContext, records: Vec<InputRecord>) -> Vec<OutputRecord> {
        BATCHES.with(|b| b.set(b.get() + 1));
        let mode = records
            .first()
            .and_then(|r| r.data.strip_prefix(b"!"))
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .or_else(|| get("mode"))
            .unwrap_or_else(|| "identity".into());
        match mode.as_str() {
            "meta" => records
                .into_iter()
                .map(|r| {
                    let seen = match &r.kinesis {
                        Some(k) => format!(
                            "{} {} {} {} {:?} {}",
                            r.approximate_arrival_timestamp,
                            k.shard_id,
                            k.partition_key,
                            k.sequence_number,
                            k.subsequence_number,
                            k.approximate_arrival_timestamp
                        ),
                        None => format!("{} no kinesis", r.approximate_arrival_timestamp),
                    };
                    ok(r.record_id, seen.into_bytes())
                })
                .collect(),
            "count" => {
                let seen = BATCHES.with(|b| b.get()).to_string();
                records
                    .into_iter()
                    .map(|r| ok(r.record_id, seen.clone().into_bytes()))
                    .collect()
            }
            "upper" => records
                .into_iter()
                .map(|r| OutputRecord {
                    record_id: r.record_id,
                    outcome: Outcome::Ok,
                    data: r.data.to_ascii_uppercase(),
                    partition_keys: vec![("case".into(), "upper".into())],
                })
                .collect(),
            "drop-odd" => records
                .into_iter()
                .enumerate()
                .map(|(i, r)| match i % 3 {
                    0 => ok(r.record_id, r.data),
                    1 => OutputRecord {
                        record_id: r.record_id,
                        outcome: Outcome::Dropped,
                        data: Vec::new(),
                        partition_keys: Vec::new(),
                    },
                    _ => OutputRecord {
                        record_id: r.record_id,
                        outcome: Outcome::ProcessingFailed("not wanted".into()),
                        data: Vec::new(),
                        partition_keys: Vec::new(),
                    },
                })
                .collect(),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    // Touch every page so the memory is really used.
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("panic mode: the guest gives up"),
            "huge" => {
                // 7 MiB in all, past Lambda's 6 MB however many records share it,
                // and spread so the guest's copies stay under a 32 MiB test cap.
                let each = (7usize << 20).div_ceil(records.len().max(1));
                records
                    .into_iter()
                    .map(|r| ok(r.record_id, vec![b'x'; each]))
                    .collect()
            }
            "dup" => {
                // Every record answered, the first twice: a duplicate even in a
                // batch of one.
                let mut out: Vec<OutputRecord> = records
                    .into_iter()
                    .map(|r| ok(r.record_id, r.data))
                    .collect();
                if let Some(first) = out.first().map(|r| ok(r.record_id.clone(), r.data.clone())) {
                    out.push(first);
                }
                out
            }
            "missing" => {
                let mut out: Vec<OutputRecord> = records
                    .into_iter()
                    .map(|r| ok(r.record_id, r.data))
                    .collect();
                out.pop();
                out
            }
            "unknown" => {
                let mut out: Vec<OutputRecord> = records
                    .into_iter()
                    .map(|r| ok(r.record_id, r.data))
                    .collect();
                if let Some(last) = out.last_mut() {
                    last.record_id = "no-such-id".into();
                }
                out
            }
            "file" => {
                let read = std::fs::read("/etc/hostname");
                let write = std::fs::write("sluice-guest-was-here", b"x");
                let list = std::fs::read_dir(".");
                let seen = format!(
                    "read={} write={} list={}",
                    read.is_ok(),
                    write.is_ok(),
                    list.is_ok()
                );
                records
                    .into_iter()
                    .map(|r| ok(r.record_id, seen.clone().into_bytes()))
                    .collect()
            }
            "socket" => {
                let addr = get("addr").unwrap_or_else(|| "127.0.0.1:9".into());
                let seen = match std::net::TcpStream::connect(&addr) {
                    Ok(_) => "connected".to_string(),
                    Err(e) => format!("denied: {e}"),
                };
                records
                    .into_iter()
                    .map(|r| ok(r.record_id, seen.clone().into_bytes()))
                    .collect()
            }
            "env" => {
                let seen = format!(
                    "vars={} args={} cwd={:?}",
                    std::env::vars_os().count(),
                    std::env::args_os().count(),
                    std::env::current_dir().ok()
                );
                records
                    .into_iter()
                    .map(|r| ok(r.record_id, seen.clone().into_bytes()))
                    .collect()
            }
            "chatty" => {
                for i in 0..1_000 {
                    log(Level::Info, &format!("chatty line {i}"));
                    println!("stdout line {i}");
                    eprintln!("stderr line {i}");
                }
                records
                    .into_iter()
                    .map(|r| ok(r.record_id, r.data))
                    .collect()
            }
            _ => records
                .into_iter()
                .map(|r| ok(r.record_id, r.data))
                .collect(),
        }
    }
}

export!(Fixture);
