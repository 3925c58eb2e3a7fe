//! A columnar writer on a thread of its own, so that `sluice convert` parses JSON into
//! Arrow batches on one core while the other encodes and compresses the batches before.
//!
//! Neighbours: [`Pipelined`] is a [`BatchWriter`] wrapping another one (Parquet's
//! `ArrowWriter`, the ORC writer) inside the [`super::BatchingEncoder`]; the encoder
//! constructors take a [`WriterThread`] choice. Only the `convert` command asks for a
//! thread: the daemon encodes many objects at once on its own worker threads, where a
//! thread per object would cost more than it gains.
//!
//! At most [`IN_FLIGHT`] batches wait between the two sides, so the pipeline adds a
//! bounded amount of memory (a few batches of [`super::BATCH_ROWS`] rows). A write that
//! fails on the writer thread ends it; the parser learns of it at its next batch or at
//! `finish`, with the writer's own error.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use arrow_array::RecordBatch;

use super::BatchWriter;
use crate::encode::EncodeError;

/// Where an encoder's columnar writer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterThread {
    /// On the caller's thread, batch by batch (the daemon).
    Inline,
    /// On a thread of its own, fed through a bounded queue (`sluice convert`).
    Own,
}

/// Batches queued between the parser and the writer thread.
pub(super) const IN_FLIGHT: usize = 2;

/// A [`BatchWriter`] whose work happens on another thread.
pub(crate) struct Pipelined<W> {
    batches: Option<SyncSender<RecordBatch>>,
    thread: Option<JoinHandle<Result<W, EncodeError>>>,
    /// The inner writer's `buffered_bytes`, as of its last batch (the queued
    /// batches, at most [`IN_FLIGHT`], are not counted).
    buffered: Arc<AtomicUsize>,
}

impl<W: Send + 'static> Pipelined<W> {
    /// Starts the writer thread around `inner`.
    ///
    /// # Errors
    /// The thread could not be started.
    pub(crate) fn spawn<B: BatchWriter<W> + 'static>(mut inner: B) -> io::Result<Self> {
        let (batches, queue) = sync_channel::<RecordBatch>(IN_FLIGHT);
        let buffered = Arc::new(AtomicUsize::new(0));
        let seen = buffered.clone();
        let thread = std::thread::Builder::new()
            .name("convert-writer".into())
            .spawn(move || {
                for batch in queue {
                    inner.write_batch(&batch)?;
                    seen.store(inner.buffered_bytes(), Ordering::Relaxed);
                }
                inner.finish()
            })?;
        Ok(Pipelined {
            batches: Some(batches),
            thread: Some(thread),
            buffered,
        })
    }

    /// Closes the queue and waits for the writer: its output, or the error that ended it.
    fn join(&mut self) -> Result<W, EncodeError> {
        self.batches = None;
        let thread = self.thread.take().ok_or_else(|| {
            EncodeError::Io(io::Error::other("the writer thread has already ended"))
        })?;
        thread.join().unwrap_or_else(|_| {
            Err(EncodeError::Io(io::Error::other(
                "the writer thread panicked",
            )))
        })
    }
}

impl<W: Send + 'static> BatchWriter<W> for Pipelined<W> {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), EncodeError> {
        let sent = match &self.batches {
            // The arrays are shared, not copied.
            Some(batches) => batches.send(batch.clone()).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The thread is gone: a write failed there, and that is the answer.
        match self.join() {
            Err(e) => Err(e),
            Ok(_) => Err(EncodeError::Io(io::Error::other(
                "the writer thread ended before its input did",
            ))),
        }
    }

    fn finish(mut self) -> Result<W, EncodeError> {
        self.join()
    }

    fn buffered_bytes(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Int64Array;
    use std::sync::Mutex;

    /// Records what it was given; fails at the `fail_at`-th batch.
    struct Probe {
        rows: Arc<Mutex<Vec<i64>>>,
        fail_at: Option<usize>,
        written: usize,
    }

    impl BatchWriter<Vec<i64>> for Probe {
        fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), EncodeError> {
            if Some(self.written) == self.fail_at {
                return Err(EncodeError::Io(io::Error::other("disk full")));
            }
            self.written += 1;
            let column = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            self.rows.lock().unwrap().extend(column.values().iter());
            Ok(())
        }
        fn finish(self) -> Result<Vec<i64>, EncodeError> {
            Ok(self.rows.lock().unwrap().clone())
        }
        fn buffered_bytes(&self) -> usize {
            0
        }
    }

    fn batch(from: i64) -> RecordBatch {
        RecordBatch::try_from_iter([(
            "n",
            Arc::new(Int64Array::from_iter_values(from..from + 3)) as _,
        )])
        .unwrap()
    }

    #[test]
    fn every_batch_arrives_in_order_and_finish_hands_back_the_output() {
        let rows = Arc::new(Mutex::new(Vec::new()));
        let mut writer = Pipelined::spawn(Probe {
            rows: rows.clone(),
            fail_at: None,
            written: 0,
        })
        .unwrap();
        for i in 0..50 {
            writer.write_batch(&batch(i * 3)).unwrap();
        }
        let out = writer.finish().unwrap();
        assert_eq!(out, (0..150).collect::<Vec<i64>>());
    }

    #[test]
    fn a_failed_write_on_the_thread_reaches_the_caller() {
        let mut writer = Pipelined::spawn(Probe {
            rows: Arc::new(Mutex::new(Vec::new())),
            fail_at: Some(2),
            written: 0,
        })
        .unwrap();
        // The failure is noticed at a later batch (or at finish), never lost.
        let mut error = None;
        for i in 0..20 {
            if let Err(e) = writer.write_batch(&batch(i)) {
                error = Some(e);
                break;
            }
        }
        let error = match error {
            Some(e) => e,
            None => writer.finish().unwrap_err(),
        };
        assert!(error.to_string().contains("disk full"), "{error}");
    }
}
