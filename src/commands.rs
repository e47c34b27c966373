//! Command idempotency (seed 003 §15): a command id names one command. Used again for
//! the same command it returns what that command recorded; used for anything else it
//! is SM008. The history's unique command_id is what makes this hold under races.

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
    let r = spi.run(&FIND_COMMAND, &[Some(command_id)], 1);
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
    match find(spi, command_id) {
        Some(p) if &p.case_id == case_id && requested.made_by(&p) => Ok(spi.keep(p.transition_row)),
        Some(p) => Err(conflict(&p, requested.describe(case_id))),
        None => Err(refusal.report(facts)),
    }
}
