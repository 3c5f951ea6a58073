//! Splitting what a client sends into RTSP requests and interleaved binary frames.
//!
//! A control connection carries RTSP messages (RFC 2326 §4, parsed by `rtsp-types`) mixed with
//! `$`-framed interleaved data (§10.12: `$`, a channel byte, a 16-bit length, the data) — the
//! client's RTCP receiver reports. The reader buffers bytes until one of them is whole, and
//! holds every message to a size limit, so a peer cannot make it buffer without bound.

use bytes::{Buf, BytesMut};
use rtsp_types::{Message, ParseError, Request};

/// What one complete frame of client input was.
#[derive(Debug)]
pub(crate) enum Frame {
    /// An RTSP request.
    Request(Request<Vec<u8>>),
    /// Consumed and ignored: interleaved data (RTCP from the client), or a response (the
    /// server sends no requests, so any response is stray).
    Ignored(Ignored),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ignored {
    Interleaved { channel: u8, len: usize },
    Response,
}

/// Client input that cannot be framed: the connection cannot continue after it, since where
/// the next message starts is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// Not RTSP: the description says what was wrong.
    Malformed(&'static str),
    /// The request head is longer than the limit.
    HeadTooLarge { limit: usize },
    /// The request body (by its Content-Length) is longer than the limit.
    BodyTooLarge { limit: usize },
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Malformed(what) => f.write_str(what),
            Invalid::HeadTooLarge { limit } => write!(f, "request head longer than {limit} bytes"),
            Invalid::BodyTooLarge { limit } => write!(f, "request body longer than {limit} bytes"),
        }
    }
}

/// The step result of [`Reader::next`]: "need more bytes" is a state, not an error.
#[derive(Debug)]
pub(crate) enum Step {
    Frame(Frame),
    NeedMore,
}

/// Buffers client bytes and yields whole frames.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: BytesMut,
    /// How far the buffer has been searched for the end of the head (`\r\n\r\n`), so that a
    /// head arriving byte by byte costs linear time.
    scanned: usize,
    /// Whether the first line of the message in the buffer has been checked.
    line_checked: bool,
    /// With a whole head, how many bytes the message needs in all: the body is not parsed
    /// again until they are there, so a body arriving byte by byte costs linear time too.
    wanted: usize,
    max_head: usize,
    max_body: usize,
}

const HEAD_END: &[u8] = b"\r\n\r\n";

impl Reader {
    pub(crate) fn new(max_head: usize, max_body: usize) -> Reader {
        Reader {
            buf: BytesMut::with_capacity(4096),
            scanned: 0,
            line_checked: false,
            wanted: 0,
            max_head,
            max_body,
        }
    }

    /// Where the next read goes.
    pub(crate) fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Whether some of a frame has arrived (an end of input now truncates it).
    pub(crate) fn is_mid_frame(&self) -> bool {
        self.buf.iter().any(|&b| b != b'\r' && b != b'\n')
    }

    /// The next whole frame, if the buffer holds one.
    pub(crate) fn next(&mut self) -> Result<Step, Invalid> {
        // Blank lines between messages are tolerated (RFC 2326 §15.1 says clients MAY send
        // them, and real ones do after interleaved data).
        let blank = self.buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
        if blank > 0 {
            self.consume(blank);
        }
        let Some(&first) = self.buf.first() else {
            return Ok(Step::NeedMore);
        };
        if first == b'$' {
            return Ok(self.interleaved());
        }
        if !is_token_char(first) {
            return Err(Invalid::Malformed(
                "the input is neither an RTSP message nor interleaved data",
            ));
        }
        if self.buf.len() < self.wanted {
            return Ok(Step::NeedMore);
        }
        // No line end lay before `scanned`, so the search starts just before it.
        if !self.line_checked
            && let Some(line_end) = find(&self.buf, b"\r\n", self.scanned.saturating_sub(1))
        {
            check_first_line(&self.buf[..line_end])?;
            self.line_checked = true;
        }
        let from = self.scanned.saturating_sub(HEAD_END.len() - 1);
        let Some(at) = find(&self.buf, HEAD_END, from) else {
            self.scanned = self.buf.len();
            if self.buf.len() > self.max_head {
                return Err(Invalid::HeadTooLarge { limit: self.max_head });
            }
            return Ok(Step::NeedMore);
        };
        let head_len = at + HEAD_END.len();
        if head_len > self.max_head {
            return Err(Invalid::HeadTooLarge { limit: self.max_head });
        }
        match Message::<Vec<u8>>::parse(&self.buf[..]) {
            Ok((message, consumed)) => {
                self.consume(consumed);
                Ok(Step::Frame(match message {
                    Message::Request(request) => Frame::Request(request),
                    Message::Response(_) => Frame::Ignored(Ignored::Response),
                    // A `$` first byte is handled above; nothing else parses as data.
                    Message::Data(data) => Frame::Ignored(Ignored::Interleaved {
                        channel: data.channel_id(),
                        len: data.len(),
                    }),
                }))
            }
            Err(ParseError::Incomplete(needed)) => {
                // The head is whole, so only the body is missing.
                let wanted = self.buf.len() + needed.map_or(1, |n| n.get());
                if wanted - head_len > self.max_body {
                    return Err(Invalid::BodyTooLarge { limit: self.max_body });
                }
                self.wanted = wanted;
                Ok(Step::NeedMore)
            }
            Err(ParseError::Error) => Err(Invalid::Malformed("the request does not parse as RTSP")),
        }
    }

