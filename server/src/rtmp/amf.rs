//! How deeply an AMF0 byte sequence nests, read the way `rml_amf0` reads it.
//!
//! `rml_amf0` decodes objects and arrays by recursion, so a command of a few kilobytes made of
//! nested arrays would overflow the task's stack and abort the whole server. This scanner walks
//! the same grammar without recursion and reports the depth, so the connection can be refused
//! before the decoder sees it. It must not stop earlier than the decoder on any input: it follows
//! the decoder's reading rules exactly (end marker ends a value list, short reads at the end).

/// AMF0 markers (AMF0 specification §2.1).
mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0A;
}

/// What is being read inside a container.
enum Frame {
    /// Object or ECMA array: properties until an empty name plus the end marker.
    Object,
    /// Strict array: this many values still to read.
    Array(u32),
}

struct Cursor<'a> {
    data: &'a [u8],
}

impl Cursor<'_> {
    /// Reads `n` bytes; `None` if fewer remain (the decoder then fails with an I/O error).
    fn exact(&mut self, n: usize) -> Option<&[u8]> {
        if self.data.len() < n {
            return None;
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Some(head)
    }

    /// The decoder reads string bodies with a single `read`, which stops short at the end.
    fn up_to(&mut self, n: usize) {
        let n = n.min(self.data.len());
        self.data = &self.data[n..];
    }

    fn u16(&mut self) -> Option<u16> {
        self.exact(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.exact(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// The greatest nesting depth of containers in `data` (0 for plain values). Stops where the
/// decoder would stop with an error or at the end of the list.
pub(crate) fn max_depth(data: &[u8]) -> usize {
    let mut cur = Cursor { data };
    let mut stack: Vec<Frame> = Vec::new();
    let mut deepest = 0;
    loop {
        // Where are we: at the top level, in an object (a property comes next), or in an array.
        match stack.last_mut() {
            None => {}
            Some(Frame::Object) => {
                let Some(label_len) = cur.u16() else { return deepest };
                if label_len == 0 {
                    // Empty name: the end marker must follow, else the decoder fails.
                    match cur.exact(1) {
                        Some([marker::OBJECT_END]) => {
                            stack.pop();
                            continue;
                        }
                        _ => return deepest,
                    }
                }
                cur.up_to(usize::from(label_len));
            }
            Some(Frame::Array(0)) => {
                stack.pop();
                continue;
            }
            Some(Frame::Array(left)) => *left -= 1,
        }
        // One value.
        let Some(&[m]) = cur.exact(1) else {
            // End of input: the top level ends; in an object the decoder fails; in an array it
            // ends the array.
            return deepest;
        };
        let in_object = matches!(stack.last(), Some(Frame::Object));
        match m {
            marker::OBJECT_END => {
                if in_object {
                    // A property without value: the decoder fails.
                    return deepest;
                }
                match stack.pop() {
                    // Ends the top-level list.
                    None => return deepest,
                    // Ends the array early.
                    Some(_) => continue,
                }
            }
            marker::NUMBER => {
                if cur.exact(8).is_none() {
                    return deepest;
                }
            }
            marker::BOOLEAN => {
                if cur.exact(1).is_none() {
                    return deepest;
                }
            }
            marker::NULL | marker::UNDEFINED => {}
            marker::STRING => {
                let Some(len) = cur.u16() else { return deepest };
                cur.up_to(usize::from(len));
            }
            marker::OBJECT => stack.push(Frame::Object),
            marker::ECMA_ARRAY => {
                if cur.u32().is_none() {
                    return deepest;
                }
                stack.push(Frame::Object);
            }
            marker::STRICT_ARRAY => {
                let Some(count) = cur.u32() else { return deepest };
                stack.push(Frame::Array(count));
            }
            _ => return deepest,
        }
        deepest = deepest.max(stack.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::rml_amf0::{self, Amf0Value};
    use std::collections::HashMap;

    fn nested(depth: usize) -> Amf0Value {
        let mut v = Amf0Value::Number(1.0);
        for i in 0..depth {
            v = if i % 2 == 0 {
                Amf0Value::StrictArray(vec![v, Amf0Value::Null])
            } else {
                Amf0Value::Object(HashMap::from([("k".to_string(), v)]))
            };
        }
        v
    }

    #[test]
    fn depth_of_encoded_values() {
        for depth in 0..6 {
            let bytes = rml_amf0::serialize(&vec![Amf0Value::Utf8String("x".into()), nested(depth)]).unwrap();
            assert_eq!(max_depth(&bytes), depth, "depth {depth}");
        }
        let ecma = [0x08, 0, 0, 0, 1, 0, 1, b'a', 0x0A, 0, 0, 0, 1, 0x05, 0, 0, 0x09];
        assert_eq!(max_depth(&ecma), 2);
    }

    #[test]
    fn a_deep_attack_is_measured_without_recursion() {
        let bytes: Vec<u8> = std::iter::repeat_n([0x0A, 0, 0, 0, 1], 100_000).flatten().collect();
        assert_eq!(max_depth(&bytes), 100_000);
    }

    #[test]
    fn garbage_ends_the_scan() {
        assert_eq!(max_depth(&[0x03, 0, 1]), 1);
        assert_eq!(max_depth(&[0x11, 0x03, 0x03]), 0);
        assert_eq!(max_depth(&[]), 0);
        // An end marker at the top level ends the list: what follows is never decoded.
        assert_eq!(max_depth(&[0x09, 0x0A, 0, 0, 0, 1, 0x0A, 0, 0, 0, 1]), 0);
    }
}
