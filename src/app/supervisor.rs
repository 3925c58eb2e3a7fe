//! The registry of running streams: each with its own stop signal, task and status,
//! started, drained, replaced and removed at runtime.
//!
//! Neighbours: [`super::run`] builds the supervisor, launches the configured streams,
//! and hands it each SIGHUP ([`Supervisor::reload`]) and the shutdown
//! ([`Supervisor::shutdown`]). The API serves from the same registry
//! ([`crate::api::ApiState`]): a stream is inserted there when it launches and
//! removed when it is gone; the systemd notifier reads the statuses through it.
//!
//! # Reload
//! The new configuration is read and checked whole before anything changes: every
//! file parses and validates, Glue schemas resolve, every transform of a changed or
//! new stream loads and accepts its `init` configuration. If any of that fails the
//! reload is refused with the reason and every stream keeps running as it was. Then a
//! stream whose *fingerprint* (its resolved configuration and the bytes of its
//! transform modules) is unchanged is left alone; a changed one drains (its log stops
//! taking records, so puts get `ServiceUnavailableException` for that moment; what it
//! read is delivered and committed) and starts again on the new configuration from its
//! checkpoint; a removed one drains and is removed from the API; a new one starts.
//! Draining delivers before the new pipeline recovers, and the new one starts from
//! the committed positions, so no record is lost or delivered twice across a reload.
//! A reload manages the streams of the config files only: streams created through
//! the API are left alone, and a file defining a stream of the same name is refused.
//!
//! # The control plane
//! [`Supervisor::control`] applies the API's requests ([`crate::api::control`]) one
//! at a time. Created streams are kept in the [`Catalog`] before they start, so a
//! crash cannot lose one that was acknowledged. `UpdateDestination` is a reload of
//! one stream with a version check (drain, then start the merged definition under
//! the next version) and `DeleteDeliveryStream` a drain that must deliver before the
//! stream, its catalog entry and its state directory go: a stream that cannot deliver
//! keeps running with its records (unless `AllowForceDelete` says to drop them), and a
//! delete interrupted by a crash is finished at the next start.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use serde_json::{Value, json};

use super::catalog::{Catalog, Entry};
use super::{
    AppError, PipelineError, RunOptions, SourceParts, StreamParts, api_stream, needs_aws,
    open_stream, resolve_glue_schema, run_stream,
};
use crate::api::ApiState;
use crate::api::control::{Call, ControlError, MAX_TAGS, Request};
use crate::buffer::ProcessBudget;
use crate::config::{SourceConfig, StreamConfig, Target};
use crate::status::{State, StreamStatus};

/// Most streams the API may create (config files add to it freely).
pub(super) const MAX_API_STREAMS: usize = 100;

/// One running stream.
struct Running {
    /// Its configuration, as resolved (Glue schemas read).
    config: StreamConfig,
    fingerprint: String,
    source: SourceParts,
    status: Arc<StreamStatus>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), PipelineError>>,
    /// Its catalog entry if the API created it; `None`: a config file's.
    entry: Option<Entry>,
}

/// A stream after its drain.
struct Drained {
    config: StreamConfig,
    fingerprint: String,
    entry: Option<Entry>,
    /// Whether it delivered everything it had read.
    delivered: bool,
}

impl Running {
    /// Starts a drain: the status says so, a Direct PUT log stops taking
    /// appends, and the pipeline (a Kinesis reader too) sees its stop signal,
    /// delivers what it read and ends.
    async fn stop_taking(&self) {
        self.status.draining();
        if let SourceParts::DirectPut(wal) = &self.source {
            wal.close().await;
        }
        self.stop.send_replace(true);
    }
}

/// The running streams and what launching more needs.
pub(super) struct Supervisor {
    options: RunOptions,
    sdk: Option<aws_config::SdkConfig>,
    /// `CreateTimestamp` of every stream (the process start).
    created: f64,
    budget: Option<Arc<ProcessBudget>>,
    api: Arc<ApiState>,
    running: BTreeMap<String, Running>,
    catalog: Catalog,
}

