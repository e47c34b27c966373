//! import_cases: existing records brought under a machine at their current state, their
//! dated past as history (transition_kind 'import'). Set-based: every record is read and
//! judged in Rust first (core's `import`), then each chunk of records is written with
//! two statements — its case rows, then its history rows — from arrays, whatever the
//! number of records. Each history row is sealed and chained like any other.

use crate::door::{self, refuse_inside_guard, Grant, Op};
use crate::facts::database_identity_refusal;
use crate::fmgr::{jsonb_text, uuid_datum, Args, SmResult};
use crate::spi::{Spi, Stmt, BYTEA_ARRAY, INT4, INT8_ARRAY, TEXT, TEXT_ARRAY, TIMESTAMPTZ_ARRAY, UUID, UUID_ARRAY};
use crate::srf::return_tuples;
use crate::{commands, history, machines, sql_function};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::{pg_sys, IntoDatum};
use statemachine_core::import::{entered_at, parse_cases, plan_case, CaseIn, OnIllegal, PlannedStep};
use statemachine_core::seal::{row_hash, SealedRow, GENESIS};
use statemachine_core::{CaseFacts, CompiledMachine, Problem, Refusal, Severity};
use std::str::FromStr;

/// Records written per pair of statements: bounds the arrays held at once.
const CHUNK: usize = 10_000;

static TAKEN_NUMBERS: Stmt = Stmt {
    sql: "SELECT c.case_number FROM ONLY statemachine.case_file c \
          WHERE c.machine OPERATOR(pg_catalog.=) $1 AND c.case_number OPERATOR(pg_catalog.=) ANY ($2) \
          ORDER BY c.case_number LIMIT 10",
    args: &[TEXT, TEXT_ARRAY],
};
static TAKEN_IDS: Stmt = Stmt {
    sql: "SELECT c.id::text FROM ONLY statemachine.case_file c WHERE c.id OPERATOR(pg_catalog.=) ANY ($1) ORDER BY c.id LIMIT 10",
    args: &[UUID_ARRAY],
};
/// One chunk's case rows; $4.. are per-case arrays. ON CONFLICT: a number or id taken
/// meanwhile (a concurrent import) makes the count short, which refuses the call.
static INSERT_CASES: Stmt = Stmt {
    sql: "INSERT INTO statemachine.case_file AS c (id, machine, machine_version, machine_version_id, case_number, \
              current_state, state_version, state_entered_at, created_at, updated_at, metadata, history_head) \
          SELECT u.id, $1, $2, $3, u.num, u.state, u.version, u.entered, u.created, u.updated, \
                 COALESCE(u.meta::pg_catalog.jsonb, '{}'::pg_catalog.jsonb), u.head \
          FROM ROWS FROM (pg_catalog.unnest($4::pg_catalog.uuid[]), pg_catalog.unnest($5::pg_catalog.text[]), \
                          pg_catalog.unnest($6::pg_catalog.text[]), pg_catalog.unnest($7::pg_catalog.int8[]), \
                          pg_catalog.unnest($8::pg_catalog.timestamptz[]), pg_catalog.unnest($9::pg_catalog.timestamptz[]), \
                          pg_catalog.unnest($10::pg_catalog.timestamptz[]), pg_catalog.unnest($11::pg_catalog.text[]), \
                          pg_catalog.unnest($12::pg_catalog.bytea[])) \
               AS u(id, num, state, version, entered, created, updated, meta, head) \
          ON CONFLICT DO NOTHING",
    args: &[TEXT, INT4, UUID, UUID_ARRAY, TEXT_ARRAY, TEXT_ARRAY, INT8_ARRAY, TIMESTAMPTZ_ARRAY, TIMESTAMPTZ_ARRAY, TIMESTAMPTZ_ARRAY, TEXT_ARRAY, BYTEA_ARRAY],
};
/// A replay: the cases the import with this command id created (their first row is
/// correlated with it), as it returned them (the state and version its last imported
/// row left them in).
static IMPORTED: Stmt = Stmt {
    sql: "SELECT c.id AS case_id, c.case_number, l.to_state AS current_state, l.state_version \
          FROM pg_catalog.unnest($2::pg_catalog.text[]) WITH ORDINALITY AS u(num, n) \
          JOIN ONLY statemachine.case_file c ON c.machine OPERATOR(pg_catalog.=) $1 AND c.case_number OPERATOR(pg_catalog.=) u.num \
          JOIN ONLY statemachine.case_state_transition f ON f.case_id OPERATOR(pg_catalog.=) c.id AND f.state_version = 0 \
               AND f.correlation_id OPERATOR(pg_catalog.=) $3 AND f.transition_kind OPERATOR(pg_catalog.=) 'import' \
          CROSS JOIN LATERAL (SELECT t.to_state, t.state_version FROM ONLY statemachine.case_state_transition t \
               WHERE t.case_id OPERATOR(pg_catalog.=) c.id AND t.transition_kind OPERATOR(pg_catalog.=) 'import' \
               ORDER BY t.state_version DESC LIMIT 1) l \
          ORDER BY u.n",
    args: &[TEXT, TEXT_ARRAY, UUID],
};


