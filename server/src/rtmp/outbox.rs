//! What a connection writes next, and media messages cut into RTMP chunks once for every viewer.
//!
//! `rml_rtmp`'s serializer copies each message into a new buffer per connection, with header
//! compression that depends on what that connection was sent before. A video access unit goes
//! to every viewer of a stream, so the server cuts its payload into chunks once
//! ([`chunk_body`]: the payload with a one-byte type-3 header before every chunk after the
//! first) and each viewer sends only its own 12-byte type-0 header ([`head`]: its timestamp and
//! message stream) before those shared bytes. Every media message starts with a full header, so
//! nothing depends on what the viewer was sent before. Media uses chunk streams that
//! `rml_rtmp` never uses (it takes 2 to 6), so its own header compression on the others is
//! untouched. A timestamp past the 24-bit field (after 4.6 hours of play) needs the extended
//! timestamp in every chunk: such a message is cut for its viewer alone ([`Outbox::message`]).

use std::io::{self, IoSlice};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;

/// The chunk size this server sends with: `rml_rtmp`'s `ServerSessionConfig` default, which
/// the session announces to the client (`SetChunkSize`) when the connection starts.
pub(super) const CHUNK_SIZE: usize = 4096;
/// Chunk stream of video messages (`rml_rtmp` uses 2 to 6 for its own messages).
pub(super) const VIDEO_CSID: u8 = 7;
/// Chunk stream of audio messages.
pub(super) const AUDIO_CSID: u8 = 8;
pub(super) const VIDEO_TYPE: u8 = 9;
pub(super) const AUDIO_TYPE: u8 = 8;
/// The longest message RTMP can carry: its length is a 24-bit field.
const MAX_MESSAGE_LEN: usize = 0x00FF_FFFF;
/// The largest timestamp the 24-bit field holds; from it on the extended field is used.
const MAX_SHORT_TIMESTAMP: u32 = 0x00FF_FFFF;
/// Capacity of a connection's own buffer kept between writes.
const OWN_KEPT: usize = 256;
/// Slices handed to one `writev`.
const MAX_SLICES: usize = 64;

/// `payload` cut into chunks of [`CHUNK_SIZE`] on chunk stream `csid`, without the first
/// chunk's header: what follows [`head`] for any timestamp below 2^24 − 1 ms.
pub(super) fn chunk_body(csid: u8, payload: &[u8]) -> Bytes {
    Bytes::from(cut(csid, payload, &[]))
}

/// `payload` with a type-3 chunk header (and `extended`, the extended timestamp, when the
/// message has one) before every chunk after the first.
fn cut(csid: u8, payload: &[u8], extended: &[u8]) -> Vec<u8> {
    debug_assert!((3..64).contains(&csid), "a one-byte basic header");
    let separators = payload.len().saturating_sub(1) / CHUNK_SIZE;
    let mut body = Vec::with_capacity(payload.len() + separators * (1 + extended.len()));
    for (i, chunk) in payload.chunks(CHUNK_SIZE).enumerate() {
        if i > 0 {
            body.push(0xC0 | csid);
            body.extend_from_slice(extended);
        }
        body.extend_from_slice(chunk);
    }
    body
}

/// The type-0 chunk header that starts a message of `len` bytes; `None` when `timestamp`
/// needs the extended field (then the message is cut whole by [`Outbox::message`]).
pub(super) fn head(csid: u8, timestamp: u32, len: usize, type_id: u8, stream_id: u32) -> Option<[u8; 12]> {
    (timestamp < MAX_SHORT_TIMESTAMP && len <= MAX_MESSAGE_LEN).then(|| type0(csid, timestamp, len, type_id, stream_id))
}

/// A type-0 chunk header with `timestamp_field` in its 24-bit timestamp (`len` fits 24 bits).
fn type0(csid: u8, timestamp_field: u32, len: usize, type_id: u8, stream_id: u32) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = csid;
    h[1..4].copy_from_slice(&timestamp_field.to_be_bytes()[1..]);
    h[4..7].copy_from_slice(&(len as u32).to_be_bytes()[1..]);
    h[7] = type_id;
    h[8..12].copy_from_slice(&stream_id.to_le_bytes());
    h
}

