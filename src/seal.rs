//! Tamper evidence (the core's `seal`): history_digest(), verify_history(digest) and
//! seal_history(), which seals rows written before 0.3.0. The write path seals each new
//! row as it appends it (history::append).
//!
//! All three read history through one statement, [`ROWS`], so what is verified is
//! exactly what was sealed: every column, the evidence links, guard results and the
//! correction recorded with a row. They scan with a cursor, a batch at a time.

use crate::door::{self, refuse_inside_guard, Grant, Op};
use crate::fmgr::{text_datum, Args, SmResult};
use crate::spi::{Rows, Spi, Stmt, BYTEA, INT4, TEXT, TIMESTAMPTZ, UUID};
use crate::srf::{return_rows, Cell};
use crate::{history, machines, sql_function};
use pgrx::{pg_sys, IntoDatum};
use serde_json::Value;
use statemachine_core::definition::CREATE_CODE;
use statemachine_core::seal::{glass_hash, row_hash, version_hash, GlassEvent, HistoryDigest, Root, SealedRow, GENESIS};
use statemachine_core::{CaseFacts, CompiledMachine, Refusal};
use std::collections::HashMap;
use std::rc::Rc;

/// PostgreSQL's microseconds since 2000-01-01 of a timestamptz, exactly (extract returns numeric).
macro_rules! pg_micros {
    ($col:literal) => {
        concat!("((pg_catalog.extract('epoch', ", $col, ") OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8 OPERATOR(pg_catalog.-) 946684800000000)")
    };
}

