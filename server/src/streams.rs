//! The stream table: configured streams, streams made from templates on first request, each
//! with its runtime `config` override layer (CONF-04) and its media source.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;

use crate::auth::StreamControl;
use crate::config::{Protocols, StreamConfig, StreamOverride, TemplateConfig};
use crate::media::{MediaError, MediaSource};

/// One stream: its configuration as loaded (file or API), the override layer from backend
/// answers, and the media source serving the effective input.
#[derive(Debug)]
pub struct Stream {
    base: StreamConfig,
    overlay: Mutex<StreamOverride>,
    media: Mutex<Option<Arc<MediaSource>>>,
}

impl Stream {
    fn new(base: StreamConfig) -> Stream {
        Stream {
            base,
            overlay: Mutex::new(StreamOverride::default()),
            media: Mutex::new(None),
        }
    }

    pub fn name(&self) -> &str {
        &self.base.name
    }

    /// The configuration in force: the loaded one with the override applied.
    pub fn effective(&self) -> StreamConfig {
        lock(&self.overlay).apply(&self.base)
    }

    /// The configuration as loaded, without the override.
    pub fn base(&self) -> &StreamConfig {
        &self.base
    }

    /// Drops the runtime override; the loaded configuration is in force again.
    pub fn clear_overlay(&self) {
        *lock(&self.overlay) = StreamOverride::default();
        tracing::info!(stream = self.name(), "config override cleared");
    }

    pub fn overlay(&self) -> StreamOverride {
        lock(&self.overlay).clone()
    }

    /// The media source for the effective first input, started on first use and restarted
    /// when an override switched the input.
    pub fn media(&self) -> Result<Arc<MediaSource>, MediaError> {
        let effective = self.effective();
        let input = effective.inputs.first().cloned().unwrap_or_default();
        let mut slot = lock(&self.media);
        if let Some(source) = slot.as_ref()
            && source.input() == input
        {
            return Ok(source.clone());
        }
        let source = MediaSource::start(&input)?;
        *slot = Some(source.clone());
        Ok(source)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// All streams of the server.
#[derive(Debug, Default)]
pub struct Streams {
    streams: RwLock<HashMap<String, Arc<Stream>>>,
    templates: RwLock<Vec<TemplateConfig>>,
}

impl Streams {
    pub fn new(streams: Vec<StreamConfig>, templates: Vec<TemplateConfig>) -> Streams {
        let map = streams
            .into_iter()
            .map(|s| (s.name.clone(), Arc::new(Stream::new(s))))
            .collect();
        Streams {
            streams: RwLock::new(map),
            templates: RwLock::new(templates),
        }
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
        };
        let mut streams = self.streams.write().unwrap_or_else(|e| e.into_inner());
        Some(
            streams
                .entry(name.to_string())
                .or_insert_with(|| Arc::new(Stream::new(config)))
                .clone(),
        )
    }

    /// Creates or replaces a stream. Replacing drops its override layer and media source.
    pub fn put(&self, config: StreamConfig) -> Arc<Stream> {
        let stream = Arc::new(Stream::new(config));
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
    fn apply_override(&self, stream: &str, config: &Value) -> Result<Protocols, String> {
        let parsed = StreamOverride::from_json(config).map_err(|e| e.to_string())?;
        let target = self
            .find(stream)
            .ok_or_else(|| format!("stream `{stream}` does not exist"))?;
        let mut overlay = lock(&target.overlay);
        overlay.merge(parsed);
        let effective = overlay.apply(&target.base);
        tracing::info!(stream, override_json = %overlay.to_json(), "config override applied");
        Ok(effective.protocols)
    }
}
