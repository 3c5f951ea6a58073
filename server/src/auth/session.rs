//! What a front end holds for an admitted session.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, OnceLock};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use uuid::Uuid;

use super::backend::CallKind;
use super::identity::Identity;
use super::proto::Proto;

/// State shared between the registry entry and the front ends serving that session.
///
/// Kept small: the registry holds one per session (docs/performance.md). The session id is
/// derived from the identity when asked for, the client's query string shares one allocation
/// with the token, and the cancellation token behind [`SessionHandle::ended`] is made only
/// when a front end first waits on it (HTTP segment requests never do).
#[derive(Debug)]
pub(crate) struct SessionShared {
    pub(crate) identity: Identity,
    pub(crate) kind: CallKind,
    pub(crate) proto: Proto,
    /// The query string (if any) and the token; when the query contains the token verbatim,
    /// the token is read from inside it.
    text: Box<str>,
    token_at: u32,
    token_len: u32,
    /// Length of the query string at the start of `text`; `u32::MAX` for none.
    qs_len: u32,
    pub(crate) bytes: AtomicU64,
    pub(crate) ended: Ended,
}

impl SessionShared {
    pub(crate) fn new(identity: Identity, kind: CallKind, proto: Proto, token: &str, qs: Option<&str>) -> SessionShared {
        let fits = |s: &str| u32::try_from(s.len()).is_ok_and(|n| n < u32::MAX);
        let (text, token_at, qs_len) = match qs.filter(|q| fits(q) && fits(token)) {
            Some(qs) => match qs.find(token) {
                Some(at) => (qs.to_string(), at, qs.len()),
                None => (format!("{qs}{token}"), qs.len(), qs.len()),
            },
            // A query or token of 4 GiB cannot reach here through a front end; keep the token.
            None => (token.to_string(), 0, u32::MAX as usize),
        };
        SessionShared {
            identity,
            kind,
            proto,
            text: text.into_boxed_str(),
            token_at: token_at as u32,
            token_len: token.len() as u32,
            qs_len: qs_len as u32,
            bytes: AtomicU64::new(0),
            ended: Ended::default(),
        }
    }

    pub(crate) fn session_id(&self) -> Uuid {
        self.identity.session_id()
    }

    pub(crate) fn token(&self) -> &str {
        let at = self.token_at as usize;
        &self.text[at..at + self.token_len as usize]
    }

    /// The client's raw query string from the request that opened the session.
    pub(crate) fn qs(&self) -> Option<&str> {
        (self.qs_len != u32::MAX).then(|| &self.text[..self.qs_len as usize])
    }
}

/// "The server ended this session": a flag, and a cancellation token made on first wait.
///
/// The flag is set before the token is looked for, and a waiter makes the token before it reads
/// the flag, with a sequentially consistent fence between each pair: whichever comes second sees
/// the other, so a waiter cannot miss an end.
#[derive(Debug, Default)]
pub(crate) struct Ended {
    flag: AtomicBool,
    token: OnceLock<CancellationToken>,
}

impl Ended {
    pub(crate) fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if let Some(token) = self.token.get() {
            token.cancel();
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    pub(crate) fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        let token = self.token.get_or_init(CancellationToken::new);
        fence(Ordering::SeqCst);
        if self.flag.load(Ordering::SeqCst) {
            token.cancel();
        }
        token.cancelled()
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
            headers: &[],
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

    #[tokio::test]
    async fn an_end_before_or_after_the_first_wait_is_seen() {
        let before = Ended::default();
        before.cancel();
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