/// Every history row with what was recorded with it, in (case, version) order; with $1,
/// only rows that occurred at or before it. `$by_case` joins the rows recorded with a
/// history row through its case too: on a distributed installation (Citus) that is what
/// keeps each lookup on the shard of its case; on one node the transition id suffices
/// (and the extension's scripts up to 0.5.0, which seal rows, run it before the
/// case_id columns exist).
macro_rules! history_rows {
    ($by_case_e:literal, $by_case_g:literal, $by_case_k:literal) => {
        concat!(
            "SELECT t.id, t.case_id, t.machine, t.from_state, t.to_state, t.transition_code, t.transition_kind, t.state_version, \
                    t.actor_id, t.actor_role, t.reason_code, t.reason_text, t.policy_version, t.occurred_at, t.command_id, \
                    t.correlation_id, t.causation_id, t.metadata::pg_catalog.text, t.recorded_by, t.row_hash, \
                    (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(e.evidence_id, e.purpose))::pg_catalog.text \
                       FROM ONLY statemachine.case_transition_evidence e WHERE ", $by_case_e, "e.transition_id OPERATOR(pg_catalog.=) t.id), \
                    (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(g.guard_code, g.passed, ",
            pg_micros!("g.evaluated_at"),
            ", g.evidence::pg_catalog.text))::pg_catalog.text \
                       FROM ONLY statemachine.case_transition_guard_result g WHERE ", $by_case_g, "g.transition_id OPERATOR(pg_catalog.=) t.id), \
                    (SELECT pg_catalog.json_build_array(k.wrong_transition_id, k.corrected_by, ",
            pg_micros!("k.corrected_at"),
            ", k.reason_text)::pg_catalog.text \
                       FROM ONLY statemachine.case_state_correction k WHERE ", $by_case_k, "k.correcting_transition_id OPERATOR(pg_catalog.=) t.id) \
               FROM ONLY statemachine.case_state_transition t \
              WHERE $1 IS NULL OR t.occurred_at OPERATOR(pg_catalog.<=) $1 \
              ORDER BY t.case_id, t.state_version"
        )
    };
}
pub static ROWS: Stmt = Stmt { sql: history_rows!("", "", ""), args: &[TIMESTAMPTZ] };
pub static ROWS_BY_CASE: Stmt = Stmt {
    sql: history_rows!(
        "e.case_id OPERATOR(pg_catalog.=) t.case_id AND ",
        "g.case_id OPERATOR(pg_catalog.=) t.case_id AND ",
        "k.case_id OPERATOR(pg_catalog.=) t.case_id AND "
    ),
    args: &[TIMESTAMPTZ],
};
static EVENTS: Stmt = Stmt {
    sql: "SELECT b.id, b.reason, b.session_user_name, b.backend_pid, b.transaction_id, b.occurred_at \
            FROM ONLY statemachine.break_glass_event b \
           WHERE $1 IS NULL OR b.occurred_at OPERATOR(pg_catalog.<=) $1 ORDER BY b.occurred_at, b.id",
    args: &[TIMESTAMPTZ],
};
/// The digest's moment: now, or just before the oldest transaction that has written and is
/// still running began — every row that occurred earlier is committed (a row is dated after
/// its transaction began, and a transaction that has not written yet dates its rows after
/// now), so the set a digest covers never changes later by itself.
static DIGEST_MOMENT: Stmt = Stmt {
    sql: "SELECT LEAST(pg_catalog.clock_timestamp(), \
                      (SELECT pg_catalog.min(a.xact_start) FROM pg_catalog.pg_stat_activity a \
                        WHERE a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid() AND a.backend_xid IS NOT NULL)) \
                 OPERATOR(pg_catalog.-) '1 microsecond'::pg_catalog.interval",
    args: &[],
};
static VERSION: Stmt = Stmt {
    sql: "SELECT v.id, v.definition::pg_catalog.text FROM ONLY statemachine.machine_version v \
          WHERE v.machine OPERATOR(pg_catalog.=) $1 AND v.version OPERATOR(pg_catalog.=) $2",
    args: &[TEXT, INT4],
};
static VERSIONS: Stmt = Stmt {
    sql: "SELECT v.machine, v.version, v.definition::pg_catalog.text, v.published_at FROM ONLY statemachine.machine_version v \
           WHERE $1 IS NULL OR v.published_at OPERATOR(pg_catalog.<=) $1 ORDER BY v.machine, v.version",
    args: &[TIMESTAMPTZ],
};
/// Each case's history_head set to its latest row's seal (after sealing old rows).
static SET_HEADS: Stmt = Stmt {
    sql: "UPDATE ONLY statemachine.case_file c SET history_head = t.row_hash \
            FROM ONLY statemachine.case_state_transition t \
           WHERE t.case_id OPERATOR(pg_catalog.=) c.id AND t.state_version OPERATOR(pg_catalog.=) c.state_version \
             AND c.history_head IS DISTINCT FROM t.row_hash",
    args: &[],
};
static SEAL_ROW: Stmt = Stmt {
    sql: "UPDATE ONLY statemachine.case_state_transition SET row_hash = $2 WHERE id OPERATOR(pg_catalog.=) $1 AND row_hash IS NULL",
    args: &[UUID, BYTEA],
};

/// Column numbers of [`ROWS`].
const ROW_HASH_COL: i32 = 20;

/// Row `i` of a [`ROWS`] batch as sealed content.
fn sealed_row(r: &Rows<'_>, i: usize) -> SealedRow {
    let json = |col: i32| r.text(i, col).and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let uuid_of = |v: &Value| v.as_str().and_then(statemachine_core::ids::parse).unwrap_or_default();
    let evidence = json(21)
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|e| (uuid_of(&e[0]), e[1].as_str().unwrap_or_default().to_owned()))
        .collect();
    let guards = json(22)
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|g| (g[0].as_str().unwrap_or_default().to_owned(), g[1].as_bool().unwrap_or(false), g[2].as_i64().unwrap_or(0), g[3].as_str().unwrap_or_default().to_owned()))
        .collect();
    let correction = json(23).map(|k| (uuid_of(&k[0]), uuid_of(&k[1]), k[2].as_i64().unwrap_or(0), k[3].as_str().unwrap_or_default().to_owned()));
    SealedRow {
        id: r.uuid(i, 1).unwrap_or_default(),
        case_id: r.uuid(i, 2).unwrap_or_default(),
        machine: r.text(i, 3).unwrap_or_default(),
        from_state: r.text(i, 4),
        to_state: r.text(i, 5).unwrap_or_default(),
        transition_code: r.text(i, 6).unwrap_or_default(),
        transition_kind: r.text(i, 7).unwrap_or_default(),
        state_version: r.i64(i, 8).unwrap_or_default(),
        actor_id: r.uuid(i, 9).unwrap_or_default(),
        actor_role: r.text(i, 10).unwrap_or_default(),
        reason_code: r.text(i, 11),
        reason_text: r.text(i, 12),
        policy_version: r.i32(i, 13).unwrap_or_default(),
        occurred_at: r.i64(i, 14).unwrap_or_default(),
        command_id: r.uuid(i, 15).unwrap_or_default(),
        correlation_id: r.uuid(i, 16),
        causation_id: r.uuid(i, 17),
        metadata: r.text(i, 18).unwrap_or_default(),
        recorded_by: r.text(i, 19).unwrap_or_default(),
        evidence,
        guards,
        correction,
    }
}

