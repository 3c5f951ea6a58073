//! ISO BMFF boxes (ISO/IEC 14496-12 §4.2): walking a run of boxes and reading their fields.
//!
//! Nothing here trusts a length: every size and count is checked against the bytes that are
//! really there before it is used, so a truncated or hostile file gives an error, never a panic
//! or a huge allocation.

use std::fmt;

use super::Mp4Error;

/// A four-character box type.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FourCc(pub [u8; 4]);

impl fmt::Display for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{self}'")
    }
}

/// One box: its type, its payload (after the header) and where the box starts in the file.
#[derive(Debug, Clone, Copy)]
pub struct Mp4Box<'a> {
    pub kind: FourCc,
    pub body: &'a [u8],
    /// File offset of the box's first byte (its size field).
    pub offset: u64,
    /// File offset of `body[0]`.
    pub body_offset: u64,
}

/// The boxes of `data` (which starts at file offset `base`), in order.
///
/// A box whose size runs past the end is an error at its offset; iteration stops after the
/// first error.
pub fn boxes(data: &[u8], base: u64) -> Boxes<'_> {
    Boxes {
        data,
        pos: 0,
        base,
        failed: false,
    }
}

#[derive(Debug)]
pub struct Boxes<'a> {
    data: &'a [u8],
    pos: usize,
    base: u64,
    failed: bool,
}

impl<'a> Iterator for Boxes<'a> {
    type Item = Result<Mp4Box<'a>, Mp4Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let result = self.read_one();
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }
}

impl<'a> Boxes<'a> {
    fn read_one(&mut self) -> Result<Mp4Box<'a>, Mp4Error> {
        let rest = &self.data[self.pos..];
        let offset = self.base + self.pos as u64;
        let Some((head, _)) = rest.split_first_chunk::<8>() else {
            return Err(Mp4Error::at(
                offset,
                format!("{} stray bytes where a box header (8 bytes) should be", rest.len()),
            ));
        };
        let size32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let kind = FourCc([head[4], head[5], head[6], head[7]]);
        let (size, mut header_len) = match size32 {
            // Extends to the end of the enclosing data (only legal for the last box).
            0 => (rest.len() as u64, 8usize),
            1 => {
                let Some(large) = rest.get(8..16) else {
                    return Err(Mp4Error::at(
                        offset,
                        format!("box {kind} has a 64-bit size that is cut off"),
                    ));
                };
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(large);
                (u64::from_be_bytes(bytes), 16)
            }
            n => (u64::from(n), 8),
        };
        if &kind.0 == b"uuid" {
            header_len += 16;
        }
        if size < header_len as u64 {
            return Err(Mp4Error::at(
                offset,
                format!("box {kind} declares {size} bytes, less than its own {header_len}-byte header"),
            ));
        }
        if size > rest.len() as u64 {
            return Err(Mp4Error::at(
                offset,
                format!(
                    "box {kind} declares {size} bytes but only {} remain: the file is truncated",
                    rest.len()
                ),
            ));
        }
        // size <= rest.len(), so it fits in usize.
        let size = size as usize;
        let body = &rest[header_len..size];
        self.pos += size;
        Ok(Mp4Box {
            kind,
            body,
            offset,
            body_offset: offset + header_len as u64,
        })
    }
}

impl<'a> Mp4Box<'a> {
    pub fn is(&self, kind: &[u8; 4]) -> bool {
        &self.kind.0 == kind
    }

    /// The first child of this box with type `kind`, reading children from the start of the
    /// body.
    pub fn child(&self, kind: &[u8; 4]) -> Result<Option<Mp4Box<'a>>, Mp4Error> {
        child_in(self.body, self.body_offset, kind)
    }

    /// Like [`child`](Self::child), but the child must be there.
    pub fn require(&self, kind: &[u8; 4]) -> Result<Mp4Box<'a>, Mp4Error> {
        self.child(kind)?
            .ok_or_else(|| Mp4Error::at(self.offset, format!("box {} has no {} box", self.kind, FourCc(*kind))))
    }

    /// A reader over the body of a full box (§4.2.2), positioned after version and flags.
    pub fn full(&self) -> Result<(u8, Reader<'a>), Mp4Error> {
        let mut reader = Reader::new(self.body, self.body_offset, self.kind);
        let version = reader.u8()?;
        reader.skip(3)?;
        Ok((version, reader))
    }

    pub fn reader(&self) -> Reader<'a> {
        Reader::new(self.body, self.body_offset, self.kind)
    }
}

/// The first box of type `kind` among the boxes of `data`.
pub fn child_in<'a>(data: &'a [u8], base: u64, kind: &[u8; 4]) -> Result<Option<Mp4Box<'a>>, Mp4Error> {
    for found in boxes(data, base) {
        let found = found?;
        if found.is(kind) {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Big-endian fields of one box, each read checked against the box's end.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    base: u64,
    kind: FourCc,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8], base: u64, kind: FourCc) -> Self {
        Reader {
            data,
            pos: 0,
            base,
            kind,
        }
    }

    /// File offset of the next byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }

    pub fn error(&self, message: impl Into<String>) -> Mp4Error {
        Mp4Error::at(self.offset(), format!("{}: {}", self.kind, message.into()))
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Mp4Error> {
        if n > self.remaining() {
            return Err(self.error(format!("needs {n} more bytes, only {} left", self.remaining())));
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), Mp4Error> {
        self.bytes(n).map(|_| ())
    }

    pub fn u8(&mut self) -> Result<u8, Mp4Error> {
        Ok(self.bytes(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, Mp4Error> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, Mp4Error> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i32(&mut self) -> Result<i32, Mp4Error> {
        Ok(self.u32()? as i32)
    }

    pub fn u64(&mut self) -> Result<u64, Mp4Error> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub fn i64(&mut self) -> Result<i64, Mp4Error> {
        Ok(self.u64()? as i64)
    }

    /// An entry count whose entries take `entry_len` bytes each: checked against the bytes
    /// left, so a lying count cannot make anyone allocate for it.
    pub fn count(&mut self, entry_len: usize) -> Result<usize, Mp4Error> {
        let count = self.u32()?;
        let needed = u64::from(count) * entry_len as u64;
        if needed > self.remaining() as u64 {
            return Err(self.error(format!(
                "{count} entries of {entry_len} bytes need {needed} bytes, only {} left",
                self.remaining()
            )));
        }
        Ok(count as usize)
    }
}
