//! Command idempotency (seed 003 §15): a command id names one command. Used again for
//! the same command it returns what that command recorded; used for anything else it
//! is SM008. The history's unique command_id is what makes this hold under races.
//!
//! On a distributed installation the unique key is (case_id, command_id) — Citus keys
//! must contain the column the table is sharded by — so a command id used for another
//! case is found before writing instead ([`claim`]): the command id's lock, then a look
//! across the shards. The write commits on the case's one shard before the lock is
//! released, so a concurrent use of the same id waits and then finds it. With
//! `distribute(command_scope => 'case')` a command id is unique within its case only: no
//! lock, no look across the shards (each call stays on its case's shard).

use crate::fmgr::{uuid_string, SmResult};
use crate::spi::{Spi, Stmt, UUID};
use pgrx::pg_sys;
use statemachine_core::{CaseFacts, Refusal, Report};

static FIND_COMMAND: Stmt = Stmt {
    sql: "SELECT t.case_id, t.transition_code, t, c.machine, c.case_number, c, t.id, t.command_id, t.to_state \
          FROM ONLY statemachine.case_state_transition t JOIN ONLY statemachine.case_file c ON c.id OPERATOR(pg_catalog.=) t.case_id \
          WHERE t.command_id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};

static FIND_COMMAND_IN_CASE: Stmt = Stmt {
    sql: "SELECT t.case_id, t.transition_code, t, c.machine, c.case_number, c, t.id, t.command_id, t.to_state \
          FROM ONLY statemachine.case_state_transition t JOIN ONLY statemachine.case_file c ON c.id OPERATOR(pg_catalog.=) t.case_id \
          WHERE t.case_id OPERATOR(pg_catalog.=) $2 AND c.id OPERATOR(pg_catalog.=) $2 AND t.command_id OPERATOR(pg_catalog.=) $1",
    args: &[UUID, UUID],
};

/// What an earlier use of a command id recorded.
pub struct PriorCommand {
    pub case_id: [u8; 16],
    pub code: String,
    pub machine: String,
    pub case_number: String,
    pub transition_row: pg_sys::Datum,
    pub case_row: pg_sys::Datum,
    pub transition_id: [u8; 16],
    pub command_id: [u8; 16],
    pub to_state: String,
}

/// The history row (and its case) a command id already recorded, if any. The row datums
/// are SPI memory: `spi.keep` them to return one.
pub fn find(spi: &Spi, command_id: pg_sys::Datum) -> Option<PriorCommand> {
    prior(&spi.run(&FIND_COMMAND, &[Some(command_id)], 1))
}

/// [`find`] within one case.
pub fn find_in_case(spi: &Spi, command_id: pg_sys::Datum, case_id: &[u8; 16]) -> Option<PriorCommand> {
    prior(&spi.run(&FIND_COMMAND_IN_CASE, &[Some(command_id), Some(crate::fmgr::uuid_datum(case_id))], 1))
}

fn prior(r: &crate::spi::Rows<'_>) -> Option<PriorCommand> {
    Some(PriorCommand {
        case_id: r.uuid(0, 1)?,
        code: r.text(0, 2)?,
        transition_row: r.get(0, 3)?,
        machine: r.text(0, 4)?,
        case_number: r.text(0, 5)?,
        case_row: r.get(0, 6)?,
        transition_id: r.uuid(0, 7)?,
        command_id: r.uuid(0, 8)?,
        to_state: r.text(0, 9)?,
    })
}

fn describe(p: &PriorCommand) -> String {
    if p.code == "CREATE" {
        format!("CREATE of case {} (machine {}, case number {})", uuid_string(&p.case_id), p.machine, p.case_number)
    } else {
        format!("transition {} on case {}", p.code, uuid_string(&p.case_id))
    }
}

static LOCK_COMMAND: Stmt = Stmt {
    sql: "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1::pg_catalog.text, 5724))",
    args: &[UUID],
};

/// On a distributed installation: takes the command id's lock for the transaction and
/// returns what the id already recorded, if anything (None elsewhere: one node's unique
/// key answers during the write).
pub fn claim(spi: &Spi, command_id: pg_sys::Datum) -> Option<PriorCommand> {
    // The plain look across the shards first (half the cost of FIND_COMMAND's join, and
    // almost every command is new).
    if !lock(spi, command_id) || spi.run(&COMMAND_USED, &[Some(command_id)], 1).is_empty() {
        return None;
    }
    find(spi, command_id)
}

static COMMAND_USED: Stmt = Stmt {
    sql: "SELECT 1 FROM ONLY statemachine.case_state_transition t WHERE t.command_id OPERATOR(pg_catalog.=) $1 LIMIT 1",
    args: &[UUID],
};

/// On a distributed installation: takes the command id's lock for the transaction (true);
/// elsewhere nothing (false).
pub fn lock(spi: &Spi, command_id: pg_sys::Datum) -> bool {
    // command_scope 'case': the per-case key answers, as on one node for its case.
    if !crate::remote_door::distributed() || crate::remote_door::commands_per_case() {
        return false;
    }
    spi.run(&LOCK_COMMAND, &[Some(command_id)], 1);
    true
}

/// A transition's command already recorded (see [`claim`]): the recorded row for a
/// replay, SM008 for anything else.
pub fn answer_prior(spi: &Spi, prior: PriorCommand, case_id: &[u8; 16], requested: Requested<'_>) -> SmResult<pg_sys::Datum> {
    if &prior.case_id == case_id && requested.made_by(&prior) {
        Ok(spi.keep(prior.transition_row))
    } else {
        Err(conflict(&prior, requested.describe(case_id)))
    }
}

/// SM008: the command id was used for `prior`, not for what is `requested` now.
pub fn conflict(prior: &PriorCommand, requested: String) -> Report {
    Refusal::CommandConflict { command_id: uuid_string(&prior.command_id), existing: describe(prior), requested }
        .report(&CaseFacts::default())
}

/// What a command asked for: a transition by code (transition_case) or by the state it
/// leads to (transition_to).
#[derive(Clone, Copy)]
pub enum Requested<'a> {
    Code(&'a str),
    ToState(&'a str),
}

impl Requested<'_> {
    fn made_by(&self, p: &PriorCommand) -> bool {
        match self {
            Requested::Code(code) => p.code == *code,
            Requested::ToState(state) => p.to_state == *state && p.code != "CREATE",
        }
    }

    fn describe(&self, case_id: &[u8; 16]) -> String {
        match self {
            Requested::Code(code) => format!("transition {code} on case {}", uuid_string(case_id)),
            Requested::ToState(state) => format!("transition to {state} on case {}", uuid_string(case_id)),
        }
    }
}

/// Before raising a refusal of what was `requested` on `case_id`: a replay of an earlier
/// command returns that command's row instead (the case may have moved on since), a
/// reuse for something else is SM008.
pub fn replay_or_refuse(
    spi: &Spi,
    command_id: pg_sys::Datum,
    case_id: &[u8; 16],
    requested: Requested<'_>,
    refusal: Refusal,
    facts: &CaseFacts,
) -> SmResult<pg_sys::Datum> {
    // command_scope 'case': the id is the case's own (and a delegated call may read no
    // other shard).
    let prior = if crate::remote_door::commands_per_case() { find_in_case(spi, command_id, case_id) } else { find(spi, command_id) };
    match prior {
        Some(p) if &p.case_id == case_id && requested.made_by(&p) => Ok(spi.keep(p.transition_row)),
        Some(p) => Err(conflict(&p, requested.describe(case_id))),
        None => Err(refusal.report(facts)),
    }
}
