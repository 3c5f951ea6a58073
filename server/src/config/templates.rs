//! Template inheritance for configured streams (CFG-01, CFG-04, CFG-05).
//!
//! A `stream` block whose name falls under a template's prefix (`live/cam` under `prefix live`)
//! takes from that template what it does not set itself: `on_play`, `on_publish`, `password`,
//! `dvr`, and the inputs when it has none. What the stream sets wins, so a stream's own `on_play`
//! replaces the template's backend, and `on_play true` is how one stream under a protected
//! prefix is opened to everyone (T6). A stream under no template and without `on_play` admits
//! everyone (CFG-05). Streams created through the management API are taken as sent.

use super::model::{Config, StreamConfig, TemplateConfig};

impl TemplateConfig {
    /// Whether `name` is `PREFIX/something` for one of the template's prefixes (the same
    /// rule that makes streams from the template on first request).
    pub fn covers(&self, name: &str) -> bool {
        self.prefixes.iter().any(|p| {
            name.strip_prefix(p.as_str())
                .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
        })
    }

    /// The configuration of the stream `name` made from this template on first request.
    pub fn stream_named(&self, name: &str) -> StreamConfig {
        StreamConfig {
            name: name.to_string(),
            ..self.stream.clone()
        }
    }
}

impl StreamConfig {
    /// Fills what this stream leaves unset from `template`; what it sets stays.
    pub fn inherit_from(&mut self, template: &TemplateConfig) {
        let template = &template.stream;
        if self.on_play.is_none() {
            self.on_play = template.on_play.clone();
        }
        if self.on_publish.is_none() {
            self.on_publish = template.on_publish.clone();
        }
        if self.password.is_none() {
            self.password = template.password.clone();
        }
        if self.inputs.is_empty() {
            self.inputs = template.inputs.clone();
        }
        if self.dvr.is_none() {
            self.dvr = template.dvr.clone();
        }
    }
}

impl Config {
    /// The configured streams with template inheritance applied: each stream inherits from the
    /// first template (in file order) that covers its name.
    pub fn streams_with_templates(&self) -> Vec<StreamConfig> {
        self.streams
            .iter()
            .map(|stream| {
                let mut stream = stream.clone();
                if let Some(template) = self.templates.iter().find(|t| t.covers(&stream.name)) {
                    let before = stream.on_play.is_none();
                    stream.inherit_from(template);
                    if before && stream.on_play.is_some() {
                        tracing::info!(
                            stream = %stream.name,
                            template = %template.name(),
                            "stream inherits on_play from its template"
                        );
                    }
                }
                stream
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{AuthTarget, parse_config};

    #[test]
    fn a_stream_own_on_play_wins_and_true_overrides_the_template() {
        let config = parse_config(
            r#"
            template live { prefix live; input fake://fake; on_play /etc/usher/deny.lua; password p; }
            stream live/own { on_play http://b/own; }
            stream live/open { on_play true; }
            stream live/inherits { input file://x.mp4; }
            stream other { }
            stream live { }
            "#,
            "t.conf",
        )
        .expect("valid");
        let streams = config.streams_with_templates();
        let target = |name: &str| {
            let s = streams.iter().find(|s| s.name == name).expect("stream");
            s.on_play.as_ref().map(|p| p.target.clone())
        };
        assert_eq!(target("live/own"), Some(AuthTarget::Http("http://b/own".into())));
        assert_eq!(target("live/open"), Some(AuthTarget::AllowAll));
        assert_eq!(
            target("live/inherits"),
            Some(AuthTarget::Script("/etc/usher/deny.lua".into()))
        );
        assert_eq!(target("other"), None, "no template: no backend (CFG-05)");
        assert_eq!(target("live"), None, "the prefix alone is not under the template");
        let inherits = streams.iter().find(|s| s.name == "live/inherits").expect("stream");
        assert_eq!(inherits.inputs, ["file://x.mp4"], "the stream's own inputs stay");
        assert_eq!(inherits.password.as_deref(), Some("p"));
        let own = streams.iter().find(|s| s.name == "live/own").expect("stream");
        assert_eq!(own.inputs, ["fake://fake"], "no inputs of its own: the template's");
    }
}