    /// Drops `n` bytes from the front: blank lines, or one whole frame.
    fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.scanned = self.scanned.saturating_sub(n);
        if self.scanned == 0 {
            self.line_checked = false;
            self.wanted = 0;
        }
    }

    /// RFC 2326 §10.12 interleaved binary data: at most 4 + 65535 bytes by construction.
    fn interleaved(&mut self) -> Step {
        let [_, channel, hi, lo, ..] = self.buf[..] else {
            return Step::NeedMore;
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if self.buf.len() < 4 + len {
            self.buf.reserve(4 + len - self.buf.len());
            return Step::NeedMore;
        }
        self.consume(4 + len);
        Step::Frame(Frame::Ignored(Ignored::Interleaved { channel, len }))
    }
}

/// RFC 2326 §6.1 `Request-Line = Method SP Request-URI SP RTSP-Version CRLF` (or a §7.1
/// Status-Line, which is ignored later).
fn check_first_line(line: &[u8]) -> Result<(), Invalid> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(first), Some(_), Some(third)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Invalid::Malformed("the request line is not `METHOD URI RTSP/1.0`"));
    };
    if first.starts_with(b"RTSP/") || third.starts_with(b"RTSP/") {
        Ok(())
    } else {
        Err(Invalid::Malformed("the request line is not `METHOD URI RTSP/1.0`"))
    }
}

/// RFC 2616 §2.2 `token` characters, which every method name is made of.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader() -> Reader {
        Reader::new(1024, 256)
    }

    fn feed(r: &mut Reader, bytes: &[u8]) -> Vec<Result<Step, Invalid>> {
        r.buffer().extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let step = r.next();
            let stop = !matches!(step, Ok(Step::Frame(_)));
            out.push(step);
            if stop {
                return out;
            }
        }
    }

    const OPTIONS: &[u8] = b"OPTIONS rtsp://h/s RTSP/1.0\r\nCSeq: 1\r\n\r\n";

    #[test]
    fn a_request_split_at_every_byte_is_read_once() {
        let mut input = Vec::new();
        input.extend_from_slice(OPTIONS);
        input.extend_from_slice(&[b'$', 1, 0, 3, 9, 9, 9]);
        input.extend_from_slice(b"\r\nSET_PARAMETER rtsp://h/s RTSP/1.0\r\nCSeq: 2\r\nContent-Length: 3\r\n\r\nabc");
        for split in 0..input.len() {
            let mut r = reader();
            let mut frames = Vec::new();
            for chunk in [&input[..split], &input[split..]] {
                for step in feed(&mut r, chunk) {
                    if let Step::Frame(f) = step.unwrap() {
                        frames.push(f);
                    }
                }
            }
            assert_eq!(frames.len(), 3, "split at {split}: {frames:?}");
            assert!(matches!(&frames[0], Frame::Request(q) if *q.method() == rtsp_types::Method::Options));
            assert!(matches!(
                frames[1],
                Frame::Ignored(Ignored::Interleaved { channel: 1, len: 3 })
            ));
            assert!(matches!(&frames[2], Frame::Request(q) if q.body() == b"abc"));
            assert!(!r.is_mid_frame());
        }
    }

    #[test]
    fn input_trickling_byte_by_byte_is_read_once() {
        let mut input = Vec::new();
        for _ in 0..3 {
            input.extend_from_slice(b"SET_PARAMETER rtsp://h/s RTSP/1.0\r\nCSeq: 2\r\nContent-Length: 3\r\n\r\nabc");
            input.extend_from_slice(&[b'$', 1, 0, 2, 9, 9]);
        }
        let mut r = reader();
        let mut frames = 0;
        for b in &input {
            frames += feed(&mut r, std::slice::from_ref(b))
                .into_iter()
                .filter(|s| matches!(s, Ok(Step::Frame(_))))
                .count();
        }
        assert_eq!(frames, 6);
        assert!(!r.is_mid_frame());
    }

    #[test]
    fn garbage_is_malformed_at_once() {
        let mut r = reader();
        assert!(matches!(
            feed(&mut r, b"\x00\xff\x16\x03").pop(),
            Some(Err(Invalid::Malformed(_)))
        ));
        let mut r = reader();
        assert!(matches!(
            feed(&mut r, b"GET / HTTP/1.1\r\n").pop(),
            Some(Err(Invalid::Malformed(_)))
        ));
    }

    #[test]
    fn oversized_heads_and_bodies_are_refused_before_they_arrive() {
        let mut r = reader();
        let mut big = b"OPTIONS rtsp://h/s RTSP/1.0\r\nX-Big: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 2000));
        assert_eq!(
            feed(&mut r, &big).pop().unwrap().unwrap_err(),
            Invalid::HeadTooLarge { limit: 1024 }
        );
        let mut r = reader();
        let steps = feed(
            &mut r,
            b"SET_PARAMETER rtsp://h/s RTSP/1.0\r\nContent-Length: 100000\r\n\r\n",
        );
        assert_eq!(
            steps.last().unwrap().as_ref().unwrap_err(),
            &Invalid::BodyTooLarge { limit: 256 }
        );
    }

    #[test]
    fn a_truncated_request_waits_and_reports_itself_mid_frame() {
        let mut r = reader();
        assert!(matches!(feed(&mut r, &OPTIONS[..20]).pop(), Some(Ok(Step::NeedMore))));
        assert!(r.is_mid_frame());
        let mut r = reader();
        assert!(matches!(feed(&mut r, b"\r\n").pop(), Some(Ok(Step::NeedMore))));
        assert!(!r.is_mid_frame());
    }

    #[test]
    fn a_bad_uri_or_content_length_is_malformed() {
        let mut r = reader();
        let steps = feed(&mut r, b"OPTIONS rtsp://h/s RTSP/1.0\r\nContent-Length: x\r\n\r\n");
        assert!(matches!(steps.last(), Some(Err(Invalid::Malformed(_)))));
    }
}
