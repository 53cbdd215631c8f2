//! The on-disk encoding of batch payloads and label sets.
//!
//! All integers are unsigned LEB128 varints; signed integers are zigzag-mapped
//! first. A batch payload (`batches.payload`) is:
//!
//! ```text
//! payload  = varint(sample_count) sample*
//! sample   = zigzag_varint(series_id - previous_series_id)   ; previous starts at 0
//!            value
//! value    = tag:u8 [body]
//!   tag 0x00..=0x7F  the integer value `tag` itself (0.0 ..= 127.0), no body
//!   tag 0x80         body: 8 bytes, the f64 bits, little endian
//!   tag 0x81         body: zigzag_varint(i) ; value = i as f64   (|i| < 2^53)
//!   tag 0x82..=0x8A  body: zigzag_varint(m) ; value = m as f64 / 10^(tag-0x81)
//! ```
//!
//! The encoder picks the shortest form whose decoding reproduces the value's
//! bits exactly (it checks by decoding), so `-0.0`, NaN payloads, infinities and
//! subnormals round-trip bit for bit (they take the 0x80 form). Typical GPU
//! readings are small integers, integers (bytes, hertz) or short decimals
//! (ratios, watts from milliwatts), 1 to 7 bytes each.
//!
//! A label set (`series.labels`) is `varint(n) (varint(len) name varint(len)
//! value)*`, names in sorted order, strings UTF-8.

use crate::sample::Labels;

/// Why a stored payload or label set could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end in the middle of an item.
    #[error("payload truncated at byte {offset}")]
    Truncated {
        /// Byte offset where more input was needed.
        offset: usize,
    },
    /// A varint longer than 64 bits.
    #[error("varint longer than 64 bits at byte {offset}")]
    VarintOverflow {
        /// Byte offset of the varint.
        offset: usize,
    },
    /// A value tag this version does not know.
    #[error("unknown value tag {tag:#04x} at byte {offset}")]
    UnknownTag {
        /// The tag byte.
        tag: u8,
        /// Byte offset of the tag.
        offset: usize,
    },
    /// Bytes left after the declared number of items.
    #[error("{extra} trailing bytes after the last item")]
    TrailingBytes {
        /// How many bytes were left.
        extra: usize,
    },
    /// A series id outside `1..=i64::MAX` after delta decoding.
    #[error("series id {id} out of range")]
    SeriesIdRange {
        /// The decoded id.
        id: i128,
    },
    /// A series id with no row in the `series` table.
    #[error("series id {id} has no row in the series table")]
    UnknownSeries {
        /// The id.
        id: i64,
    },
    /// A metric kind code [`crate::MetricKind::from_code`] does not know.
    #[error("series id {id} has unknown metric kind code {code}")]
    UnknownKind {
        /// The series id.
        id: i64,
        /// The stored code.
        code: i64,
    },
    /// A string that is not UTF-8.
    #[error("string at byte {offset} is not UTF-8")]
    NotUtf8 {
        /// Byte offset of the string.
        offset: usize,
    },
    /// A declared count larger than the bytes could hold.
    #[error("declared count {count} exceeds what {len} bytes can hold")]
    CountTooLarge {
        /// The declared count.
        count: u64,
        /// The payload length.
        len: usize,
    },
}

const TAG_F64: u8 = 0x80;
const TAG_INT: u8 = 0x81;
const TAG_DEC_FIRST: u8 = 0x82;
const MAX_DECIMALS: usize = 9;
const POW10: [f64; MAX_DECIMALS + 1] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
const EXACT_INT: i64 = 1 << 53;

/// Appends `v` as an unsigned LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Zigzag: small magnitudes of either sign become small unsigned numbers.
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A cursor over encoded bytes.
pub(crate) struct Input<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Input { bytes, pos: 0 }
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or(DecodeError::Truncated { offset: self.pos })?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return Err(DecodeError::VarintOverflow { offset: start });
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::VarintOverflow { offset: start })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(DecodeError::Truncated { offset: self.pos })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn string(&mut self) -> Result<&'a str, DecodeError> {
        let len = self.varint()?;
        let offset = self.pos;
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated { offset })?;
        std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::NotUtf8 { offset })
    }

    /// A count of items each at least `min_item_bytes` long, checked against
    /// the remaining input so that a corrupt count cannot allocate wildly.
    fn count(&mut self, min_item_bytes: usize) -> Result<usize, DecodeError> {
        let count = self.varint()?;
        let left = self.bytes.len() - self.pos;
        match usize::try_from(count) {
            Ok(n) if n.saturating_mul(min_item_bytes) <= left => Ok(n),
            _ => Err(DecodeError::CountTooLarge {
                count,
                len: self.bytes.len(),
            }),
        }
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.bytes.len() - self.pos {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes { extra }),
        }
    }
}

