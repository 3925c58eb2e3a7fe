//! The on-disk cache of compiled components.
//!
//! Compiling a component is the slow part of loading it (milliseconds for a small Rust
//! guest, 7-11 s for a componentize-py or componentize-js one), so the native code
//! wasmtime produces is kept under the cache directory and reused by the next start.
//!
//! `Component::deserialize` trusts its input: wasmtime does not validate native code, so
//! a forged file is arbitrary code execution. The cache therefore only reads files that
//! sluice itself wrote, in a directory it owns:
//! - the directory and each entry must belong to the effective user and be writable by
//!   nobody else (checked before every read), otherwise the cache is not used;
//! - each entry starts with a magic line and the SHA-256 of the payload; a truncated or
//!   damaged entry fails the check and is recompiled and rewritten, never deserialized;
//! - entries are written to a temporary file and renamed, so readers never see half a file.
//!
//! The key is the SHA-256 of the module's bytes and of the engine's compatibility hash
//! (wasmtime's version and every compilation setting), so upgrading wasmtime or changing
//! a limit that affects code generation (epoch interruption, stack size) misses the cache
//! instead of loading incompatible code. wasmtime checks that too on deserialize; a
//! failure there is also treated as a miss.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// First bytes of every cache entry: format name and version.
const MAGIC: &[u8; 16] = b"sluice-cwasm-v1\n";
const HEADER_LEN: usize = MAGIC.len() + 32;

/// Where one module's compiled artefact lives.
pub(super) struct CacheEntry {
    path: PathBuf,
}

impl CacheEntry {
    /// The entry for `wasm` compiled by `engine`, inside `dir` (created, mode 0700, if
    /// missing). `Err` says why the directory cannot be trusted; the caller compiles
    /// without a cache then.
    pub(super) fn new(
        dir: &Path,
        engine: &wasmtime::Engine,
        wasm: &[u8],
    ) -> Result<CacheEntry, String> {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let meta =
            fs::symlink_metadata(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        if !meta.is_dir() {
            return Err(format!("{} is not a directory", dir.display()));
        }
        owned_by_us(&meta).map_err(|why| format!("{}: {why}", dir.display()))?;

        // std's DefaultHasher has fixed keys: stable for one build of sluice, which is
        // all a cache needs (another Rust version at worst misses once).
        let mut compat = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut compat);
        let mut key = Sha256::new();
        key.update(wasm);
        key.update(compat.finish().to_le_bytes());
        let key = key.finalize();
        let name: String = key.iter().map(|b| format!("{b:02x}")).collect();
        Ok(CacheEntry {
            path: dir.join(format!("{name}.cwasm")),
        })
    }

    /// The verified payload of the entry, or `None` when it is absent, not ours, or
    /// damaged (the reason is logged at debug level; the caller recompiles).
    pub(super) fn read(&self) -> Option<Vec<u8>> {
        let mut file = match fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), "cannot open cached component: {e}");
                return None;
            }
        };
        // Check the open file, not the path, so a swap between check and read is moot.
        let ours = file
            .metadata()
            .map_err(|e| e.to_string())
            .and_then(|m| owned_by_us(&m));
        if let Err(why) = ours {
            tracing::warn!(path = %self.path.display(), "ignoring cached component: {why}");
            return None;
        }
        let mut bytes = Vec::new();
        if let Err(e) = std::io::Read::read_to_end(&mut file, &mut bytes) {
            tracing::warn!(path = %self.path.display(), "cannot read cached component: {e}");
            return None;
        }
        if bytes.len() < HEADER_LEN
            || &bytes[..MAGIC.len()] != MAGIC
            || bytes[MAGIC.len()..HEADER_LEN] != Sha256::digest(&bytes[HEADER_LEN..])[..]
        {
            tracing::warn!(path = %self.path.display(), "cached component is damaged; recompiling");
            return None;
        }
        bytes.drain(..HEADER_LEN);
        Some(bytes)
    }

    /// Stores `payload` (a serialized component). Failures only cost a recompile on the
    /// next start, so they are logged, not returned.
    pub(super) fn write(&self, payload: &[u8]) {
        let Some(dir) = self.path.parent() else {
            return;
        };
        // Unique per process and write: two hosts may load the same module at once.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let tmp = dir.join(format!(
            ".{}.{}-{}.tmp",
            self.path
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(MAGIC)?;
            file.write_all(&Sha256::digest(payload))?;
            file.write_all(payload)?;
            // No fsync: a torn entry after a crash fails its checksum and is rebuilt.
            drop(file);
            fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            tracing::warn!(path = %self.path.display(), "cannot write component cache: {e}");
        }
    }

    #[cfg(test)]
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

/// Whether the effective user owns the file and nobody else may write it.
fn owned_by_us(meta: &fs::Metadata) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        return Err(format!(
            "owned by uid {}, not by sluice's uid {euid}",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}
