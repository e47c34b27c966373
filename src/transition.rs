//! The write path: transition_case.
//!
//! In one transaction (seed 003 §6): lock the case row (§7.1; with expected_version the
//! comparison happens under that lock, §7.2), decide from the cached rules and the
//! guards' facts (the core's `decide`), append the history row and move the case in one
//! statement (history::append; `ON CONFLICT DO NOTHING` on the command id makes a
//! concurrent replay wait for the first and then return its row, §15), link the evidence, write
//! the outbox event, store the guard audit. Two statements on the happy path of an
//! unguarded rule, each a plan kept per backend.

use crate::commands::{replay_or_refuse, Requested};
use crate::door::{self, refuse_inside_guard, Grant, Op};
use crate::facts::DbFacts;
use crate::fmgr::{text_datum, uuid_datum, uuid_from_datum, uuid_string, Args, SmResult};
use crate::history::{self, CaseMove, Entry};
use crate::spi::{Rows, Spi, Stmt, BOOL_ARRAY, TEXT_ARRAY, TIMESTAMPTZ_ARRAY, UUID_ARRAY};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::IntoDatum;
use crate::{case_file, dimensions, evidence, machines, outbox, sql_function};
use pgrx::pg_sys;
use statemachine_core::checks::WRITE;
use statemachine_core::{CaseFacts, CompiledMachine, EvidenceFact, Evaluation, Refusal, Request, Rule, Supplied};

/// The guard audit (seed 003 §9.3): one row per evaluated guard, from arrays ($1: the
/// history row, $2: when it was evaluated, $3-$5: guard code, passed, evidence as JSON).
static INSERT_GUARD_RESULTS: Stmt = Stmt {
    sql: "INSERT INTO statemachine.case_transition_guard_result (id, case_id, transition_id, guard_code, passed, evaluated_at, evidence) \
          SELECT pg_catalog.gen_random_uuid(), u.case_id, u.transition_id, u.guard_code, u.passed, u.evaluated_at, u.evidence::pg_catalog.jsonb \
          FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.uuid[]), pg_catalog.unnest($2::pg_catalog.timestamptz[]), \
                          pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.bool[]), \
                          pg_catalog.unnest($5::pg_catalog.text[]), pg_catalog.unnest($6::pg_catalog.uuid[])) \
                AS u(transition_id, evaluated_at, guard_code, passed, evidence, case_id)",
    args: &[UUID_ARRAY, TIMESTAMPTZ_ARRAY, TEXT_ARRAY, BOOL_ARRAY, TEXT_ARRAY, UUID_ARRAY],
};

fn transition_case(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("transition_case")?;
    let case_d = a.required(0, "case_id")?;
    if a.is_null(12) {
        if let Some(row) = crate::delegation::transition(a, false)? {
            return Ok(row);
        }
    }
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
    if let Some(row) = crate::delegation::transition(a, true)? {
        return Ok(row);
    }
    let spi = Spi::connect();
    transition_in(a, &spi, case_d, false, true)
}

