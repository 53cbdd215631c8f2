//! Configuration: where the file is, how big it may get, how durable a commit
//! is, which sinks read it; and the size plan derived from the cap.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::error::ConfigError;

/// Default cap on the file set: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;

/// The smallest cap accepted: 512 KiB.
pub const MIN_MAX_BYTES: u64 = 512 << 10;

/// How far the file set (main file + `-wal` + `-shm`) may exceed `max_bytes`:
/// WAL frame headers and the b-tree, free-list and pointer-map pages one
/// append transaction touches, beyond what the append margin reserves (see
/// the module documentation, *Size*).
pub const CAP_SLACK_BYTES: u64 = 64 << 10;

/// SQLite page size of new files.
pub(crate) const PAGE_SIZE: u64 = 4096;

/// Bytes reserved for the `-shm` wal-index (one 32 KiB segment covers 4062
/// WAL frames; the WAL limit below stays under that).
const SHM_RESERVE: u64 = 32 << 10;

/// What a committed batch survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous = FULL`: the WAL is fsynced at every commit. A committed
    /// batch survives a process crash (`kill -9`) and a power loss or kernel
    /// panic. Loses nothing that was acknowledged; costs one fsync per append.
    Full,
    /// `synchronous = NORMAL` in WAL mode: a commit is written to the WAL but
    /// fsynced only at checkpoints. A committed batch survives a process crash
    /// (`kill -9`, OOM kill, panic). On power loss or a kernel crash the
    /// commits since the last checkpoint (at most about one WAL's worth, i.e.
    /// the last seconds to minutes of batches) may be lost; the file stays
    /// consistent.
    #[default]
    Normal,
}

impl Durability {
    /// The name used in configuration: `full` or `normal`.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Full => "full",
            Durability::Normal => "normal",
        }
    }

    pub(crate) fn synchronous(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Durability {
    type Err = ConfigError;

    /// Parses `full` or `normal` (exact, lower case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(Durability::Full),
            "normal" => Ok(Durability::Normal),
            other => Err(ConfigError::UnknownDurability {
                value: other.to_string(),
            }),
        }
    }
}

/// Everything [`super::Buffer::open`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferConfig {
    /// The SQLite file; `-wal` and `-shm` files live next to it. Missing parent
    /// directories are created.
    pub path: PathBuf,
    /// Cap on the file set in bytes (default [`DEFAULT_MAX_BYTES`], at least
    /// [`MIN_MAX_BYTES`]); see [`CAP_SLACK_BYTES`].
    pub max_bytes: u64,
    /// What a committed batch survives.
    pub durability: Durability,
    /// The sinks that read the buffer, each with its own cursor. A batch is
    /// deleted once all of them have taken it. With no sink, batches stay until
    /// the cap evicts them.
    pub sinks: Vec<String>,
}

impl BufferConfig {
    /// A configuration with the default cap and durability.
    pub fn new(
        path: impl Into<PathBuf>,
        sinks: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        BufferConfig {
            path: path.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            durability: Durability::default(),
            sinks: sinks.into_iter().map(Into::into).collect(),
        }
    }

    /// Checks the cap and the sink names.
    ///
    /// # Errors
    /// [`ConfigError::CapTooSmall`], [`ConfigError::DuplicateSink`],
    /// [`ConfigError::EmptySinkName`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_bytes < MIN_MAX_BYTES {
            return Err(ConfigError::CapTooSmall {
                max_bytes: self.max_bytes,
                min: MIN_MAX_BYTES,
            });
        }
        for (i, s) in self.sinks.iter().enumerate() {
            if s.is_empty() {
                return Err(ConfigError::EmptySinkName);
            }
            if self.sinks[..i].contains(s) {
                return Err(ConfigError::DuplicateSink { sink: s.clone() });
            }
        }
        Ok(())
    }
}

