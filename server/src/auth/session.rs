//! What a front end holds for an admitted session.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use once_cell::race::OnceBox;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use uuid::Uuid;

use super::backend::CallKind;
use super::identity::Identity;
use super::proto::Proto;

/// State shared between the registry entry and the front ends serving that session.
///
/// Kept to 72 bytes (one 96-byte heap block with the `Arc` counts): the registry holds one per
/// session (docs/performance.md). The session id is derived from the identity when asked for,
/// the client's query string shares one allocation with the token, and the cancellation token
/// behind [`SessionHandle::ended`] is made only when a front end first waits on it or the
/// session ends (HTTP segment requests never wait).
#[derive(Debug)]
pub(crate) struct SessionShared {
    pub(crate) identity: Identity,
    pub(crate) kind: CallKind,
    pub(crate) proto: Proto,
    text: Box<str>,
    layout: Layout,
    pub(crate) bytes: AtomicU64,
    /// Cancelled when the session must end now: a deny on recheck, a kick, X-Unique, an
    /// override turning the protocol off, or a DELETE through the API.
    pub(crate) ended: Ended,
}

impl SessionShared {
    pub(crate) fn new(
        identity: Identity,
        kind: CallKind,
        proto: Proto,
        token: &str,
        qs: Option<&str>,
    ) -> SessionShared {
        let (text, layout) = Layout::store(token, qs);
        SessionShared {
            identity,
            kind,
            proto,
            text,
            layout,
            bytes: AtomicU64::new(0),
            ended: Ended::default(),
        }
    }

    /// The same session without its token and query: what a ban record keeps (BAN-01). It
    /// allocates nothing beyond its own block.
    pub(crate) fn without_values(&self) -> SessionShared {
        SessionShared {
            identity: self.identity,
            kind: self.kind,
            proto: self.proto,
            text: Box::default(),
            layout: Layout {
                token_at: 0,
                token_len: 0,
                qs_len: NO_QS,
            },
            bytes: AtomicU64::new(self.bytes.load(Ordering::Relaxed)),
            ended: Ended::default(),
        }
    }

    pub(crate) fn session_id(&self) -> Uuid {
        self.identity.session_id()
    }

    pub(crate) fn token(&self) -> &str {
        self.layout.token(&self.text)
    }

    /// The client's raw query string from the request that opened the session.
    pub(crate) fn qs(&self) -> Option<&str> {
        self.layout.qs(&self.text)
    }
}

/// The token and the client's query string in one allocation. The query usually carries the
/// token (`?token=…`): then the token is read from inside it and stored once.
///
/// Short form (both under 64 KiB, every real client): the text is the query (if any) followed
/// by the token unless the query contains it. Long form (`qs_len == LONG`): the text starts with
/// the token's length in 8 hex digits and `1` or `0` for "has a query", then the token, then
/// the query. (Six bytes of offsets, so that they pack with the kind and protocol.)
#[derive(Debug, Clone, Copy)]
struct Layout {
    token_at: u16,
    token_len: u16,
    /// The query's length; `NO_QS` for none, `LONG` for the long form.
    qs_len: u16,
}

const NO_QS: u16 = u16::MAX;
const LONG: u16 = u16::MAX - 1;
const LONG_HEADER: usize = 9;

impl Layout {
    fn store(token: &str, qs: Option<&str>) -> (Box<str>, Layout) {
        let short = |s: &str| s.len() < usize::from(LONG);
        if !short(token) || qs.is_some_and(|q| !short(q)) {
            let buf = format!(
                "{:08x}{}{token}{}",
                token.len(),
                u8::from(qs.is_some()),
                qs.unwrap_or("")
            );
            return (
                buf.into_boxed_str(),
                Layout {
                    token_at: 0,
                    token_len: 0,
                    qs_len: LONG,
                },
            );
        }
        let (buf, token_at, qs_len) = match qs {
            Some(qs) => match qs.find(token) {
                Some(at) => (qs.to_string(), at, qs.len() as u16),
                None => (format!("{qs}{token}"), qs.len(), qs.len() as u16),
            },
            None => (token.to_string(), 0, NO_QS),
        };
        let layout = Layout {
            token_at: token_at as u16,
            token_len: token.len() as u16,
            qs_len,
        };
        (buf.into_boxed_str(), layout)
    }

    fn long_token_len(text: &str) -> usize {
        usize::from_str_radix(&text[..8], 16).unwrap_or(0)
    }

    fn token(self, text: &str) -> &str {
        if self.qs_len == LONG {
            return &text[LONG_HEADER..LONG_HEADER + Self::long_token_len(text)];
        }
        let at = usize::from(self.token_at);
        &text[at..at + usize::from(self.token_len)]
    }

