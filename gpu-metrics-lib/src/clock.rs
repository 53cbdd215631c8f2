//! Wall-clock time and ids, the one helper of each for the workspace: the
//! API's records, the load generator's results and the samples all read
//! [`now_ms`], write [`rfc3339`] and name things with [`new_id`].

pub use crate::sample::now_ms;

/// Formats Unix milliseconds as RFC 3339 UTC (`2024-05-01T12:00:00.123Z`):
/// always milliseconds and `Z`, the year in at least 4 digits.
///
/// The civil time is jiff's: the epoch plus `ms` as a [`jiff::civil::DateTime`]
/// (UTC has no offset to apply), whose range is every year -9999..=9999 in
/// full; times beyond it are clamped to its ends.
pub fn rfc3339(ms: i64) -> String {
    use jiff::civil::{DateTime, datetime};
    const UNIX_EPOCH: DateTime = datetime(1970, 1, 1, 0, 0, 0, 0);
    let t = UNIX_EPOCH
        .checked_add(jiff::SignedDuration::from_millis(ms))
        .unwrap_or(if ms < 0 { DateTime::MIN } else { DateTime::MAX });
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// A fresh id: `prefix-` and 16 random hex digits (from `/dev/urandom`;
/// when it cannot be read, from the time and a process-wide counter).
pub fn new_id(prefix: &str) -> String {
    use std::io::Read;
    let mut buf = [0u8; 8];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if random.is_err() {
        // Fall back to time and a counter; ids stay unique within a process.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        buf = ((now_ms() as u64) << 16 ^ n).to_be_bytes();
    }
    let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(rfc3339(4_102_444_800_000), "2100-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(-62_167_219_200_000), "0000-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(i64::MIN), "-9999-01-01T00:00:00.000Z");
    }

    /// The formatter `rfc3339` had before it used jiff (civil from days,
    /// Howard Hinnant's algorithm): the reference its output must match.
    fn rfc3339_before_jiff(ms: i64) -> String {
        let secs = ms.div_euclid(1000);
        let millis = ms.rem_euclid(1000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = if m <= 2 { y + 1 } else { y };
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )
    }

    #[test]
    fn rfc3339_is_byte_identical_to_the_hand_written_formatter() {
        // Years -9999..=9999 in steps of a prime-ish 11.6 days (every
        // millisecond residue, hour and minute comes round).
        let lo = -377_705_116_800_000; // -9999-01-01T00:00:00.000Z
        let hi = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        let step = 1_000_000_007;
        let mut ms = lo;
        while ms <= hi {
            assert_eq!(rfc3339(ms), rfc3339_before_jiff(ms), "{ms}");
            ms += step;
        }
        for ms in [
            0,
            -1,
            1,
            999,
            951_782_400_123,
            1_709_164_800_000,
            1_709_251_199_999,
            -62_167_219_200_001,
            hi,
            lo,
        ] {
            assert_eq!(rfc3339(ms), rfc3339_before_jiff(ms), "{ms}");
        }
    }

    #[test]
    fn new_ids_have_the_prefix_and_16_hex_digits_and_differ() {
        let a = new_id("run");
        let b = new_id("run");
        assert_ne!(a, b);
        let hex = a.strip_prefix("run-").expect("prefix");
        assert_eq!(hex.len(), 16);
        assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
    }
}
