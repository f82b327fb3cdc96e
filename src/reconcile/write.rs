//! Writing the records a reconcile saves (a boot adopts every running domain)
//! on a thread of their own, in chunks, while the main thread reads the
//! kernel, makes the diff and installs: the entries of a domain whose record
//! is saved are installed only once that record's chunk is whole (claims,
//! then records, as [`StateDir::save_all_chunked`] writes them). Domain by domain, the
//! state comes before the kernel, as in the hook.

use std::collections::HashSet;
use std::sync::mpsc::{channel, Receiver};
use std::thread::JoinHandle;

use super::decide::Desired;
use crate::state::{Record, StateDir, StateError};

/// Records per chunk of [`StateDir::save_all_chunked`]: the first chunk's
/// entries can go in once it is written, while the next ones are.
const CHUNK: usize = 1024;

/// The records being written (see the module).
pub struct RecordWriter {
    /// By index in [`Desired::keep`]: the chunk that saves its record, if any.
    pub chunk_of: Vec<Option<usize>>,
    /// How many chunks there are.
    pub chunks: usize,
    /// Each chunk's index once it is written.
    done: Receiver<usize>,
    thread: Option<JoinHandle<Result<(), StateError>>>,
}

impl RecordWriter {
    /// Starts saving the records whose standing changed (adopted, promoted,
    /// demoted: reconcile never changes a record's plan). Call under the lock,
    /// and keep the lock until the writer is finished or dropped (dropping it
    /// waits for the thread).
    pub fn start(state: &StateDir, d: &Desired) -> RecordWriter {
        let changed: HashSet<&str> = d
            .changes
            .iter()
            .filter_map(|c| c.domain.as_deref())
            .collect();
        let mut chunk_of = vec![None; d.keep.len()];
        let mut saved: Vec<Record> = Vec::new();
        for (i, r) in d.keep.iter().enumerate() {
            if changed.contains(r.plan.name.as_str()) {
                chunk_of[i] = Some(saved.len() / CHUNK);
                saved.push(r.clone());
            }
        }
        let chunks = saved.len().div_ceil(CHUNK);
        let (tx, done) = channel();
        let state = state.clone();
        let thread = std::thread::spawn(move || {
            let refs: Vec<&Record> = saved.iter().collect();
            state.save_all_chunked(&refs, CHUNK, |k| {
                let _ = tx.send(k);
            })
        });
        RecordWriter {
            chunk_of,
            chunks,
            done,
            thread: Some(thread),
        }
    }

    /// Waits for the next chunk to be written: its index, or `None` when the
    /// writer stopped (all written, or failed: [`RecordWriter::finish`] says).
    pub fn next_written(&self) -> Option<usize> {
        self.done.recv().ok()
    }

    /// Waits for the writer to end; its error, if it failed.
    pub fn finish(&mut self) -> Result<(), StateError> {
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
            None => Ok(()),
        }
    }
}

impl Drop for RecordWriter {
    /// A reconcile that fails before it finishes the writer still waits for it:
    /// nothing is written once the lock is released.
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
