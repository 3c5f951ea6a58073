//! Program specific information: the PAT and PMT sections (ISO/IEC 13818-1 §2.4.4).
//!
//! Both are rebuilt identically for every segment, so a reader that joins at any segment sees the
//! same tables. The PAT never changes (version_number 0); the PMT's version_number goes up when
//! a publisher's track set changes, so that readers of a continuous feed take the new table.

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
    body.extend_from_slice(&version_and_section_numbers(0));
    body.extend_from_slice(&program_number.to_be_bytes());
    body.extend_from_slice(&(0xE000 | pmt_pid).to_be_bytes());
    long_section(PAT_TABLE_ID, &body)
}

/// TS_program_map_section (§2.4.4.8) with no descriptors; `version` is taken modulo 32.
pub fn pmt_section(program_number: u16, version: u8, pcr_pid: u16, streams: &[EsEntry]) -> Vec<u8> {
    let mut body = Vec::with_capacity(9 + 5 * streams.len());
    body.extend_from_slice(&program_number.to_be_bytes());
    body.extend_from_slice(&version_and_section_numbers(version));
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

/// reserved '11', version_number, current_next_indicator 1; section_number 0 of 0.
fn version_and_section_numbers(version: u8) -> [u8; 3] {
    [0xC1 | ((version & 0x1F) << 1), 0x00, 0x00]
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

/// The longest section a PAT or PMT may be (§2.4.4.3, §2.4.4.8: section_length ≤ 1021).
pub const MAX_SECTION_LEN: usize = 3 + 1021;

/// One long-form section as received: its table_id, version and the bytes between the common
/// header and the CRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedSection<'a> {
    pub table_id: u8,
    /// table_id_extension: transport_stream_id (PAT) or program_number (PMT).
    pub id: u16,
    pub version: u8,
    pub body: &'a [u8],
}

/// Total length of the section starting at `data` (table_id, length field, rest), once the
/// first three bytes are there.
pub fn section_total_len(data: &[u8]) -> Option<usize> {
    let &[_, hi, lo] = data.first_chunk::<3>()?;
    Some(3 + usize::from(u16::from_be_bytes([hi & 0x0F, lo])))
}

/// Checks a whole long-form section (syntax indicator 1, CRC-32 of Annex A) and splits it.
/// Sections with current_next_indicator 0 are not in force yet and are refused too.
pub fn parse_section(section: &[u8]) -> Result<ReceivedSection<'_>, &'static str> {
    let total = section_total_len(section).ok_or("section cut short")?;
    if section.len() != total || !(3 + 5 + 4..=MAX_SECTION_LEN).contains(&total) {
        return Err("bad section_length");
    }
    if section[1] & 0x80 == 0 {
        return Err("not a long-form section");
    }
    if crc32_mpeg2(section) != 0 {
        return Err("section CRC mismatch");
    }
    if section[5] & 0x01 == 0 {
        return Err("section not yet current");
    }
    Ok(ReceivedSection {
        table_id: section[0],
        id: u16::from_be_bytes([section[3], section[4]]),
        version: (section[5] >> 1) & 0x1F,
        body: &section[8..total - 4],
    })
}

/// The PMT PID of the first program in a PAT body (program_number 0 is the network PID).
pub fn parse_pat(section: &ReceivedSection<'_>) -> Option<u16> {
    if section.table_id != PAT_TABLE_ID {
        return None;
    }
    section
        .body
        .chunks_exact(4)
        .find(|entry| entry[..2] != [0, 0])
        .map(|entry| u16::from_be_bytes([entry[2], entry[3]]) & 0x1FFF)
}

/// The elementary streams of a PMT body, in table order; `None` if the body is malformed.
pub fn parse_pmt(section: &ReceivedSection<'_>) -> Option<Vec<EsEntry>> {
    if section.table_id != PMT_TABLE_ID {
        return None;
    }
    let info_len = usize::from(u16::from_be_bytes([*section.body.get(2)?, *section.body.get(3)?]) & 0x0FFF);
    let mut rest = section.body.get(4 + info_len..)?;
    let mut streams = Vec::new();
    while !rest.is_empty() {
        let &[stream_type, pid_hi, pid_lo, len_hi, len_lo] = rest.first_chunk::<5>()?;
        let es_info_len = usize::from(u16::from_be_bytes([len_hi, len_lo]) & 0x0FFF);
        streams.push(EsEntry {
            stream_type,
            pid: u16::from_be_bytes([pid_hi, pid_lo]) & 0x1FFF,
        });
        rest = rest.get(5 + es_info_len..)?;
    }
    Some(streams)
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
    fn written_tables_parse_back() {
        let pat = pat_section(1, 1, 0x1000);
        let parsed = parse_section(&pat).expect("valid PAT");
        assert_eq!((parsed.table_id, parsed.id, parsed.version), (PAT_TABLE_ID, 1, 0));
        assert_eq!(parse_pat(&parsed), Some(0x1000));

        let streams = [
            EsEntry {
                stream_type: 0x1B,
                pid: 0x100,
            },
            EsEntry {
                stream_type: 0x0F,
                pid: 0x101,
            },
        ];
        let pmt = pmt_section(1, 7, 0x100, &streams);
        let parsed = parse_section(&pmt).expect("valid PMT");
        assert_eq!(parsed.version, 7);
        assert_eq!(parse_pmt(&parsed), Some(streams.to_vec()));
        assert_eq!(parse_pat(&parsed), None, "not a PAT");
    }

    #[test]
    fn damaged_sections_are_refused() {
        let mut pat = pat_section(1, 1, 0x1000);
        pat[9] ^= 1;
        assert_eq!(parse_section(&pat), Err("section CRC mismatch"));
        assert_eq!(parse_section(&pat[..10]), Err("bad section_length"));
        assert_eq!(parse_section(&[0]), Err("section cut short"));
    }

    #[test]
    fn crc_over_a_section_and_its_crc_is_zero() {
        // Running the CRC over a section including its CRC yields 0 (Annex A property).
        let pmt = pmt_section(
            1,
            0,
            0x100,
            &[EsEntry {
                stream_type: 0x1B,
                pid: 0x100,
            }],
        );
        assert_eq!(crc32_mpeg2(&pmt), 0);
    }
}
