//! pg_statemachine's pure-Rust core: no PostgreSQL in here.
//!
//! - [`definition`]: the JSON a user publishes, parsed and validated with JSON paths;
//! - [`interval`]: the interval syntax `min_time_in_state` accepts;
//! - [`rules`]: a published version compiled for lookups (rule lookup, SM001/SM009);
//! - [`checks`]: every check of a transition (role, reason, evidence, guards), shared
//!   by the write path, the dry run and available_transitions;
//! - [`refusal`]: every refusal with its SQLSTATE, message, DETAIL and HINT;
//! - [`migration`]: the state map of migrate_cases;
//! - [`import`]: import_cases' records, judged step by step against the rules;
//! - [`diagram`]: Mermaid and Graphviz pictures of a version's rules;
//! - [`seal`]: the hash chain of history and the digest kept outside the database;
//! - [`ids`]: row ids (UUID v7 from the OS random source), their text form.
//!
//! The extension crate binds this to SQL; `cargo test -p statemachine-core` covers it
//! without a database.

pub mod checks;
pub mod definition;
pub mod diagram;
pub mod door_token;
pub mod ids;
pub mod import;
pub mod interval;
pub mod migration;
pub mod refusal;
pub mod rules;
pub mod seal;

pub use checks::{evaluate, Check, EvidenceFact, Evaluation, Facts, Membership, Request, SqlOutcome, Supplied};
pub use definition::{
    validate, validate_text, EvidenceRequirement, GuardDef, GuardSpec, Invariant, Kind, MachineDef, Problem, ReasonDef,
    RoleSource, Severity, Validation,
};
pub use interval::Interval;
pub use refusal::{CaseFacts, Refusal, Report};
pub use rules::{check_invariants, CompiledMachine, Rule, Sibling, StateRow};
