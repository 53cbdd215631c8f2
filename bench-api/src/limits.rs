//! The numeric limits of request fields, in one table that both the
//! validators ([`crate::model::CreateRun::validate`], the cancel routes) and
//! the OpenAPI document ([`crate::openapi`]) read, so that what the schema
//! allows cannot drift from what the code accepts.
//!
//! - [`Limit`]: an inclusive range of an integer field, or of a length (in
//!   characters, or items of an array) — JSON `minimum`/`maximum`,
//!   `minLength`/`maxLength`, `minItems`/`maxItems`.
//! - [`NumberLimit`]: the range of a number (`f64`) field, whose lower bound
//!   may be exclusive — JSON `minimum` (with `exclusiveMinimum`)/`maximum`.
//!
//! Bounds are whole numbers (`i64`) even for number fields, so that the
//! document says `1000`, not `1000.0`.

use crate::validate::{ApiError, in_range};

/// An inclusive range `min..=max` of one request field: its value (integer
/// fields) or its length (strings, in characters; arrays, in items).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The field, as the request names it (and as errors blame it).
    pub field: &'static str,
    /// Smallest allowed value (or length).
    pub min: i64,
    /// Largest allowed value (or length).
    pub max: i64,
}

impl Limit {
    /// Whether `value` lies in `min..=max`.
    pub const fn contains(&self, value: i64) -> bool {
        value >= self.min && value <= self.max
    }

    /// Whether a length (characters or items) lies in `min..=max`.
    pub fn contains_len(&self, len: usize) -> bool {
        i64::try_from(len).is_ok_and(|n| self.contains(n))
    }

    /// Checks that `value` lies in `min..=max` ([`in_range`] with this
    /// field and bounds).
    ///
    /// # Errors
    /// `400` naming [`Limit::field`]: "`` `field` must be between MIN and MAX, got V ``".
    pub fn check(&self, value: i64) -> Result<(), ApiError> {
        in_range(self.field, value, self.min, self.max)
    }
}

/// The range of a number field: `min < v <= max` when `exclusive_min`, else
/// `min <= v <= max`; never NaN or infinite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberLimit {
    /// The field, as the request names it (a pattern such as
    /// `goodput.*_ms` when several fields share the range).
    pub field: &'static str,
    /// Lower bound (excluded when `exclusive_min`).
    pub min: i64,
    /// Largest allowed value.
    pub max: i64,
    /// Whether `min` itself is refused.
    pub exclusive_min: bool,
}

impl NumberLimit {
    /// Whether `value` is finite and in range.
    pub fn contains(&self, value: f64) -> bool {
        let (min, max) = (self.min as f64, self.max as f64);
        value.is_finite()
            && if self.exclusive_min {
                value > min
            } else {
                value >= min
            }
            && value <= max
    }
}

/// `duration_seconds`: measured time of a run, 1 s to a day.
pub const DURATION_SECONDS: Limit = Limit {
    field: "duration_seconds",
    min: 1,
    max: 86_400,
};

/// `warmup_seconds`: load sent before the measured time, up to an hour.
pub const WARMUP_SECONDS: Limit = Limit {
    field: "warmup_seconds",
    min: 0,
    max: 3600,
};

/// `concurrency`: closed-loop clients.
pub const CONCURRENCY: Limit = Limit {
    field: "concurrency",
    min: 1,
    max: 1024,
};

/// `requests_per_second`: the open-loop request rate.
pub const REQUESTS_PER_SECOND: Limit = Limit {
    field: "requests_per_second",
    min: 1,
    max: 100_000,
};

/// `max_concurrency`: most open-loop requests in flight.
pub const MAX_CONCURRENCY: Limit = Limit {
    field: "max_concurrency",
    min: 1,
    max: 10_000,
};

/// `max_tokens` of the OpenAI workloads.
pub const MAX_TOKENS: Limit = Limit {
    field: "max_tokens",
    min: 1,
    max: 32_768,
};

/// `synthetic_prompt_words`: length of synthetic prompts, in words.
pub const SYNTHETIC_PROMPT_WORDS: Limit = Limit {
    field: "synthetic_prompt_words",
    min: 1,
    max: 4096,
};

/// `load_nodes`: nodes a run's load is sent from.
pub const LOAD_NODES: Limit = Limit {
    field: "load_nodes",
    min: 1,
    max: 64,
};

