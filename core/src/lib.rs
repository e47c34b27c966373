//! pg_statemachine's pure-Rust core: no PostgreSQL in here.
//!
//! - [`definition`]: the JSON a user publishes, parsed and validated with JSON paths;
//! - [`interval`]: the interval syntax `min_time_in_state` accepts;
//! - [`rules`]: a published version compiled for lookups, and the transition decision;
//! - [`refusal`]: every refusal with its SQLSTATE, message, DETAIL and HINT;
//! - [`ids`]: time-ordered history ids.
//!
//! The extension crate binds this to SQL; `cargo test -p statemachine-core` covers it
//! without a database.

pub mod definition;
pub mod ids;
pub mod interval;
pub mod refusal;
pub mod rules;

pub use definition::{validate, validate_text, Kind, MachineDef, Problem, Severity, Validation};
pub use interval::Interval;
pub use refusal::{CaseFacts, Refusal, Report};
pub use rules::{CompiledMachine, Request, Rule, StateRow};
