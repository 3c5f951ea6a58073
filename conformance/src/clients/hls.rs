//! HLS player: fetch the media playlist, then its first segment, as a player starting playback
//! does. Each play is a fresh pair of requests; a session is whatever the server makes of them.

use std::time::Instant;

use url::Url;

use super::{Attempt, Outcome, TS_SYNC_BYTE, ViewerProfile, media_url, short};

/// An HLS client bound to one local address.
#[derive(Debug, Clone)]
pub struct HlsClient {
    http: reqwest::Client,
    base: Url,
    profile: ViewerProfile,
}

impl HlsClient {
    pub fn new(base: &Url, profile: ViewerProfile) -> Result<HlsClient, reqwest::Error> {
        Ok(HlsClient {
            http: profile.client()?,
            base: base.clone(),
            profile,
        })
    }

    pub fn profile(&self) -> &ViewerProfile {
        &self.profile
    }

    /// Plays `stream`: `GET NAME/index.m3u8?QUERY`, then the first segment it lists.
    /// `Playing` needs a 200 playlist starting with `#EXTM3U` and a 200 segment whose first
    /// byte is the TS sync byte.
    pub async fn play(&self, stream: &str, query: &[(String, String)]) -> Attempt {
        let started = Instant::now();
        let mut trail = Vec::new();
        let outcome = self.play_inner(stream, query, &mut trail).await;
        let attempt = Attempt {
            outcome,
            elapsed: started.elapsed(),
            trail,
        };
        tracing::debug!(ip = %self.profile.local_ip, stream, %attempt, "HLS play");
        attempt
    }

    async fn get(&self, url: &Url, trail: &mut Vec<String>) -> Result<reqwest::Response, Outcome> {
        let t = Instant::now();
        let result = self
            .http
            .get(url.clone())
            .timeout(self.profile.request_timeout)
            .send()
            .await;
        match result {
            Ok(response) => {
                trail.push(format!(
                    "GET {} -> {} ({} ms)",
                    short(url),
                    response.status().as_u16(),
                    t.elapsed().as_millis()
                ));
                Ok(response)
            }
            Err(e) => {
                let reason = if e.is_timeout() {
                    format!("no answer within {:?}", self.profile.request_timeout)
                } else {
                    format!("transport error: {e}")
                };
                trail.push(format!("GET {} -> {reason}", short(url)));
                Err(Outcome::Failed { status: None, reason })
            }
        }
    }

    async fn play_inner(&self, stream: &str, query: &[(String, String)], trail: &mut Vec<String>) -> Outcome {
        let playlist_url = media_url(&self.base, stream, "index.m3u8", query);
        let response = match self.get(&playlist_url, trail).await {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        let status = response.status().as_u16();
        if status != 200 {
            let location = location(&response);
            return Outcome::from_status(status, location, "playlist");
        }
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) => {
                return Outcome::Failed {
                    status: None,
                    reason: format!("playlist body: {e}"),
                };
            }
        };
        let Some(segment) = first_segment(&text) else {
            return Outcome::Failed {
                status: Some(200),
                reason: format!("the playlist lists no segment:\n{text}"),
            };
        };
        let segment_url = match playlist_url.join(segment) {
            Ok(u) => u,
            Err(e) => {
                return Outcome::Failed {
                    status: Some(200),
                    reason: format!("segment URI `{segment}` does not resolve: {e}"),
                };
            }
        };
        let response = match self.get(&segment_url, trail).await {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        let status = response.status().as_u16();
        if status != 200 {
            let location = location(&response);
            return Outcome::from_status(status, location, "segment");
        }
        match response.bytes().await {
            Ok(body) if body.first() == Some(&TS_SYNC_BYTE) => Outcome::Playing,
            Ok(body) => Outcome::Failed {
                status: Some(200),
                reason: format!(
                    "the segment ({} bytes) does not start with the TS sync byte 0x47: {:02x?}",
                    body.len(),
                    &body[..body.len().min(8)]
                ),
            },
            Err(e) => Outcome::Failed {
                status: None,
                reason: format!("segment body: {e}"),
            },
        }
    }
}

fn location(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The first URI line of a playlist, if it is one (`#EXTM3U` first).
pub fn first_segment(playlist: &str) -> Option<&str> {
    let mut lines = playlist.lines().map(str::trim);
    if lines.next() != Some("#EXTM3U") {
        return None;
    }
    lines.find(|l| !l.is_empty() && !l.starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_segment_skips_tags_and_blank_lines() {
        let p = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n\n#EXTINF:2.0,\nsegment-7.ts?token=a\nsegment-8.ts\n";
        assert_eq!(first_segment(p), Some("segment-7.ts?token=a"));
    }

    #[test]
    fn a_playlist_without_header_or_segment_has_no_first_segment() {
        assert_eq!(first_segment("segment-1.ts\n"), None);
        assert_eq!(first_segment("#EXTM3U\n#EXT-X-ENDLIST\n"), None);
    }
}