/// The metadata of an imported row no rule allowed (`on_illegal => 'record'`), as jsonb prints it.
const ILLEGAL_STEP_METADATA: &str = r#"{"illegal_step": true}"#;

fn refuse(r: Refusal) -> statemachine_core::Report {
    r.report(&CaseFacts::default())
}

/// The command id of a record's history row: the call's own for the first row of the
/// first record (so a replay, or a reuse of the id elsewhere, is found by it), a fresh
/// one for every other (a replay finds the records by number and correlation_id).
fn step_command(command: &[u8; 16], case_index: usize, step: usize, now: i64) -> [u8; 16] {
    if case_index == 0 && step == 0 {
        return *command;
    }
    history::row_id(now)
}

/// Each step's time, by PostgreSQL's timestamptz parser (the session's TimeZone applies
/// to a time without an offset).
fn step_times(cases: &[CaseIn]) -> Result<Vec<Vec<i64>>, Vec<Problem>> {
    let mut problems = Vec::new();
    let times = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.steps
                .iter()
                .enumerate()
                .map(|(j, s)| match TimestampWithTimeZone::from_str(&s.at) {
                    Ok(t) if t.is_finite() => pg_sys::TimestampTz::from(t),
                    _ => {
                        let problem = format!("{:?} is not a finite timestamptz", s.at);
                        problems.push(Problem { severity: Severity::Error, path: format!("$[{i}].steps[{j}].at"), problem });
                        0
                    }
                })
                .collect()
        })
        .collect();
    if problems.is_empty() {
        Ok(times)
    } else {
        Err(problems)
    }
}

fn import_cases(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("import_cases")?;
    let machine_name = a.text(0, "machine")?;
    let cases_json = jsonb_text(a, 1, "cases")?;
    let actor = a.uuid(2, "actor_id")?;
    let role = a.text(3, "actor_role")?;
    let command = a.uuid(4, "command_id")?;
    let on_illegal_text = a.opt_text(5).unwrap_or_else(|| "refuse".into());
    let Some(on_illegal) = OnIllegal::parse(&on_illegal_text) else {
        return Err(refuse(Refusal::InvalidArgument { name: "on_illegal".into(), problem: format!("is {on_illegal_text:?}; use 'refuse' or 'record'") }));
    };
    let value: serde_json::Value = serde_json::from_str(&cases_json).map_err(|e| {
        refuse(Refusal::InvalidImport { problems: vec![Problem { severity: Severity::Error, path: "$".into(), problem: e.to_string() }] })
    })?;
    let cases = parse_cases(&value).map_err(|problems| refuse(Refusal::InvalidImport { problems }))?;

    let spi = Spi::connect();
    let latest = spi.run(&machines::LATEST_VERSION, &[Some(crate::fmgr::text_datum(&machine_name))], 1);
    let Some(version_id) = latest.uuid(0, 1) else {
        return Err(refuse(Refusal::UnknownMachine { machine: machine_name, version: None }));
    };
    let machine = machines::get(&spi, &version_id);
    if let Some(refusal) = database_identity_refusal(&spi, &machine, Some(&role), &actor, "import_cases") {
        return Err(refuse(refusal));
    }
    let numbers: Vec<&str> = cases.iter().map(|c| c.case_number.as_str()).collect();

    // The command id was used before: this very import again, or SM008.
    if let Some(prior) = commands::find(&spi, uuid_datum(&command)) {
        return replay(a, &spi, &machine_name, &numbers, &command, &prior, &cases);
    }

    let times = step_times(&cases).map_err(|problems| refuse(Refusal::InvalidImport { problems }))?;
    let now = history::now();
    let mut plans = Vec::with_capacity(cases.len());
    for (case, at) in cases.iter().zip(&times) {
        match plan_case(&machine, case, at, now, on_illegal) {
            Ok(plan) => plans.push(plan),
            Err(problem) => {
                return Err(refuse(Refusal::ImportStep {
                    machine: machine.machine.clone(),
                    version: machine.version,
                    case_number: case.case_number.clone(),
                    problem: Box::new(problem),
                }))
            }
        }
    }
    let recorded_by = crate::facts::session_user();
    let ctx = Ctx { now, command: &command, actor: &actor, role: &role, recorded_by: &recorded_by, legal_metadata: "{}" };
    let written = match write(&spi, &machine, &version_id, &cases, &times, &plans, &ctx) {
        Ok(written) => written,
        Err(Short { first_chunk_empty }) => {
            // A number or id is taken: by an earlier case (23505, naming them; the call's
            // writes roll back with it), or by this very import committed concurrently
            // while we waited for it (a replay).
            if first_chunk_empty {
                if let Some(prior) = commands::find(&spi, uuid_datum(&command)) {
                    return replay(a, &spi, &machine_name, &numbers, &command, &prior, &cases);
                }
            }
            refuse_taken(&spi, &machine_name, &numbers, &cases)?;
            return Err(refuse(Refusal::CommandInFlight));
        }
    };
    let result: Vec<Vec<crate::srf::Cell>> = written
        .into_iter()
        .map(|(id, number, state, version)| {
            use crate::srf::Cell;
            vec![Cell::Uuid(id), Cell::Text(Some(number)), Cell::Text(Some(state)), Cell::Int8(version)]
        })
        .collect();
    // SAFETY: import_cases is declared RETURNS TABLE(case_id uuid, case_number text,
    // current_state text, state_version bigint), the cells' types in order.
    unsafe { crate::srf::return_rows(a, &result) };
    Ok(pg_sys::Datum::from(0usize))
}

