//! The stream table: configured streams, streams made from templates on first request, each
//! with its runtime `config` override layer (CONF-04) and its media source; and the `vod`
//! locations, whose files play as VOD HLS.
//!
//! An override that changes a stream's input switches its running media source in place
//! (CONF-01/03): every viewer, connected before or after, goes on with the new input (see
//! `media::epoch`). The new input is read and checked first; one that cannot play (a file
//! missing, unreadable, outside the media root) rejects the whole override (AMB-16) and the
//! stream keeps its input.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::time::Instant;

use crate::auth::StreamControl;
use crate::config::{Protocols, StreamConfig, StreamOverride, TemplateConfig, VodConfig};
use crate::media::{DEFAULT_SEGMENT_DURATION, MediaError, MediaRoot, MediaSource, VodMedia};

/// How long a switch to an input that failed to load is not tried again.
const SWITCH_RETRY: Duration = Duration::from_secs(5);

/// VOD files kept parsed and muxed; beyond this, one is dropped for each new one.
const VOD_CACHE_ENTRIES: usize = 32;

/// A stream's override layer and the effective configuration it gives.
#[derive(Debug)]
struct Layered {
    overlay: StreamOverride,
    effective: Arc<StreamConfig>,
}

impl Layered {
    fn new(overlay: StreamOverride, base: &StreamConfig) -> Layered {
        let effective = Arc::new(overlay.apply(base));
        Layered { overlay, effective }
    }
}

/// One stream: its configuration as loaded (file or API), the override layer from backend
/// answers, and the media source serving the effective input.
#[derive(Debug)]
pub struct Stream {
    base: StreamConfig,
    /// The override layer and the configuration in force with it, computed when the layer
    /// changes: every request reads the latter, which is not rebuilt per request.
    overlay: Mutex<Layered>,
    media: Mutex<Option<Arc<MediaSource>>>,
    media_root: MediaRoot,
    /// The last input a switch to failed, and when: not retried on every request.
    failed_switch: Mutex<Option<(String, Instant)>>,
}

impl Stream {
    fn new(base: StreamConfig, media_root: MediaRoot) -> Stream {
        Stream {
            overlay: Mutex::new(Layered::new(StreamOverride::default(), &base)),
            base,
            media: Mutex::new(None),
            media_root,
            failed_switch: Mutex::new(None),
        }
    }

    pub fn name(&self) -> &str {
        &self.base.name
    }

    /// The configuration in force: the loaded one with the override applied.
    pub fn effective(&self) -> Arc<StreamConfig> {
        lock(&self.overlay).effective.clone()
    }

    /// The configuration as loaded, without the override.
    pub fn base(&self) -> &StreamConfig {
        &self.base
    }

    /// Drops the runtime override; the loaded configuration is in force again, input
    /// included: a running source switches back.
    pub fn clear_overlay(&self) {
        *lock(&self.overlay) = Layered::new(StreamOverride::default(), &self.base);
        tracing::info!(stream = self.name(), "config override cleared");
        let running = lock(&self.media).clone();
        if let Some(source) = running {
            self.follow_input(&source);
        }
    }

    pub fn overlay(&self) -> StreamOverride {
        lock(&self.overlay).overlay.clone()
    }

    /// The input that plays: the effective configuration's first (further inputs are
    /// backups, not played).
    fn effective_input(&self) -> String {
        self.effective().inputs.first().cloned().unwrap_or_default()
    }

    /// The media source for the effective first input, started on first use. If the
    /// effective input changed since, the running source is switched to it, so that viewers
    /// holding it follow.
    pub fn media(&self) -> Result<Arc<MediaSource>, MediaError> {
        let mut slot = lock(&self.media);
        if let Some(source) = slot.as_ref() {
            let source = source.clone();
            drop(slot);
            self.follow_input(&source);
            return Ok(source);
        }
        let input = self.effective_input();
        let source = MediaSource::open(&input, &self.media_root, DEFAULT_SEGMENT_DURATION)?;
        *slot = Some(source.clone());
        Ok(source)
    }