fn stored_hash(r: &Rows<'_>, i: usize) -> Option<[u8; 32]> {
    r.bytes(i, ROW_HASH_COL).and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
}

/// Streams history (up to `as_of`) to `each(row, stored hash)`, a batch at a time.
fn scan(spi: &Spi, as_of: Option<pg_sys::TimestampTz>, mut each: impl FnMut(SealedRow, Option<[u8; 32]>)) {
    let rows = if crate::remote_door::distributed() { &ROWS_BY_CASE } else { &ROWS };
    let mut cursor = spi.cursor(rows, &[as_of.map(pg_sys::Datum::from)]);
    loop {
        let batch = cursor.fetch(1000);
        if batch.0.is_empty() {
            break;
        }
        for i in 0..batch.0.count {
            each(sealed_row(&batch.0, i), stored_hash(&batch.0, i));
        }
    }
}

/// The digest of everything up to `as_of`: rows chained from their content (stored hashes
/// are not trusted), and break_glass events.
fn digest_as_of(spi: &Spi, as_of: pg_sys::TimestampTz) -> HistoryDigest {
    let mut rows = Root::default();
    let (mut case, mut prev) = ([0u8; 16], GENESIS);
    scan(spi, Some(as_of), |row, _| {
        if row.case_id != case {
            (case, prev) = (row.case_id, GENESIS);
        }
        prev = row_hash(&prev, &row);
        rows.add(&prev);
    });
    let mut events = Root::default();
    let e = spi.run(&EVENTS, &[Some(pg_sys::Datum::from(as_of))], 0);
    for i in 0..e.count {
        events.add(&glass_hash(&GlassEvent {
            id: e.uuid(i, 1).unwrap_or_default(),
            reason: e.text(i, 2).unwrap_or_default(),
            session_user_name: e.text(i, 3).unwrap_or_default(),
            backend_pid: e.i32(i, 4).unwrap_or_default(),
            transaction_id: e.i64(i, 5).unwrap_or_default(),
            occurred_at: e.i64(i, 6).unwrap_or_default(),
        }));
    }
    let mut versions = Root::default();
    let v = spi.run(&VERSIONS, &[Some(pg_sys::Datum::from(as_of))], 0);
    for i in 0..v.count {
        let (machine, number) = (v.text(i, 1).unwrap_or_default(), v.i32(i, 2).unwrap_or_default());
        versions.add(&version_hash(&machine, number, &v.text(i, 3).unwrap_or_default(), v.i64(i, 4).unwrap_or_default()));
    }
    HistoryDigest {
        as_of,
        rows: rows.count,
        rows_root: rows.finish(),
        events: events.count,
        events_root: events.finish(),
        versions: versions.count,
        versions_root: versions.finish(),
    }
}

fn history_digest(_: &Args) -> SmResult<pg_sys::Datum> {
    let text = {
        let spi = Spi::read_only();
        let as_of = spi.run(&DIGEST_MOMENT, &[], 1).i64(0, 1).unwrap_or_else(history::now);
        digest_as_of(&spi, as_of).to_text()
    };
    Ok(text_datum(&text))
}