#[derive(Debug, Clone)]
enum Piece {
    /// `own[start..end]`.
    Own(usize, usize),
    Shared(Bytes),
}

/// Bytes waiting to be written, in order: the connection's own (protocol messages, headers)
/// and shared media chunks, which are written from where they are (vectored), never copied.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    own: Vec<u8>,
    pieces: Vec<Piece>,
    /// Bytes in `pieces`.
    len: usize,
    /// Pieces written whole, and bytes written of the next one.
    done: usize,
    offset: usize,
}

impl Outbox {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes queued since the last complete write.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes of this connection's own, copied.
    pub fn push_own(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let start = self.own.len();
        self.own.extend_from_slice(bytes);
        let end = self.own.len();
        match self.pieces.last_mut() {
            Some(Piece::Own(_, last_end)) if *last_end == start => *last_end = end,
            _ => self.pieces.push(Piece::Own(start, end)),
        }
        self.len += bytes.len();
    }

    /// Bytes shared with other connections, held, not copied.
    pub fn push_shared(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len();
        self.pieces.push(Piece::Shared(bytes));
    }

    /// One media message whose payload was cut by [`chunk_body`] into `body` (`len` payload
    /// bytes): this viewer's header, then the shared chunks.
    pub fn shared_message(&mut self, csid: u8, timestamp: u32, type_id: u8, stream_id: u32, len: usize, body: &Bytes) {
        match head(csid, timestamp, len, type_id, stream_id) {
            Some(h) => {
                self.push_own(&h);
                self.push_shared(body.clone());
            }
            None => {
                let payload = unchunk(csid, body);
                self.message(csid, timestamp, type_id, stream_id, &payload);
            }
        }
    }

    /// One message cut into chunks for this connection alone (sequence headers, and any
    /// message whose timestamp needs the extended field, which then is in every chunk).
    pub fn message(&mut self, csid: u8, timestamp: u32, type_id: u8, stream_id: u32, payload: &[u8]) {
        if payload.len() > MAX_MESSAGE_LEN {
            // RTMP cannot say how long it is (a 24-bit field); cut wrong, it would desynchronise
            // the viewer's chunk stream. Only a publisher's own stream can carry such a unit.
            tracing::debug!(
                bytes = payload.len(),
                "media message over RTMP's 16 MiB length not sent"
            );
            return;
        }
        // Below the extended field's threshold nothing follows the headers; from it on, the
        // extended timestamp follows the type-0 header and every type-3 one.
        let extended = timestamp.to_be_bytes();
        let extended: &[u8] = if timestamp < MAX_SHORT_TIMESTAMP {
            &[]
        } else {
            &extended
        };
        let field = timestamp.min(MAX_SHORT_TIMESTAMP);
        self.push_own(&type0(csid, field, payload.len(), type_id, stream_id));
        self.push_own(extended);
        self.push_own(&cut(csid, payload, extended));
    }

    /// Writes what the socket takes at once, without waiting; `true` when nothing is left.
    /// What was written is forgotten, so [`write_to`](Self::write_to) goes on from there.
    pub fn try_write(&mut self, writer: &OwnedWriteHalf) -> io::Result<bool> {
        while self.done < self.pieces.len() {
            let written = match writer.try_write_vectored(&self.slices()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            };
            self.advance(written);
        }
        self.clear();
        Ok(true)
    }

    /// Writes everything waiting, waiting for the socket as long as it takes, then forgets it.
    /// A cancelled write leaves the connection unusable, which is how the caller treats it.
    pub async fn write_to(&mut self, writer: &mut OwnedWriteHalf) -> io::Result<()> {
        while self.done < self.pieces.len() {
            let written = writer.write_vectored(&self.slices()).await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.advance(written);
        }
        self.clear();
        Ok(())
    }

