//! The write path: transition_case.
//!
//! In one transaction (seed 003 §6): lock the case row (§7.1; with expected_version the
//! comparison happens under that lock, §7.2), decide from the cached rules and the
//! guards' facts (the core's `decide`), append the history row and move the case in one
//! statement (history::append; `ON CONFLICT (command_id) DO NOTHING` makes a concurrent
//! replay wait for the first and then return its row, §15), link the evidence, write
//! the outbox event, store the guard audit. Two statements on the happy path of an
//! unguarded rule, each a plan kept per backend.

use crate::commands::{replay_or_refuse, Requested};
use crate::door::{self, refuse_inside_guard, Grant, Op};
use crate::facts::DbFacts;
use crate::fmgr::{text_datum, uuid_datum, uuid_from_datum, uuid_string, Args, SmResult};
use crate::history::{self, CaseMove, Entry};
use crate::spi::{Spi, Stmt, JSONB, TIMESTAMPTZ, UUID};
use crate::{case_file, dimensions, evidence, machines, outbox, sql_function};
use pgrx::pg_sys;
use statemachine_core::checks::WRITE;
use statemachine_core::{CaseFacts, Evaluation, Refusal, Request, Supplied};

/// The guard audit (seed 003 §9.3): one row per evaluated guard, from a JSON array.
static INSERT_GUARD_RESULTS: Stmt = Stmt {
    sql: "INSERT INTO statemachine.case_transition_guard_result (id, transition_id, guard_code, passed, evaluated_at, evidence) \
          SELECT pg_catalog.gen_random_uuid(), $1, g.guard_code, g.passed, $2, g.evidence \
          FROM pg_catalog.jsonb_to_recordset($3) AS g(guard_code text, passed boolean, evidence jsonb)",
    args: &[UUID, TIMESTAMPTZ, JSONB],
};

fn transition_case(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("transition_case")?;
    let case_d = a.required(0, "case_id")?;
    let spi = Spi::connect();
    match a.opt_text(12) {
        // An explicit dimension: the case's own machine, or one attached to it.
        Some(dimension) => {
            // The case's row first, then the dimension's: the same order as a dimension
            // found by code, so the two ways of calling cannot deadlock each other.
            case_file::lock(&spi, case_d);
            let Some(target) = dimensions::by_name(&spi, case_d, &dimension) else {
                let case_id = uuid_string(&a.uuid(0, "case_id")?);
                return Err(Refusal::UnknownDimension { case_id, dimension }.report(&CaseFacts::default()));
            };
            transition_in(a, &spi, uuid_datum(&target), false, false)
        }
        None => transition_in(a, &spi, case_d, true, false),
    }
}

/// transition_to: the same write path, with the rule found by the state it leads to.
fn transition_to(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("transition_to")?;
    let case_d = a.required(0, "case_id")?;
    let spi = Spi::connect();
    transition_in(a, &spi, case_d, false, true)
}