/// A record as written: case id, number, state, version.
pub(crate) type Written = ([u8; 16], String, String, i64);

/// A chunk's case rows did not all go in: numbers or ids taken meanwhile.
pub(crate) struct Short {
    first_chunk_empty: bool,
}

/// Writes judged records: per chunk, its case rows and then its history rows (sealed and
/// chained). Returns (case id, number, state, version) per record.
pub(crate) fn write(
    spi: &Spi,
    machine: &CompiledMachine,
    version_id: &[u8; 16],
    cases: &[CaseIn],
    times: &[Vec<i64>],
    plans: &[Vec<PlannedStep>],
    ctx: &Ctx<'_>,
) -> Result<Vec<Written>, Short> {
    const WRITES: &[Grant] = &[("case_file", Op::Insert), ("case_state_transition", Op::Insert)];
    let _door = door::open(WRITES);
    let mut written = Vec::with_capacity(cases.len());
    for (chunk_no, chunk) in cases.chunks(CHUNK).enumerate() {
        let mut rows = Chunk::build(machine, chunk, chunk_no * CHUNK, times, plans, ctx);
        let inserted = rows.insert_cases(spi, machine, version_id);
        if inserted != chunk.len() {
            return Err(Short { first_chunk_empty: chunk_no == 0 && inserted == 0 });
        }
        std::mem::take(&mut rows.history).write(spi);
        written.append(&mut rows.results);
    }
    Ok(written)
}

/// 23505 naming the case numbers (or ids) the machine already has.
fn refuse_taken(spi: &Spi, machine: &str, numbers: &[&str], cases: &[CaseIn]) -> SmResult<()> {
    let taken = spi.run(&TAKEN_NUMBERS, &[Some(crate::fmgr::text_datum(machine)), numbers.to_vec().into_datum()], 0);
    let taken: Vec<String> = (0..taken.count).filter_map(|i| taken.text(i, 1)).collect();
    if !taken.is_empty() {
        return Err(refuse(Refusal::CaseExists {
            detail: format!("Machine {machine} already has case number{} {}; nothing was imported.", if taken.len() == 1 { "" } else { "s" }, taken.join(", ")),
        }));
    }
    let given: Vec<pgrx::Uuid> = cases.iter().filter_map(|c| c.case_id).map(pgrx::Uuid::from_bytes).collect();
    if !given.is_empty() {
        let ids = spi.run(&TAKEN_IDS, &[given.into_datum()], 0);
        let ids: Vec<String> = (0..ids.count).filter_map(|i| ids.text(i, 1)).collect();
        if !ids.is_empty() {
            return Err(refuse(Refusal::CaseExists { detail: format!("Cases with id {} already exist; nothing was imported.", ids.join(", ")) }));
        }
    }
    Ok(())
}

/// A replay returns what the import returned; any other earlier use of the id is SM008.
fn replay(
    a: &Args,
    spi: &Spi,
    machine: &str,
    numbers: &[&str],
    command: &[u8; 16],
    prior: &commands::PriorCommand,
    cases: &[CaseIn],
) -> SmResult<pg_sys::Datum> {
    let rows = spi.run(&IMPORTED, &[Some(crate::fmgr::text_datum(machine)), numbers.to_vec().into_datum(), Some(uuid_datum(command))], 0);
    if rows.count != cases.len() {
        let requested = format!("import of {} case{} into machine {machine}", cases.len(), if cases.len() == 1 { "" } else { "s" });
        return Err(commands::conflict(prior, requested));
    }
    // SAFETY: IMPORTED's columns are import_cases' declared row type (case_id uuid,
    // case_number text, current_state text, state_version bigint).
    unsafe { return_tuples(a, &rows) };
    Ok(pg_sys::Datum::from(0usize))
}

