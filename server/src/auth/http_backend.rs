//! The HTTP backend client: performs the calls of the contract in `backend.rs` over HTTP/1.1
//! (GET for play, POST with the query and a JSON body for publish) and reads the answer with
//! [`interpret`]. It keeps no timer: the core's one 3 s timer drops a call that takes longer,
//! which cancels the request. The answer's size limits are enforced here, as it is read.
//! [`HttpBackend::fetch`] brings the answer back unread, for `usher backend-check`, which grades
//! more than the server keeps.

use futures::future::BoxFuture;

use super::backend::{
    Answer, Backend, BackendRequest, CallKind, MAX_BODY_BYTES, MAX_HEADER_BYTES, SIGNATURE_HEADER, interpret,
    signature, url_with_query,
};

/// The HTTP backend client: GET for play, POST (query + JSON body) for publish.
#[derive(Debug, Clone)]
pub struct HttpBackend {
    client: reqwest::Client,
}

impl HttpBackend {
    pub fn new() -> Result<HttpBackend, reqwest::Error> {
        // No timeout here: the core's one timer bounds every call (TIME-03) and drops it when
        // the budget ends, which cancels the request.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("usher/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(HttpBackend { client })
    }
}

/// An answer as it came over the wire, within the size limits, before [`interpret`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAnswer {
    pub status: u16,
    /// (name, value) as sent; values that are not UTF-8 are read lossily.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a call brought back no answer to read. Either way the server has "no decision".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The answer was over [`MAX_HEADER_BYTES`] of headers or [`MAX_BODY_BYTES`] of body.
    #[error("{0}")]
    TooLarge(String),
    /// Connection refused or reset, a malformed answer (the description holds no URL).
    #[error("{0}")]
    Transport(String),
}

impl HttpBackend {
    /// Makes the call of the contract and brings back the answer unread: GET with the query
    /// for play; POST with the query and the JSON body for publish (AMB-2); signed when the
    /// request has a key. No timer: the caller bounds it (the core's one 3 s timer; `usher
    /// backend-check` uses the same budget), and dropping the future cancels the request.
    pub fn fetch(&self, url: &str, request: &BackendRequest) -> BoxFuture<'static, Result<RawAnswer, FetchError>> {
        let full = url_with_query(url, &request.query_string());
        let (method, body) = match request.kind {
            CallKind::Play => ("GET", Vec::new()),
            CallKind::Publish => ("POST", serde_json::to_vec(&request.json_body()).unwrap_or_default()),
        };
        let mut builder = match request.kind {
            CallKind::Play => self.client.get(&full),
            CallKind::Publish => self
                .client
                .post(&full)
                .header(reqwest::header::CONTENT_TYPE, "application/json"),
        };
        if let Some(key) = &request.sign_key {
            // The target as reqwest will send it: both read the URL with the `url` crate.
            let target = url::Url::parse(&full).map_or_else(
                |_| String::new(),
                |u| match u.query() {
                    Some(q) => format!("{}?{q}", u.path()),
                    None => u.path().to_string(),
                },
            );
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            builder = builder.header(SIGNATURE_HEADER, signature(key.bytes(), unix, method, &target, &body));
        }
        if request.kind == CallKind::Publish {
            builder = builder.body(body);
        }
        Box::pin(async move {
            let mut response = builder.send().await.map_err(describe)?;
            let status = response.status().as_u16();
            let headers: Vec<(String, String)> = response
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let header_bytes: usize = headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
            if header_bytes > MAX_HEADER_BYTES {
                return Err(FetchError::TooLarge(format!("header block of {header_bytes} bytes")));
            }
            if response.content_length().is_some_and(|n| n > MAX_BODY_BYTES as u64) {
                return Err(FetchError::TooLarge("body over 1 MiB".into()));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(describe)? {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_BODY_BYTES {
                    return Err(FetchError::TooLarge("body over 1 MiB".into()));
                }
            }
            Ok(RawAnswer { status, headers, body })
        })
    }
}

impl Backend for HttpBackend {
    fn call(&self, url: &str, request: &BackendRequest) -> BoxFuture<'static, Answer> {
        let fetch = self.fetch(url, request);
        Box::pin(async move {
            match fetch.await {
                Ok(raw) => interpret(raw.status, &raw.headers, &raw.body),
                Err(e) => Answer::NoDecision { reason: e.to_string() },
            }
        })
    }
}

/// The failure and its causes without the URL, which carries the token (logs never hold it
/// whole).
fn describe(e: reqwest::Error) -> FetchError {
    let e = e.without_url();
    let mut text = if e.is_timeout() {
        "timeout".to_string()
    } else if e.is_connect() {
        format!("connect: {e}")
    } else {
        format!("transport: {e}")
    };
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    FetchError::Transport(text)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::backend::tests::play_request;

    /// The server speaks plain HTTP to backends only (no TLS client is built in): an `https://`
    /// backend fails at once, before any connection, as an unreachable one does.
    #[tokio::test]
    async fn an_https_backend_is_no_decision_without_a_connection() {
        let request = BackendRequest {
            token: Some("t".into()),
            ..play_request()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a listener");
        let url = format!("https://{}/auth", listener.local_addr().expect("its address"));
        let started = std::time::Instant::now();
        let answer = HttpBackend::new().expect("a client").call(&url, &request).await;
        assert!(matches!(answer, Answer::NoDecision { .. }), "{answer:?}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "failed at once: {:?}",
            started.elapsed()
        );
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "no connection was made");
    }
}