    /// Up to [`MAX_SLICES`] of what is left to write.
    fn slices(&self) -> Vec<IoSlice<'_>> {
        let left = &self.pieces[self.done..];
        let mut slices = Vec::with_capacity(MAX_SLICES.min(left.len()));
        for (i, piece) in left.iter().take(MAX_SLICES).enumerate() {
            let bytes = match piece {
                Piece::Own(start, end) => &self.own[*start..*end],
                Piece::Shared(b) => &b[..],
            };
            slices.push(IoSlice::new(if i == 0 { &bytes[self.offset..] } else { bytes }));
        }
        slices
    }

    /// `written` more bytes went out.
    fn advance(&mut self, mut written: usize) {
        while written > 0 && self.done < self.pieces.len() {
            let left = self.piece_len(self.done) - self.offset;
            if written >= left {
                written -= left;
                self.done += 1;
                self.offset = 0;
            } else {
                self.offset += written;
                written = 0;
            }
        }
    }

    fn piece_len(&self, index: usize) -> usize {
        match &self.pieces[index] {
            Piece::Own(start, end) => end - start,
            Piece::Shared(b) => b.len(),
        }
    }

    pub fn clear(&mut self) {
        self.own.clear();
        self.pieces.clear();
        self.len = 0;
        self.done = 0;
        self.offset = 0;
        // What a connection writes of its own once media flows is a 12-byte header per
        // message: a burst (the protocol answers and sequence headers at the start, a large
        // command answer) does not stay held by every viewer.
        if self.own.capacity() > OWN_KEPT {
            self.own.shrink_to(OWN_KEPT);
        }
    }

    /// The bytes waiting, in order, as one buffer (tests).
    #[cfg(test)]
    fn contiguous(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.len);
        for piece in &self.pieces {
            match piece {
                Piece::Own(start, end) => all.extend_from_slice(&self.own[*start..*end]),
                Piece::Shared(b) => all.extend_from_slice(b),
            }
        }
        all
    }
}

