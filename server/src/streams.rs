//! The stream table: configured streams, streams made from templates, each with its runtime
//! `config` override layer (CONF-04) and its media source; and the `vod` locations, whose files
//! play as VOD HLS.
//!
//! A name under a template's prefix is looked up without being added ([`Streams::lookup`]): the
//! backend is asked with the template's settings, and only a granted client puts the stream in
//! the table ([`Streams::materialise`]), where it gets a media source and, with `dvr`, the
//! recorder. A refused client leaves nothing behind. Template-made streams are bounded in
//! number ([`TemplateLimits::max`]) and removed once nobody has used them for
//! [`TemplateLimits::idle`]; configured streams stay.
//!
//! An override that changes a stream's input switches its running media source in place
//! (CONF-01/03): every viewer, connected before or after, goes on with the new input (see
//! `media::epoch`). The new input is read and checked first; one that cannot play (a file
//! missing, unreadable, outside the media root) rejects the whole override (AMB-16) and the
//! stream keeps its input.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::StreamControl;
use crate::config::{
    DEFAULT_TEMPLATE_STREAM_IDLE, DEFAULT_TEMPLATE_STREAM_LIMIT, ParsedOverride, Protocols, StreamConfig,
    StreamOverride, TemplateConfig, VodConfig,
};
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
    /// Made from a template for a granted client: removed from the table once idle.
    from_template: bool,
    /// When a client was last admitted to it.
    last_used: Mutex<Instant>,
}

impl Stream {
    fn new(base: StreamConfig, media_root: MediaRoot) -> Stream {
        Self::made(base, media_root, false)
    }

    fn made(base: StreamConfig, media_root: MediaRoot, from_template: bool) -> Stream {
        Stream {
            overlay: Mutex::new(Layered::new(StreamOverride::default(), &base)),
            base,
            media: Mutex::new(None),
            media_root,
            failed_switch: Mutex::new(None),
            from_template,
            last_used: Mutex::new(Instant::now()),
        }
    }

    /// Whether the stream was made from a template (and goes away when idle), rather than
    /// configured in the file or through the API.
    pub fn is_from_template(&self) -> bool {
        self.from_template
    }

    fn touch(&self) {
        *lock(&self.last_used) = Instant::now();
    }

    /// Nobody holds its media (no persistent viewer, no publisher, no recorder pass) and no
    /// client was admitted for `idle`.
    fn is_idle(&self, now: Instant, idle: Duration) -> bool {
        let media_held = lock(&self.media).as_ref().is_some_and(|m| Arc::strong_count(m) > 1);
        !media_held && now.saturating_duration_since(*lock(&self.last_used)) >= idle
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

/// Removes from `streams` the template-made ones idle for `idle`; returns how many.
fn sweep(streams: &mut HashMap<String, Arc<Stream>>, idle: Duration) -> usize {
    let now = Instant::now();
    let before = streams.len();
    streams.retain(|name, stream| {
        let gone = stream.from_template && stream.is_idle(now, idle);
        if gone {
            tracing::info!(stream = %name, idle_secs = idle.as_secs(), "stream made from a template removed: unused");
        }
        !gone
    });
    before - streams.len()
}

fn is_publish_input(input: &str) -> bool {
    input
        .get(.."publish://".len())
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("publish://"))
}

/// Whether a stream as loaded already has publish authorization (`on_publish`, `true`
/// included: the operator chose it; or a `password`), or already plays a `publish://` input:
/// a `publish://` override then opens nothing the configuration had not (CONF-01).
fn takes_publishers(base: &StreamConfig) -> bool {
    base.on_publish.is_some() || base.password.is_some() || base.inputs.first().is_some_and(|i| is_publish_input(i))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How many streams templates may make, and how long one is kept with nobody using it
/// (`template_stream_limit`, `template_stream_idle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateLimits {
    pub idle: Duration,
    pub max: usize,
}

impl Default for TemplateLimits {
    fn default() -> Self {
        TemplateLimits {
            idle: DEFAULT_TEMPLATE_STREAM_IDLE,
            max: DEFAULT_TEMPLATE_STREAM_LIMIT as usize,
        }
    }
}

/// Why [`Streams::materialise`] gave no stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaterialiseError {
    #[error("no stream `{0}`")]
    NotFound(String),
    #[error("too many streams made from templates (template_stream_limit {0}); try again later")]
    Full(usize),
}

