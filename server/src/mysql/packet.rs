//! MySQL client/server protocol packets (protocol 4.1, text protocol): framing, the v10
//! handshake, the client's handshake response, OK / ERR / EOF and text result sets.
//!
//! Every packet is `length: u24 LE, sequence: u8, payload`. A command from the client starts
//! a new sequence at 0; each reply packet takes the next number.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest payload read from a client. Queries here are short; a bigger packet is refused.
pub const MAX_PAYLOAD: usize = 1 << 20;

pub const CLIENT_LONG_PASSWORD: u32 = 0x0000_0001;
pub const CLIENT_FOUND_ROWS: u32 = 0x0000_0002;
pub const CLIENT_LONG_FLAG: u32 = 0x0000_0004;
pub const CLIENT_CONNECT_WITH_DB: u32 = 0x0000_0008;
pub const CLIENT_NO_SCHEMA: u32 = 0x0000_0010;
pub const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
pub const CLIENT_TRANSACTIONS: u32 = 0x0000_2000;
pub const CLIENT_SECURE_CONNECTION: u32 = 0x0000_8000;
pub const CLIENT_MULTI_RESULTS: u32 = 0x0002_0000;
pub const CLIENT_PLUGIN_AUTH: u32 = 0x0008_0000;
pub const CLIENT_CONNECT_ATTRS: u32 = 0x0010_0000;
pub const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 0x0020_0000;

/// What the server offers. No TLS, no `CLIENT_DEPRECATE_EOF`: result sets end with classic
/// EOF packets, which every client reads.
pub const SERVER_CAPABILITIES: u32 = CLIENT_LONG_PASSWORD
    | CLIENT_FOUND_ROWS
    | CLIENT_LONG_FLAG
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_NO_SCHEMA
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_CONNECT_ATTRS
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;

pub const SERVER_STATUS_AUTOCOMMIT: u16 = 0x0002;

/// utf8_general_ci, for text columns and the handshake.
pub const CHARSET_UTF8: u16 = 33;
/// binary, for numeric columns.
pub const CHARSET_BINARY: u16 = 63;

pub const TYPE_LONGLONG: u8 = 0x08;
pub const TYPE_VAR_STRING: u8 = 0xfd;

pub const FLAG_NOT_NULL: u16 = 0x0001;
pub const FLAG_NUM: u16 = 0x8000;

pub const NATIVE_PASSWORD: &str = "mysql_native_password";

/// Why reading a packet stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection closed")]
    Closed,
    #[error("packet of {0} bytes is larger than the {MAX_PAYLOAD} allowed")]
    TooLarge(usize),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads one packet: (sequence, payload).
