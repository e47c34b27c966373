//! pg_statemachine: PostgreSQL enforces the state machines of business records.
//!
//! `statemachine.transition_case()` is the one write path; guard triggers refuse every
//! other way to change a case's state or history. The decisions are made by the pure
//! `statemachine-core` crate; this crate binds it to SQL, one module per concern (the
//! map, with how a call flows through it, is docs/architecture.md):
//!
//! - plumbing: [`fmgr`] (entry points, arguments, datums), [`ereport`] (SM SQLSTATEs),
//!   [`spi`] (kept plans; rows that cannot outlive their connection), [`srf`] (returning
//!   sets), [`compat`] (PostgreSQL majors), [`door`] (the write door and guard reentry);
//! - what decisions read: [`machines`] (per-backend cache of compiled versions),
//!   [`facts`] (the database's answers to the core's checks), [`case_file`] (the case row);
//! - the write path: [`transition`] (transition_case), [`history`] (the one history
//!   writer and the case clock), [`commands`] (command idempotency), [`creation`],
//!   [`dimensions`], [`evidence`], [`assignments`], [`corrections`], [`versions`], [`import`] (import_cases), [`governance`] and [`govern`] (governed user tables),
//!   [`outbox`], [`timers`] (a refused timer's backoff);
//! - the rest of the SQL API: [`definitions`], [`available`], [`diagram`], [`guard`]
//!   (the guard trigger and break_glass), [`ddl_guard`] (the event trigger), [`seal`]
//!   (tamper evidence: history_digest, verify_history).
//!
//! The DDL lives in `sql/`: `schema.sql` (0.1.0) and one upgrade script per later version.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

pub mod assignments;
pub mod bulk;
pub mod available;
pub mod case_file;
pub mod commands;
pub mod compat;
pub mod corrections;
pub mod creation;
pub mod ddl_guard;
pub mod definitions;
pub mod delegation;
pub mod diagram;
pub mod dimensions;
pub mod distribute;
pub mod door;
pub mod ereport;
pub mod evidence;
pub mod facts;
pub mod fmgr;
pub mod govern;
pub mod governance;
pub mod guard;
pub mod history;
pub mod import;
pub mod machines;
pub mod outbox;
pub mod remote_door;
pub mod spi;
pub mod sql_guard;
pub mod subxact;
pub mod seal;
pub mod shards;
pub mod srf;
pub mod timers;
pub mod transition;
pub mod versions;

// A fresh install is 0.1.0's schema followed by every upgrade script in order, so each
// object is written once and an upgraded database matches a fresh one (tests/upgrade).
pgrx::extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
pgrx::extension_sql_file!("../sql/pg_statemachine--0.1.0--0.2.0.sql", name = "v0_2_0", requires = ["schema"]);
pgrx::extension_sql_file!("../sql/pg_statemachine--0.2.0--0.3.0.sql", name = "v0_3_0", requires = ["v0_2_0"]);
pgrx::extension_sql_file!("../sql/pg_statemachine--0.3.0--0.4.0.sql", name = "v0_4_0", requires = ["v0_3_0"]);
pgrx::extension_sql_file!("../sql/pg_statemachine--0.4.0--0.5.0.sql", name = "v0_5_0", requires = ["v0_4_0"]);
pgrx::extension_sql_file!("../sql/pg_statemachine--0.5.0--0.6.0.sql", name = "v0_6_0", requires = ["v0_5_0"]);
pgrx::extension_sql_file!("../sql/pg_statemachine--0.6.0--0.7.0.sql", name = "v0_7_0", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    door::register_callbacks();
    remote_door::define_setting();
    delegation::define_setting();
    governance::register_callbacks();
    sql_guard::register_callbacks();
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
