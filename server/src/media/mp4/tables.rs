//! The sample tables of a track (ISO/IEC 14496-12 §8.5–8.7): sizes, chunk offsets, the
//! sample-to-chunk map, decoding deltas, composition offsets and sync samples, expanded into one
//! [`Sample`] per sample.

use super::boxes::Mp4Box;
use super::{MAX_SAMPLES, Mp4Error};

/// One sample of a track, in the track's timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// File offset of the sample's bytes.
    pub offset: u64,
    pub size: u32,
    /// Decoding time (sum of the `stts` deltas before it).
    pub dts: u64,
    /// Composition minus decoding time (`ctts`); may be negative (version 1, or a version 0
    /// box written with signed values, which ffmpeg and others read as signed too).
    pub composition_offset: i64,
    /// A sync sample (`stss`; every sample when the box is absent).
    pub sync: bool,
    /// How long the sample lasts (its `stts` delta).
    pub duration: u32,
}

/// The sample table boxes of one track, found in its `stbl`.
#[derive(Debug, Clone, Copy)]
pub struct SampleTables<'a> {
    pub stbl: Mp4Box<'a>,
}

impl SampleTables<'_> {
    /// Every sample of the track, in decoding order.
    pub fn samples(&self) -> Result<Vec<Sample>, Mp4Error> {
        let sizes = self.sizes()?;
        let count = sizes.len();
        let offsets = self.offsets(&sizes)?;
        let (dts, durations) = self.decoding_times(count)?;
        let composition = self.composition_offsets(count)?;
        let sync = self.sync_samples(count)?;
        Ok((0..count)
            .map(|i| Sample {
                offset: offsets[i],
                size: sizes[i],
                dts: dts[i],
                composition_offset: composition.as_ref().map_or(0, |c| c[i]),
                sync: sync.as_ref().is_none_or(|s| s[i]),
                duration: durations[i],
            })
            .collect())
    }

    /// `stsz` (§8.7.3.2) or `stz2` (§8.7.3.3).
    fn sizes(&self) -> Result<Vec<u32>, Mp4Error> {
        if let Some(stsz) = self.stbl.child(b"stsz")? {
            let (_, mut r) = stsz.full()?;
            let constant = r.u32()?;
            let count = r.u32()?;
            check_count(&r, count)?;
            if constant != 0 {
                return Ok(vec![constant; count as usize]);
            }
            let needed = u64::from(count) * 4;
            if needed > r.remaining() as u64 {
                return Err(r.error(format!(
                    "{count} sample sizes need {needed} bytes, only {} left",
                    r.remaining()
                )));
            }
            return (0..count).map(|_| r.u32()).collect();
        }
        if let Some(stz2) = self.stbl.child(b"stz2")? {
            let (_, mut r) = stz2.full()?;
            r.skip(3)?;
            let field = r.u8()?;
            let count = r.u32()?;
            check_count(&r, count)?;
            if !matches!(field, 4 | 8 | 16) {
                return Err(r.error(format!("field_size {field} (must be 4, 8 or 16)")));
            }
            let needed = (u64::from(count) * u64::from(field)).div_ceil(8);
            if needed > r.remaining() as u64 {
                return Err(r.error(format!(
                    "{count} sample sizes need {needed} bytes, only {} left",
                    r.remaining()
                )));
            }
            let data = r.bytes(needed as usize)?;
            return Ok((0..count as usize)
                .map(|i| match field {
                    4 => {
                        let byte = data[i / 2];
                        u32::from(if i % 2 == 0 { byte >> 4 } else { byte & 0x0F })
                    }
                    8 => u32::from(data[i]),
                    _ => u32::from(u16::from_be_bytes([data[2 * i], data[2 * i + 1]])),
                })
                .collect());
        }
        Err(Mp4Error::at(
            self.stbl.offset,
            "stbl has neither stsz nor stz2 (no sample sizes)",
        ))
    }

    /// Sample offsets from `stco`/`co64` (§8.7.5) and `stsc` (§8.7.4).
    fn offsets(&self, sizes: &[u32]) -> Result<Vec<u64>, Mp4Error> {
        let count = sizes.len();
        if count == 0 {
            return Ok(Vec::new());
        }
        let chunks: Vec<u64> = if let Some(stco) = self.stbl.child(b"stco")? {
            let (_, mut r) = stco.full()?;
            let n = r.count(4)?;
            (0..n).map(|_| r.u32().map(u64::from)).collect::<Result<_, _>>()?
        } else if let Some(co64) = self.stbl.child(b"co64")? {
            let (_, mut r) = co64.full()?;
            let n = r.count(8)?;
            (0..n).map(|_| r.u64()).collect::<Result<_, _>>()?
        } else {
            return Err(Mp4Error::at(
                self.stbl.offset,
                "stbl has neither stco nor co64 (no chunk offsets)",
            ));
        };
        let stsc = self.stbl.require(b"stsc")?;
        let (_, mut r) = stsc.full()?;
        let n = r.count(12)?;
        let mut runs = Vec::with_capacity(n);
        for i in 0..n {
            let first_chunk = r.u32()?;
            let per_chunk = r.u32()?;
            r.skip(4)?; // sample_description_index: one description is all we read
            let previous = runs.last().map_or(0, |&(first, _)| first);
            if first_chunk == 0 || first_chunk <= previous {
                return Err(r.error(format!(
                    "entry {i}: first_chunk {first_chunk} does not follow {previous} (must increase from 1)"
                )));
            }
            runs.push((first_chunk, per_chunk));
        }
        if runs.is_empty() {
            return Err(r.error(format!("no entries, but the track has {count} samples")));
        }
        let mut offsets = Vec::with_capacity(count);
        let mut run = 0usize;
        'chunks: for (index, &chunk_offset) in chunks.iter().enumerate() {
            let chunk_number = index as u64 + 1;
            while run + 1 < runs.len() && u64::from(runs[run + 1].0) <= chunk_number {
                run += 1;
            }
            if u64::from(runs[run].0) > chunk_number {
                // Chunks before the first run's first_chunk hold no samples.
                continue;
            }
            let mut offset = chunk_offset;
            for _ in 0..runs[run].1 {
                let Some(&size) = sizes.get(offsets.len()) else {
                    break 'chunks;
                };
                offsets.push(offset);
                offset = offset.saturating_add(u64::from(size));
            }
            if offsets.len() == count {
                break;
            }
        }
        if offsets.len() < count {
            return Err(Mp4Error::at(
                stsc.offset,
                format!(
                    "stsc and the chunk offsets place only {} of {count} samples",
                    offsets.len()
                ),
            ));
        }
        Ok(offsets)
    }

    /// `stts` (§8.6.1.2): decoding times and durations.
    fn decoding_times(&self, count: usize) -> Result<(Vec<u64>, Vec<u32>), Mp4Error> {
        let stts = self.stbl.require(b"stts")?;
        let (_, mut r) = stts.full()?;
        let n = r.count(8)?;
        let mut dts = Vec::with_capacity(count);
        let mut durations = Vec::with_capacity(count);
        let mut time = 0u64;
        for _ in 0..n {
            let run = r.u32()?;
            let delta = r.u32()?;
            for _ in 0..run {
                if dts.len() == count {
                    break;
                }
                dts.push(time);
                durations.push(delta);
                time = time.saturating_add(u64::from(delta));
            }
        }
        if dts.len() < count {
            return Err(Mp4Error::at(
                stts.offset,
                format!("stts gives times to {} of {count} samples", dts.len()),
            ));
        }
        Ok((dts, durations))
    }

    /// `ctts` (§8.6.1.3), if present. Samples it does not reach get 0.
    fn composition_offsets(&self, count: usize) -> Result<Option<Vec<i64>>, Mp4Error> {
        let Some(ctts) = self.stbl.child(b"ctts")? else {
            return Ok(None);
        };
        let (_, mut r) = ctts.full()?;
        let n = r.count(8)?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..n {
            let run = r.u32()?;
            let offset = i64::from(r.i32()?);
            for _ in 0..run {
                if out.len() == count {
                    break;
                }
                out.push(offset);
            }
        }
        if out.len() < count {
            tracing::debug!(
                covered = out.len(),
                count,
                "ctts covers fewer samples than the track has"
            );
            out.resize(count, 0);
        }
        Ok(Some(out))
    }

    /// `stss` (§8.6.2), if present: which samples are sync samples.
    fn sync_samples(&self, count: usize) -> Result<Option<Vec<bool>>, Mp4Error> {
        let Some(stss) = self.stbl.child(b"stss")? else {
            return Ok(None);
        };
        let (_, mut r) = stss.full()?;
        let n = r.count(4)?;
        let mut sync = vec![false; count];
        for _ in 0..n {
            let number = r.u32()? as usize;
            // Sample numbers are 1-based; ones past the end are ignored.
            if let Some(slot) = number.checked_sub(1).and_then(|i| sync.get_mut(i)) {
                *slot = true;
            }
        }
        Ok(Some(sync))
    }
}

fn check_count(r: &super::boxes::Reader<'_>, count: u32) -> Result<(), Mp4Error> {
    if count as usize > MAX_SAMPLES {
        return Err(r.error(format!(
            "{count} samples: more than the {MAX_SAMPLES} this server reads"
        )));
    }
    Ok(())
}