pub async fn read_packet<R: AsyncRead + Unpin>(r: &mut R) -> Result<(u8, Vec<u8>), ReadError> {
    let mut header = [0u8; 4];
    match r.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(ReadError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    if len > MAX_PAYLOAD {
        return Err(ReadError::TooLarge(len));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok((header[3], payload))
}

/// Packets of one reply, numbered from the sequence after the client's packet.
#[derive(Debug)]
pub struct Reply {
    seq: u8,
    buf: Vec<u8>,
}

impl Reply {
    /// A reply to a client packet that had sequence `client_seq`.
    pub fn after(client_seq: u8) -> Reply {
        Reply {
            seq: client_seq.wrapping_add(1),
            buf: Vec::new(),
        }
    }

    pub fn packet(&mut self, payload: &[u8]) {
        // Replies are built here and are far below 16 MiB; larger ones would need splitting.
        let len = payload.len().min(0xff_ffff);
        self.buf
            .extend_from_slice(&[len as u8, (len >> 8) as u8, (len >> 16) as u8, self.seq]);
        self.buf.extend_from_slice(&payload[..len]);
        self.seq = self.seq.wrapping_add(1);
    }

    /// The sequence number the client's next packet of this exchange must carry.
    pub fn next_seq(&self) -> u8 {
        self.seq
    }

    /// The packets as they go on the wire.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub async fn send<W: AsyncWrite + Unpin>(self, w: &mut W) -> io::Result<()> {
        w.write_all(&self.buf).await?;
        w.flush().await
    }

    pub fn ok(&mut self) {
        let mut p = vec![0x00, 0, 0];
        p.extend_from_slice(&SERVER_STATUS_AUTOCOMMIT.to_le_bytes());
        p.extend_from_slice(&0u16.to_le_bytes());
        self.packet(&p);
    }

    pub fn err(&mut self, code: u16, state: &str, message: &str) {
        let mut p = vec![0xff];
        p.extend_from_slice(&code.to_le_bytes());
        p.push(b'#');
        let mut state: Vec<u8> = state.bytes().take(5).collect();
        state.resize(5, b'0');
        p.extend_from_slice(&state);
        p.extend_from_slice(message.as_bytes());
        self.packet(&p);
    }

    pub fn eof(&mut self) {
        let mut p = vec![0xfe];
        p.extend_from_slice(&0u16.to_le_bytes());
        p.extend_from_slice(&SERVER_STATUS_AUTOCOMMIT.to_le_bytes());
        self.packet(&p);
    }

    /// A whole text result set: column count, definitions, EOF, rows, EOF.
    pub fn result_set(&mut self, columns: &[ColumnDef], rows: &[Vec<Option<String>>]) {
        let mut p = Vec::new();
        put_lenenc_int(&mut p, columns.len() as u64);
        self.packet(&p);
        for c in columns {
            self.packet(&c.encode());
        }
        self.eof();
        for row in rows {
            let mut p = Vec::new();
            for value in row {
                match value {
                    Some(v) => put_lenenc_str(&mut p, v.as_bytes()),
                    None => p.push(0xfb),
                }
            }
            self.packet(&p);
        }
        self.eof();
    }
}

/// One column of a result set (`Protocol::ColumnDefinition41`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    pub schema: &'static str,
    pub table: &'static str,
    pub name: String,
    pub numeric: bool,
    pub nullable: bool,
}