/// What every row of one call shares.
pub(crate) struct Ctx<'a> {
    /// The time the call writes at (row ids, command ids: near the right edge of
    /// their indexes, whatever the records' own dates).
    pub(crate) now: i64,
    pub(crate) command: &'a [u8; 16],
    pub(crate) actor: &'a [u8; 16],
    pub(crate) role: &'a str,
    pub(crate) recorded_by: &'a str,
    /// The metadata of a step a rule allowed (import: none; adoption: marked adopted).
    pub(crate) legal_metadata: &'a str,
}

/// One chunk's rows, column by column.
#[derive(Default)]
struct Chunk {
    case_ids: Vec<pgrx::Uuid>,
    numbers: Vec<String>,
    states: Vec<String>,
    versions: Vec<i64>,
    entered: Vec<TimestampWithTimeZone>,
    created: Vec<TimestampWithTimeZone>,
    updated: Vec<TimestampWithTimeZone>,
    metadata: Vec<Option<String>>,
    heads: Vec<Vec<u8>>,
    history: history::Batch,
    /// What the call returns for each record.
    results: Vec<Written>,
}

impl Chunk {
    fn build(machine: &CompiledMachine, cases: &[CaseIn], first: usize, times: &[Vec<i64>], plans: &[Vec<PlannedStep>], ctx: &Ctx<'_>) -> Chunk {
        let mut c = Chunk::default();
        for (k, case) in cases.iter().enumerate() {
            let index = first + k;
            let (at, plan) = (&times[index], &plans[index]);
            let case_id = case.case_id.unwrap_or_else(|| history::row_id(ctx.now));
            let mut prev = GENESIS;
            for (j, (step, planned)) in case.steps.iter().zip(plan).enumerate() {
                let row = SealedRow {
                    id: history::row_id(ctx.now),
                    case_id,
                    machine: machine.machine.clone(),
                    from_state: (j > 0).then(|| case.steps[j - 1].state.clone()),
                    to_state: step.state.clone(),
                    transition_code: planned.code.clone(),
                    transition_kind: "import".into(),
                    state_version: j as i64,
                    actor_id: step.actor_id.unwrap_or(*ctx.actor),
                    actor_role: step.actor_role.clone().unwrap_or_else(|| ctx.role.to_owned()),
                    reason_code: step.reason_code.clone(),
                    reason_text: step.reason_text.clone(),
                    policy_version: machine.version,
                    occurred_at: at[j],
                    command_id: step_command(ctx.command, index, j, ctx.now),
                    correlation_id: Some(*ctx.command),
                    causation_id: None,
                    metadata: if planned.legal { ctx.legal_metadata.into() } else { ILLEGAL_STEP_METADATA.into() },
                    recorded_by: ctx.recorded_by.to_owned(),
                    evidence: Vec::new(),
                    guards: Vec::new(),
                    correction: None,
                };
                prev = row_hash(&prev, &row);
                c.history.push(row, &prev);
            }
            let last = case.steps.len() - 1;
            let state = case.steps[last].state.clone();
            c.case_ids.push(pgrx::Uuid::from_bytes(case_id));
            c.numbers.push(case.case_number.clone());
            c.states.push(state.clone());
            c.versions.push(last as i64);
            c.entered.push(history::tstz(entered_at(case, at)));
            c.created.push(history::tstz(at[0]));
            c.updated.push(history::tstz(at[last]));
            c.metadata.push(case.metadata.clone());
            c.heads.push(prev.to_vec());
            c.results.push((case_id, case.case_number.clone(), state, last as i64));
        }
        c
    }

    /// Inserts the case rows; how many went in.
    fn insert_cases(&mut self, spi: &Spi, machine: &CompiledMachine, version_id: &[u8; 16]) -> usize {
        spi.run(
            &INSERT_CASES,
            &[
                Some(crate::fmgr::text_datum(&machine.machine)),
                Some(pg_sys::Datum::from(machine.version)),
                Some(uuid_datum(version_id)),
                std::mem::take(&mut self.case_ids).into_datum(),
                std::mem::take(&mut self.numbers).into_datum(),
                std::mem::take(&mut self.states).into_datum(),
                std::mem::take(&mut self.versions).into_datum(),
                std::mem::take(&mut self.entered).into_datum(),
                std::mem::take(&mut self.created).into_datum(),
                std::mem::take(&mut self.updated).into_datum(),
                std::mem::take(&mut self.metadata).into_datum(),
                std::mem::take(&mut self.heads).into_datum(),
            ],
            0,
        )
        .count
    }
}

sql_function!(sm_import_cases, pg_finfo_sm_import_cases, import_cases);