    /// Switches `source` to the effective input if it plays another one. A failure is logged
    /// and the source keeps what it plays; the same input is not retried for
    /// [`SWITCH_RETRY`].
    fn follow_input(&self, source: &MediaSource) {
        let input = self.effective_input();
        if source.input() == input {
            return;
        }
        let mut failed = lock(&self.failed_switch);
        if failed
            .as_ref()
            .is_some_and(|(last, at)| *last == input && at.elapsed() < SWITCH_RETRY)
        {
            return;
        }
        match source.prepare(&input) {
            Ok(prepared) => {
                *failed = None;
                source.switch(prepared);
            }
            Err(error) => {
                tracing::warn!(stream = self.name(), %error, "cannot switch to the configured input; keeping the current one");
                *failed = Some((input, Instant::now()));
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// All streams of the server, and its VOD locations.
#[derive(Debug, Default)]
pub struct Streams {
    streams: RwLock<HashMap<String, Arc<Stream>>>,
    templates: RwLock<Vec<TemplateConfig>>,
    media_root: MediaRoot,
    vods: Vec<Arc<VodConfig>>,
    /// Parsed VOD files by (location, file), with the modification time and size they were
    /// read at.
    vod_cache: Mutex<HashMap<(String, String), CachedVod>>,
}

/// A parsed VOD file with the (modification time, size) it was read at.
type CachedVod = (Option<SystemTime>, u64, Arc<VodMedia>);

/// A request for a file of a `vod` location.
#[derive(Debug, Clone)]
pub struct VodRequest {
    pub location: Arc<VodConfig>,
    /// The path under the location's storage (`bunny.mp4`, `hd/bunny.mp4`).
    pub file: String,
}

impl VodRequest {
    /// The name the backend is asked about: `LOCATION/FILE`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.location.name, self.file)
    }
}

impl Streams {
    /// A table with `file://` inputs under the default media root and no VOD locations.
    pub fn new(streams: Vec<StreamConfig>, templates: Vec<TemplateConfig>) -> Streams {
        Self::with_media(streams, templates, MediaRoot::default(), Vec::new())
    }

    /// A table with `file://` inputs (and relative VOD storages) under `media_root`.
    pub fn with_media(
        streams: Vec<StreamConfig>,
        templates: Vec<TemplateConfig>,
        media_root: MediaRoot,
        vods: Vec<VodConfig>,
    ) -> Streams {
        let map = streams
            .into_iter()
            .map(|s| (s.name.clone(), Arc::new(Stream::new(s, media_root.clone()))))
            .collect();
        Streams {
            streams: RwLock::new(map),
            templates: RwLock::new(templates),
            media_root,
            vods: vods.into_iter().map(Arc::new).collect(),
            vod_cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn media_root(&self) -> &MediaRoot {
        &self.media_root
    }

    /// The VOD location serving `name` (`LOCATION/FILE…`): the longest location name that is
    /// followed by `/` and a non-empty file path. Streams take precedence; callers look them
    /// up first.
    pub fn vod(&self, name: &str) -> Option<VodRequest> {
        self.vods
            .iter()
            .filter_map(|location| {
                let file = name.strip_prefix(location.name.as_str())?.strip_prefix('/')?;
                (!file.is_empty()).then_some((location, file))
            })
            .max_by_key(|(location, _)| location.name.len())
            .map(|(location, file)| VodRequest {
                location: location.clone(),
                file: file.to_string(),
            })
    }

    /// The parsed file of a VOD request, read once and kept while the file is unchanged.
    pub fn vod_media(&self, request: &VodRequest) -> Result<Arc<VodMedia>, MediaError> {
        let storage = Path::new(&request.location.storage);
        let root = if storage.is_absolute() {
            MediaRoot::new(storage)
        } else {
            MediaRoot::new(self.media_root.path().join(storage))
        };
        let display = request.name();
        let path = root.resolve(&request.file).map_err(|reason| crate::media::FileError {
            input: display.clone(),
            reason,
        })?;
        let stamp = std::fs::metadata(&path).ok().map(|m| (m.modified().ok(), m.len()));
        let key = (request.location.name.clone(), request.file.clone());
        if let Some((modified, len)) = stamp
            && let Some((cached_modified, cached_len, media)) = lock(&self.vod_cache).get(&key)
            && *cached_modified == modified
            && *cached_len == len
        {
            return Ok(media.clone());
        }
        let media = Arc::new(VodMedia::load(
            &root,
            &display,
            &request.file,
            DEFAULT_SEGMENT_DURATION,
        )?);
        if let Some((modified, len)) = stamp {
            let mut cache = lock(&self.vod_cache);
            if cache.len() >= VOD_CACHE_ENTRIES
                && let Some(evict) = cache.keys().next().cloned()
            {
                cache.remove(&evict);
            }
            cache.insert(key, (modified, len, media.clone()));
        }
        Ok(media)
    }

    /// A configured stream, or one made from the first template whose prefix matches
    /// (`prefix/anything`).
    pub fn find(&self, name: &str) -> Option<Arc<Stream>> {
        if let Some(s) = self.streams.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Some(s.clone());
        }
        let templates = self.templates.read().unwrap_or_else(|e| e.into_inner());
        let template = templates.iter().find(|t| {
            t.prefixes.iter().any(|p| {
                name.strip_prefix(p.as_str())
                    .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
            })
        })?;
        let config = StreamConfig {
            name: name.to_string(),
            inputs: template.inputs.clone(),
            on_play: template.on_play.clone(),
            on_publish: template.on_publish.clone(),
            password: template.password.clone(),
            protocols: template.protocols,
            dvr: template.dvr.clone(),
        };
        let mut streams = self.streams.write().unwrap_or_else(|e| e.into_inner());
        Some(
            streams
                .entry(name.to_string())
                .or_insert_with(|| Arc::new(Stream::new(config, self.media_root.clone())))
                .clone(),
        )
    }

    /// Creates or replaces a stream. Replacing drops its override layer and media source.
    pub fn put(&self, config: StreamConfig) -> Arc<Stream> {
        let stream = Arc::new(Stream::new(config, self.media_root.clone()));
        self.streams
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stream.name().to_string(), stream.clone());
        stream
    }

    pub fn remove(&self, name: &str) -> bool {
        self.streams
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .is_some()
    }

    /// Configured (and template-made) streams, sorted by name.
    pub fn list(&self) -> Vec<Arc<Stream>> {
        let mut list: Vec<_> = self
            .streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        list.sort_by(|a, b| a.name().cmp(b.name()));
        list
    }
}

impl StreamControl for Streams {
    /// Validates and merges an override (AMB-16: all or nothing). A changed input is read and
    /// checked before anything changes, then the running source switches to it for every
    /// viewer (CONF-01/03); with no source running yet, one is started on it.
    fn apply_override(&self, stream: &str, config: &Value) -> Result<Protocols, String> {
        let parsed = StreamOverride::from_json(config).map_err(|e| e.to_string())?;
        let target = self
            .find(stream)
            .ok_or_else(|| format!("stream `{stream}` does not exist"))?;
        let prepared = match parsed.inputs.as_ref().and_then(|inputs| inputs.first()) {
            Some(input) => {
                let running = lock(&target.media).clone();
                let current = running.map_or_else(|| target.effective_input(), |source| source.input());
                if *input == current {
                    None
                } else {
                    let prepared = MediaSource::prepare_input(input, &target.media_root, DEFAULT_SEGMENT_DURATION)
                        .map_err(|e| format!("config.inputs[0].url: {e}"))?;
                    Some(prepared)
                }
            }
            None => None,
        };
        let mut layered = lock(&target.overlay);
        let mut overlay = layered.overlay.clone();
        overlay.merge(parsed);
        *layered = Layered::new(overlay, &target.base);
        let effective = layered.effective.clone();
        tracing::info!(stream, override_json = %crate::redact::json(&layered.overlay.to_json()), "config override applied");
        if let Some(prepared) = prepared {
            let mut slot = lock(&target.media);
            match slot.as_ref() {
                Some(source) => source.switch(prepared),
                None => {
                    *slot = Some(MediaSource::start_prepared(
                        prepared,
                        &target.media_root,
                        DEFAULT_SEGMENT_DURATION,
                    ))
                }
            }
            *lock(&target.failed_switch) = None;
        }
        Ok(effective.protocols)
    }
}
