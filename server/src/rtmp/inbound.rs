//! A watch over the client's chunk stream, run on every byte before `rml_rtmp` sees it.
//!
//! `rml_rtmp` 0.8 trusts its peer in ways a public server cannot: some inputs make it panic
//! (an AMF0 command of fewer than three values, `@setDataFrame` alone, an extended timestamp
//! delta below 0xFFFFFF, a chunk that interrupts a message on another chunk stream), deeply
//! nested AMF0 overflows the stack in its recursive decoder, and it buffers messages of any
//! announced size. This module follows the chunk framing the way `rml_rtmp`'s deserializer does
//! (RTMP 1.0 §5.3.1) and refuses those inputs, so one hostile client costs one connection.
//!
//! It also keeps what `rml_rtmp` drops from `connect`: `flashVer` (the user agent), `pageUrl`
//! (the referer, T1) and `tcUrl` (the host).

use std::collections::HashMap;
use std::io::Cursor;

use rml_rtmp::rml_amf0::{self, Amf0Value};

use super::amf;

/// Largest audio or video message accepted from an admitted publisher (a very large keyframe
/// fits).
pub(crate) const MAX_MEDIA_MESSAGE: usize = 8 << 20;
/// Largest message of any other type (commands, metadata, control), and of any type before a
/// publisher is admitted: nobody else has a reason to send more, and an unauthenticated client
/// must not make the server buffer megabytes.
pub(crate) const MAX_CONTROL_MESSAGE: usize = 64 << 10;
/// Deepest AMF0 nesting accepted; real clients use two levels.
const MAX_AMF_DEPTH: usize = 16;
/// Basic header (3) + type 0 message header (11) + extended timestamp (4).
const MAX_HEADER_LEN: usize = 18;
/// Chunk size before any Set Chunk Size (RTMP 1.0 §5.4.1).
const INITIAL_CHUNK_SIZE: usize = 128;
const EXTENDED_TIMESTAMP: u32 = 0x00FF_FFFF;
/// Set Chunk Size and Window Acknowledgement Size take 31-bit values.
const MAX_31_BIT: u32 = 0x7FFF_FFFF;

mod type_id {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const AMF3_DATA: u8 = 15;
    pub const AMF3_COMMAND: u8 = 17;
    pub const AMF0_DATA: u8 = 18;
    pub const AMF0_COMMAND: u8 = 20;
}

/// The client broke the protocol in a way this server refuses. The text says how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Violation(pub String);

fn violation<T>(text: impl Into<String>) -> Result<T, Violation> {
    Err(Violation(text.into()))
}

/// What the client's `connect` said beyond the app name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ConnectInfo {
    pub app: Option<String>,
    pub flash_ver: Option<String>,
    pub page_url: Option<String>,
    pub tc_url: Option<String>,
}

impl ConnectInfo {
    /// The host (with port) of `tcUrl`, the RTMP equivalent of the HTTP `Host` header.
    pub fn host(&self) -> Option<String> {
        let url = url::Url::parse(self.tc_url.as_deref()?).ok()?;
        let host = url.host_str()?;
        Some(match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        })
    }
}

/// The last header seen on a chunk stream: what later compressed headers inherit.
#[derive(Debug, Clone, Copy, Default)]
struct StreamHeader {
    message_length: u32,
    type_id: u8,
    timestamp_field: u32,
}

