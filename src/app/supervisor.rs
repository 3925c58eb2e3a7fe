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

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{
    AppError, PipelineError, RunOptions, SourceParts, StreamParts, api_stream, needs_aws,
    open_stream, resolve_glue_schema, run_stream,
};
use crate::api::ApiState;
use crate::buffer::ProcessBudget;
use crate::config::{SourceConfig, StreamConfig};
use crate::status::StreamStatus;

/// One running stream.
struct Running {
    /// Its configuration, as resolved (Glue schemas read).
    config: StreamConfig,
    fingerprint: String,
    source: SourceParts,
    status: Arc<StreamStatus>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), PipelineError>>,
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
}

impl Supervisor {
    pub(super) fn new(options: RunOptions, api: Arc<ApiState>) -> Self {
        let budget = options.memory_budget_bytes.map(ProcessBudget::new);
        Supervisor {
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
    pub(super) fn list(&self, config: &StreamConfig, parts: &StreamParts) {
        self.api
            .insert(&config.name, api_stream(config, parts, self.created));
    }

    /// What decides whether a reload restarts `config`'s stream (see [`fingerprint`]).
    pub(super) fn fingerprint(&self, config: &StreamConfig) -> String {
        fingerprint(config, &self.options.transforms_dir)
    }

    /// Serves and runs a prepared stream; `fingerprint` is [`Self::fingerprint`]
    /// of `config`, computed once by the caller (it reads every module).
    pub(super) fn launch(&mut self, config: StreamConfig, fingerprint: String, parts: StreamParts) {
        self.list(&config, &parts);
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
            },
        );
    }

    /// Drains one stream and forgets it: its log stops taking records, its
    /// pipeline delivers what it read, then its task ends (or is aborted past
    /// the drain timeout: the records stay in the log). With `unlist`, the API
    /// stops serving it too. Returns its configuration and fingerprint.
    async fn drain(&mut self, name: &str, unlist: bool) -> Option<(StreamConfig, String)> {
        let running = self.running.remove(name)?;
        running.stop_taking().await;
        let mut task = running.task;
        match tokio::time::timeout(self.options.drain_timeout, &mut task).await {
            Ok(Ok(Ok(()))) => tracing::info!(stream = name, "Drained."),
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
        Some((running.config, running.fingerprint))
    }

    /// Applies a new configuration (see the module docs): `Ok` with what
    /// changed, or `Err` with why it was refused, and then nothing changed.
    pub(super) async fn reload(
        &mut self,
        loaded: Result<Vec<StreamConfig>, String>,
    ) -> Result<String, String> {
        let configs = self.resolve(loaded?).await.map_err(|e| e.to_string())?;
        let dir = self.options.transforms_dir.clone();
        let (mut unchanged, mut changed, mut added) = (Vec::new(), Vec::new(), Vec::new());
        for config in configs {
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
        let errors = tokio::task::spawn_blocking(move || super::check_transforms(&starting, &dir))
            .await
            .map_err(|e| format!("checking transforms: {e}"))?;
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        let kept: Vec<&str> = unchanged
            .iter()
            .map(String::as_str)
            .chain(changed.iter().map(|(c, _)| c.name.as_str()))
            .collect();
        let removed: Vec<String> = self
            .running
            .keys()
            .filter(|name| !kept.contains(&name.as_str()))
            .cloned()
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
                Ok(parts) => self.launch(config, print, parts),
                Err(e) => {
                    tracing::error!(stream = %config.name, error = %e, "Reload: cannot start the new configuration; starting the previous one again.");
                    let name = config.name.clone();
                    let relaunched = match old {
                        Some((old, old_print)) => match self.prepare(&old).await {
                            Ok(parts) => {
                                self.launch(old, old_print, parts);
                                true
                            }
                            Err(e) => {
                                tracing::error!(stream = %name, error = %e, "Cannot start the previous configuration either; the stream stays stopped until the next reload or restart.");
                                false
                            }
                        },
                        None => false,
                    };
                    if !relaunched {
                        self.api.remove(&name);
                    }
                }
            }
        }
        let started: Vec<String> = added.iter().map(|(c, _)| c.name.clone()).collect();
        for (config, print) in added {
            match self.prepare(&config).await {
                Ok(parts) => self.launch(config, print, parts),
                Err(e) => {
                    tracing::error!(stream = %config.name, error = %e, "Reload: cannot start the new stream.")
                }
            }
        }
        Ok(format!(
            "unchanged {unchanged:?}, restarted {restarted:?}, added {started:?}, removed {removed:?}"
        ))
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
