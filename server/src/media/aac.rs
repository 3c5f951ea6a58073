//! AAC track configuration and ADTS framing.
//!
//! MPEG-TS carries AAC as ADTS (stream type 0x0F, ISO/IEC 13818-1 Table 2-34), so every raw frame
//! gets the 7-byte header of ISO/IEC 14496-3 §1.A.2.2 built from the track's AudioSpecificConfig.

/// One silent AAC-LC frame for a mono channel (a single channel element holding zero spectra).
/// ffmpeg decodes it as 1024 samples of silence.
pub const SILENT_MONO_FRAME: [u8; 4] = [0x01, 0x18, 0x20, 0x07];

/// Samples per AAC-LC frame (ISO/IEC 14496-3 §4.5.1.1, `frameLengthFlag` = 0).
pub const SAMPLES_PER_FRAME: u64 = 1024;

/// Sampling frequencies by index (ISO/IEC 14496-3 §1.6.3.4, Table 1.18).
const SAMPLING_FREQUENCIES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000, 7_350,
];

/// ADTS header length without CRC (`protection_absent` = 1).
pub const ADTS_HEADER_LEN: usize = 7;

/// The 13-bit `aac_frame_length` bounds header plus payload.
const MAX_ADTS_FRAME_LEN: usize = (1 << 13) - 1;

/// The fields of an AudioSpecificConfig that ADTS repeats in every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacConfig {
    /// Audio object type; 2 is AAC-LC. ADTS can only say 1..=4 (its 2-bit `profile` is type - 1).
    pub object_type: u8,
    pub sampling_frequency_index: u8,
    pub channel_configuration: u8,
}

impl AacConfig {
    /// AAC-LC, 48 kHz, mono: the fake source's audio (AudioSpecificConfig `11 88`).
    pub const LC_48K_MONO: AacConfig = AacConfig {
        object_type: 2,
        sampling_frequency_index: 3,
        channel_configuration: 1,
    };

    /// Reads the leading fields of an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1), as found
    /// in an RTMP AAC sequence header. Explicit frequencies and extended object types are not
    /// representable in ADTS and give `None`.
    pub fn from_audio_specific_config(asc: &[u8]) -> Option<AacConfig> {
        let [first, second, ..] = *asc else {
            return None;
        };
        let object_type = first >> 3;
        let sampling_frequency_index = ((first & 0x07) << 1) | (second >> 7);
        let channel_configuration = (second >> 3) & 0x0F;
        let config = AacConfig {
            object_type,
            sampling_frequency_index,
            channel_configuration,
        };
        config.is_adts_representable().then_some(config)
    }

    /// The two-byte AudioSpecificConfig for this configuration.
    pub fn audio_specific_config(&self) -> [u8; 2] {
        [
            (self.object_type << 3) | (self.sampling_frequency_index >> 1),
            ((self.sampling_frequency_index & 1) << 7) | (self.channel_configuration << 3),
        ]
    }

    /// Samples per second, if the index names one.
    pub fn sample_rate(&self) -> Option<u32> {
        SAMPLING_FREQUENCIES
            .get(usize::from(self.sampling_frequency_index))
            .copied()
    }

    fn is_adts_representable(&self) -> bool {
        (1..=4).contains(&self.object_type) && self.sample_rate().is_some() && self.channel_configuration <= 7
    }

    /// The ADTS header for a raw frame of `payload_len` bytes, or `None` if the frame is too long
    /// for the 13-bit length field or the config cannot be expressed in ADTS.
    pub fn adts_header(&self, payload_len: usize) -> Option<[u8; ADTS_HEADER_LEN]> {
        let frame_len = payload_len.checked_add(ADTS_HEADER_LEN)?;
        if frame_len > MAX_ADTS_FRAME_LEN || !self.is_adts_representable() {
            return None;
        }
        let profile = self.object_type - 1;
        let channels = self.channel_configuration;
        // Fits in 13 bits, checked above.
        let len = frame_len as u16;
        Some([
            // syncword 0xFFF, ID 0 (MPEG-4), layer 00, protection_absent 1
            0xFF,
            0xF1,
            (profile << 6) | (self.sampling_frequency_index << 2) | (channels >> 2),
            ((channels & 0x03) << 6) | ((len >> 11) as u8 & 0x03),
            (len >> 3) as u8,
            ((len & 0x07) as u8) << 5 | 0x1F,
            // adts_buffer_fullness 0x7FF (variable rate), one raw data block
            0xFC,
        ])
    }
}

/// One ADTS frame header (ISO/IEC 14496-3 §1.A.2.2.1) as read from a byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsHeader {
    pub config: AacConfig,
    /// 7, or 9 with a CRC (`protection_absent` = 0).
    pub header_len: usize,
    /// `aac_frame_length`: header plus raw data.
    pub frame_len: usize,
    /// `number_of_raw_data_blocks_in_frame` + 1; almost always 1.
    pub raw_data_blocks: u8,
}