/// The previous row, as the verifier remembers it: case, version, occurred_at, stored hash.
type Previous = ([u8; 16], i64, i64, Option<[u8; 32]>);

/// What the verifier found; `None` case for findings about the digest as a whole.
type Finding = (Option<[u8; 16]>, Option<i64>, String);

/// A published version compiled from its published definition (the rules history is
/// checked against), after comparing it with the rule tables the write path decides by:
/// a rule added to (or changed in) the tables but not the definition is reported.
fn published(spi: &Spi, machine: &str, number: i32, drifted: &mut Vec<String>) -> Option<Rc<CompiledMachine>> {
    let v = spi.run(&VERSION, &[Some(text_datum(machine)), Some(pg_sys::Datum::from(number))], 1);
    let (id, definition) = (v.uuid(0, 1)?, v.text(0, 2)?);
    let tables = machines::get(spi, &id);
    let Some(def) = statemachine_core::validate_text(&definition).definition else {
        drifted.push(format!("machine {machine} v{number}: its published definition no longer validates"));
        return Some(tables);
    };
    let published = CompiledMachine::from_definition(&def, number);
    if let Some(difference) = tables.rules_differ(&published) {
        drifted.push(format!("machine {machine} v{number}: {difference}"));
    }
    Some(Rc::new(published))
}

/// Checks a step against the rules of its pinned version; `None` when it is allowed.
fn rule_problem(row: &SealedRow, machine: &CompiledMachine) -> Option<String> {
    if row.state_version == 0 {
        // An imported record starts where its past starts, or an adopted row at its value.
        let imported = row.transition_kind == "import";
        let into = if imported { machine.has_state(&row.to_state) } else { row.to_state == machine.initial };
        return (row.transition_code != CREATE_CODE || row.from_state.is_some() || !into).then(|| {
            let target = if imported { "one of its states".to_owned() } else { machine.initial.clone() };
            format!("the first row is not the CREATE of machine {} v{} into {target}", machine.machine, machine.version)
        });
    }
    if matches!(row.transition_kind.as_str(), "correction" | "migration" | "admin" | "import") {
        return None;
    }
    let from = row.from_state.as_deref().unwrap_or_default();
    match machine.find_rule(from, &row.transition_code) {
        Ok(rule) if rule.to == row.to_state => None,
        _ => Some(format!(
            "no rule of {} v{} leads from {from} by {} to {}",
            machine.machine, machine.version, row.transition_code, row.to_state
        )),
    }
}