/// A transition delegated to this node (delegation.rs): transition_case's arguments 0-11,
/// by state for transition_to. What needs other cases is sent back unwritten.
pub(crate) fn on_this_node(a: &Args, by_state: bool) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard(if by_state { "transition_to" } else { "transition_case" })?;
    let case_d = a.required(0, "case_id")?;
    let spi = Spi::connect();
    transition_in(a, &spi, case_d, !by_state, by_state)
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

    if let Some(prior) = crate::commands::claim(spi, command_d) {
        return crate::commands::answer_prior(spi, prior, &case_id, requested);
    }
    let lock = spi.run(&case_file::LOCK_FOR_TRANSITION, &[Some(case_d)], 1);
    let Some(locked) = Locked::read(&lock, 0, 1) else {
        let facts = CaseFacts { case_id: uuid_string(&case_id), current_state: String::new() };
        let refusal = Refusal::UnknownCase { case_id: facts.case_id.clone() };
        return replay_or_refuse(spi, command_d, &case_id, requested, refusal, &facts);
    };
    // A delegated call stays on its case: a family of dimensions may live on other shards.
    if crate::delegation::here() && (locked.root_id.is_some() || locked.has_dimensions) {
        return Ok(crate::delegation::send_back());
    }
    let facts = CaseFacts { case_id: uuid_string(&case_id), current_state: locked.current.clone() };
    let refuse = |refusal: Refusal| replay_or_refuse(spi, command_d, &case_id, requested, refusal, &facts);
    let machine = machines::get(spi, &locked.version_id);
    let code = if by_state {
        match machine.rule_to(&locked.current, &target, &role) {
            Ok(rule) => rule.code.clone(),
            Err(refusal) => return refuse(refusal),
        }
    } else {
        target.clone()
    };
    // ... and a `sql` guard's SQL may read any case.
    if crate::delegation::here() && machine.rule(&locked.current, &code).is_some_and(|r| r.runs_sql()) {
        return Ok(crate::delegation::send_back());
    }
    if find_dimension && locked.has_dimensions && !machine.has_code(&code) {
        if let Some(dimension) = dimension_with_code(spi, case_d, &code) {
            return transition_in(a, spi, uuid_datum(&dimension), false, false);
        }
    }

    if let Some(expected) = expected_version {
        if expected != locked.version {
            return refuse(Refusal::StaleVersion { expected, actual: locked.version });
        }
    }

    let evidence = evidence::facts(spi, evidence_d, case_d);
    let now = history::case_clock(locked.updated_at, &case_id)?;
    let asked = Asked {
        // SAFETY: actor_id is declared uuid and was required non-NULL above.
        actor: unsafe { uuid_from_datum(actor_d) },
        role: &role,
        reason_code: reason_code.as_deref(),
        reason_text: reason_text.as_deref(),
        evidence: &evidence,
    };
    let Judged { rule, guard_rows, entered_at } = match judge(spi, case_d, &case_id, &locked, &machine, &code, &asked, now) {
        Ok(judged) => judged,
        Err(refusal) => return refuse(refusal),
    };
    let transition_id = history::row_id(now);
    // What is recorded with the row, known before it is written so that its seal covers it.
    let links = evidence::links(&evidence, rule);
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
        state_version: locked.version + 1,
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
        prev_hash: locked.head,
        links,
        guards: guard_rows.iter().map(|(code, passed, evidence)| (code.clone(), *passed, evidence.1.clone())).collect(),
        correction: None,
    };
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
    evidence::link(spi, &case_id, &transition_id, &entry.links);
    if let Some(event_type) = &rule.emit {
        outbox::emit(spi, &[(event_type.clone(), transition_id)], now, Some(case_d));
    }
    let mut audit = GuardAudit::default();
    audit.add(&case_id, &transition_id, now, &guard_rows);
    audit.write(spi);
    Ok(row)
}

/// A locked case row as the write path reads it: LOCK_FOR_TRANSITION's columns, from
/// column `first` on (a statement locking many cases puts the case id before them).
pub(crate) struct Locked {
    pub current: String,
    pub version: i64,
    pub entered_at: pg_sys::TimestampTz,
    pub updated_at: pg_sys::TimestampTz,
    pub version_id: [u8; 16],
    pub root_id: Option<[u8; 16]>,
    pub has_dimensions: bool,
    /// The hash of the case's latest history row (GENESIS if unsealed).
    pub head: [u8; 32],
}

impl Locked {
    pub(crate) fn read(rows: &Rows<'_>, row: usize, first: i32) -> Option<Locked> {
        Some(Locked {
            current: rows.text(row, first)?,
            version: rows.i64(row, first + 1)?,
            entered_at: rows.i64(row, first + 2)?,
            updated_at: rows.i64(row, first + 3)?,
            version_id: rows.uuid(row, first + 4)?,
            root_id: rows.uuid(row, first + 5),
            has_dimensions: rows.bool(row, first + 6) == Some(true),
            head: case_file::prev_hash(rows, row, first + 7),
        })
    }
}

/// What a caller asks of one transition besides its code.
pub(crate) struct Asked<'a> {
    pub actor: [u8; 16],
    pub role: &'a str,
    pub reason_code: Option<&'a str>,
    pub reason_text: Option<&'a str>,
    pub evidence: &'a [EvidenceFact],
}

/// An accepted transition, before it is written.
pub(crate) struct Judged<'m> {
    pub rule: &'m Rule,
    /// The audit rows of its evaluated guards (when the rule audits them).
    pub guard_rows: Vec<GuardRow>,
    /// The case's state_entered_at after it.
    pub entered_at: pg_sys::TimestampTz,
}

