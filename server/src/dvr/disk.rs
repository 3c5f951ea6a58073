//! How full the filesystem under an archive is, for `dvr ROOT DEPTH PERCENT%;` (the vendor's
//! `disk_usage_limit`). The recorder asks a [`DiskProbe`]; production uses [`Statvfs`], tests a
//! probe of their own, so the policy in [`super::archive`] is tested without filling a disk.

use std::fmt::Debug;
use std::io;
use std::path::Path;

/// The fill of one filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes in use (by anyone).
    pub used: u64,
    /// Bytes an unprivileged writer may still take: the blocks reserved for root are counted
    /// neither here nor in `used`, as `df` does, so 100% means "ordinary writers are out of
    /// space".
    pub available: u64,
}

impl DiskUsage {
    /// Percent in use, as `df` shows it (rounded down here; only for logs).
    pub fn percent(&self) -> u64 {
        let size = u128::from(self.used) + u128::from(self.available);
        if size == 0 {
            return 0;
        }
        (u128::from(self.used) * 100 / size) as u64
    }

    /// Bytes to free so that at most `limit` percent is in use: deleting a file moves its
    /// bytes from `used` to `available`, so the size stays the same.
    pub fn excess_over(&self, limit: u8) -> u64 {
        let size = u128::from(self.used) + u128::from(self.available);
        let allowed = size * u128::from(limit.min(100)) / 100;
        u64::try_from(u128::from(self.used).saturating_sub(allowed)).unwrap_or(u64::MAX)
    }
}

/// Reads the fill of the filesystem holding a directory. Called from the blocking pool.
pub trait DiskProbe: Send + Sync + Debug {
    fn usage(&self, dir: &Path) -> io::Result<DiskUsage>;
}

/// The real filesystem, through `statvfs(3)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Statvfs;

impl DiskProbe for Statvfs {
    fn usage(&self, dir: &Path) -> io::Result<DiskUsage> {
        let s = rustix::fs::statvfs(dir)?;
        let unit = s.f_frsize.max(1);
        Ok(DiskUsage {
            used: s.f_blocks.saturating_sub(s.f_bfree).saturating_mul(unit),
            available: s.f_bavail.saturating_mul(unit),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excess_is_what_brings_the_fill_down_to_the_limit() {
        let u = DiskUsage {
            used: 960,
            available: 40,
        };
        assert_eq!(u.percent(), 96);
        assert_eq!(u.excess_over(95), 10);
        assert_eq!(u.excess_over(96), 0);
        assert_eq!(u.excess_over(100), 0);
        assert_eq!(u.excess_over(0), 960);
        let empty = DiskUsage { used: 0, available: 0 };
        assert_eq!((empty.percent(), empty.excess_over(50)), (0, 0));
    }

    /// The real call on the filesystem of the temp folder: it answers, with a size that is not
    /// zero and a fill between 0 and 100%.
    #[test]
    fn statvfs_reads_the_temp_folder() {
        let u = Statvfs
            .usage(&std::env::temp_dir())
            .expect("statvfs on the temp folder");
        assert!(u.used + u.available > 0, "{u:?}");
        assert!(u.percent() <= 100, "{u:?}");
        let missing = std::env::temp_dir().join(format!("usher-no-such-{}", uuid::Uuid::new_v4().simple()));
        assert_eq!(
            Statvfs.usage(&missing).map_err(|e| e.kind()),
            Err(io::ErrorKind::NotFound)
        );
    }
}