impl AdtsHeader {
    /// Reads the header at the start of `data`; `None` unless the syncword is there, the layer
    /// is 0 and the frame length covers at least the header. The frame itself may be longer
    /// than `data`.
    pub fn parse(data: &[u8]) -> Option<AdtsHeader> {
        let header: &[u8; ADTS_HEADER_LEN] = data.first_chunk()?;
        if header[0] != 0xFF || header[1] & 0xF6 != 0xF0 {
            return None;
        }
        let header_len = if header[1] & 0x01 == 1 {
            ADTS_HEADER_LEN
        } else {
            ADTS_HEADER_LEN + 2
        };
        let config = AacConfig {
            object_type: (header[2] >> 6) + 1,
            sampling_frequency_index: (header[2] >> 2) & 0x0F,
            channel_configuration: ((header[2] & 0x01) << 2) | (header[3] >> 6),
        };
        let frame_len =
            (usize::from(header[3] & 0x03) << 11) | (usize::from(header[4]) << 3) | usize::from(header[5] >> 5);
        if frame_len < header_len || config.sample_rate().is_none() {
            return None;
        }
        Some(AdtsHeader {
            config,
            header_len,
            frame_len,
            raw_data_blocks: (header[6] & 0x03) + 1,
        })
    }
}

/// Duration of `frames` AAC frames at `sample_rate`, in 90 kHz ticks, rounded down.
pub fn frames_to_ticks(frames: u64, sample_rate: u32) -> u64 {
    let ticks = u128::from(frames) * u128::from(SAMPLES_PER_FRAME) * 90_000 / u128::from(sample_rate.max(1));
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lc_48k_mono_is_config_11_88() {
        assert_eq!(AacConfig::LC_48K_MONO.audio_specific_config(), [0x11, 0x88]);
        assert_eq!(
            AacConfig::from_audio_specific_config(&[0x11, 0x88]),
            Some(AacConfig::LC_48K_MONO)
        );
        assert_eq!(AacConfig::LC_48K_MONO.sample_rate(), Some(48_000));
    }

    #[test]
    fn adts_header_for_the_silent_frame() {
        // Cross-checked against ffmpeg's ADTS muxer output for the same frame.
        let header = AacConfig::LC_48K_MONO.adts_header(SILENT_MONO_FRAME.len());
        assert_eq!(header, Some([0xFF, 0xF1, 0x4C, 0x40, 0x01, 0x7F, 0xFC]));
    }

    #[test]
    fn adts_headers_parse_back() {
        let header = AacConfig::LC_48K_MONO
            .adts_header(SILENT_MONO_FRAME.len())
            .expect("fits");
        let parsed = AdtsHeader::parse(&header).expect("own header parses");
        assert_eq!(parsed.config, AacConfig::LC_48K_MONO);
        assert_eq!(
            (parsed.header_len, parsed.frame_len, parsed.raw_data_blocks),
            (7, 11, 1)
        );
        // With CRC (protection_absent 0): the header is 9 bytes.
        let mut with_crc = header;
        with_crc[1] = 0xF0;
        assert_eq!(AdtsHeader::parse(&with_crc).map(|h| h.header_len), Some(9));
        // Stereo 44.1 kHz, as ffmpeg writes for a typical music file.
        let stereo = AacConfig {
            object_type: 2,
            sampling_frequency_index: 4,
            channel_configuration: 2,
        };
        let header = stereo.adts_header(300).expect("fits");
        assert_eq!(
            AdtsHeader::parse(&header).map(|h| (h.config, h.frame_len)),
            Some((stereo, 307))
        );
    }

    #[test]
    fn adts_parse_refuses_what_is_not_a_header() {
        assert_eq!(AdtsHeader::parse(&[0xFF, 0xF1, 0x4C, 0x40]), None, "too short");
        assert_eq!(
            AdtsHeader::parse(&[0xFF, 0xE1, 0x4C, 0x40, 0x01, 0x7F, 0xFC]),
            None,
            "no syncword"
        );
        assert_eq!(
            AdtsHeader::parse(&[0xFF, 0xF3, 0x4C, 0x40, 0x01, 0x7F, 0xFC]),
            None,
            "layer 1"
        );
        assert_eq!(
            AdtsHeader::parse(&[0xFF, 0xF1, 0x4C, 0x40, 0x00, 0x1F, 0xFC]),
            None,
            "length 0"
        );
        assert_eq!(
            AdtsHeader::parse(&[0xFF, 0xF1, 0x7C, 0x40, 0x01, 0x7F, 0xFC]),
            None,
            "frequency index 15"
        );
    }

    #[test]
    fn frame_durations_in_ticks() {
        assert_eq!(frames_to_ticks(1, 48_000), 1_920);
        assert_eq!(frames_to_ticks(3, 44_100), 6_269);
        assert_eq!(frames_to_ticks(1, 0), 92_160_000, "no division by zero");
    }

    #[test]
    fn adts_rejects_what_it_cannot_say() {
        assert_eq!(AacConfig::LC_48K_MONO.adts_header(8_185), None);
        assert!(AacConfig::LC_48K_MONO.adts_header(8_184).is_some());
        // Object type 5 (SBR) has no ADTS profile.
        assert_eq!(AacConfig::from_audio_specific_config(&[0x29, 0x88]), None);
        assert_eq!(AacConfig::from_audio_specific_config(&[0x11]), None);
    }
}
