//! The error the backends' settings checks answer with.
//!
//! Each backend owns its settings (the `[slurm]` tables, the node exporter's
//! keys) and their checks; [`crate::config`] puts them together and turns a
//! [`SettingsError`] into its `ConfigError::Invalid`, so that the backends
//! need nothing from the configuration module (the dependency points one way:
//! config → backend).

/// A backend setting that is not acceptable: the TOML key at fault (`slurm.rest.url`)
/// and what is wrong with its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct SettingsError {
    /// The key, as written in the TOML file (flags are named by their key).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl SettingsError {
    /// An error naming `key`.
    pub fn new(key: &str, message: impl Into<String>) -> Self {
        SettingsError {
            key: key.to_string(),
            message: message.into(),
        }
    }
}