/// `prompts`: how many a run may carry. They travel as arguments: at most
/// 16 × 1024 characters ([`PROMPT_CHARS`]) keeps a Slurm `--wrap` script
/// under Linux's 128 KiB limit for one argument.
pub const PROMPTS: Limit = Limit {
    field: "prompts",
    min: 1,
    max: 16,
};

/// Length of one of `prompts`, in characters.
pub const PROMPT_CHARS: Limit = Limit {
    field: "prompts[]",
    min: 1,
    max: 1024,
};

/// Length of a run's request `path`, in characters (its minimum, the `/`
/// it starts with, is the schema's pattern).
pub const PATH_CHARS: Limit = Limit {
    field: "path",
    min: 1,
    max: 2048,
};

/// Length of `model`, in characters.
pub const MODEL_CHARS: Limit = Limit {
    field: "model",
    min: 1,
    max: 256,
};

/// Length of a cancel route's `reason`, in characters (it may be empty).
pub const REASON_CHARS: Limit = Limit {
    field: "reason",
    min: 0,
    max: 1024,
};

/// `burstiness`: the gamma shape of open-loop arrivals, (0, 1000].
pub const BURSTINESS: NumberLimit = NumberLimit {
    field: "burstiness",
    min: 0,
    max: 1000,
    exclusive_min: true,
};

/// `temperature` of the OpenAI workloads, [0, 2].
pub const TEMPERATURE: NumberLimit = NumberLimit {
    field: "temperature",
    min: 0,
    max: 2,
    exclusive_min: false,
};

/// `goodput.ttft_ms`, `goodput.tpot_ms`, `goodput.e2el_ms`: (0, a day] in ms.
pub const GOODPUT_MS: NumberLimit = NumberLimit {
    field: "goodput.*_ms",
    min: 0,
    max: 86_400_000,
    exclusive_min: true,
};

/// `dataset.input_len` (random): mean input length in words.
pub const DATASET_INPUT_LEN: Limit = Limit {
    field: "dataset.input_len",
    min: 1,
    max: 131_072,
};

/// `dataset.output_len` (random, sharegpt): `max_tokens` of each request.
pub const DATASET_OUTPUT_LEN: Limit = Limit {
    field: "dataset.output_len",
    min: 1,
    max: 32_768,
};

/// `dataset.prefix_len` (random): words every prompt shares.
pub const DATASET_PREFIX_LEN: Limit = Limit {
    field: "dataset.prefix_len",
    min: 0,
    max: 131_072,
};

/// `dataset.path` (sharegpt, trace): length in characters.
pub const DATASET_PATH_CHARS: Limit = Limit {
    field: "dataset.path",
    min: 2,
    max: 4096,
};

/// `sweep.max` of an open-loop run: the highest request rate.
pub const SWEEP_MAX_RATE: Limit = Limit {
    field: "sweep.max",
    min: REQUESTS_PER_SECOND.min,
    max: REQUESTS_PER_SECOND.max,
};

/// `sweep.max` of a closed-loop run: the most clients.
pub const SWEEP_MAX_CLIENTS: Limit = Limit {
    field: "sweep.max",
    min: CONCURRENCY.min,
    max: CONCURRENCY.max,
};

/// `sweep.target_percent`, `sweep.tolerance_percent`: (0, 100].
pub const SWEEP_PERCENT: NumberLimit = NumberLimit {
    field: "sweep.*_percent",
    min: 0,
    max: 100,
    exclusive_min: true,
};

/// The integer fields of `CreateRun`, each with its range.
pub const CREATE_RUN_INTEGERS: [Limit; 8] = [
    DURATION_SECONDS,
    WARMUP_SECONDS,
    CONCURRENCY,
    REQUESTS_PER_SECOND,
    MAX_CONCURRENCY,
    MAX_TOKENS,
    SYNTHETIC_PROMPT_WORDS,
    LOAD_NODES,
];

/// The number fields of `CreateRun` (outside `goodput`), each with its range.
pub const CREATE_RUN_NUMBERS: [NumberLimit; 2] = [BURSTINESS, TEMPERATURE];

/// Most `prompts` a run may carry ([`PROMPTS`]`.max`).
pub const MAX_PROMPTS: usize = PROMPTS.max as usize;

