//! The delivery streams created through the control-plane API, kept under
//! `<state dir>/api-streams/<name>.json` so that they come back after a restart
//! or a crash.
//!
//! Neighbours: the [`super::supervisor`] writes an entry before a created stream
//! starts, rewrites it on every update or tag change, marks it `deleting` before a
//! delete drains the stream and removes it last; [`super::run`] reads every entry
//! at start-up. Streams from config files are never written here: the files are
//! their record.
//!
//! Each entry holds the stream's `CreateDeliveryStreamInput` document as it is
//! now (updates are merged into it), so a stream is rebuilt at start-up by the same
//! parser and rules as a Firehose-shaped config file, plus what the document
//! cannot say: the destination version, the timestamps and the tags. Every write
//! replaces the whole file atomically ([`crate::fsutil::write_atomic`]): after a
//! crash an entry is either the old or the new one.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Directory of the entries, under the state directory.
pub(super) const DIR: &str = "api-streams";

/// One API-created stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Entry {
    /// Its `CreateDeliveryStreamInput`, with every `UpdateDestination` merged in.
    pub request: Value,
    /// Firehose's destination version (`VersionId`; part of every object name).
    pub version: u32,
    /// `CreateTimestamp`, seconds since the epoch.
    pub created: f64,
    /// `LastUpdateTimestamp`, seconds since the epoch.
    pub updated: f64,
    /// Its tags, by key.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// A delete was accepted and has not finished: the next start drains the
    /// stream and finishes the delete.
    #[serde(default)]
    pub deleting: bool,
}

/// The entries of one state directory.
#[derive(Debug, Clone)]
pub(super) struct Catalog {
    dir: PathBuf,
}

impl Catalog {
    /// The catalog under `state_dir` (its directory is created at the first write).
    pub(super) fn new(state_dir: &Path) -> Self {
        Catalog {
            dir: state_dir.join(DIR),
        }
    }

    /// Where the entry of `name` is kept (for messages).
    pub(super) fn path(&self, name: &str) -> PathBuf {
        // Stream names are `[a-zA-Z0-9_.-]{1,64}`: with the suffix no name is
        // `.` or `..`, and none holds a separator.
        self.dir.join(format!("{name}.json"))
    }

    /// Every entry, by stream name; an unreadable one as its error (its file is
    /// left in place for the operator).
    pub(super) fn load(&self) -> io::Result<BTreeMap<String, Result<Entry, String>>> {
        let mut entries = BTreeMap::new();
        let listing = match std::fs::read_dir(&self.dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(entries),
            Err(e) => return Err(e),
        };
        for file in listing {
            let path = file?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                // write_atomic's leftover `.NAME.json.tmp` of a crash, or a stranger.
                continue;
            };
            let entry = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
                .map_err(|e| format!("{}: {e}", path.display()));
            entries.insert(name.to_owned(), entry);
        }
        Ok(entries)
    }

    /// Writes (or replaces) the entry of `name`, durably.
    pub(super) fn save(&self, name: &str, entry: &Entry) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = serde_json::to_vec_pretty(entry).map_err(io::Error::other)?;
        crate::fsutil::write_atomic(&self.path(name), &bytes)
    }

    /// Removes the entry of `name`, durably; a missing one is not an error.
    pub(super) fn remove(&self, name: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(name)) {
            Ok(()) => crate::fsutil::sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: u32) -> Entry {
        Entry {
            request: serde_json::json!({"DeliveryStreamName": "a"}),
            version,
            created: 1.5,
            updated: 2.5,
            tags: BTreeMap::from([("team".to_owned(), "data".to_owned())]),
            deleting: false,
        }
    }

    #[test]
    fn entries_survive_a_new_catalog_and_removal_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::new(dir.path());
        assert!(catalog.load().unwrap().is_empty(), "no directory yet");
        catalog.save("a", &entry(1)).unwrap();
        catalog.save("a", &entry(2)).unwrap();
        catalog.save("b.c-d_e", &entry(1)).unwrap();
        catalog.save(".x", &entry(1)).unwrap();
        let loaded = Catalog::new(dir.path()).load().unwrap();
        assert_eq!(loaded.len(), 3);
        assert_eq!(loaded["a"].as_ref().unwrap(), &entry(2));
        catalog.remove("a").unwrap();
        catalog.remove("a").unwrap();
        let names: Vec<String> = catalog.load().unwrap().into_keys().collect();
        assert_eq!(names, [".x", "b.c-d_e"]);
    }

    #[test]
    fn a_damaged_entry_is_reported_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::new(dir.path());
        catalog.save("good", &entry(1)).unwrap();
        std::fs::write(catalog.path("bad"), b"{not json").unwrap();
        std::fs::write(dir.path().join(DIR).join(".good.json.tmp"), b"x").unwrap();
        let loaded = catalog.load().unwrap();
        assert_eq!(loaded.len(), 2);
        assert!(loaded["good"].is_ok());
        let err = loaded["bad"].as_ref().unwrap_err();
        assert!(err.contains("bad.json"), "{err}");
    }
}
