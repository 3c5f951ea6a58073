//! Live segments sent without a copy from user space (Linux).
//!
//! A live segment is written once and read by every viewer of the stream. [`shared_bytes`] puts it
//! in its own memory file (`memfd_create`), mapped read-only into the process, and hands out
//! [`Bytes`] over that mapping; every mapping is registered here by address. [`ZeroCopyStream`]
//! wraps a connection's socket: when a buffer it is asked to write lies inside a registered
//! mapping, it sends it with `sendfile(2)` from the memory file, so the kernel attaches the
//! pages to the socket instead of copying them in (what nginx does for files). Everything else
//! is written as usual, and a segment that could not be mapped is ordinary memory.
//!
//! Safety of the lookup: a buffer handed to `poll_write*` is borrowed from its owner for the
//! call, so a mapping found for its address is alive (not unmapped, its file not closed) until
//! the call returns. Mappings are read-only once filled, so what the kernel sends is what was
//! written.

use std::collections::BTreeMap;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::RwLock;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Smaller segments are not worth a memory file (and a page of rounding).
const MIN_MAPPED: usize = 16 * 1024;
/// Mapped segments at once, at most: each holds a file descriptor and a mapping. Beyond this
/// (thousands of live streams) new segments stay in ordinary memory and are copied as before.
const MAX_MAPPED: usize = 1024;

/// Registered mappings: start address → (length, memory file).
static MAPPINGS: RwLock<BTreeMap<usize, (usize, RawFd)>> = RwLock::new(BTreeMap::new());