/// Why the stream side refused a `config` override: nothing of it applies (AMB-16), and the
/// session decision stands.
#[derive(Debug, thiserror::Error)]
#[error("config override of stream `{stream}` refused: {problem}")]
pub struct OverrideRefused {
    pub stream: String,
    #[source]
    pub problem: OverrideProblem,
}

/// What was wrong with a refused override.
#[derive(Debug, thiserror::Error)]
pub enum OverrideProblem {
    /// The object does not parse (the error names the field).
    #[error(transparent)]
    Invalid(#[from] crate::config::OverrideError),
    /// The stream is gone, or a template cannot make it now.
    #[error(transparent)]
    NoStream(#[from] MaterialiseError),
    /// A `publish://` input on a stream that checks no publishers.
    #[error(
        "config.inputs[{at}].url: a `publish://` input is accepted only on a stream that already checks \
         publishers (on_publish or password) or already takes them; here it would let anyone publish"
    )]
    UncheckedPublish { at: usize },
    /// The new first input cannot be read.
    #[error("config.inputs[0].url: {0}")]
    Input(MediaError),
}

/// All streams of the server, and its VOD locations.
#[derive(Debug, Default)]
pub struct Streams {
    streams: RwLock<HashMap<String, Arc<Stream>>>,
    templates: RwLock<Vec<TemplateConfig>>,
    limits: TemplateLimits,
    /// Whether "the table is full" was logged since it last had room (logged once per filling).
    full_logged: AtomicBool,
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
            limits: TemplateLimits::default(),
            full_logged: AtomicBool::new(false),
            media_root,
            vods: vods.into_iter().map(Arc::new).collect(),
            vod_cache: Mutex::new(HashMap::new()),
        }
    }

    /// The same table with other template limits.
    pub fn with_template_limits(mut self, limits: TemplateLimits) -> Streams {
        self.limits = limits;
        self
    }

    pub fn template_limits(&self) -> TemplateLimits {
        self.limits
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

    /// A stream in the table: configured, created through the API, or made from a template
    /// for a granted client and not yet removed.
    pub fn get(&self, name: &str) -> Option<Arc<Stream>> {
        self.streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// The stream in the table, or else one made from the first template whose prefix covers
    /// `name` (`PREFIX/anything`) — *not* added to the table: it is what the backend is asked
    /// about (the template's `on_play`, `protocols`, `dvr`), and nothing of it stays unless
    /// [`materialise`](Self::materialise) is called for a granted client.
    pub fn lookup(&self, name: &str) -> Option<Arc<Stream>> {
        if let Some(s) = self.get(name) {
            return Some(s);
        }
        let config = self.template_config(name)?;
        Some(Arc::new(Stream::made(config, self.media_root.clone(), true)))
    }

    fn template_config(&self, name: &str) -> Option<StreamConfig> {
        let templates = self.templates.read().unwrap_or_else(|e| e.into_inner());
        let template = templates.iter().find(|t| t.covers(name))?;
        Some(template.stream_named(name))
    }

    /// The stream for a granted client: the one in the table, or one made from its template
    /// and added, unless [`TemplateLimits::max`] template-made streams are there already and
    /// none of them is idle. Marks the stream used.
    pub fn materialise(&self, name: &str) -> Result<Arc<Stream>, MaterialiseError> {
        if let Some(s) = self.get(name) {
            s.touch();
            return Ok(s);
        }
        let config = self
            .template_config(name)
            .ok_or_else(|| MaterialiseError::NotFound(name.to_string()))?;
        let mut streams = self.streams.write().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = streams.get(name) {
            s.touch();
            return Ok(s.clone());
        }
        let mut made = streams.values().filter(|s| s.from_template).count();
        if made >= self.limits.max {
            made -= sweep(&mut streams, self.limits.idle);
        }
        if made >= self.limits.max {
            if !self.full_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    limit = self.limits.max,
                    "stream table full: template_stream_limit streams made from templates are in use; \
                     granted clients of further template names are refused (503) until one is idle"
                );
            }
            tracing::debug!(stream = name, "template stream refused: the table is full");
            return Err(MaterialiseError::Full(self.limits.max));
        }
        self.full_logged.store(false, Ordering::Relaxed);
        let stream = Arc::new(Stream::made(config, self.media_root.clone(), true));
        streams.insert(name.to_string(), stream.clone());
        tracing::debug!(stream = name, "stream made from its template");
        Ok(stream)
    }

    /// Removes the template-made streams nobody used for [`TemplateLimits::idle`]; returns
    /// how many.
    pub fn sweep_idle(&self) -> usize {
        let mut streams = self.streams.write().unwrap_or_else(|e| e.into_inner());
        sweep(&mut streams, self.limits.idle)
    }

    /// Sweeps idle template-made streams until `shutdown` is cancelled, every half idle time
    /// (between 250 ms and 5 s).
    pub async fn run_sweeper(self: Arc<Self>, shutdown: CancellationToken) {
        let every = (self.limits.idle / 2).clamp(Duration::from_millis(250), Duration::from_secs(5));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    self.sweep_idle();
                }
            }
        }
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

    /// Removes a stream, configured or template-made.
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
    fn apply_override(&self, stream: &str, config: &Value) -> Result<Protocols, OverrideRefused> {
        let refused = |problem: OverrideProblem| OverrideRefused {
            stream: stream.to_string(),
            problem,
        };
        let ParsedOverride {
            config: parsed,
            ignored,
        } = StreamOverride::parse(config).map_err(|e| refused(e.into()))?;
        if !ignored.is_empty() {
            // One line per answer: the backend's fields this server does not implement.
            tracing::info!(stream, ignored = %ignored.join(", "), "config override: fields this server does not implement are ignored");
        }
        // Overrides come with an allow: a template's stream is made for it if need be.
        let target = self.materialise(stream).map_err(|e| refused(e.into()))?;
        if let Some(at) = parsed.inputs.iter().flatten().position(|input| is_publish_input(input))
            && !takes_publishers(target.base())
        {
            return Err(refused(OverrideProblem::UncheckedPublish { at }));
        }
        let prepared = match parsed.inputs.as_ref().and_then(|inputs| inputs.first()) {
            Some(input) => {
                let running = lock(&target.media).clone();
                let current = running.map_or_else(|| target.effective_input(), |source| source.input());
                if *input == current {
                    None
                } else {
                    let prepared = MediaSource::prepare_input(input, &target.media_root, DEFAULT_SEGMENT_DURATION)
                        .map_err(|e| refused(OverrideProblem::Input(e)))?;
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
        tracing::info!(stream, override_json = %crate::redact::json(&layered.overlay.to_log_json()), "config override applied");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthSpec, AuthTarget};

    fn table(idle: Duration, max: usize) -> Streams {
        let configured = StreamConfig {
            name: "cfg".into(),
            inputs: vec!["fake://fake".into()],
            ..StreamConfig::default()
        };
        let template = TemplateConfig::new(
            "live",
            vec!["live".into()],
            StreamConfig {
                inputs: vec!["fake://fake".into()],
                on_play: Some(AuthSpec::new(AuthTarget::Http("http://backend/auth".into()))),
                ..StreamConfig::default()
            },
        );
        Streams::new(vec![configured], vec![template]).with_template_limits(TemplateLimits { idle, max })
    }

    fn names(streams: &Streams) -> Vec<String> {
        streams.list().iter().map(|s| s.name().to_string()).collect()
    }

    #[test]
    fn a_looked_up_template_name_carries_the_template_settings_and_is_not_kept() {
        let streams = table(Duration::from_secs(60), 10);
        let candidate = streams.lookup("live/cam").expect("under the template");
        assert_eq!(candidate.name(), "live/cam");
        assert!(candidate.is_from_template());
        assert_eq!(
            candidate.effective().on_play.as_ref().map(|s| s.target.clone()),
            Some(AuthTarget::Http("http://backend/auth".into())),
            "the backend is asked with the template's on_play"
        );
        assert_eq!(names(&streams), ["cfg"], "a lookup adds nothing");
        assert!(streams.get("live/cam").is_none());
        assert!(streams.lookup("other/cam").is_none());
        assert!(streams.lookup("live").is_none(), "the prefix alone is no stream");
        let made = streams.materialise("live/cam").expect("room");
        assert_eq!(names(&streams), ["cfg", "live/cam"]);
        assert!(
            Arc::ptr_eq(&made, &streams.materialise("live/cam").unwrap()),
            "made once"
        );
        assert!(!streams.get("cfg").unwrap().is_from_template());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unused_template_stream_goes_away_a_watched_one_and_a_configured_one_stay() {
        let idle = Duration::from_secs(60);
        let streams = table(idle, 10);
        let watched = streams.materialise("live/watched").unwrap();
        let media = watched.media().expect("fake media");
        streams.materialise("live/left").unwrap();
        drop(watched);
        tokio::time::advance(idle - Duration::from_secs(1)).await;
        assert_eq!(streams.sweep_idle(), 0, "not idle yet");
        // A viewer admitted again keeps it another idle time.
        streams.materialise("live/left").unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            streams.sweep_idle(),
            0,
            "live/left was used a second ago; live/watched is held"
        );
        tokio::time::advance(idle).await;
        assert_eq!(streams.sweep_idle(), 1);
        assert_eq!(names(&streams), ["cfg", "live/watched"], "held media keeps its stream");
        drop(media);
        assert_eq!(streams.sweep_idle(), 1);
        assert_eq!(names(&streams), ["cfg"], "a configured stream never goes away");
        tokio::time::advance(idle * 10).await;
        assert_eq!(streams.sweep_idle(), 0);
        assert_eq!(names(&streams), ["cfg"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_table_refuses_new_template_names_until_one_is_idle() {
        let idle = Duration::from_secs(10);
        let streams = table(idle, 2);
        streams.materialise("live/a").unwrap();
        streams.materialise("live/b").unwrap();
        assert_eq!(streams.materialise("live/c").unwrap_err(), MaterialiseError::Full(2));
        assert!(
            streams.materialise("live/a").is_ok(),
            "a stream already there is still served"
        );
        assert!(streams.get("cfg").is_some());
        assert_eq!(names(&streams), ["cfg", "live/a", "live/b"]);
        assert_eq!(
            streams.materialise("nothing/here").unwrap_err(),
            MaterialiseError::NotFound("nothing/here".into())
        );
        tokio::time::advance(idle).await;
        // Both idle now: the next one makes room by itself, without waiting for the sweeper.
        assert!(streams.materialise("live/c").is_ok());
        assert_eq!(names(&streams), ["cfg", "live/c"]);
    }

    #[test]
    fn a_publish_override_is_refused_on_a_stream_without_publish_checks() {
        let open = StreamConfig {
            name: "open".into(),
            inputs: vec!["fake://fake".into()],
            ..StreamConfig::default()
        };
        let checked = StreamConfig {
            name: "checked".into(),
            on_publish: Some(AuthSpec::new(AuthTarget::Http("http://backend/publish".into()))),
            ..open.clone()
        };
        let with_password = StreamConfig {
            name: "password".into(),
            password: Some("p".into()),
            ..open.clone()
        };
        let streams = Streams::new(vec![open, checked, with_password], vec![]);
        let publish = serde_json::json!({"inputs": [{"url": "fake://fake"}, {"url": "publish://"}]});
        let error = streams.apply_override("open", &publish).unwrap_err();
        assert_eq!(error.stream, "open");
        assert!(
            matches!(error.problem, OverrideProblem::UncheckedPublish { at: 1 }),
            "{error}"
        );
        assert!(error.to_string().contains("config.inputs[1].url"), "{error}");
        assert!(error.to_string().contains("(on_publish or password)"), "{error}");
        assert_eq!(streams.get("open").unwrap().effective().inputs, ["fake://fake"]);
        assert_eq!(streams.get("open").unwrap().overlay(), StreamOverride::default());
        for name in ["checked", "password"] {
            streams
                .apply_override(name, &publish)
                .expect("the stream checks its publishers");
            assert_eq!(
                streams.get(name).unwrap().effective().inputs,
                ["fake://fake", "publish://"]
            );
        }
    }
}
