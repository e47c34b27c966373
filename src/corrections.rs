//! Corrections (seed 003 §12): correct_transition appends a CORRECT row that moves the
//! case to the state it should be in, and links it to the row it corrects. History is
//! never edited; only the latest transition may be corrected unless the machine says
//! `"corrections": "any"`, and each row at most once.

use crate::commands;
use crate::door::{self, refuse_inside_guard, Grant, Op};
use crate::fmgr::{text_datum, uuid_datum, uuid_string, Args, SmResult};
use crate::history::{self, CaseMove, Entry};
use crate::spi::{Spi, Stmt, TEXT, TIMESTAMPTZ, UUID};
use crate::facts::database_identity_refusal;
use crate::{machines, sql_function};
use pgrx::pg_sys;
use statemachine_core::definition::CORRECT_CODE;
use statemachine_core::{CaseFacts, Refusal};

static CORRECTION_TARGET: Stmt = Stmt {
    sql: "SELECT t.case_id, t.state_version, t.transition_code FROM ONLY statemachine.case_state_transition t \
          WHERE t.id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
/// The case to correct, locked, with its version's correction scope and whether $2 is
/// one of its states.
static LOCK_FOR_CORRECTION: Stmt = Stmt {
    sql: "SELECT c.current_state, c.state_version, c.state_entered_at, c.updated_at, v.corrections, v.machine, v.version, \
                 EXISTS (SELECT 1 FROM ONLY statemachine.state s WHERE s.machine_version_id OPERATOR(pg_catalog.=) c.machine_version_id \
                         AND s.code OPERATOR(pg_catalog.=) $2), c.machine_version_id, \
                 c.history_head \
          FROM ONLY statemachine.case_file c JOIN ONLY statemachine.machine_version v ON v.id OPERATOR(pg_catalog.=) c.machine_version_id \
          WHERE c.id OPERATOR(pg_catalog.=) $1 FOR UPDATE OF c",
    args: &[UUID, TEXT],
};
static CORRECTED_BY: Stmt = Stmt {
    sql: "SELECT k.correcting_transition_id, t.state_version FROM ONLY statemachine.case_state_correction k \
          JOIN ONLY statemachine.case_state_transition t \
            ON t.case_id OPERATOR(pg_catalog.=) k.case_id AND t.id OPERATOR(pg_catalog.=) k.correcting_transition_id \
          WHERE k.wrong_transition_id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
static INSERT_CORRECTION: Stmt = Stmt {
    sql: "INSERT INTO statemachine.case_state_correction (id, case_id, wrong_transition_id, correcting_transition_id, \
              corrected_by, corrected_at, reason_text) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    args: &[UUID, UUID, UUID, UUID, UUID, TIMESTAMPTZ, TEXT],
};

fn correct_transition(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("correct_transition")?;
    let wrong_d = a.required(0, "transition_id")?;
    let to_state = a.text(1, "to_state")?;
    let reason = a.opt_text(2).filter(|r| !r.trim().is_empty());
    let actor_d = a.required(3, "actor_id")?;
    let role = a.text(4, "actor_role")?;
    let command_d = a.required(5, "command_id")?;
    let wrong_id = a.uuid(0, "transition_id")?;

    let spi = Spi::connect();
    let target = spi.run(&CORRECTION_TARGET, &[Some(wrong_d)], 1);
    let (Some(case_id), Some(wrong_version), Some(wrong_code)) = (target.uuid(0, 1), target.i64(0, 2), target.text(0, 3)) else {
        return Err(Refusal::UnknownTransitionRow { transition_id: uuid_string(&wrong_id) }.report(&CaseFacts::default()));
    };
    let case_d = uuid_datum(&case_id);
    let lock = spi.run(&LOCK_FOR_CORRECTION, &[Some(case_d), Some(text_datum(&to_state))], 1);
    let (Some(current), Some(version), Some(entered_at), Some(updated_at), Some(scope), Some(machine), Some(machine_version)) =
        (lock.text(0, 1), lock.i64(0, 2), lock.i64(0, 3), lock.i64(0, 4), lock.text(0, 5), lock.text(0, 6), lock.i32(0, 7))
    else {
        return Err(Refusal::UnknownCase { case_id: uuid_string(&case_id) }.report(&CaseFacts::default()));
    };
    let state_known = lock.bool(0, 8) == Some(true);
    let version_id = lock.uuid(0, 9);
    let facts = CaseFacts { case_id: uuid_string(&case_id), current_state: current.clone() };
    // A replay of this very correction returns its row; any other use of the id is SM008.
    let corrected = spi.run(&CORRECTED_BY, &[Some(wrong_d)], 1);
    let (correcting, correcting_version) = (corrected.uuid(0, 1), corrected.i64(0, 2));
    if let Some(p) = commands::find(&spi, command_d) {
        return if p.code == CORRECT_CODE && p.case_id == case_id && correcting == Some(p.transition_id) {
            Ok(spi.keep(p.transition_row))
        } else {
            Err(commands::conflict(&p, format!("correction of transition {} on case {}", uuid_string(&wrong_id), facts.case_id)))
        };
    }
    // Under role_source database the corrector's role is a database role of the session user.
    if let Some(version_id) = version_id {
        let actor = a.uuid(3, "actor_id")?;
        if let Some(refusal) = database_identity_refusal(&spi, &machines::get(&spi, &version_id), Some(&role), &actor, CORRECT_CODE) {
            return Err(refusal.report(&facts));
        }
    }
    let label = format!("{wrong_code} (state_version {wrong_version})");
    let not_allowed = |why: String| Err(Refusal::CorrectionNotAllowed { transition: label.clone(), why }.report(&facts));
    if wrong_version == 0 {
        return not_allowed("it is the CREATE row; a case's creation is not a transition to correct".into());
    }
    if let Some(by) = correcting_version {
        return not_allowed(format!("it was already corrected (by the CORRECT row at state_version {by})"));
    }
    if scope != "any" && wrong_version != version {
        return not_allowed(format!(
            "the case is at state_version {version}, and machine {machine} v{machine_version} allows correcting only the latest transition"
        ));
    }
    if !state_known {
        return Err(Refusal::UnknownState { machine, version: machine_version, state: to_state }.report(&facts));
    }
    let Some(reason) = reason else {
        return Err(Refusal::ReasonRequired { code: CORRECT_CODE.into(), allowed: Vec::new() }.report(&facts));
    };

    let now = history::case_clock(updated_at, &case_id)?;
    let transition_id = history::row_id(now);
    let metadata = serde_json::json!({"corrects": uuid_string(&wrong_id), "corrects_code": wrong_code}).to_string();
    let entry = Entry {
        id: transition_id,
        case: case_d,
        machine: &machine,
        from_state: Some(text_datum(&current)),
        to_state: text_datum(&to_state),
        code: text_datum(CORRECT_CODE),
        kind: "correction",
        state_version: version + 1,
        actor: actor_d,
        role: a.required(4, "actor_role")?,
        reason_code: None,
        reason_text: Some(text_datum(&reason)),
        policy_version: machine_version,
        occurred_at: now,
        command: command_d,
        correlation: None,
        causation: Some(wrong_d),
        metadata: Some(crate::fmgr::jsonb_datum(&metadata)),
        prev_hash: crate::case_file::prev_hash(&lock, 0, 10),
        links: Vec::new(),
        guards: Vec::new(),
        // SAFETY: actor_id is declared uuid and was required non-NULL above.
        correction: Some((wrong_id, unsafe { crate::fmgr::uuid_from_datum(actor_d) }, reason.clone())),
    };
    let entered_at = if to_state != current { now } else { entered_at };
    const WRITES: &[Grant] = &[history::APPEND_WRITES[0], history::APPEND_WRITES[1], ("case_state_correction", Op::Insert)];
    let _door = door::open(WRITES);
    let Some(row) = history::append(&spi, &entry, CaseMove::To { entered_at, version_id: None }) else {
        return Err(Refusal::CommandInFlight.report(&facts));
    };
    spi.run(
        &INSERT_CORRECTION,
        &[
            Some(uuid_datum(&history::row_id(now))),
            Some(case_d),
            Some(wrong_d),
            Some(uuid_datum(&transition_id)),
            Some(actor_d),
            Some(pg_sys::Datum::from(now)),
            Some(text_datum(&reason)),
        ],
        0,
    );
    Ok(row)
}

sql_function!(sm_correct_transition, pg_finfo_sm_correct_transition, correct_transition);