/// Every check of a transition (seed 003 §6) on a locked case, at `now`: the core's
/// `decide` (rule, role, reason, evidence, time in state, guards, with facts read from
/// the database under the lock) and the cross-dimension invariants. The single write
/// path and the set-based one (bulk.rs) both judge through here.
#[allow(clippy::too_many_arguments)]
// A refusal is an answer, not a failure, and core's decide returns it unboxed too.
#[allow(clippy::result_large_err)]
pub(crate) fn judge<'m>(
    spi: &Spi,
    case_d: pg_sys::Datum,
    case_id: &[u8; 16],
    locked: &Locked,
    machine: &'m CompiledMachine,
    code: &str,
    asked: &Asked<'_>,
    now: pg_sys::TimestampTz,
) -> Result<Judged<'m>, Refusal> {
    let request = Request {
        case_id: *case_id,
        current_state: &locked.current,
        code,
        actor_id: Some(asked.actor),
        actor_role: Some(asked.role),
        supplied: Supplied::Given { reason_code: asked.reason_code, reason_text: asked.reason_text, evidence: asked.evidence },
        dry_run: false,
    };
    let mut db = DbFacts { spi, case_d, entered_at: locked.entered_at, now };
    let (rule, evaluation) = machine.decide(&request, &mut db, WRITE)?;
    if locked.root_id.is_some() || locked.has_dimensions {
        if let Err(reason) = dimensions::family_allows(spi, case_d, locked.root_id, machine, &rule.to) {
            return Err(Refusal::GuardFailed { code: code.to_owned(), guard: "dimension_invariant".into(), reason });
        }
    }
    let guard_rows = if rule.audit_guards { guard_results(&evaluation) } else { Vec::new() };
    let entered_at = if rule.to != locked.current { now } else { locked.entered_at };
    Ok(Judged { rule, guard_rows, entered_at })
}

/// The dimension of a case whose machine knows `code`. Codes are unique across a case's
/// machines (attach_dimension checks), so at most one does.
pub(crate) fn dimension_with_code(spi: &Spi, case_d: pg_sys::Datum, code: &str) -> Option<[u8; 16]> {
    let family = dimensions::family(spi, case_d, case_d);
    family.iter().find(|(_, m, _)| m.has_code(code)).map(|(dimension, _, _)| *dimension)
}

/// A guard's audit row: code, passed, and its evidence as JSON and as jsonb's own text.
pub(crate) type GuardRow = (String, bool, (serde_json::Value, String));

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

/// The guard audit rows of transitions (history row id, evaluated at, its rows),
/// collected column by column and stored with one statement.
#[derive(Default)]
pub(crate) struct GuardAudit {
    cases: Vec<pgrx::Uuid>,
    transitions: Vec<pgrx::Uuid>,
    at: Vec<TimestampWithTimeZone>,
    codes: Vec<String>,
    passed: Vec<bool>,
    evidence: Vec<String>,
}

impl GuardAudit {
    pub(crate) fn add(&mut self, case_id: &[u8; 16], transition_id: &[u8; 16], at: pg_sys::TimestampTz, rows: &[GuardRow]) {
        for (code, passed, (_, stored)) in rows {
            self.cases.push(pgrx::Uuid::from_bytes(*case_id));
            self.transitions.push(pgrx::Uuid::from_bytes(*transition_id));
            self.at.push(history::tstz(at));
            self.codes.push(code.clone());
            self.passed.push(*passed);
            // jsonb's own text of the evidence: stored as the seal saw it.
            self.evidence.push(stored.clone());
        }
    }

    /// Stores the rows; the door must be open.
    pub(crate) fn write(self, spi: &Spi) {
        if self.transitions.is_empty() {
            return;
        }
        spi.run(
            &INSERT_GUARD_RESULTS,
            &[self.transitions.into_datum(), self.at.into_datum(), self.codes.into_datum(), self.passed.into_datum(), self.evidence.into_datum(), self.cases.into_datum()],
            0,
        );
    }
}

sql_function!(sm_transition_case, pg_finfo_sm_transition_case, transition_case);
sql_function!(sm_transition_to, pg_finfo_sm_transition_to, transition_to);