    fn qs(self, text: &str) -> Option<&str> {
        match self.qs_len {
            NO_QS => None,
            LONG => (&text[8..LONG_HEADER] == "1").then(|| &text[LONG_HEADER + Self::long_token_len(text)..]),
            n => Some(&text[..usize::from(n)]),
        }
    }
}

/// "The server ended this session": a cancellation token made on first use, by whoever comes
/// first, the one ending the session or the first front end waiting for the end.
#[derive(Debug, Default)]
pub(crate) struct Ended(OnceBox<CancellationToken>);

impl Ended {
    fn token(&self) -> &CancellationToken {
        self.0.get_or_init(|| Box::new(CancellationToken::new()))
    }

    pub(crate) fn cancel(&self) {
        self.token().cancel();
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.get().is_some_and(CancellationToken::is_cancelled)
    }

    pub(crate) fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.token().cancelled()
    }
}

/// An admitted session. Cheap to clone; every clone refers to the same session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    pub(crate) shared: Arc<SessionShared>,
}

impl SessionHandle {
    pub fn session_id(&self) -> Uuid {
        self.shared.session_id()
    }

    /// The token this session runs with (the client's, or the generated one, TOK-02).
    pub fn token(&self) -> &str {
        self.shared.token()
    }

    pub fn proto(&self) -> Proto {
        self.shared.proto
    }

    /// Counts bytes delivered to (or received from) the client.
    pub fn add_bytes(&self, n: u64) {
        self.shared.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    /// Resolves when the session has been ended by the server (deny, kick, override, API).
    pub fn ended(&self) -> WaitForCancellationFuture<'_> {
        self.shared.ended.cancelled()
    }

    pub fn is_ended(&self) -> bool {
        self.shared.ended.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SessionKeys;

    fn shared(token: &str, qs: Option<&str>) -> SessionShared {
        let facts = super::super::identity::RequestFacts {
            name: "s",
            ip: "127.0.0.1".parse().expect("ip literal"),
            proto: Proto::Hls,
            token: Some(token),
            headers: &crate::auth::NO_HEADERS,
            query: &[],
        };
        let identity = Identity::compute(&SessionKeys::default(), &facts);
        SessionShared::new(identity, CallKind::Play, Proto::Hls, token, qs)
    }

    #[test]
    fn token_and_query_share_one_allocation() {
        let s = shared("abc", Some("x=1&token=abc"));
        assert_eq!((s.token(), s.qs()), ("abc", Some("x=1&token=abc")));
        assert_eq!(s.text.len(), 13);
        let s = shared("gen", Some("x=1"));
        assert_eq!((s.token(), s.qs()), ("gen", Some("x=1")));
        let s = shared("t", None);
        assert_eq!((s.token(), s.qs()), ("t", None));
        let s = shared("t", Some(""));
        assert_eq!((s.token(), s.qs()), ("t", Some("")));
    }

    #[test]
    fn long_tokens_and_queries_keep_their_text() {
        let long = "k".repeat(70_000);
        let qs = format!("token={long}");
        let s = shared(&long, Some(&qs));
        assert_eq!((s.token(), s.qs()), (long.as_str(), Some(qs.as_str())));
        let s = shared(&long, None);
        assert_eq!((s.token(), s.qs()), (long.as_str(), None));
        let s = shared("t", Some(&qs));
        assert_eq!((s.token(), s.qs()), ("t", Some(qs.as_str())));
    }

    #[test]
    fn without_values_keeps_the_identity_only() {
        let long = "k".repeat(5000);
        let s = shared(&long, Some(&format!("token={long}")));
        let bare = s.without_values();
        assert_eq!((bare.identity, bare.kind, bare.proto), (s.identity, s.kind, s.proto));
        assert_eq!((bare.token(), bare.qs(), bare.text.len()), ("", None, 0));
        assert!(!bare.ended.is_cancelled());
    }

    #[test]
    fn shared_state_fits_one_small_block() {
        assert!(
            std::mem::size_of::<SessionShared>() <= 72,
            "{}",
            std::mem::size_of::<SessionShared>()
        );
    }

    #[tokio::test]
    async fn an_end_before_or_after_the_first_wait_is_seen() {
        let before = Ended::default();
        assert!(!before.is_cancelled());
        before.cancel();
        assert!(before.is_cancelled());
        before.cancelled().await;
        let after = Arc::new(Ended::default());
        let waiter = tokio::spawn({
            let after = after.clone();
            async move { after.cancelled().await }
        });
        tokio::task::yield_now().await;
        after.cancel();
        waiter.await.expect("the waiter ends");
        assert!(after.is_cancelled());
    }
}
