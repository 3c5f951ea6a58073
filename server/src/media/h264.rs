//! The little of H.264 (ISO/IEC 14496-10) that packaging needs: Annex B NAL unit boundaries and
//! the access unit delimiter.

/// An access unit delimiter NAL unit (nal_unit_type 9, §7.3.2.4) with a 4-byte start code.
/// `primary_pic_type` 7 claims nothing about the slice types, so it is right for any picture.
/// ISO/IEC 13818-1 §2.14.1 requires one at the start of every AVC access unit carried in TS.
pub const ACCESS_UNIT_DELIMITER: [u8; 6] = [0x00, 0x00, 0x00, 0x01, 0x09, 0xF0];

/// nal_unit_type values used here (ISO/IEC 14496-10 Table 7-1).
pub mod nal_type {
    pub const IDR_SLICE: u8 = 5;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
    pub const ACCESS_UNIT_DELIMITER: u8 = 9;
}

/// The NAL units of an Annex B byte stream, without their start codes.
pub fn nal_units(annex_b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = match find_start_code(annex_b) {
        Some((_, after)) => &annex_b[after..],
        None => &[][..],
    };
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (unit, next) = match find_start_code(rest) {
            Some((at, after)) => (&rest[..at], &rest[after..]),
            None => (rest, &[][..]),
        };
        rest = next;
        // Trailing zero bytes belong to the next start code (§B.2 trailing_zero_8bits).
        let end = unit.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        Some(&unit[..end])
    })
}

/// nal_unit_type of a NAL unit without start code.
pub fn nal_unit_type(unit: &[u8]) -> Option<u8> {
    unit.first().map(|header| header & 0x1F)
}

/// Whether the byte stream's first NAL unit is an access unit delimiter.
pub fn starts_with_access_unit_delimiter(annex_b: &[u8]) -> bool {
    nal_units(annex_b).next().and_then(nal_unit_type) == Some(nal_type::ACCESS_UNIT_DELIMITER)
}

/// Position of the first `00 00 01` and the index just after it.
fn find_start_code(data: &[u8]) -> Option<(usize, usize)> {
    data.windows(3).position(|w| w == [0, 0, 1]).map(|at| (at, at + 3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let stream = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4];
        let units: Vec<&[u8]> = nal_units(&stream).collect();
        assert_eq!(units, vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4][..]]);
        let types: Vec<_> = units.into_iter().filter_map(nal_unit_type).collect();
        assert_eq!(types, vec![nal_type::SPS, nal_type::PPS, nal_type::IDR_SLICE]);
    }

    #[test]
    fn recognises_a_leading_delimiter() {
        assert!(starts_with_access_unit_delimiter(&ACCESS_UNIT_DELIMITER));
        assert!(!starts_with_access_unit_delimiter(&[0, 0, 1, 0x67]));
        assert!(!starts_with_access_unit_delimiter(&[]));
    }
}