/// transition_case on one case row. `find_dimension`: a code the case's machine does not
/// know may belong to one of its dimensions; move that one instead. `by_state`: argument
/// 1 is the state to go to (transition_to), not a transition code.
fn transition_in(a: &Args, spi: &Spi, case_d: pg_sys::Datum, find_dimension: bool, by_state: bool) -> SmResult<pg_sys::Datum> {
    let target = a.text(1, if by_state { "to_state" } else { "transition_code" })?;
    let requested = if by_state { Requested::ToState(&target) } else { Requested::Code(&target) };
    let actor_d = a.required(2, "actor_id")?;
    let role = a.text(3, "actor_role")?;
    let command_d = a.required(4, "command_id")?;
    let (reason_code, reason_text) = (a.opt_text(5), a.opt_text(6));
    let expected_version = a.opt_i64(7);
    let evidence_d = a.datum(8);
    // SAFETY: case_d is a uuid datum: the caller's argument, or an id read from case_file.
    let case_id = unsafe { uuid_from_datum(case_d) };

    let lock = spi.run(&case_file::LOCK_FOR_TRANSITION, &[Some(case_d)], 1);
    let (Some(current), Some(version), Some(entered_at), Some(updated_at), Some(version_id)) =
        (lock.text(0, 1), lock.i64(0, 2), lock.i64(0, 3), lock.i64(0, 4), lock.uuid(0, 5))
    else {
        let facts = CaseFacts { case_id: uuid_string(&case_id), current_state: String::new() };
        let refusal = Refusal::UnknownCase { case_id: facts.case_id.clone() };
        return replay_or_refuse(spi, command_d, &case_id, requested, refusal, &facts);
    };
    let (root_id, has_dimensions) = (lock.uuid(0, 6), lock.bool(0, 7) == Some(true));
    let facts = CaseFacts { case_id: uuid_string(&case_id), current_state: current.clone() };
    let refuse = |refusal: Refusal| replay_or_refuse(spi, command_d, &case_id, requested, refusal, &facts);
    let machine = machines::get(spi, &version_id);
    let code = if by_state {
        match machine.rule_to(&current, &target, &role) {
            Ok(rule) => rule.code.clone(),
            Err(refusal) => return refuse(refusal),
        }
    } else {
        target.clone()
    };
    if find_dimension && has_dimensions && !machine.has_code(&code) {
        // Codes are unique across a case's machines (attach_dimension checks), so at most
        // one dimension knows this one.
        let family = dimensions::family(spi, case_d, case_d);
        if let Some((dimension, _, _)) = family.iter().find(|(_, m, _)| m.has_code(&code)) {
            return transition_in(a, spi, uuid_datum(dimension), false, false);
        }
    }

    if let Some(expected) = expected_version {
        if expected != version {
            return refuse(Refusal::StaleVersion { expected, actual: version });
        }
    }

    let evidence = evidence::facts(spi, evidence_d);
    let now = history::case_clock(updated_at, &case_id)?;
    let request = Request {
        case_id,
        current_state: &current,
        code: &code,
        // SAFETY: actor_id is declared uuid and was required non-NULL above.
        actor_id: Some(unsafe { uuid_from_datum(actor_d) }),
        actor_role: Some(&role),
        supplied: Supplied::Given { reason_code: reason_code.as_deref(), reason_text: reason_text.as_deref(), evidence: &evidence },
        dry_run: false,
    };
    let mut db = DbFacts { spi, case_d, entered_at, now };
    let (rule, evaluation) = match machine.decide(&request, &mut db, WRITE) {
        Ok(decided) => decided,
        Err(refusal) => return refuse(refusal),
    };
    if root_id.is_some() || has_dimensions {
        if let Err(reason) = dimensions::family_allows(spi, case_d, root_id, &machine, &rule.to) {
            return refuse(Refusal::GuardFailed { code: code.clone(), guard: "dimension_invariant".into(), reason });
        }
    }

    let transition_id = history::row_id(now);
    // What is recorded with the row, known before it is written so that its seal covers it.
    let links = evidence::links(&evidence, rule);
    let guard_rows = if rule.audit_guards { guard_results(&evaluation) } else { Vec::new() };
    // The caller's own datums serve as parameters: rule.code is transition_code, the
    // role is actor_role, and the from-state is the locked row's current_state.
    let entry = Entry {
        id: transition_id,
        case: case_d,
        machine: &machine.machine,
        from_state: lock.get(0, 1),
        to_state: text_datum(&rule.to),
        code: if by_state { text_datum(&code) } else { a.required(1, "transition_code")? },
        kind: rule.kind.as_str(),
        state_version: version + 1,
        actor: actor_d,
        role: a.required(3, "actor_role")?,
        reason_code: a.datum(5),
        reason_text: a.datum(6),
        policy_version: machine.version,
        occurred_at: now,
        command: command_d,
        correlation: a.datum(9),
        causation: a.datum(10),
        metadata: a.datum(11),
        prev_hash: case_file::prev_hash(&lock, 8),
        links,
        guards: guard_rows.iter().map(|(code, passed, evidence)| (code.clone(), *passed, evidence.1.clone())).collect(),
        correction: None,
    };
    let entered_at = if rule.to != current { now } else { entered_at };
    const WRITES: &[Grant] = &[
        history::APPEND_WRITES[0],
        history::APPEND_WRITES[1],
        ("case_transition_evidence", Op::Insert),
        ("outbox_event", Op::Insert),
        ("case_transition_guard_result", Op::Insert),
    ];
    let _door = door::open(WRITES);
    let Some(row) = history::append(spi, &entry, CaseMove::To { entered_at, version_id: None }) else {
        // The command id is taken, by a committed transaction we waited for: a replay or
        // SM008. (Not finding that row would mean it is invisible to us: retry.)
        return refuse(Refusal::CommandInFlight);
    };
    evidence::link(spi, &transition_id, &entry.links);
    if let Some(event_type) = &rule.emit {
        outbox::emit(spi, event_type, &transition_id, now);
    }
    if !guard_rows.is_empty() {
        record_guard_results(spi, &transition_id, &guard_rows, now);
    }
    Ok(row)
}

/// A guard's audit row: code, passed, and its evidence as JSON and as jsonb's own text.
type GuardRow = (String, bool, (serde_json::Value, String));

/// The audit rows of a transition's evaluated guards (seed 003 §9.3).
fn guard_results(evaluation: &Evaluation) -> Vec<GuardRow> {
    evaluation
        .guards()
        .map(|c| {
            // The table keeps evidence as an object; anything else a function returned is wrapped.
            let evidence = match &c.evidence {
                serde_json::Value::Object(_) => c.evidence.clone(),
                serde_json::Value::Null => serde_json::json!({}),
                other => serde_json::json!({ "value": other }),
            };
            // jsonb's text of it, as the table will return it (the seal covers that).
            // SAFETY: jsonb_datum returns a jsonb datum.
            let stored = unsafe { crate::fmgr::jsonb_out(crate::fmgr::jsonb_datum(&evidence.to_string())) };
            (c.name.clone(), c.passed, (evidence, stored))
        })
        .collect()
}

/// Stores the guard audit rows of a transition; the door must be open.
fn record_guard_results(spi: &Spi, transition_id: &[u8; 16], rows: &[GuardRow], now: pg_sys::TimestampTz) {
    let results: Vec<serde_json::Value> = rows
        .iter()
        .map(|(code, passed, (evidence, _))| serde_json::json!({"guard_code": code, "passed": passed, "evidence": evidence}))
        .collect();
    spi.run(
        &INSERT_GUARD_RESULTS,
        &[
            Some(uuid_datum(transition_id)),
            Some(pg_sys::Datum::from(now)),
            Some(crate::fmgr::jsonb_datum(&serde_json::Value::Array(results).to_string())),
        ],
        0,
    );
}

sql_function!(sm_transition_case, pg_finfo_sm_transition_case, transition_case);
sql_function!(sm_transition_to, pg_finfo_sm_transition_to, transition_to);
