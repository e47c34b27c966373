//! Machine definitions: the JSON users publish, parsed into a typed model with every
//! problem collected (not just the first), each with the JSON path it comes from.
//!
//! Parsing walks a `serde_json::Value` by hand instead of deriving `Deserialize`: serde
//! stops at the first error, and a definition author wants the whole list at once.
//!
//! - `model`: the typed definition, the problem types and the limits and reserved codes;
//! - `validate`: `validate`/`validate_text`, the problem `Collector`, states and invariants;
//! - `transition`: one transition object with its reasons, evidence and guards;
//! - `graph`: guard references and graph completeness;
//! - `canonical`: [`MachineDef::to_canonical_json`].

mod canonical;
mod graph;
mod model;
mod transition;
mod validate;

pub use model::{
    EvidenceRequirement, GuardDef, GuardSpec, Invariant, Kind, MachineDef, Problem, ReasonDef, RoleSource, Severity,
    StateDef, TransitionDef, CORRECT_CODE, CREATE_CODE, MAX_CODE_LEN, MAX_STATES, MAX_TRANSITIONS,
    RESERVED_CHECK_NAMES, SYSTEM_ROLE, TIMER_REASON,
};
pub use validate::{code_problem, user_code_problem, validate, validate_text, Validation};
