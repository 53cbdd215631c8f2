//! Human-readable byte sizes for `max_bytes` (`256MiB`, `1 GB`, `4096`).

/// Why a size string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Nothing but whitespace.
    #[error("size {input:?} is empty: expected a number with an optional unit, e.g. 256MiB")]
    Empty {
        /// The input as given.
        input: String,
    },
    /// The part before the unit is not a non-negative decimal number.
    #[error("size {input:?} does not start with a number: expected e.g. 256MiB, 1.5GB or 4096")]
    InvalidNumber {
        /// The input as given.
        input: String,
    },
    /// A unit other than B, KB, KiB, MB, MiB, GB, GiB (case-insensitive).
    #[error(
        "size {input:?} has unknown unit {unit:?}: expected one of B, KB, KiB, MB, MiB, GB, GiB"
    )]
    UnknownUnit {
        /// The input as given.
        input: String,
        /// The unit as given.
        unit: String,
    },
    /// The size does not fit in 64 bits of bytes.
    #[error("size {input:?} is too large")]
    Overflow {
        /// The input as given.
        input: String,
    },
    /// A fractional number of bytes (`1.5B`, `0.3`): sizes are whole bytes.
    #[error("size {input:?} is not a whole number of bytes")]
    Fractional {
        /// The input as given.
        input: String,
    },
}

/// Parses a byte size: a decimal number (fractions allowed with a unit, e.g.
/// `1.5GiB`) followed by an optional unit, case-insensitive, spaces allowed in
/// between. `B` or no unit: bytes; `KB`/`MB`/`GB`: powers of 1000; `KiB`/`MiB`/
/// `GiB`: powers of 1024; `K`/`M`/`G` alone are refused as ambiguous.
///
/// ```
/// use gpu_metrics::buffer::parse_size;
/// assert_eq!(parse_size("256MiB").unwrap(), 256 * 1024 * 1024);
/// assert_eq!(parse_size("1 KB").unwrap(), 1000);
/// assert_eq!(parse_size("4096").unwrap(), 4096);
/// ```
///
/// # Errors
/// [`SizeError`] naming the input: empty, no leading number, unknown unit,
/// a result above `u64::MAX`, or a fractional number of bytes.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let input = || s.to_string();
    let t = s.trim();
    if t.is_empty() {
        return Err(SizeError::Empty { input: input() });
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.matches('.').count() > 1
    {
        return Err(SizeError::InvalidNumber { input: input() });
    }
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" => 1 << 10,
        "mb" => 1000 * 1000,
        "mib" => 1 << 20,
        "gb" => 1000 * 1000 * 1000,
        "gib" => 1 << 30,
        _ => {
            return Err(SizeError::UnknownUnit {
                input: input(),
                unit: unit.to_string(),
            });
        }
    };
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    let int: u64 = int_part
        .parse()
        .map_err(|_| SizeError::Overflow { input: input() })?;
    let mut total = int
        .checked_mul(multiplier)
        .ok_or_else(|| SizeError::Overflow { input: input() })?;
    if !frac_part.is_empty() {
        // Exact decimal arithmetic: frac / 10^len * multiplier must be whole.
        let digits = frac_part.trim_end_matches('0');
        if digits.len() > 18 {
            return Err(SizeError::Fractional { input: input() });
        }
        let frac: u128 = if digits.is_empty() {
            0
        } else {
            digits
                .parse()
                .map_err(|_| SizeError::InvalidNumber { input: input() })?
        };
        let scale = 10u128.pow(digits.len() as u32);
        let scaled = frac * u128::from(multiplier);
        if scaled % scale != 0 {
            return Err(SizeError::Fractional { input: input() });
        }
        let extra =
            u64::try_from(scaled / scale).map_err(|_| SizeError::Overflow { input: input() })?;
        total = total
            .checked_add(extra)
            .ok_or_else(|| SizeError::Overflow { input: input() })?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_parse_size_accepts_units() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("256 mib"), Ok(256 << 20));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("10"), Ok(10));
        assert_eq!(parse_size(" 2 KB "), Ok(2000));
        assert_eq!(parse_size("2KiB"), Ok(2048));
        assert_eq!(parse_size("3MB"), Ok(3_000_000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("0.5KiB"), Ok(512));
    }

    #[test]
    fn buffer_parse_size_names_the_input_in_errors() {
        let e = parse_size("12 parsecs").unwrap_err();
        assert_eq!(
            e,
            SizeError::UnknownUnit {
                input: "12 parsecs".into(),
                unit: "parsecs".into()
            }
        );
        assert!(e.to_string().contains("12 parsecs"));
        assert!(matches!(parse_size(""), Err(SizeError::Empty { .. })));
        assert!(matches!(
            parse_size("MiB"),
            Err(SizeError::InvalidNumber { .. })
        ));
        assert!(matches!(
            parse_size("-1MiB"),
            Err(SizeError::InvalidNumber { .. })
        ));
        assert!(matches!(
            parse_size("1.2.3"),
            Err(SizeError::InvalidNumber { .. })
        ));
        assert!(matches!(
            parse_size("1M"),
            Err(SizeError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_size("0.5"),
            Err(SizeError::Fractional { .. })
        ));
        assert!(matches!(
            parse_size("99999999999GiB"),
            Err(SizeError::Overflow { .. })
        ));
        assert!(matches!(
            parse_size("99999999999999999999999"),
            Err(SizeError::Overflow { .. })
        ));
    }
}