fn verify_history(a: &Args) -> SmResult<pg_sys::Datum> {
    let given = match a.opt_text(0) {
        Some(text) => Some(HistoryDigest::parse(&text).map_err(|problem| {
            Refusal::InvalidArgument { name: "digest".into(), problem }.report(&CaseFacts::default())
        })?),
        None => None,
    };
    let mut findings: Vec<Finding> = Vec::new();
    {
        let spi = Spi::read_only();
        let now = history::now();
        let mut versions: HashMap<(String, i32), Option<Rc<CompiledMachine>>> = HashMap::new();
        // Versions whose rule tables disagree with their published definition.
        let mut drifted: Vec<String> = Vec::new();
        // Walk every row: its stored hash against its content and its predecessor's
        // stored hash (so one changed row is one finding), the chain's versions, its
        // time, and its step against the rules of the version it was decided under.
        // Only the previous row's facts are kept: memory stays flat however long history is.
        let mut prev: Option<Previous> = None;
        scan(&spi, None, |row, stored| {
            let mut say = |problem: String| findings.push((Some(row.case_id), Some(row.state_version), problem));
            let before = prev.filter(|(case, ..)| *case == row.case_id);
            let expected_version = before.map_or(0, |(_, v, ..)| v + 1);
            if row.state_version != expected_version {
                say(format!("state_version {} where {expected_version} was next: history rows are missing or were inserted", row.state_version));
            }
            let chained_to = before.and_then(|(.., h)| h).unwrap_or(GENESIS);
            match stored {
                None => say("not sealed (row_hash is NULL)".into()),
                Some(h) if h != row_hash(&chained_to, &row) => say("content or chain does not match its seal (row_hash)".into()),
                Some(_) => {}
            }
            if before.is_some_and(|(_, _, at, _)| row.occurred_at < at) {
                say("occurred_at is earlier than the previous row's".into());
            }
            if row.occurred_at > now {
                say("occurred_at is in the future".into());
            }
            let machine = versions
                .entry((row.machine.clone(), row.policy_version))
                .or_insert_with(|| published(&spi, &row.machine, row.policy_version, &mut drifted))
                .clone();
            match machine {
                None => say(format!("machine {} v{} is not published", row.machine, row.policy_version)),
                Some(m) => {
                    if let Some(problem) = rule_problem(&row, &m) {
                        say(problem);
                    }
                }
            }
            prev = Some((row.case_id, row.state_version, row.occurred_at, stored));
        });
        findings.extend(drifted.into_iter().map(|problem| (None, None, problem)));
        if let Some(given) = &given {
            let now_digest = digest_as_of(&spi, given.as_of);
            if now_digest.rows != given.rows || now_digest.rows_root != given.rows_root {
                findings.push((None, None, format!(
                    "the {} history rows the digest covered (up to its moment) changed: {} rows now, and their content does not give the digest's root",
                    given.rows, now_digest.rows
                )));
            }
            if now_digest.versions != given.versions || now_digest.versions_root != given.versions_root {
                findings.push((None, None, format!(
                    "the {} published machine versions the digest covered changed: {} now, or their definitions differ",
                    given.versions, now_digest.versions
                )));
            }
            if now_digest.events != given.events || now_digest.events_root != given.events_root {
                findings.push((None, None, format!(
                    "the {} break_glass events the digest covered changed: {} now",
                    given.events, now_digest.events
                )));
            }
        }
    }
    let rows: Vec<Vec<Cell>> = findings
        .into_iter()
        .map(|(case, version, problem)| {
            vec![case.map_or(Cell::Null, Cell::Uuid), version.map_or(Cell::Null, Cell::Int8), Cell::Text(Some(problem))]
        })
        .collect();
    // SAFETY: declared RETURNS TABLE (case_id uuid, state_version bigint, problem text).
    unsafe { return_rows(a, &rows) };
    Ok(pg_sys::Datum::from(0usize))
}

/// Seals the rows that have no hash yet (those written before 0.3.0), case by case in
/// version order, chaining to the stored hash of the row before, and sets each case's
/// history_head to its latest row's seal. Returns how many rows it sealed.
fn seal_history(_: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("seal_history")?;
    let spi = Spi::connect();
    let mut todo: Vec<([u8; 16], [u8; 32])> = Vec::new();
    let (mut case, mut prev) = ([0u8; 16], GENESIS);
    scan(&spi, None, |row, stored| {
        if row.case_id != case {
            (case, prev) = (row.case_id, GENESIS);
        }
        let hash = stored.unwrap_or_else(|| {
            let h = row_hash(&prev, &row);
            todo.push((row.id, h));
            h
        });
        prev = hash;
    });
    const WRITES: &[Grant] = &[("case_state_transition", Op::Update), ("case_file", Op::Update)];
    let _door = door::open(WRITES);
    for (id, hash) in &todo {
        spi.run(&SEAL_ROW, &[Some(crate::fmgr::uuid_datum(id)), hash.to_vec().into_datum()], 0);
    }
    spi.run(&SET_HEADS, &[], 0);
    Ok(pg_sys::Datum::from(todo.len() as i64))
}

sql_function!(sm_history_digest, pg_finfo_sm_history_digest, history_digest);
sql_function!(sm_verify_history, pg_finfo_sm_verify_history, verify_history);
sql_function!(sm_seal_history, pg_finfo_sm_seal_history, seal_history);