/// The payload of a [`chunk_body`] again (the rare message that needs the extended timestamp).
fn unchunk(csid: u8, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(body.len());
    let mut rest = body;
    loop {
        let take = rest.len().min(CHUNK_SIZE);
        payload.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        match rest.split_first() {
            Some((&b, tail)) if b == 0xC0 | csid => rest = tail,
            _ => break,
        }
    }
    payload
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::chunk_io::ChunkDeserializer;

    /// What a client's deserializer makes of the bytes: (timestamp, type, stream, payload).
    fn read_back(bytes: &[u8]) -> Vec<(u32, u8, u32, Vec<u8>)> {
        let mut de = ChunkDeserializer::new();
        de.set_max_chunk_size(CHUNK_SIZE).expect("a valid chunk size");
        let mut out = Vec::new();
        let mut input = bytes;
        while let Some(payload) = de.get_next_message(input).expect("well-formed chunks") {
            out.push((
                payload.timestamp.value,
                payload.type_id,
                payload.message_stream_id,
                payload.data.to_vec(),
            ));
            input = &[];
        }
        out
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + len) as u8).collect()
    }

    /// Shared chunks behind each viewer's own header read back as the message, for payloads
    /// around the chunk size and for timestamps on both sides of the extended field.
    #[test]
    fn a_shared_message_reads_back_whole() {
        for len in [
            1,
            100,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            3 * CHUNK_SIZE,
            3 * CHUNK_SIZE + 17,
        ] {
            let data = payload(len);
            let body = chunk_body(VIDEO_CSID, &data);
            for ts in [0, 40, MAX_SHORT_TIMESTAMP - 1, MAX_SHORT_TIMESTAMP, u32::MAX] {
                let mut out = Outbox::default();
                out.shared_message(VIDEO_CSID, ts, VIDEO_TYPE, 1, data.len(), &body);
                out.message(AUDIO_CSID, ts, AUDIO_TYPE, 1, &data[..len.min(300)]);
                let bytes = out.contiguous();
                assert_eq!(bytes.len(), out.len());
                let messages = read_back(&bytes);
                assert_eq!(
                    messages,
                    vec![
                        (ts, VIDEO_TYPE, 1, data.clone()),
                        (ts, AUDIO_TYPE, 1, data[..len.min(300)].to_vec())
                    ],
                    "payload of {len} bytes at {ts} ms"
                );
            }
        }
    }

    /// Consecutive messages on one chunk stream, each with its full header, read back in order
    /// whatever the deserializer saw before.
    #[test]
    fn messages_in_a_row_read_back_in_order() {
        let mut out = Outbox::default();
        let mut expected = Vec::new();
        for (i, len) in [5000usize, 10, 9000, 4096].into_iter().enumerate() {
            let data = payload(len);
            let ts = i as u32 * 33;
            out.shared_message(VIDEO_CSID, ts, VIDEO_TYPE, 1, len, &chunk_body(VIDEO_CSID, &data));
            expected.push((ts, VIDEO_TYPE, 1, data));
        }
        assert_eq!(read_back(&out.contiguous()), expected);
    }

    /// A payload RTMP cannot announce (over 2^24 - 1 bytes) is not sent at all, shared or not:
    /// cut with a wrong length it would break the viewer's chunk stream for good.
    #[test]
    fn a_message_over_the_length_field_is_left_out() {
        let data = vec![7u8; MAX_MESSAGE_LEN + 1];
        let mut out = Outbox::default();
        out.message(VIDEO_CSID, 0, VIDEO_TYPE, 1, &data);
        out.shared_message(VIDEO_CSID, 0, VIDEO_TYPE, 1, data.len(), &chunk_body(VIDEO_CSID, &data));
        assert!(out.is_empty());
        out.message(AUDIO_CSID, 5, AUDIO_TYPE, 1, b"after");
        assert_eq!(
            read_back(&out.contiguous()),
            vec![(5, AUDIO_TYPE, 1, b"after".to_vec())]
        );
    }

    #[test]
    fn own_bytes_join_one_piece_and_clear_forgets_them() {
        let mut out = Outbox::default();
        out.push_own(b"ab");
        out.push_own(b"cd");
        out.push_shared(Bytes::from_static(b"ef"));
        out.push_own(b"gh");
        assert_eq!(out.pieces.len(), 3);
        assert_eq!(out.contiguous(), b"abcdefgh");
        out.clear();
        assert!(out.is_empty());
        assert!(out.contiguous().is_empty());
    }

    #[test]
    fn unchunk_undoes_chunk_body() {
        for len in [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 5 * CHUNK_SIZE + 3] {
            let data = payload(len);
            assert_eq!(unchunk(AUDIO_CSID, &chunk_body(AUDIO_CSID, &data)), data);
        }
    }

    /// The bytes reach a real socket whole and in order when the kernel takes them in parts.
    #[tokio::test]
    async fn a_large_outbox_is_written_whole_over_a_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut out = Outbox::default();
        let shared = Bytes::from(payload(300_000));
        // More than a loopback socket's buffer takes at once, so the write is cut in parts.
        for i in 0..200u32 {
            out.push_own(&i.to_be_bytes());
            out.push_shared(shared.slice(i as usize * 1000..i as usize * 1000 + 1000));
            out.push_shared(Bytes::from(payload(30_000)));
        }
        let expected = out.contiguous();
        let reader = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut socket, &mut got)
                .await
                .unwrap();
            got
        });
        let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (_read, mut write) = socket.into_split();
        // As a connection does: what the socket takes at once, then the rest waiting for it.
        if !out.try_write(&write).unwrap() {
            out.write_to(&mut write).await.unwrap();
        }
        assert!(out.is_empty());
        drop(write);
        drop(_read);
        assert_eq!(reader.await.unwrap(), expected);
    }
}