/// Longest prompt, in characters ([`PROMPT_CHARS`]`.max`).
pub const MAX_PROMPT_CHARS: usize = PROMPT_CHARS.max as usize;

/// Most nodes a run's load may come from ([`LOAD_NODES`]`.max`).
pub const MAX_LOAD_NODES: i64 = LOAD_NODES.max;

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn create_run_variants() -> Vec<Value> {
        let recipes = crate::recipes::Catalogue::load(None).unwrap();
        let doc = crate::openapi::document(false, &recipes);
        let variants = doc["components"]["schemas"]["CreateRun"]["oneOf"]
            .as_array()
            .cloned()
            .unwrap();
        assert!(!variants.is_empty());
        variants
    }

    #[test]
    fn every_integer_field_of_the_create_run_schema_has_the_tables_range() {
        let mut seen = std::collections::BTreeSet::new();
        for variant in create_run_variants() {
            for (name, p) in variant["properties"].as_object().unwrap() {
                if p["type"] != "integer" {
                    continue;
                }
                let limit = CREATE_RUN_INTEGERS
                    .iter()
                    .find(|l| l.field == name)
                    .unwrap_or_else(|| panic!("integer field `{name}` is not in the table"));
                assert_eq!(p["minimum"].as_i64(), Some(limit.min), "{name}");
                assert_eq!(p["maximum"].as_i64(), Some(limit.max), "{name}");
                seen.insert(name.clone());
            }
        }
        for l in CREATE_RUN_INTEGERS {
            assert!(seen.contains(l.field), "`{}` is in no variant", l.field);
        }
    }

    #[test]
    fn number_and_length_fields_of_the_create_run_schema_have_the_tables_range() {
        for variant in create_run_variants() {
            let props = &variant["properties"];
            for l in CREATE_RUN_NUMBERS {
                let p = &props[l.field];
                if p.is_null() {
                    continue;
                }
                assert_eq!(p["minimum"].as_i64(), Some(l.min), "{}", l.field);
                assert_eq!(p["maximum"].as_i64(), Some(l.max), "{}", l.field);
                assert_eq!(
                    p["exclusiveMinimum"].as_bool().unwrap_or(false),
                    l.exclusive_min,
                    "{}",
                    l.field
                );
            }
            assert_eq!(props["path"]["maxLength"].as_i64(), Some(PATH_CHARS.max));
            if !props["model"].is_null() {
                assert_eq!(props["model"]["minLength"].as_i64(), Some(MODEL_CHARS.min));
                assert_eq!(props["model"]["maxLength"].as_i64(), Some(MODEL_CHARS.max));
            }
            if !props["prompts"].is_null() {
                let p = &props["prompts"];
                assert_eq!(p["minItems"].as_i64(), Some(PROMPTS.min));
                assert_eq!(p["maxItems"].as_i64(), Some(PROMPTS.max));
                assert_eq!(p["items"]["minLength"].as_i64(), Some(PROMPT_CHARS.min));
                assert_eq!(p["items"]["maxLength"].as_i64(), Some(PROMPT_CHARS.max));
            }
        }
    }

    #[test]
    fn ranges_are_as_checked() {
        assert!(DURATION_SECONDS.contains(1) && DURATION_SECONDS.contains(86_400));
        assert!(!DURATION_SECONDS.contains(0) && !DURATION_SECONDS.contains(86_401));
        assert_eq!(
            CONCURRENCY.check(1025).unwrap_err().error,
            "`concurrency` must be between 1 and 1024, got 1025"
        );
        assert!(PROMPTS.contains_len(16) && !PROMPTS.contains_len(17) && !PROMPTS.contains_len(0));
        assert!(!BURSTINESS.contains(0.0) && BURSTINESS.contains(1000.0));
        assert!(!BURSTINESS.contains(1000.001) && !BURSTINESS.contains(f64::NAN));
        assert!(TEMPERATURE.contains(0.0) && TEMPERATURE.contains(2.0));
        assert!(!TEMPERATURE.contains(-0.1) && !TEMPERATURE.contains(f64::INFINITY));
        assert!(!GOODPUT_MS.contains(0.0) && GOODPUT_MS.contains(86_400_000.0));
        assert_eq!(
            (MAX_PROMPTS, MAX_PROMPT_CHARS, MAX_LOAD_NODES),
            (16, 1024, 64)
        );
    }
}
