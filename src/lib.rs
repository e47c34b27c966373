//! pg_statemachine: PostgreSQL enforces the state machines of business records.
//!
//! `statemachine.transition_case()` is the one write path; guard triggers refuse every
//! other way to change a case's state or history. The decisions are made by the pure
//! `statemachine-core` crate; this crate binds it to SQL:
//!
//! - [`fmgr`], [`ereport`]: entry-point plumbing and raising SM SQLSTATEs;
//! - [`compat`]: what differs between PostgreSQL majors;
//! - [`spi`]: statements prepared once per backend;
//! - [`door`]: the backend-local flag only the write path opens;
//! - [`machines`]: per-backend cache of compiled machine versions;
//! - [`facts`]: the database's answers to the core's checks (membership, guards);
//! - [`definitions`], [`cases`], [`available`], [`outbox`], [`versions`], [`guard`],
//!   [`diagram`]: the SQL functions.
//!
//! The DDL lives in `sql/`: `schema.sql` (0.1.0) and one upgrade script per later version.

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

pub mod available;
pub mod cases;
pub mod compat;
pub mod definitions;
pub mod diagram;
pub mod door;
pub mod ereport;
pub mod facts;
pub mod fmgr;
pub mod guard;
pub mod machines;
pub mod outbox;
pub mod spi;
pub mod versions;

// A fresh install is 0.1.0's schema followed by every upgrade script in order, so each
// object is written once and an upgraded database matches a fresh one (tests/upgrade).
pgrx::extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
pgrx::extension_sql_file!("../sql/pg_statemachine--0.1.0--0.2.0.sql", name = "v0_2_0", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    door::register_callbacks();
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    include!("../pgrx-tests/mod.rs");
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
