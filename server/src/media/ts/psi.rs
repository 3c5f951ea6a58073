//! Program specific information: the PAT and PMT sections (ISO/IEC 13818-1 §2.4.4).
//!
//! Both are rebuilt identically for every segment, so version_number stays 0: a reader that
//! joins at any segment sees the same tables.

use super::crc::crc32_mpeg2;

/// table_id values (ISO/IEC 13818-1 Table 2-31).
const PAT_TABLE_ID: u8 = 0x00;
const PMT_TABLE_ID: u8 = 0x02;

/// One elementary stream of the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EsEntry {
    /// stream_type (ISO/IEC 13818-1 Table 2-34).
    pub stream_type: u8,
    pub pid: u16,
}

/// program_association_section (§2.4.4.3) listing one program.
pub fn pat_section(transport_stream_id: u16, program_number: u16, pmt_pid: u16) -> Vec<u8> {
    let mut body = Vec::with_capacity(9);
    body.extend_from_slice(&transport_stream_id.to_be_bytes());
    body.extend_from_slice(&version_and_section_numbers());
    body.extend_from_slice(&program_number.to_be_bytes());
    body.extend_from_slice(&(0xE000 | pmt_pid).to_be_bytes());
    long_section(PAT_TABLE_ID, &body)
}

/// TS_program_map_section (§2.4.4.8) with no descriptors.
pub fn pmt_section(program_number: u16, pcr_pid: u16, streams: &[EsEntry]) -> Vec<u8> {
    let mut body = Vec::with_capacity(9 + 5 * streams.len());
    body.extend_from_slice(&program_number.to_be_bytes());
    body.extend_from_slice(&version_and_section_numbers());
    body.extend_from_slice(&(0xE000 | pcr_pid).to_be_bytes());
    // reserved '1111', program_info_length 0
    body.extend_from_slice(&0xF000u16.to_be_bytes());
    for stream in streams {
        body.push(stream.stream_type);
        body.extend_from_slice(&(0xE000 | stream.pid).to_be_bytes());
        // reserved '1111', ES_info_length 0
        body.extend_from_slice(&0xF000u16.to_be_bytes());
    }
    long_section(PMT_TABLE_ID, &body)
}

/// reserved '11', version_number 0, current_next_indicator 1; section_number 0 of 0.
fn version_and_section_numbers() -> [u8; 3] {
    [0xC1, 0x00, 0x00]
}

/// Frames a section body after table_id with section_syntax_indicator 1 and appends the CRC.
fn long_section(table_id: u8, body: &[u8]) -> Vec<u8> {
    // section_length counts the bytes after itself, CRC included. Our tables stay tiny (a few
    // streams), far below the 1021-byte limit, so the 12-bit field cannot overflow.
    let section_length = (body.len() + 4) as u16;
    let mut section = Vec::with_capacity(3 + body.len() + 4);
    section.push(table_id);
    // section_syntax_indicator 1, '0', reserved '11'
    section.extend_from_slice(&(0xB000 | (section_length & 0x0FFF)).to_be_bytes());
    section.extend_from_slice(body);
    let crc = crc32_mpeg2(&section);
    section.extend_from_slice(&crc.to_be_bytes());
    section
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pat_matches_a_known_good_table() {
        // What ffmpeg's mpegts muxer writes for one program on PMT PID 0x1000.
        assert_eq!(
            pat_section(1, 1, 0x1000),
            [
                0x00, 0xB0, 0x0D, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01, 0xF0, 0x00, 0x2A, 0xB1, 0x04, 0xB2
            ]
        );
    }

    #[test]
    fn crc_over_a_section_and_its_crc_is_zero() {
        // Running the CRC over a section including its CRC yields 0 (Annex A property).
        let pmt = pmt_section(
            1,
            0x100,
            &[EsEntry {
                stream_type: 0x1B,
                pid: 0x100,
            }],
        );
        assert_eq!(crc32_mpeg2(&pmt), 0);
    }
}