impl Supervisor {
    pub(super) fn new(options: RunOptions, api: Arc<ApiState>) -> Self {
        let budget = options.memory_budget_bytes.map(ProcessBudget::new);
        let catalog = Catalog::new(&options.state_dir);
        Supervisor {
            catalog,
            options,
            sdk: None,
            created: jiff::Timestamp::now().as_millisecond() as f64 / 1000.0,
            budget,
            api,
            running: BTreeMap::new(),
        }
    }

    /// Loads the AWS configuration the first time a stream needs it.
    async fn sdk_for(&mut self, configs: &[StreamConfig]) {
        if self.sdk.is_none() && configs.iter().any(needs_aws) {
            let region = aws_config::meta::region::RegionProviderChain::default_provider()
                .or_else(aws_config::Region::new("us-east-1"));
            self.sdk = Some(
                aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(region)
                    .load()
                    .await,
            );
        }
    }

    /// Resolves every config's Glue schema (the first failure refuses them all).
    pub(super) async fn resolve(
        &mut self,
        mut configs: Vec<StreamConfig>,
    ) -> Result<Vec<StreamConfig>, AppError> {
        self.sdk_for(&configs).await;
        for config in &mut configs {
            resolve_glue_schema(config, self.sdk.as_ref()).await?;
        }
        Ok(configs)
    }

    /// Opens a stream's parts (log, sink, claims, transforms) without running it.
    pub(super) async fn prepare(&self, config: &StreamConfig) -> Result<StreamParts, AppError> {
        let share = self
            .budget
            .as_ref()
            .filter(|_| config.destination.dynamic_partitioning.is_some())
            .map(ProcessBudget::share);
        let parts = open_stream(config, &self.options, self.sdk.as_ref(), share).await?;
        super::log_summary(config, &*parts.sink);
        crate::metrics::init_stream(
            &config.name,
            matches!(config.source, SourceConfig::DirectPut(_)),
        );
        Ok(parts)
    }

    /// Makes the API serve a prepared stream (its puts go to its log), before
    /// it runs: at start-up every stream is listed before the port opens.
    /// `entry`: its catalog entry if the API created it.
    pub(super) fn list(&self, config: &StreamConfig, parts: &StreamParts, entry: Option<&Entry>) {
        let stream = api_stream(config, parts, entry, self.created);
        self.api.insert(&config.name, stream);
    }

    /// What decides whether a reload restarts `config`'s stream (see [`fingerprint`]).
    pub(super) fn fingerprint(&self, config: &StreamConfig) -> String {
        fingerprint(config, &self.options.transforms_dir)
    }

    /// Serves and runs a prepared stream; `fingerprint` is [`Self::fingerprint`]
    /// of `config`, computed once by the caller (it reads every module).
    pub(super) fn launch(
        &mut self,
        config: StreamConfig,
        fingerprint: String,
        parts: StreamParts,
        entry: Option<Entry>,
    ) {
        self.list(&config, &parts, entry.as_ref());
        let (stop, stopping) = watch::channel(false);
        let source = parts.source.clone();
        let status = parts.status.clone();
        let task = tokio::spawn(run_stream(parts, stopping));
        self.running.insert(
            config.name.clone(),
            Running {
                config,
                fingerprint,
                source,
                status,
                stop,
                task,
                entry,
            },
        );
    }

    /// Drains one stream and forgets it: its log stops taking records, its
    /// pipeline delivers what it read, then its task ends (or is aborted past
    /// the drain timeout: the records stay in the log). With `unlist`, the API
    /// stops serving it too.
    async fn drain(&mut self, name: &str, unlist: bool) -> Option<Drained> {
        let running = self.running.remove(name)?;
        running.stop_taking().await;
        let mut task = running.task;
        let mut delivered = false;
        match tokio::time::timeout(self.options.drain_timeout, &mut task).await {
            Ok(Ok(Ok(()))) => {
                delivered = true;
                tracing::info!(stream = name, "Drained.");
            }
            Ok(Ok(Err(e))) => {
                tracing::error!(stream = name, error = %e, "Could not drain; the records stay in the log for the stream's next start.")
            }
            Ok(Err(join)) => tracing::error!(stream = name, error = %join, "Stream task failed."),
            Err(_) => {
                task.abort();
                let _ = task.await;
                tracing::error!(
                    stream = name,
                    secs = self.options.drain_timeout.as_secs(),
                    "Did not drain in time; stopped. Its records stay in the log for the stream's next start."
                );
            }
        }
        if unlist {
            self.api.remove(name);
        }
        Some(Drained {
            config: running.config,
            fingerprint: running.fingerprint,
            entry: running.entry,
            delivered,
        })
    }

