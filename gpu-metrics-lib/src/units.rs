//! Parsing of human-written durations (`100ms`, `1s`, `5m`, `1h`).

use std::time::Duration;

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a number followed by a unit.
    #[error("duration {input:?} is not a number followed by ms, s, m or h (e.g. 100ms, 1s, 5m)")]
    Malformed {
        /// The text as given.
        input: String,
    },
    /// Zero, where a positive duration is needed.
    #[error("duration {input:?} must be greater than zero")]
    Zero {
        /// The text as given.
        input: String,
    },
    /// Positive as written but below the 1 ns resolution, so it would be zero.
    #[error("duration {input:?} is below 1ns and would round to zero")]
    RoundsToZero {
        /// The text as given.
        input: String,
    },
}

/// Parses `100ms`, `1s`, `1.5s`, `5m`, `1h`. A unit is required: a bare number
/// is ambiguous and refused.
///
/// # Errors
/// [`DurationError`] naming the input.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    let malformed = || DurationError::Malformed {
        input: input.to_string(),
    };
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(malformed)?;
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().map_err(|_| malformed())?;
    let scale = match unit {
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(malformed()),
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 1e9 {
        return Err(malformed());
    }
    if secs <= 0.0 {
        return Err(DurationError::Zero {
            input: input.to_string(),
        });
    }
    let d = Duration::from_secs_f64(secs);
    if d.is_zero() {
        // Below a nanosecond: positive as written, zero as a Duration.
        return Err(DurationError::RoundsToZero {
            input: input.to_string(),
        });
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn refuses_garbage_and_bare_numbers() {
        for bad in ["", "1", "s", "1x", "1.2.3s", "-1s", "ms100"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse_duration("0s"),
            Err(DurationError::Zero { .. })
        ));
    }

    #[test]
    fn refuses_a_duration_that_rounds_to_zero() {
        for tiny in ["0.0000001ms", "0.0000000001s", "0.000000000001m"] {
            let err = parse_duration(tiny).expect_err(tiny);
            assert_eq!(
                err,
                DurationError::RoundsToZero {
                    input: tiny.to_string()
                }
            );
            assert!(err.to_string().contains(tiny), "{err}");
        }
        // The smallest that survives: one nanosecond.
        assert_eq!(parse_duration("0.000001ms"), Ok(Duration::from_nanos(1)));
    }
}
