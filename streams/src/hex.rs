//! Hex text for digests, seals and signatures: how the contract writes
//! bytes in JSON, configuration and tables.

/// `bytes` as lower-case hex digits.
pub fn encode(bytes: &[u8]) -> String {
    // By table, not `format!` per byte: the embedded bus writes every event
    // body through here, and a formatted String per byte cost the shop a
    // tenth of its CPU under load.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// The bytes `text` spells in hex digits (either case); `None` when it is
/// not hex or of odd length.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks_exact(2)
        .map(|pair| Some((digit(pair[0])? << 4) | digit(pair[1])?))
        .collect()
}

/// The value of one hex digit, either case.
fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_and_refuses_what_is_not_hex() {
        assert_eq!(super::encode(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(super::decode("00ABff"), Some(vec![0, 0xab, 0xff]));
        let every: Vec<u8> = (0..=255).collect();
        assert_eq!(super::decode(&super::encode(&every)), Some(every));
        assert_eq!(super::encode(&[0x0f, 0xf0]), "0ff0");
        for bad in ["0", "zz", "é1", "0g", "g0", "éé"] {
            assert_eq!(super::decode(bad), None, "{bad}");
        }
    }
}