impl ColumnDef {
    /// A text column outside any table (variables, SHOW output).
    pub fn text(name: impl Into<String>) -> ColumnDef {
        ColumnDef {
            schema: "",
            table: "",
            name: name.into(),
            numeric: false,
            nullable: true,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut p = Vec::new();
        put_lenenc_str(&mut p, b"def");
        put_lenenc_str(&mut p, self.schema.as_bytes());
        put_lenenc_str(&mut p, self.table.as_bytes());
        put_lenenc_str(&mut p, self.table.as_bytes());
        put_lenenc_str(&mut p, self.name.as_bytes());
        put_lenenc_str(&mut p, self.name.as_bytes());
        p.push(0x0c);
        let (charset, length, ty) = if self.numeric {
            (CHARSET_BINARY, 20u32, TYPE_LONGLONG)
        } else {
            (CHARSET_UTF8, 255 * 3, TYPE_VAR_STRING)
        };
        p.extend_from_slice(&charset.to_le_bytes());
        p.extend_from_slice(&length.to_le_bytes());
        p.push(ty);
        let mut flags = 0u16;
        if !self.nullable {
            flags |= FLAG_NOT_NULL;
        }
        if self.numeric {
            flags |= FLAG_NUM;
        }
        p.extend_from_slice(&flags.to_le_bytes());
        p.push(0); // decimals
        p.extend_from_slice(&[0, 0]);
        p
    }
}

pub fn put_lenenc_int(p: &mut Vec<u8>, n: u64) {
    match n {
        0..=250 => p.push(n as u8),
        251..=0xffff => {
            p.push(0xfc);
            p.extend_from_slice(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xff_ffff => {
            p.push(0xfd);
            p.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        }
        _ => {
            p.push(0xfe);
            p.extend_from_slice(&n.to_le_bytes());
        }
    }
}

pub fn put_lenenc_str(p: &mut Vec<u8>, s: &[u8]) {
    put_lenenc_int(p, s.len() as u64);
    p.extend_from_slice(s);
}

/// The server's greeting (`Protocol::HandshakeV10`).
pub fn handshake_v10(server_version: &str, connection_id: u32, scramble: &[u8; 20]) -> Vec<u8> {
    let mut p = vec![10];
    p.extend_from_slice(server_version.as_bytes());
    p.push(0);
    p.extend_from_slice(&connection_id.to_le_bytes());
    p.extend_from_slice(&scramble[..8]);
    p.push(0);
    p.extend_from_slice(&(SERVER_CAPABILITIES as u16).to_le_bytes());
    p.push(CHARSET_UTF8 as u8);
    p.extend_from_slice(&SERVER_STATUS_AUTOCOMMIT.to_le_bytes());
    p.extend_from_slice(&((SERVER_CAPABILITIES >> 16) as u16).to_le_bytes());
    p.push(21); // length of the scramble with its terminating NUL
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(&scramble[8..]);
    p.push(0);
    p.extend_from_slice(NATIVE_PASSWORD.as_bytes());
    p.push(0);
    p
}

/// `AuthSwitchRequest`: asks the client to answer with `mysql_native_password`.
pub fn auth_switch(scramble: &[u8; 20]) -> Vec<u8> {
    let mut p = vec![0xfe];
    p.extend_from_slice(NATIVE_PASSWORD.as_bytes());
    p.push(0);
    p.extend_from_slice(scramble);
    p.push(0);
    p
}

/// The client's `HandshakeResponse41`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    pub user: String,
    pub auth: Vec<u8>,
    pub database: Option<String>,
    pub plugin: Option<String>,
}

/// A cursor over a payload; every read checks bounds.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let slice = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn nul_str(&mut self) -> Option<&'a [u8]> {
        let rest = self.data.get(self.pos..)?;
        let end = rest.iter().position(|b| *b == 0)?;
        self.pos += end + 1;
        Some(&rest[..end])
    }

    fn lenenc_int(&mut self) -> Option<u64> {
        Some(match self.u8()? {
            n @ 0..=250 => u64::from(n),
            0xfc => u64::from(u16::from_le_bytes(self.take(2)?.try_into().ok()?)),
            0xfd => {
                let b = self.take(3)?;
                u64::from(b[0]) | u64::from(b[1]) << 8 | u64::from(b[2]) << 16
            }
            0xfe => u64::from_le_bytes(self.take(8)?.try_into().ok()?),
            _ => return None,
        })
    }

    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }
}

impl HandshakeResponse {
    /// Parses the response; `Err` names what is missing or malformed.
    pub fn parse(payload: &[u8]) -> Result<HandshakeResponse, &'static str> {
        let mut c = Cursor { data: payload, pos: 0 };
        let caps = u32::from_le_bytes(
            c.take(4)
                .ok_or("short handshake response")?
                .try_into()
                .map_err(|_| "caps")?,
        );
        if caps & CLIENT_PROTOCOL_41 == 0 {
            return Err("the client does not speak protocol 4.1");
        }
        c.take(4 + 1 + 23).ok_or("short handshake response")?;
        let user = c.nul_str().ok_or("no user name")?;
        let auth = if caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            let n = c.lenenc_int().ok_or("bad auth data length")?;
            let n = usize::try_from(n).map_err(|_| "bad auth data length")?;
            c.take(n).ok_or("auth data cut short")?
        } else if caps & CLIENT_SECURE_CONNECTION != 0 {
            let n = c.u8().ok_or("no auth data length")?;
            c.take(usize::from(n)).ok_or("auth data cut short")?
        } else {
            c.nul_str().ok_or("no auth data")?
        };
        let database = if caps & CLIENT_CONNECT_WITH_DB != 0 && !c.at_end() {
            Some(c.nul_str().ok_or("bad database name")?)
        } else {
            None
        };
        let plugin = if caps & CLIENT_PLUGIN_AUTH != 0 && !c.at_end() {
            // Some clients end the packet without the terminating NUL.
            Some(c.nul_str().unwrap_or_else(|| {
                let rest = &payload[c.pos..];
                c.pos = payload.len();
                rest
            }))
        } else {
            None
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Ok(HandshakeResponse {
            capabilities: caps,
            user: text(user),
            auth: auth.to_vec(),
            database: database.map(text).filter(|d| !d.is_empty()),
            plugin: plugin.map(text),
        })
    }
}