/// The message whose chunks are being read.
#[derive(Debug)]
struct Partial {
    csid: u32,
    type_id: u8,
    length: usize,
    received: usize,
    /// Kept for the types inspected here; audio and video pass through uncollected.
    body: Option<Vec<u8>>,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct InboundCheck {
    chunk_size: usize,
    streams: HashMap<u32, StreamHeader>,
    /// Bytes of a chunk header not complete yet (at most [`MAX_HEADER_LEN`]).
    header: Vec<u8>,
    /// Payload bytes still to come in the current chunk.
    chunk_left: usize,
    partial: Option<Partial>,
    connect: Option<ConnectInfo>,
    /// Audio and video may be up to [`MAX_MEDIA_MESSAGE`]: set once a publisher is admitted.
    media_allowed: bool,
}

impl Default for InboundCheck {
    fn default() -> Self {
        InboundCheck {
            chunk_size: INITIAL_CHUNK_SIZE,
            streams: HashMap::new(),
            header: Vec::with_capacity(MAX_HEADER_LEN),
            chunk_left: 0,
            partial: None,
            connect: None,
            media_allowed: false,
        }
    }
}

/// A parsed chunk header.
struct ChunkHeader {
    fmt: u8,
    csid: u32,
    stream: StreamHeader,
}

impl InboundCheck {
    /// Follows `data` (the next bytes from the client, after the handshake).
    pub fn check(&mut self, mut data: &[u8]) -> Result<(), Violation> {
        loop {
            if self.chunk_left > 0 {
                if data.is_empty() {
                    return Ok(());
                }
                let n = self.chunk_left.min(data.len());
                if let Some(body) = self.partial.as_mut().and_then(|p| p.body.as_mut()) {
                    body.extend_from_slice(&data[..n]);
                }
                if let Some(p) = self.partial.as_mut() {
                    p.received += n;
                }
                self.chunk_left -= n;
                data = &data[n..];
                if self.chunk_left == 0 {
                    self.end_chunk()?;
                }
                continue;
            }
            if data.is_empty() {
                return Ok(());
            }
            let before = self.header.len();
            let take = (MAX_HEADER_LEN - before).min(data.len());
            self.header.extend_from_slice(&data[..take]);
            match self.parse_header()? {
                None => data = &data[take..],
                Some((used, header)) => {
                    // The bytes held before could not make a header: `used` reaches past them.
                    data = &data[used - before..];
                    self.header.clear();
                    self.begin_chunk(header)?;
                }
            }
        }
    }

    /// Lets the client send audio and video messages up to [`MAX_MEDIA_MESSAGE`] (an admitted
    /// publisher).
    pub fn allow_media(&mut self) {
        self.media_allowed = true;
    }

    /// What the client sent in `connect`, once it has.
    pub fn connect_info(&self) -> Option<&ConnectInfo> {
        self.connect.as_ref()
    }

