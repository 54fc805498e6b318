//! Event contracts (the Holyfields replacement): loading and checking a `schemas/` tree,
//! compiled validators for the gateway, code generators, compatibility checks and the catalog.
//!
//! Pure logic lives in `tree` (names and paths), `refs` (reference resolution), `model`
//! (schema to type model), `gen/*`, `compat` and `catalog`; file I/O is in `tree::load`, the
//! git reader in `source` and the reload thread in `live`.
// Nothing read from a peer or a file may panic the process: no unwrap or expect outside
// tests (clippy.toml allows them in tests).
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod catalog;
pub mod check;
pub mod compat;
pub mod contracts;
pub mod error;
pub mod gen;
pub mod live;
pub mod model;
pub mod refs;
pub mod sample;
pub mod source;
pub mod tree;

pub use contracts::{Contract, Contracts, Rejection};
pub use error::{Error, GitError, Problem};
pub use tree::{SchemaFile, SchemaSet};
