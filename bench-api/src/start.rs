//! Why the API could not start ([`StartError`]): shared by the place that
//! builds the [`crate::app::App`] (recipes, state, backend) and the HTTP
//! server (the listen address), which both depend on it and not on each
//! other's errors.

use std::net::SocketAddr;

use crate::backend::BackendError;
use crate::recipes::RecipeError;
use crate::state::StateError;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The recipes are invalid (a configuration error: exit code 2).
    #[error(transparent)]
    Recipes(#[from] RecipeError),
    /// The state database could not be opened.
    #[error(transparent)]
    State(#[from] StateError),
    /// The backend could not be set up.
    #[error("backend: {0}")]
    Backend(#[from] BackendError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {message}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        message: String,
    },
    /// This program's own path is unknown (needed for the local supervisor).
    #[error("cannot find this program's path: {0}")]
    CurrentExe(std::io::Error),
}