    fn parse_header(&self) -> Result<Option<(usize, ChunkHeader)>, Violation> {
        let b = &self.header[..];
        let Some(&first) = b.first() else { return Ok(None) };
        let fmt = first >> 6;
        let (csid, mut at) = match first & 0x3F {
            0 => match b.get(1) {
                Some(&x) => (u32::from(x) + 64, 2),
                None => return Ok(None),
            },
            1 => match (b.get(1), b.get(2)) {
                (Some(&lo), Some(&hi)) => (u32::from(hi) * 256 + u32::from(lo) + 64, 3),
                _ => return Ok(None),
            },
            x => (u32::from(x), 1),
        };
        let previous = self.streams.get(&csid).copied();
        let mut stream = match (fmt, previous) {
            (0, _) => StreamHeader::default(),
            (_, Some(p)) => p,
            (_, None) => {
                return violation(format!(
                    "chunk type {fmt} on chunk stream {csid} before any type 0 chunk"
                ));
            }
        };
        let u24 = |s: &[u8]| u32::from_be_bytes([0, s[0], s[1], s[2]]);
        let need = match fmt {
            0 => 11,
            1 => 7,
            2 => 3,
            _ => 0,
        };
        let Some(fields) = b.get(at..at + need) else {
            return Ok(None);
        };
        at += need;
        if fmt <= 2 {
            stream.timestamp_field = u24(&fields[0..3]);
        }
        if fmt <= 1 {
            stream.message_length = u24(&fields[3..6]);
            stream.type_id = fields[6];
        }
        if stream.timestamp_field >= EXTENDED_TIMESTAMP {
            let Some(ext) = b.get(at..at + 4) else { return Ok(None) };
            at += 4;
            let ext = u32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]]);
            // rml_rtmp subtracts 0xFFFFFF from an extended delta that starts a message.
            if fmt != 0 && self.partial.is_none() && ext < EXTENDED_TIMESTAMP {
                return violation(format!(
                    "extended timestamp delta {ext:#x} on chunk stream {csid} is below 0xFFFFFF"
                ));
            }
        }
        Ok(Some((at, ChunkHeader { fmt, csid, stream })))
    }

    fn begin_chunk(&mut self, header: ChunkHeader) -> Result<(), Violation> {
        let ChunkHeader { fmt, csid, stream } = header;
        match &self.partial {
            Some(p) if p.csid != csid => {
                return violation(format!(
                    "a chunk on stream {csid} interrupts the message on stream {}: interleaved chunk streams are not supported",
                    p.csid
                ));
            }
            Some(_) if fmt <= 1 => {
                return violation(format!(
                    "a new message header on chunk stream {csid} before its message is complete"
                ));
            }
            Some(_) => {}
            None => {
                let length = stream.message_length as usize;
                let media = matches!(stream.type_id, type_id::AUDIO | type_id::VIDEO);
                let limit = if media && self.media_allowed {
                    MAX_MEDIA_MESSAGE
                } else {
                    MAX_CONTROL_MESSAGE
                };
                if length > limit {
                    return violation(format!(
                        "a message of type {} and {length} bytes exceeds the limit of {limit} bytes",
                        stream.type_id
                    ));
                }
                self.partial = Some(Partial {
                    csid,
                    type_id: stream.type_id,
                    length,
                    received: 0,
                    body: (!media).then(|| Vec::with_capacity(length)),
                });
            }
        }
        self.streams.insert(csid, stream);
        let p = self.partial.as_ref().map_or(0, |p| p.length - p.received);
        self.chunk_left = p.min(self.chunk_size);
        if self.chunk_left == 0 {
            self.end_chunk()?;
        }
        Ok(())
    }

    fn end_chunk(&mut self) -> Result<(), Violation> {
        if self.partial.as_ref().is_some_and(|p| p.received == p.length)
            && let Some(p) = self.partial.take()
        {
            self.inspect(p.type_id, p.body.unwrap_or_default())?;
        }
        Ok(())
    }

    /// Looks at a complete message of a type `rml_rtmp` decodes.
    fn inspect(&mut self, type_id: u8, body: Vec<u8>) -> Result<(), Violation> {
        match type_id {
            type_id::SET_CHUNK_SIZE => {
                if let Some(size) = be_u32(&body) {
                    if size == 0 || size > MAX_31_BIT {
                        return violation(format!("Set Chunk Size {size} is outside 1..=0x7FFFFFFF"));
                    }
                    // rml_rtmp applies it before it reads the next chunk; so does this.
                    self.chunk_size = size as usize;
                }
            }
            type_id::WINDOW_ACK_SIZE => {
                // rml_rtmp counts unacknowledged bytes in a u32 that a window near 4 GiB
                // would overflow.
                if let Some(size) = be_u32(&body)
                    && size > MAX_31_BIT
                {
                    return violation(format!("Window Acknowledgement Size {size} is above 0x7FFFFFFF"));
                }
            }
            type_id::AMF0_DATA | type_id::AMF3_DATA => {
                if let Some(values) = decode_amf0(&body)?
                    && values.first().is_some_and(|v| is_string(v, "@setDataFrame"))
                    && values.len() < 3
                {
                    return violation("@setDataFrame without a handler name and a value");
                }
            }
            type_id::AMF0_COMMAND | type_id::AMF3_COMMAND => {
                let amf0 = match body.first() {
                    Some(0) if type_id == type_id::AMF3_COMMAND => &body[1..],
                    _ => &body[..],
                };
                if let Some(values) = decode_amf0(amf0)? {
                    if values.len() < 3 {
                        return violation(format!(
                            "an AMF0 command of {} values (a name, a transaction id and a command object are required)",
                            values.len()
                        ));
                    }
                    if is_string(&values[0], "connect") && self.connect.is_none() {
                        self.connect = Some(connect_info(&values[2]));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn be_u32(body: &[u8]) -> Option<u32> {
    body.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The values `rml_amf0` will decode from `data`, after making sure it can do so without
/// exhausting the stack; `None` when it will fail to decode (its own error closes the
/// connection).
fn decode_amf0(data: &[u8]) -> Result<Option<Vec<Amf0Value>>, Violation> {
    let depth = amf::max_depth(data);
    if depth > MAX_AMF_DEPTH {
        return violation(format!("AMF0 nested {depth} levels deep (limit {MAX_AMF_DEPTH})"));
    }
    Ok(rml_amf0::deserialize(&mut Cursor::new(data)).ok())
}

fn is_string(value: &Amf0Value, expected: &str) -> bool {
    matches!(value, Amf0Value::Utf8String(s) if s == expected)
}

fn connect_info(object: &Amf0Value) -> ConnectInfo {
    let Amf0Value::Object(props) = object else {
        return ConnectInfo::default();
    };
    let text = |key: &str| match props.get(key) {
        Some(Amf0Value::Utf8String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    ConnectInfo {
        app: text("app"),
        flash_ver: text("flashVer"),
        page_url: text("pageUrl"),
        tc_url: text("tcUrl"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bytes::Bytes;
    use rml_rtmp::chunk_io::ChunkSerializer;
    use rml_rtmp::messages::{MessagePayload, RtmpMessage};
    use rml_rtmp::time::RtmpTimestamp;

    use super::*;

    fn serialize(serializer: &mut ChunkSerializer, message: RtmpMessage, stream_id: u32) -> Vec<u8> {
        let payload = message.into_message_payload(RtmpTimestamp::new(0), stream_id).unwrap();
        serializer.serialize(&payload, false, false).unwrap().bytes
    }

    fn command(name: &str, object: Amf0Value) -> RtmpMessage {
        RtmpMessage::Amf0Command {
            command_name: name.into(),
            transaction_id: 1.0,
            command_object: object,
            additional_arguments: vec![],
        }
    }

    fn raw(type_id: u8, csid: u8, body: &[u8]) -> Vec<u8> {
        let len = body.len() as u32;
        let mut out = vec![csid, 0, 0, 0];
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(type_id);
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn a_real_connect_passes_in_any_split_and_its_properties_are_kept() {
        let mut serializer = ChunkSerializer::new();
        let mut bytes = serializer.set_max_chunk_size(64, RtmpTimestamp::new(0)).unwrap().bytes;
        let props = HashMap::from([
            ("app".to_string(), Amf0Value::Utf8String("live".into())),
            (
                "flashVer".to_string(),
                Amf0Value::Utf8String("FMLE/3.0 (compatible; Lavf59)".into()),
            ),
            (
                "tcUrl".to_string(),
                Amf0Value::Utf8String("rtmp://127.0.0.1:1935/live".into()),
            ),
            (
                "pageUrl".to_string(),
                Amf0Value::Utf8String("https://site.example/p?token=x&name=y".into()),
            ),
            ("padding".to_string(), Amf0Value::Utf8String("z".repeat(300))),
        ]);
        bytes.extend(serialize(
            &mut serializer,
            command("connect", Amf0Value::Object(props)),
            0,
        ));
        let video = MessagePayload {
            timestamp: RtmpTimestamp::new(0x0100_0000),
            type_id: 9,
            message_stream_id: 1,
            data: Bytes::from(vec![0x17; 1000]),
        };
        bytes.extend(serializer.serialize(&video, false, false).unwrap().bytes);
        for split in [1, 7, 64, bytes.len()] {
            let mut check = InboundCheck::default();
            for piece in bytes.chunks(split) {
                check.check(piece).unwrap_or_else(|e| panic!("split {split}: {e}"));
            }
            let info = check.connect_info().expect("connect seen");
            assert_eq!(info.app.as_deref(), Some("live"));
            assert_eq!(info.flash_ver.as_deref(), Some("FMLE/3.0 (compatible; Lavf59)"));
            assert_eq!(info.page_url.as_deref(), Some("https://site.example/p?token=x&name=y"));
            assert_eq!(info.host().as_deref(), Some("127.0.0.1:1935"));
            assert_eq!(check.chunk_size, 64);
            assert!(check.partial.is_none() && check.chunk_left == 0);
        }
    }

    #[test]
    fn commands_that_would_panic_rml_rtmp_are_refused() {
        // A command of one value: rml_rtmp drains three.
        let one = rml_amf0::serialize(&vec![Amf0Value::Utf8String("connect".into())]).unwrap();
        assert!(InboundCheck::default().check(&raw(20, 3, &one)).is_err());
        // `@setDataFrame` alone: rml_rtmp indexes past the end.
        let alone = rml_amf0::serialize(&vec![Amf0Value::Utf8String("@setDataFrame".into())]).unwrap();
        assert!(InboundCheck::default().check(&raw(18, 3, &alone)).is_err());
        // Deep nesting.
        let deep: Vec<u8> = std::iter::repeat_n([0x0A, 0, 0, 0, 1], 20).flatten().collect();
        let err = InboundCheck::default().check(&raw(20, 3, &deep)).unwrap_err();
        assert!(err.0.contains("nested"), "{err}");
    }

    #[test]
    fn framing_abuse_is_refused() {
        // Type 1 header on a fresh chunk stream.
        assert!(InboundCheck::default().check(&[0x43, 0, 0, 0, 0, 0, 1, 20]).is_err());
        // An announced message above the limit.
        let mut huge = raw(20, 3, &[]);
        huge[4..7].copy_from_slice(&[0x10, 0, 0]);
        assert!(InboundCheck::default().check(&huge).is_err());
        // Set Chunk Size 0.
        assert!(InboundCheck::default().check(&raw(1, 2, &[0, 0, 0, 0])).is_err());
        // A message interrupted by a chunk of another stream (chunk size 128, message 200).
        let mut interleaved = raw(9, 4, &[0x17; 200])[..12 + 128].to_vec();
        interleaved.extend(raw(8, 5, &[0xAF, 1]));
        assert!(InboundCheck::default().check(&interleaved).is_err());
        // An extended timestamp delta below 0xFFFFFF on a type 2 header.
        let mut ext = raw(8, 4, &[0xAF, 1]);
        ext.extend([0x84, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1, 0xAF, 1]);
        assert!(InboundCheck::default().check(&ext).is_err());
    }

    #[test]
    fn large_media_only_from_an_admitted_publisher() {
        let mut header = raw(9, 4, &[]);
        header[4..7].copy_from_slice(&[0x01, 0, 0x01]);
        assert!(
            InboundCheck::default().check(&header).is_err(),
            "64 KiB + 1 before admission"
        );
        let mut check = InboundCheck::default();
        check.allow_media();
        check.check(&header).unwrap();
        assert_eq!(check.partial.as_ref().map(|p| p.length), Some(0x01_0001));
    }

    #[test]
    fn continuation_chunks_are_accepted() {
        // 200 bytes at chunk size 128: a type 0 chunk then a type 3 chunk.
        let full = raw(9, 4, &[0x17; 200]);
        let mut bytes = full[..12 + 128].to_vec();
        bytes.push(0xC4);
        bytes.extend_from_slice(&full[12 + 128..]);
        let mut check = InboundCheck::default();
        check.check(&bytes).unwrap();
        assert!(check.partial.is_none());
    }
}