/// Appends the shortest exact encoding of `v` (tag byte and body).
pub(crate) fn put_value(out: &mut Vec<u8>, v: f64) {
    let bits = v.to_bits();
    if v.is_finite() {
        // Integer forms. `as` saturates; the bit comparison rejects -0.0 and
        // anything that did not survive the round trip.
        let i = v as i64;
        if i.unsigned_abs() < EXACT_INT as u64 && (i as f64).to_bits() == bits {
            if (0..0x80).contains(&i) {
                out.push(i as u8);
            } else {
                out.push(TAG_INT);
                put_varint(out, zigzag(i));
            }
            return;
        }
        for (d, &p) in POW10.iter().enumerate().skip(1) {
            let m = (v * p).round();
            if m.abs() < EXACT_INT as f64 {
                let m = m as i64;
                if (m as f64 / p).to_bits() == bits {
                    out.push(TAG_DEC_FIRST + (d as u8 - 1));
                    put_varint(out, zigzag(m));
                    return;
                }
            }
        }
    }
    out.push(TAG_F64);
    out.extend_from_slice(&bits.to_le_bytes());
}

/// Reads one value written by [`put_value`].
pub(crate) fn get_value(input: &mut Input<'_>) -> Result<f64, DecodeError> {
    let offset = input.pos;
    let tag = input.byte()?;
    match tag {
        0..=0x7f => Ok(f64::from(tag)),
        TAG_F64 => {
            let b = input.take(8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Ok(f64::from_bits(u64::from_le_bytes(a)))
        }
        TAG_INT => Ok(unzigzag(input.varint()?) as f64),
        t if (TAG_DEC_FIRST..TAG_DEC_FIRST + MAX_DECIMALS as u8).contains(&t) => {
            let d = usize::from(t - TAG_DEC_FIRST) + 1;
            Ok(unzigzag(input.varint()?) as f64 / POW10[d])
        }
        tag => Err(DecodeError::UnknownTag { tag, offset }),
    }
}

/// Encodes a payload from `(series_id, value)` pairs into `out` (cleared first).
pub(crate) fn encode_payload(
    out: &mut Vec<u8>,
    samples: impl ExactSizeIterator<Item = (i64, f64)>,
) {
    out.clear();
    put_varint(out, samples.len() as u64);
    let mut prev = 0i64;
    for (id, value) in samples {
        put_varint(out, zigzag(id.wrapping_sub(prev)));
        prev = id;
        put_value(out, value);
    }
}

/// Decodes a payload into `(series_id, value)` pairs (into `out`, cleared first).
///
/// # Errors
/// [`DecodeError`] for anything but a complete, well-formed payload.
pub(crate) fn decode_payload(bytes: &[u8], out: &mut Vec<(i64, f64)>) -> Result<(), DecodeError> {
    out.clear();
    let mut input = Input::new(bytes);
    // Each sample takes at least 2 bytes (delta + tag).
    let n = input.count(2)?;
    out.reserve(n);
    let mut prev = 0i64;
    for _ in 0..n {
        let delta = unzigzag(input.varint()?);
        let id = i128::from(prev) + i128::from(delta);
        let id = i64::try_from(id)
            .ok()
            .filter(|&i| i > 0)
            .ok_or(DecodeError::SeriesIdRange { id })?;
        prev = id;
        out.push((id, get_value(&mut input)?));
    }
    input.finish()
}

/// Encodes a label set.
pub(crate) fn encode_labels(labels: &Labels) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * labels.len() + 1);
    put_varint(&mut out, labels.len() as u64);
    for (k, v) in labels.iter() {
        put_varint(&mut out, k.len() as u64);
        out.extend_from_slice(k.as_bytes());
        put_varint(&mut out, v.len() as u64);
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Decodes a label set written by [`encode_labels`].
///
/// # Errors
/// [`DecodeError`] for anything but a complete, well-formed label set.
pub(crate) fn decode_labels(bytes: &[u8]) -> Result<Labels, DecodeError> {
    let mut input = Input::new(bytes);
    let n = input.count(2)?;
    let mut pairs = Vec::with_capacity(n);
    for _ in 0..n {
        let k = input.string()?;
        let v = input.string()?;
        pairs.push((k, v));
    }
    input.finish()?;
    Ok(Labels::from_pairs(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(v: f64) -> (f64, usize) {
        let mut out = Vec::new();
        put_value(&mut out, v);
        let mut input = Input::new(&out);
        let back = get_value(&mut input).expect("decodes");
        input.finish().expect("no trailing bytes");
        (back, out.len())
    }

    #[test]
    fn buffer_encoding_picks_short_exact_forms() {
        assert_eq!(roundtrip(0.0), (0.0, 1));
        assert_eq!(roundtrip(1.0), (1.0, 1));
        assert_eq!(roundtrip(127.0), (127.0, 1));
        assert_eq!(roundtrip(128.0).1, 3);
        assert_eq!(roundtrip(-1.0), (-1.0, 2));
        assert_eq!(roundtrip(0.45), (0.45, 2));
        assert_eq!(roundtrip(345.678), (345.678, 4));
        assert_eq!(roundtrip(85_899_345_920.0).1, 7);
        assert_eq!(roundtrip(1.41e9).1, 6);
        assert_eq!(roundtrip(std::f64::consts::PI).1, 9);
        let (z, n) = roundtrip(-0.0);
        assert_eq!((z.to_bits(), n), ((-0.0f64).to_bits(), 9));
        assert!(roundtrip(f64::NAN).0.is_nan());
        assert_eq!(roundtrip(f64::INFINITY).0, f64::INFINITY);
        assert_eq!(
            roundtrip(f64::MIN_POSITIVE / 2.0).0,
            f64::MIN_POSITIVE / 2.0
        );
    }

    #[test]
    fn buffer_encoding_rejects_malformed_payloads() {
        let mut out = Vec::new();
        encode_payload(&mut out, [(3i64, 1.5f64), (4, 2.0)].into_iter());
        let mut back = Vec::new();
        decode_payload(&out, &mut back).expect("valid");
        assert_eq!(back, vec![(3, 1.5), (4, 2.0)]);
        for cut in 0..out.len() {
            assert!(
                decode_payload(&out[..cut], &mut back).is_err(),
                "cut at {cut}"
            );
        }
        let mut extra = out.clone();
        extra.push(0);
        assert_eq!(
            decode_payload(&extra, &mut back),
            Err(DecodeError::TrailingBytes { extra: 1 })
        );
        assert!(matches!(
            decode_payload(&[1, 2, 0x9f], &mut back),
            Err(DecodeError::UnknownTag { tag: 0x9f, .. })
        ));
        assert!(matches!(
            decode_payload(&[0xff; 12], &mut back),
            Err(DecodeError::VarintOverflow { .. })
        ));
        assert!(matches!(
            decode_payload(&[100, 2, 0], &mut back),
            Err(DecodeError::CountTooLarge { .. })
        ));
        assert!(matches!(
            decode_payload(&[1, 1, 0], &mut back),
            Err(DecodeError::SeriesIdRange { .. })
        ));
    }

    proptest! {
        #[test]
        fn buffer_encoding_values_roundtrip_bit_exact(bits in any::<u64>(), small in -1_000_000i64..1_000_000, d in 0usize..10) {
            for v in [f64::from_bits(bits), small as f64, small as f64 / POW10[d]] {
                let (back, _) = roundtrip(v);
                prop_assert_eq!(back.to_bits(), v.to_bits());
            }
        }

        #[test]
        fn buffer_encoding_payload_roundtrips(ids in proptest::collection::vec(1i64..i64::MAX, 0..50), bits in any::<u64>()) {
            let samples: Vec<(i64, f64)> = ids.iter().map(|&i| (i, f64::from_bits(bits ^ i as u64))).collect();
            let mut out = Vec::new();
            encode_payload(&mut out, samples.iter().copied());
            let mut back = Vec::new();
            decode_payload(&out, &mut back).expect("valid");
            prop_assert_eq!(back.len(), samples.len());
            for (a, b) in back.iter().zip(&samples) {
                prop_assert_eq!(a.0, b.0);
                prop_assert_eq!(a.1.to_bits(), b.1.to_bits());
            }
        }

        #[test]
        fn buffer_encoding_labels_roundtrip(pairs in proptest::collection::vec(("[a-z_]{1,8}", "\\PC{0,12}"), 0..8)) {
            let labels = Labels::from_pairs(pairs);
            prop_assert_eq!(decode_labels(&encode_labels(&labels)).expect("valid"), labels);
        }
    }
}