/// How the cap is split between the main file, the WAL and the wal-index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CapPlan {
    /// Reserved for one append transaction: the pages it adds to the main file
    /// before eviction runs, and its frames in the WAL beyond the checkpoint
    /// threshold. `max_bytes / 16` clamped to 128 KiB ..= 4 MiB.
    pub append_margin_bytes: u64,
    /// WAL size at which a checkpoint runs, and the size the WAL is truncated
    /// to after one (the writer's WAL hook, `journal_size_limit`).
    pub wal_limit_bytes: u64,
    /// Used pages of the main file above which the oldest batches are evicted.
    pub db_budget_bytes: u64,
    /// Eviction goes down to this, so that it runs in rounds, not every append.
    pub low_water_bytes: u64,
    /// Free pages above which the writer gives pages back to the file system.
    pub vacuum_threshold_pages: u64,
    /// Pages given back per append (bounded so one append's WAL stays small).
    pub vacuum_step_pages: u64,
    /// The largest encoded batch accepted: a quarter of the append margin.
    pub batch_limit_bytes: u64,
}

impl CapPlan {
    pub(crate) fn new(max_bytes: u64) -> Self {
        let wal_limit_bytes = (max_bytes / 8).clamp(64 << 10, 4 << 20) / PAGE_SIZE * PAGE_SIZE;
        let append_margin_bytes = (max_bytes / 16).clamp(128 << 10, 4 << 20);
        let db_budget_bytes =
            max_bytes.saturating_sub(wal_limit_bytes + SHM_RESERVE + append_margin_bytes);
        let wal_pages = wal_limit_bytes / PAGE_SIZE;
        CapPlan {
            append_margin_bytes,
            wal_limit_bytes,
            db_budget_bytes,
            low_water_bytes: db_budget_bytes - db_budget_bytes / 32,
            vacuum_threshold_pages: (db_budget_bytes / PAGE_SIZE / 8).max(16),
            vacuum_step_pages: (wal_pages / 8).clamp(2, 64),
            batch_limit_bytes: append_margin_bytes / 4,
        }
    }

    /// The disk reserve (`reserve.rs`): room for the WAL to reach its bound
    /// and for one append transaction, held so that a full disk can evict.
    pub(crate) fn reserve_bytes(&self) -> u64 {
        self.wal_limit_bytes + self.append_margin_bytes
    }

    pub(crate) fn wal_pages(&self) -> u64 {
        self.wal_limit_bytes / PAGE_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_durability_parses_and_names_bad_values() {
        assert_eq!("full".parse::<Durability>(), Ok(Durability::Full));
        assert_eq!("normal".parse::<Durability>(), Ok(Durability::Normal));
        let e = "FULLY".parse::<Durability>().unwrap_err();
        assert_eq!(
            e,
            ConfigError::UnknownDurability {
                value: "FULLY".into()
            }
        );
        assert!(e.to_string().contains("FULLY"));
    }

    #[test]
    fn buffer_cap_plan_fits_in_the_cap() {
        for max in [MIN_MAX_BYTES, 1 << 20, 64 << 20, DEFAULT_MAX_BYTES, 1 << 40] {
            let p = CapPlan::new(max);
            assert!(
                p.db_budget_bytes + p.wal_limit_bytes + SHM_RESERVE + p.append_margin_bytes <= max
            );
            assert!(p.batch_limit_bytes >= 32 << 10);
            assert!(p.db_budget_bytes >= 256 << 10);
            assert!(p.low_water_bytes < p.db_budget_bytes);
            assert!(p.wal_pages() < 4062, "one shm segment");
        }
    }

    #[test]
    fn buffer_config_validation() {
        let mut c = BufferConfig::new("/tmp/x.db", ["a", "b"]);
        assert_eq!(c.validate(), Ok(()));
        c.sinks.push("a".into());
        assert_eq!(
            c.validate(),
            Err(ConfigError::DuplicateSink { sink: "a".into() })
        );
        c.sinks = vec![String::new()];
        assert_eq!(c.validate(), Err(ConfigError::EmptySinkName));
        c.sinks.clear();
        c.max_bytes = 1000;
        assert!(matches!(c.validate(), Err(ConfigError::CapTooSmall { .. })));
    }
}