/// One segment's memory file and its read-only mapping.
struct Mapping {
    ptr: *const u8,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is read-only after creation and never moves; the pointer is only read.
unsafe impl Send for Mapping {}
// SAFETY: as above: shared reads of immutable memory.
unsafe impl Sync for Mapping {}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for the life of `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if let Ok(mut map) = MAPPINGS.write() {
            map.remove(&(self.ptr as usize));
        }
        // SAFETY: unmapping exactly what `map` mapped; no slice of it outlives `self` (every
        // `Bytes` over it holds `self`).
        unsafe {
            libc::munmap(self.ptr as *mut libc::c_void, self.len);
        }
        // The file closes with `fd`; pages still queued on sockets stay referenced by them.
    }
}

fn last_error(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn map(data: &[u8]) -> io::Result<Mapping> {
    let len = data.len();
    // SAFETY: a constant NUL-terminated name; flags are valid.
    let raw = unsafe { libc::memfd_create(c"usher-segment".as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(last_error("memfd_create"));
    }
    // SAFETY: `raw` is a new descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let size = libc::off_t::try_from(len).map_err(|_| io::Error::other("segment too large"))?;
    // SAFETY: plain system calls on our descriptor.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
        return Err(last_error("ftruncate"));
    }
    // SAFETY: a new shared mapping of the whole file; checked for MAP_FAILED below.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(last_error("mmap"));
    }
    // SAFETY: `ptr` maps `len` writable bytes that nothing else references yet.
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr(), ptr as *mut u8, len);
        libc::mprotect(ptr, len, libc::PROT_READ);
    }
    Ok(Mapping {
        ptr: ptr as *const u8,
        len,
        fd,
    })
}

/// A copy of `data` as [`Bytes`] that [`ZeroCopyStream`] sends without copying; `data` itself
/// when it is small, too many segments are mapped, or it cannot be mapped (logged at debug).
pub fn shared_bytes(data: Bytes) -> Bytes {
    if data.len() < MIN_MAPPED || MAPPINGS.read().map_or(true, |m| m.len() >= MAX_MAPPED) {
        return data;
    }
    match map(&data) {
        Ok(mapping) => {
            let (start, len, fd) = (mapping.ptr as usize, mapping.len, mapping.fd.as_raw_fd());
            match MAPPINGS.write() {
                Ok(mut map) => {
                    map.insert(start, (len, fd));
                }
                Err(_) => return data,
            }
            Bytes::from_owner(mapping)
        }
        Err(error) => {
            tracing::debug!(%error, "segment kept in ordinary memory");
            data
        }
    }
}

/// The memory file and offset behind `buf`, if it lies inside a registered mapping.
fn mapped(buf: &[u8]) -> Option<(RawFd, usize)> {
    if buf.is_empty() {
        return None;
    }
    let at = buf.as_ptr() as usize;
    let map = MAPPINGS.read().ok()?;
    let (&start, &(len, fd)) = map.range(..=at).next_back()?;
    (at + buf.len() <= start + len).then_some((fd, at - start))
}

/// A TCP connection whose writes send registered segment memory with `sendfile(2)`.
#[derive(Debug)]
pub struct ZeroCopyStream {
    inner: TcpStream,
}

impl ZeroCopyStream {
    pub fn new(inner: TcpStream) -> ZeroCopyStream {
        ZeroCopyStream { inner }
    }

    /// Runs the non-blocking system call `call` on the socket once it is writable, again after
    /// each `WouldBlock`; `call` returns what the system call returned (bytes or -1).
    fn poll_write_with(&self, cx: &mut Context<'_>, mut call: impl FnMut(RawFd) -> isize) -> Poll<io::Result<usize>> {
        let socket = self.inner.as_raw_fd();
        loop {
            ready!(self.inner.poll_write_ready(cx))?;
            let sent = self.inner.try_io(Interest::WRITABLE, || {
                usize::try_from(call(socket)).map_err(|_| io::Error::last_os_error())
            });
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }

    /// Sends up to `len` bytes of memory file `fd` from `offset`.
    fn poll_sendfile(&self, cx: &mut Context<'_>, fd: RawFd, offset: usize, len: usize) -> Poll<io::Result<usize>> {
        let Ok(offset) = libc::off_t::try_from(offset) else {
            return Poll::Ready(Err(io::Error::other("offset too large")));
        };
        self.poll_write_with(cx, |socket| {
            let mut off = offset;
            // SAFETY: both descriptors are open for this call (see the module's comment).
            unsafe { libc::sendfile(socket, fd, &mut off, len) }
        })
    }

    /// Writes `bufs` with `sendmsg(2)` and MSG_MORE: the segment that follows joins them in
    /// the same packets (the response head is not sent alone).
    fn poll_send_more(&self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |socket| {
            // SAFETY: a zeroed msghdr is valid; the iovecs point into `bufs`, which outlive the
            // call, and IoSlice has iovec's layout on Unix.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = bufs.len() as _;
            // SAFETY: as above.
            unsafe { libc::sendmsg(socket, &msg, libc::MSG_MORE | libc::MSG_NOSIGNAL) }
        })
    }
}

impl AsyncRead for ZeroCopyStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ZeroCopyStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match mapped(buf) {
            Some((fd, offset)) => self.poll_sendfile(cx, fd, offset, buf.len()),
            None => Pin::new(&mut self.inner).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let Some((first, (fd, offset))) = bufs.iter().enumerate().find_map(|(i, b)| Some((i, mapped(b)?))) else {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        };
        if first > 0 {
            // What precedes the segment, marked as more to come.
            return self.poll_send_more(cx, &bufs[..first]);
        }
        self.poll_sendfile(cx, fd, offset, bufs[0].len())
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn large_data_is_mapped_small_data_is_not_and_slices_find_their_offset() {
        let data = pattern(100_000);
        let bytes = shared_bytes(Bytes::from(data.clone()));
        assert_eq!(&bytes[..], &data[..]);
        let (_, offset) = mapped(&bytes[1000..2000]).expect("a slice of a mapping is found");
        assert_eq!(offset, 1000);
        assert!(mapped(&data[..]).is_none(), "ordinary memory is not");
        let small = shared_bytes(Bytes::from(pattern(100)));
        assert!(mapped(&small).is_none());
        let start = bytes.as_ptr() as usize;
        drop(bytes);
        assert!(
            !MAPPINGS.read().unwrap().contains_key(&start),
            "unregistered when dropped"
        );
    }

    #[tokio::test]
    async fn a_mapped_segment_and_the_bytes_around_it_arrive_in_order() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let segment = shared_bytes(Bytes::from(pattern(3_000_000)));
        assert!(mapped(&segment).is_some(), "a large segment is mapped");
        let expected: Vec<u8> = [&b"HEAD"[..], &segment[..], &b"TAIL"[..], &segment[10..20]].concat();
        let reader = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            socket.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut stream = ZeroCopyStream::new(TcpStream::connect(addr).await.unwrap());
        let parts: [&[u8]; 4] = [b"HEAD", &segment, b"TAIL", &segment[10..20]];
        let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let mut left: &mut [IoSlice<'_>] = &mut slices;
        while !left.is_empty() {
            let n = futures::future::poll_fn(|cx| Pin::new(&mut stream).poll_write_vectored(cx, left))
                .await
                .unwrap();
            IoSlice::advance_slices(&mut left, n);
        }
        stream.write_all(&segment[5..70_000]).await.unwrap();
        stream.shutdown().await.unwrap();
        drop(stream);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), expected.len() + 69_995);
        assert!(got[..expected.len()] == expected[..], "the bytes arrive as written");
        assert!(got[expected.len()..] == segment[5..70_000]);
    }
}