    /// Starts a drained stream again as it was (a change that could not be
    /// applied); if even that fails it is no longer served. Returns whether it runs.
    async fn restart(&mut self, old: Drained) -> bool {
        let name = old.config.name.clone();
        match self.prepare(&old.config).await {
            Ok(parts) => {
                self.launch(old.config, old.fingerprint, parts, old.entry);
                true
            }
            Err(e) => {
                tracing::error!(stream = %name, error = %e, "Cannot start the previous configuration either; the stream stays stopped until the next reload or restart.");
                self.api.remove(&name);
                false
            }
        }
    }

    /// Applies a new configuration (see the module docs): `Ok` with what
    /// changed, or `Err` with why it was refused, and then nothing changed.
    pub(super) async fn reload(
        &mut self,
        loaded: Result<Vec<StreamConfig>, String>,
    ) -> Result<String, String> {
        let configs = self.resolve(loaded?).await.map_err(|e| e.to_string())?;
        let (mut unchanged, mut changed, mut added) = (Vec::new(), Vec::new(), Vec::new());
        for config in configs {
            if self
                .running
                .get(&config.name)
                .is_some_and(|r| r.entry.is_some())
            {
                return Err(format!(
                    "stream `{}` of the configuration files was created through the API (kept in {}); delete it through the API or give the file's stream another name",
                    config.name,
                    self.catalog.path(&config.name).display()
                ));
            }
            let print = self.fingerprint(&config);
            match self.running.get(&config.name) {
                Some(r) if r.fingerprint == print => unchanged.push(config.name.clone()),
                Some(_) => changed.push((config, print)),
                None => added.push((config, print)),
            }
        }
        // Every transform of what will start must load, as `sluice validate` checks.
        let starting: Vec<StreamConfig> = changed
            .iter()
            .chain(&added)
            .map(|(c, _)| c.clone())
            .collect();
        self.check_transforms(starting).await?;
        let kept: Vec<&str> = unchanged
            .iter()
            .map(String::as_str)
            .chain(changed.iter().map(|(c, _)| c.name.as_str()))
            .collect();
        let removed: Vec<String> = self
            .running
            .iter()
            .filter(|(name, r)| r.entry.is_none() && !kept.contains(&name.as_str()))
            .map(|(name, _)| name.clone())
            .collect();
        for name in &removed {
            tracing::info!(stream = %name, "Reload: the stream is no longer configured; draining it.");
            self.drain(name, true).await;
        }
        let restarted: Vec<String> = changed.iter().map(|(c, _)| c.name.clone()).collect();
        for (config, print) in changed {
            tracing::info!(stream = %config.name, "Reload: the configuration changed; draining the stream, then starting it again.");
            // Still listed meanwhile: its closed log answers puts with
            // ServiceUnavailableException, which clients retry.
            let old = self.drain(&config.name, false).await;
            match self.prepare(&config).await {
                Ok(parts) => self.launch(config, print, parts, None),
                Err(e) => {
                    tracing::error!(stream = %config.name, error = %e, "Reload: cannot start the new configuration; starting the previous one again.");
                    match old {
                        Some(old) => {
                            self.restart(old).await;
                        }
                        None => self.api.remove(&config.name),
                    }
                }
            }
        }
        let started: Vec<String> = added.iter().map(|(c, _)| c.name.clone()).collect();
        for (config, print) in added {
            match self.prepare(&config).await {
                Ok(parts) => self.launch(config, print, parts, None),
                Err(e) => {
                    tracing::error!(stream = %config.name, error = %e, "Reload: cannot start the new stream.")
                }
            }
        }
        Ok(format!(
            "unchanged {unchanged:?}, restarted {restarted:?}, added {started:?}, removed {removed:?}"
        ))
    }

