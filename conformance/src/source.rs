//! A source the suite publishes itself: for a target that has no synthetic input of its own
//! (nginx-rtmp plays only what someone publishes), the suite publishes synthetic H.264/AAC under
//! each case's stream name before viewers play, and keeps it up for the case.
//!
//! The manifest names where (`[source] publish = "rtmp://HOST:PORT/APP/{name}"`). The media is
//! the reference server's `fake://` picture and silent audio (`usher_server::media`), packed into
//! FLV tags by the server's own builders (`usher_server::rtmp::flv`) and sent over the suite's own RTMP publishing client
//! ([`RtmpClient::publish_key`]).
//!
//! The source's own publish check reaches the suite's backend when the target calls it on
//! publish: it carries the query parameter [`SOURCE_PARAM`] with a secret of the run, and the
//! backend allows such calls without recording them in the case's log (they are not the case's).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;
use usher_server::media::{CLOCK_HZ, MediaSource, Track, avc};
use usher_server::rtmp::flv;

use crate::clients::rtmp::{RtmpClient, RtmpPublisher, stream_key};
use crate::clients::{Attempt, Outcome, ViewerProfile};

/// The placeholder of the stream name in a publish URL.
pub const NAME_PLACEHOLDER: &str = "{name}";
/// The query parameter that marks the source's own publish calls.
pub const SOURCE_PARAM: &str = "usher_source";

/// `[source] publish` of the manifest, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    /// The URL as written.
    pub url: String,
    /// `HOST:PORT`
    pub addr: String,
    pub app: String,
    /// The stream key with [`NAME_PLACEHOLDER`] in it.
    pub key: String,
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the suite publishes to {}", self.url)
    }
}

impl SourceSpec {
    /// `rtmp://HOST[:PORT]/APP/KEY` where KEY holds `{name}`.
    pub fn parse(text: &str) -> Result<SourceSpec, String> {
        if !text.contains(NAME_PLACEHOLDER) {
            return Err(format!(
                "the publish URL `{text}` has no {NAME_PLACEHOLDER}: the suite publishes each case's stream under its own name"
            ));
        }
        let Some(rest) = text.strip_prefix("rtmp://") else {
            return Err(format!(
                "the publish URL `{text}` is not rtmp://HOST:PORT/APP/{NAME_PLACEHOLDER} (only RTMP publishing is implemented)"
            ));
        };
        let (host_port, path) = rest.split_once('/').ok_or_else(|| {
            format!("the publish URL `{text}` has no application: rtmp://HOST:PORT/APP/{NAME_PLACEHOLDER}")
        })?;
        let (app, key) = path
            .split_once('/')
            .filter(|(app, key)| !app.is_empty() && key.contains(NAME_PLACEHOLDER))
            .ok_or_else(|| {
                format!("the publish URL `{text}` is not rtmp://HOST:PORT/APP/KEY with {NAME_PLACEHOLDER} in KEY")
            })?;
        if host_port.is_empty() {
            return Err(format!("the publish URL `{text}` has no host"));
        }
        let addr = if host_port
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host_port.to_string()
        } else {
            format!("{host_port}:1935")
        };
        Ok(SourceSpec {
            url: text.to_string(),
            addr,
            app: app.to_string(),
            key: key.to_string(),
        })
    }

    /// The stream key the source publishes stream `name` under, with `query` after it.
    pub fn stream_key(&self, name: &str, query: &[(String, String)]) -> String {
        stream_key(&self.key.replace(NAME_PLACEHOLDER, name), query)
    }
}

/// A running source: publishes until dropped.
pub struct Source {
    pub attempt: Attempt,
    task: JoinHandle<()>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "source: {}", self.attempt)
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ms(ticks: u64) -> u32 {
    u32::try_from(ticks * 1000 / CLOCK_HZ).unwrap_or(u32::MAX)
}

/// Publishes synthetic media to `spec`'s server under `name` from `profile`'s address, with
/// `query` (the source marker and any credential the case wants) after the key. `Ok` once the
/// server accepted the publish and the sequence headers went out; the media then flows in real
/// time until the [`Source`] is dropped.
pub async fn publish(
    spec: &SourceSpec,
    server: SocketAddr,
    profile: ViewerProfile,
    name: &str,
    query: &[(String, String)],
) -> Result<Source, Attempt> {
    let key = spec.stream_key(name, query);
    let (attempt, publisher) = RtmpClient::new(server, profile).publish_key(&spec.app, &key).await;
    let Some(mut publisher) = publisher else {
        return Err(attempt);
    };
    let media = MediaSource::start("fake://fake").map_err(|e| Attempt {
        outcome: Outcome::Failed {
            status: None,
            reason: format!("the synthetic source does not start: {e}"),
        },
        elapsed: attempt.elapsed,
        trail: attempt.trail.clone(),
    })?;
    let codecs = media.codecs();
    let headers = async {
        if let Some(video) = &codecs.video {
            publisher.send_video(flv::avc_sequence_header(video), 0).await?;
        }
        if let Some(audio) = &codecs.audio {
            publisher
                .send_audio(flv::aac_sequence_header(&audio.audio_specific_config()), 0)
                .await?;
        }
        Ok::<(), String>(())
    };
    if let Err(e) = headers.await {
        return Err(Attempt {
            outcome: Outcome::Failed {
                status: None,
                reason: format!("sending the sequence headers: {e}"),
            },
            ..attempt
        });
    }
    let task = tokio::spawn(pump(media, publisher));
    Ok(Source { attempt, task })
}

/// Sends the source's access units as they come, with timestamps from the first one.
async fn pump(media: std::sync::Arc<MediaSource>, mut publisher: RtmpPublisher) {
    let mut feed = media.subscribe();
    let mut first: Option<u64> = None;
    while let Some(unit) = feed.next().await {
        let start = *first.get_or_insert(unit.dts);
        let at = ms(unit.dts.saturating_sub(start));
        let sent = match unit.track {
            Track::Video => {
                let avcc = avc::annex_b_to_avcc(&unit.data);
                let composition = i32::try_from(ms(unit.pts) - ms(unit.dts)).unwrap_or(0);
                publisher
                    .send_video(flv::avc_nalu_tag(unit.keyframe, composition, &avcc), at)
                    .await
            }
            Track::Audio => publisher.send_audio(flv::aac_raw_tag(&unit.data), at).await,
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "the suite's source stopped: the server closed its publish");
            return;
        }
    }
    // The fake source never ends; a feed that does is waited out rather than spun on.
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_urls_parse_and_bad_ones_say_why() {
        let s = SourceSpec::parse("rtmp://127.0.0.1:1936/live/{name}").unwrap();
        assert_eq!(
            (s.addr.as_str(), s.app.as_str(), s.key.as_str()),
            ("127.0.0.1:1936", "live", "{name}")
        );
        let q = [("usher_source".to_string(), "x".to_string())];
        assert_eq!(s.stream_key("c1-s", &q), "c1-s?usher_source=x");
        let s = SourceSpec::parse("rtmp://media.example/app/pre-{name}").unwrap();
        assert_eq!(s.addr, "media.example:1935");
        assert_eq!(s.stream_key("c1-s", &[]), "pre-c1-s");
        for (bad, why) in [
            ("rtmp://127.0.0.1:1935/live/stream", "{name}"),
            ("http://127.0.0.1:8080/{name}/mpegts", "only RTMP"),
            ("rtmp://127.0.0.1:1935/{name}", "APP/KEY"),
            ("rtmp:///live/{name}", "no host"),
        ] {
            let e = SourceSpec::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