/// `mysql_native_password`: the client sends `SHA1(pw) XOR SHA1(scramble ‖ SHA1(SHA1(pw)))`.
/// Recovers `SHA1(pw)` from the response and checks that its hash is `SHA1(SHA1(pw))`.
pub fn native_password_ok(scramble: &[u8; 20], password: &str, response: &[u8]) -> bool {
    use sha1::{Digest, Sha1};
    if password.is_empty() {
        return response.is_empty();
    }
    if response.len() != 20 {
        return false;
    }
    let stage1 = Sha1::digest(password.as_bytes());
    let stage2 = Sha1::digest(stage1);
    let mut h = Sha1::new();
    h.update(scramble);
    h.update(stage2);
    let mask = h.finalize();
    let candidate: Vec<u8> = response.iter().zip(mask.iter()).map(|(a, b)| a ^ b).collect();
    let check = Sha1::digest(&candidate);
    crate::context::constant_time_eq(&check, &stage2)
}

/// What a client computes for `password` (tests and the raw client in them).
pub fn native_password_response(scramble: &[u8; 20], password: &str) -> Vec<u8> {
    use sha1::{Digest, Sha1};
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha1::digest(password.as_bytes());
    let stage2 = Sha1::digest(stage1);
    let mut h = Sha1::new();
    h.update(scramble);
    h.update(stage2);
    let mask = h.finalize();
    stage1.iter().zip(mask.iter()).map(|(a, b)| a ^ b).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_password_round_trip() {
        let scramble = *b"abcdefghijklmnopqrst";
        let response = native_password_response(&scramble, "secret");
        assert!(native_password_ok(&scramble, "secret", &response));
        assert!(!native_password_ok(&scramble, "other", &response));
        assert!(!native_password_ok(&scramble, "secret", &response[..19]));
        assert!(!native_password_ok(&scramble, "secret", &[]));
    }

    #[test]
    fn lenenc_ints() {
        for (n, len) in [(0u64, 1), (250, 1), (251, 3), (65_535, 3), (65_536, 4), (1 << 24, 9)] {
            let mut p = Vec::new();
            put_lenenc_int(&mut p, n);
            assert_eq!(p.len(), len, "{n}");
            let mut c = Cursor { data: &p, pos: 0 };
            assert_eq!(c.lenenc_int(), Some(n));
        }
    }

    #[test]
    fn handshake_response_parses_and_rejects_garbage() {
        let mut p = Vec::new();
        let caps = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH | CLIENT_CONNECT_WITH_DB;
        p.extend_from_slice(&caps.to_le_bytes());
        p.extend_from_slice(&[0; 4 + 1 + 23]);
        p.extend_from_slice(b"admin\0");
        p.push(3);
        p.extend_from_slice(b"xyz");
        p.extend_from_slice(b"usher\0mysql_native_password\0");
        let r = HandshakeResponse::parse(&p).expect("parses");
        assert_eq!(r.user, "admin");
        assert_eq!(r.auth, b"xyz");
        assert_eq!(r.database.as_deref(), Some("usher"));
        assert_eq!(r.plugin.as_deref(), Some(NATIVE_PASSWORD));
        for cut in 0..p.len() - 30 {
            let _ = HandshakeResponse::parse(&p[..cut]);
        }
        assert!(HandshakeResponse::parse(&[0xff; 3]).is_err());
    }
}