    /// The streams kept in the catalog, parsed as at their last change, for
    /// start-up. An entry that cannot be read or no longer validates is logged
    /// and left in place (its stream does not start); one named like a config
    /// file's stream is refused, as a reload would be.
    ///
    /// # Errors
    /// [`AppError::StateDir`] when the catalog cannot be listed; [`AppError::Stream`]
    /// for a name both defines.
    pub(super) fn restore(
        &self,
        from_files: &[StreamConfig],
    ) -> Result<Vec<(StreamConfig, Entry)>, AppError> {
        let entries = self.catalog.load().map_err(|e| AppError::StateDir {
            path: self.options.state_dir.clone(),
            message: format!("{}: {e}", super::catalog::DIR),
        })?;
        let mut restored = Vec::new();
        for (name, entry) in entries {
            let path = self.catalog.path(&name);
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    tracing::error!(stream = %name, error = %e, "Cannot read this API-created stream's definition; it does not start. Repair or remove the file.");
                    continue;
                }
            };
            if from_files.iter().any(|c| c.name == name) {
                return Err(AppError::Stream {
                    stream: name,
                    message: format!(
                        "defined in a config file and created through the API (kept in {}); remove one of them",
                        path.display()
                    ),
                });
            }
            match self.definition(&path.display().to_string(), &entry.request, entry.version) {
                Ok(config) if config.name == name => restored.push((config, entry)),
                Ok(config) => {
                    tracing::error!(stream = %name, found = %config.name, path = %path.display(), "The definition names another stream; it does not start.")
                }
                Err(e) => {
                    tracing::error!(stream = %name, error = %e, "This API-created stream's definition no longer validates; it does not start. Fix or remove the file.")
                }
            }
        }
        Ok(restored)
    }

    /// Finishes the deletes a crash interrupted (see the module docs).
    pub(super) async fn finish_deletes(&mut self) {
        let deleting: Vec<String> = self
            .running
            .iter()
            .filter(|(_, r)| r.entry.as_ref().is_some_and(|e| e.deleting))
            .map(|(name, _)| name.clone())
            .collect();
        for name in deleting {
            tracing::info!(stream = %name, "Finishing a delete the last run did not finish.");
            if let Err(e) = self.delete(&name, false).await {
                tracing::error!(stream = %name, error = %e, "The delete did not finish; the stream keeps running.");
            }
        }
    }

    /// A stream definition from the API (or the catalog), as a config file
    /// would be parsed, under `version`. `what` names it in messages. A local
    /// directory destination must be inside `--api-local-root`, so that API
    /// callers cannot make sluice write elsewhere on its machine.
    fn definition(
        &self,
        what: &str,
        document: &Value,
        version: u32,
    ) -> Result<StreamConfig, String> {
        let text = serde_json::to_string_pretty(document).map_err(|e| e.to_string())?;
        self.definition_text(what, &text, version)
    }

    fn definition_text(
        &self,
        what: &str,
        text: &str,
        version: u32,
    ) -> Result<StreamConfig, String> {
        let root = self.options.api_local_root.as_deref();
        let cwd = root.unwrap_or(&self.options.state_dir);
        let mut config = crate::config::firehose::parse(text, std::path::Path::new(what), cwd)
            .map_err(|e| e.to_string())?;
        config.version = version;
        if let Target::Local { path } = &config.destination.target {
            let option = "ExtendedS3DestinationConfiguration.BucketARN";
            match root {
                None => {
                    return Err(format!(
                        "{what}: {option}: a local directory (file://) is allowed for streams created through the API only when sluice runs with --api-local-root DIR, and then inside DIR; use arn:aws:s3:::<bucket>"
                    ));
                }
                Some(root)
                    if !path.starts_with(root)
                        || path
                            .components()
                            .any(|c| matches!(c, std::path::Component::ParentDir)) =>
                {
                    return Err(format!(
                        "{what}: {option}: {} is outside --api-local-root {}; streams created through the API may write only inside it",
                        path.display(),
                        root.display()
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(config)
    }

    /// Checks what a created or updated stream needs beyond its definition: its
    /// Glue schema resolves and its transforms load and accept their `init`.
    async fn check_new(&mut self, config: StreamConfig) -> Result<StreamConfig, ControlError> {
        let mut resolved = self
            .resolve(vec![config])
            .await
            .map_err(|e| ControlError::Invalid(e.to_string()))?;
        let config = resolved.remove(0);
        self.check_transforms(vec![config.clone()])
            .await
            .map_err(ControlError::Invalid)?;
        Ok(config)
    }

    /// Every transform of `configs` loads and accepts its `init`, as `sluice
    /// validate` checks (off the reactor: components compile); else every reason.
    async fn check_transforms(&self, configs: Vec<StreamConfig>) -> Result<(), String> {
        let dir = self.options.transforms_dir.clone();
        let errors = tokio::task::spawn_blocking(move || super::check_transforms(&configs, &dir))
            .await
            .map_err(|e| format!("checking transforms: {e}"))?;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Applies one control-plane request and answers it.
    pub(super) async fn control(&mut self, call: Call) {
        let result = match call.request {
            Request::Create {
                name,
                document,
                text,
                tags,
            } => self.create(name, document, &text, tags).await,
            Request::Delete { name, force } => self.delete(&name, force).await,
            Request::Update {
                name,
                current_version,
                update,
            } => self.update(&name, current_version, update).await,
            Request::Tag { name, tags } => self.change_tags(&name, |t| {
                t.extend(tags);
            }),
            Request::Untag { name, keys } => self.change_tags(&name, |t| {
                for key in &keys {
                    t.remove(key);
                }
            }),
        };
        if let Err(e) = &result {
            tracing::info!(code = e.code(), error = %e, "Control-plane request refused.");
        }
        // The caller may have gone (timed out); what was done stays done.
        let _ = call.reply.send(result);
    }

    fn from_file(name: &str, what: &str) -> ControlError {
        ControlError::Invalid(format!(
            "{name} is defined in a --config file, which is its definition; {what} by editing that file and reloading (SIGHUP)"
        ))
    }

    /// The running API-created stream `name` and its entry, or why `what` cannot touch it.
    fn api_created(&self, name: &str, what: &str) -> Result<(&Running, Entry), ControlError> {
        let running = self
            .running
            .get(name)
            .ok_or_else(|| ControlError::not_found(name))?;
        let entry = running
            .entry
            .clone()
            .ok_or_else(|| Self::from_file(name, what))?;
        if entry.deleting {
            return Err(ControlError::InUse(format!("{name} is being deleted")));
        }
        Ok((running, entry))
    }

    async fn create(
        &mut self,
        name: String,
        document: Value,
        text: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<Value, ControlError> {
        if self.running.contains_key(&name) || self.api.get(&name).is_some() {
            return Err(ControlError::InUse(format!(
                "Firehose {name} under this sluice instance already exists."
            )));
        }
        let created = self.running.values().filter(|r| r.entry.is_some()).count();
        if created >= MAX_API_STREAMS {
            return Err(ControlError::Limit(format!(
                "{created} streams were created through the API; this instance takes at most {MAX_API_STREAMS}"
            )));
        }
        let config = self
            .definition_text("CreateDeliveryStream", text, 1)
            .map_err(ControlError::Invalid)?;
        let config = self.check_new(config).await?;
        let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
        let entry = Entry {
            request: document,
            version: 1,
            created: now,
            updated: now,
            tags,
            deleting: false,
        };
        // Kept before it starts: once acknowledged, a crash cannot lose it.
        self.catalog.save(&name, &entry).map_err(|e| {
            ControlError::Internal(format!("cannot keep the stream's definition: {e}"))
        })?;
        let parts = match self.prepare(&config).await {
            Ok(parts) => parts,
            Err(e) => {
                let _ = self.catalog.remove(&name);
                return Err(ControlError::Invalid(e.to_string()));
            }
        };
        let arn = super::stream_arn(&config);
        let print = self.fingerprint(&config);
        tracing::info!(stream = %name, "Created through the API.");
        self.launch(config, print, parts, Some(entry));
        Ok(json!({"DeliveryStreamARN": arn}))
    }

    async fn delete(&mut self, name: &str, force: bool) -> Result<Value, ControlError> {
        // Not `api_created`: a delete a crash interrupted resumes on a `deleting` entry.
        let running = self
            .running
            .get(name)
            .ok_or_else(|| ControlError::not_found(name))?;
        let mut entry = running
            .entry
            .clone()
            .ok_or_else(|| Self::from_file(name, "delete it"))?;
        entry.deleting = true;
        self.catalog
            .save(name, &entry)
            .map_err(|e| ControlError::Internal(format!("cannot record the delete: {e}")))?;
        if let Some(r) = self.running.get_mut(name) {
            r.entry = Some(entry.clone());
        }
        self.api.modify(name, |s| s.deleting = true);
        let Some(drained) = self.drain(name, false).await else {
            return Err(ControlError::not_found(name));
        };
        if !drained.delivered && !force {
            entry.deleting = false;
            if let Err(e) = self.catalog.save(name, &entry) {
                tracing::error!(stream = name, error = %e, "Cannot record that the delete was abandoned; the next start finishes it.");
            }
            let mut again = drained;
            again.entry = Some(entry);
            self.restart(again).await;
            return Err(ControlError::InUse(format!(
                "{name} could not deliver what it holds (the log says why); it keeps running with its records. Retry, or delete with AllowForceDelete to drop them"
            )));
        }
        if !drained.delivered {
            tracing::warn!(
                stream = name,
                "AllowForceDelete: deleting the stream with records it did not deliver; they are dropped."
            );
        }
        self.api.remove(name);
        // Its log and checkpoint go before its entry: a crash in between
        // leaves the entry, and the next start finishes the delete.
        let dir = self.options.state_dir.join(name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(stream = name, error = %e, dir = %dir.display(), "Cannot remove the deleted stream's state directory; remove it by hand before creating a stream of that name again.")
            }
        }
        self.catalog
            .remove(name)
            .map_err(|e| ControlError::Internal(format!("the stream is stopped but its definition could not be removed ({e}); the next start finishes the delete")))?;
        tracing::info!(stream = name, "Deleted through the API.");
        Ok(json!({}))
    }

    async fn update(
        &mut self,
        name: &str,
        current_version: u32,
        update: serde_json::Map<String, Value>,
    ) -> Result<Value, ControlError> {
        let (running, entry) = self.api_created(name, "change it")?;
        // A stale version id is stale whatever the stream is doing (it may still be
        // starting on the update that made the id stale).
        if current_version != entry.version {
            return Err(ControlError::Concurrent(format!(
                "CurrentDeliveryStreamVersionId {current_version} is not the current version of {name} ({}); describe the stream and retry with its VersionId",
                entry.version
            )));
        }
        if matches!(running.status.state(), State::Starting) {
            return Err(ControlError::InUse(format!(
                "{name} is CREATING; update it once it is ACTIVE"
            )));
        }
        let mut request = entry.request.clone();
        let destination = request
            .as_object_mut()
            .and_then(|r| {
                r.entry("ExtendedS3DestinationConfiguration")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
            })
            .ok_or_else(|| {
                ControlError::Internal("the kept definition has no destination object".into())
            })?;
        // Firehose keeps what the update does not name; a member it names is
        // replaced whole.
        for (member, value) in update {
            let member = if member == "S3BackupUpdate" {
                "S3BackupConfiguration".to_owned()
            } else {
                member
            };
            destination.insert(member, value);
        }
        let version = entry.version + 1;
        let config = self
            .definition("UpdateDestination", &request, version)
            .map_err(ControlError::Invalid)?;
        let config = self.check_new(config).await?;
        let print = self.fingerprint(&config);
        let Some(old) = self.drain(name, false).await else {
            return Err(ControlError::not_found(name));
        };
        if !old.delivered {
            self.restart(old).await;
            // Not Internal: SDKs retry a 503 at once, and each retry would wait for
            // another drain of a stream that cannot deliver.
            return Err(ControlError::InUse(format!(
                "{name} could not deliver what it holds under version {}; the update is not applied, the stream keeps running (the log says why); retry once it delivers",
                entry.version
            )));
        }
        let parts = match self.prepare(&config).await {
            Ok(parts) => parts,
            Err(e) => {
                self.restart(old).await;
                return Err(ControlError::Invalid(e.to_string()));
            }
        };
        let new_entry = Entry {
            request,
            version,
            updated: jiff::Timestamp::now().as_millisecond() as f64 / 1000.0,
            ..entry
        };
        if let Err(e) = self.catalog.save(name, &new_entry) {
            drop(parts);
            self.restart(old).await;
            return Err(ControlError::Internal(format!(
                "cannot keep the new definition ({e}); the update is not applied"
            )));
        }
        tracing::info!(
            stream = name,
            version,
            "Destination updated through the API."
        );
        self.launch(config, print, parts, Some(new_entry));
        Ok(json!({}))
    }

    /// Tags or untags an API-created stream.
    fn change_tags(
        &mut self,
        name: &str,
        change: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Result<Value, ControlError> {
        let (_, mut entry) = self.api_created(name, "tag it")?;
        change(&mut entry.tags);
        if entry.tags.len() > MAX_TAGS {
            return Err(ControlError::Limit(format!(
                "{name} would have {} tags; a stream has at most {MAX_TAGS}",
                entry.tags.len()
            )));
        }
        self.catalog
            .save(name, &entry)
            .map_err(|e| ControlError::Internal(format!("cannot keep the tags: {e}")))?;
        let tags = entry.tags.clone();
        if let Some(r) = self.running.get_mut(name) {
            r.entry = Some(entry);
        }
        self.api.modify(name, |s| s.tags = tags);
        Ok(json!({}))
    }

    /// Drains every stream at once (shutdown), within the drain timeout.
    pub(super) async fn shutdown(&mut self) -> Result<(), AppError> {
        let running = std::mem::take(&mut self.running);
        for r in running.values() {
            r.stop_taking().await;
        }
        let mut tasks: Vec<(String, JoinHandle<Result<(), PipelineError>>)> = running
            .into_iter()
            .map(|(name, r)| (name, r.task))
            .collect();
        let drain = async {
            let mut result = Ok(());
            for (stream, task) in &mut tasks {
                let stream = stream.clone();
                let outcome = match task.await {
                    Ok(outcome) => outcome,
                    Err(join) => {
                        tracing::error!(%stream, error = %join, "Stream task panicked.");
                        if result.is_ok() {
                            result = Err(AppError::Stream {
                                stream,
                                message: format!("task failed: {join}"),
                            });
                        }
                        continue;
                    }
                };
                match outcome {
                    Ok(()) => tracing::info!(%stream, "Drained."),
                    Err(source) => {
                        if result.is_ok() {
                            result = Err(AppError::Drain {
                                stream,
                                source: Box::new(source),
                            });
                        }
                    }
                }
            }
            result
        };
        match tokio::time::timeout(self.options.drain_timeout, drain).await {
            Ok(result) => result,
            // Nothing acknowledged is lost: undelivered records are in the
            // log (Direct PUT) or still in the shards (Kinesis), and staged
            // objects of unfinished epochs are aborted at the next start.
            Err(_) => Err(AppError::DrainTimeout {
                secs: self.options.drain_timeout.as_secs(),
                streams: tasks
                    .iter()
                    .filter(|(_, task)| !task.is_finished())
                    .map(|(name, _)| name.clone())
                    .collect(),
            }),
        }
    }
}

/// What decides whether a reload restarts a stream: its resolved configuration
/// (every option, the Glue schema as read) and the bytes of its transform modules.
fn fingerprint(config: &StreamConfig, transforms_dir: &std::path::Path) -> String {
    let mut text = format!("{config:?}");
    for t in &config.destination.processors.transforms {
        let path = t.module.resolve(transforms_dir);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut h);
                text.push_str(&format!(
                    "|{}:{}:{:x}",
                    path.display(),
                    bytes.len(),
                    h.finish()
                ));
            }
            Err(e) => text.push_str(&format!("|{}:{e}", path.display())),
        }
    }
    text
}
