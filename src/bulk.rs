//! Set-based transitions: the engine under bulk_transition (bulk_transition_by_state is
//! a SQL wrapper of it) and run_due_transitions (timers.rs).
//!
//! Per chunk of cases: one statement locks them all (in id order, so that two bulks, or
//! a bulk and a timer run, cannot deadlock each other), one finds the commands already
//! recorded (a re-run replays), every case is judged in Rust by the same
//! `transition::judge` as transition_case — rule, role, reason, time in state, guards
//! with their facts read under the lock, dimension invariants — and the accepted
//! transitions are written with a fixed number of statements whatever their number:
//! history rows, case rows, outbox events, guard audit rows (plus one UPDATE per case of
//! a governed table). Each history row is sealed and chained as transition_case seals it.
//!
//! Each chunk runs in its own SPI connection, so its memory is freed when it is done and
//! a call of a million cases holds one chunk at a time.

use crate::commands;
use crate::door::{self, Grant, Op};
use crate::fmgr::{text_datum, uuid_datum, uuid_string, Args, SmResult};
use crate::spi::{Spi, Stmt, BYTEA_ARRAY, INT4_ARRAY, INT8_ARRAY, TEXT_ARRAY, TIMESTAMPTZ_ARRAY, UUID_ARRAY};
use crate::transition::{dimension_with_code, judge, Asked, GuardAudit, Locked};
use crate::srf::{Cell, Materialized};
use crate::{case_file, governance, history, machines, outbox, sql_function, subxact};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::{pg_sys, IntoDatum};
use statemachine_core::seal::{row_hash, SealedRow};
use statemachine_core::definition::GuardSpec;
use statemachine_core::{ids, CaseFacts, Refusal, Report};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

/// Cases per chunk: one lock statement, one command lookup and one set of writes each.
pub(crate) const CHUNK: usize = 5_000;

/// The cases of a chunk, locked in id order, as the write path reads one.
static LOCK_MANY: Stmt = Stmt {
    sql: "SELECT c.id, c.current_state, c.state_version, c.state_entered_at, c.updated_at, c.machine_version_id, \
                 c.root_case_id, pg_catalog.cardinality(c.dimensions) OPERATOR(pg_catalog.>) 0, c.history_head \
          FROM ONLY statemachine.case_file c WHERE c.id OPERATOR(pg_catalog.=) ANY ($1) \
          ORDER BY c.id FOR UPDATE",
    args: &[UUID_ARRAY],
};
/// The commands of a chunk that are already recorded.
static FIND_COMMANDS: Stmt = Stmt {
    sql: "SELECT t.command_id, t.case_id, t.transition_code, t.to_state, t.state_version \
          FROM ONLY statemachine.case_state_transition t WHERE t.command_id OPERATOR(pg_catalog.=) ANY ($1)",
    args: &[UUID_ARRAY],
};
/// The moved cases (each once per flush), as history::APPEND moves one.
static UPDATE_CASES: Stmt = Stmt {
    sql: "UPDATE ONLY statemachine.case_file c SET current_state = u.state, state_version = u.version, \
              state_entered_at = u.entered, updated_at = u.updated, machine_version = u.policy, history_head = u.head \
          FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.uuid[]), pg_catalog.unnest($2::pg_catalog.text[]), \
                          pg_catalog.unnest($3::pg_catalog.int8[]), pg_catalog.unnest($4::pg_catalog.timestamptz[]), \
                          pg_catalog.unnest($5::pg_catalog.timestamptz[]), pg_catalog.unnest($6::pg_catalog.int4[]), \
                          pg_catalog.unnest($7::pg_catalog.bytea[])) AS u(id, state, version, entered, updated, policy, head) \
          WHERE c.id OPERATOR(pg_catalog.=) u.id",
    args: &[UUID_ARRAY, TEXT_ARRAY, INT8_ARRAY, TIMESTAMPTZ_ARRAY, TIMESTAMPTZ_ARRAY, INT4_ARRAY, BYTEA_ARRAY],
};
static SECRET: Stmt = Stmt {
    sql: "SELECT s.secret FROM ONLY statemachine.installation_secret s",
    args: &[],
};

/// The installation's secret, which keys derived command ids (see core's ids::derived).
pub(crate) fn installation_secret(spi: &Spi) -> Vec<u8> {
    spi.run(&SECRET, &[], 1).bytes(0, 1).unwrap_or_default()
}

/// One transition asked of the engine.
pub(crate) struct Item {
    pub case: [u8; 16],
    pub code: String,
    pub command: [u8; 16],
}

/// What every transition of one call shares.
pub(crate) struct Common<'a> {
    pub actor: [u8; 16],
    pub role: &'a str,
    pub reason_code: Option<&'a str>,
    pub reason_text: Option<&'a str>,
    pub correlation: Option<[u8; 16]>,
    /// The first refusal refuses the call (on_error abort).
    pub abort: bool,
    pub recorded_by: String,
}

/// What became of one item.
pub(crate) enum Outcome {
    /// Moved (or replayed: the command was recorded before) to `to_state` at `version`.
    Moved { to_state: String, version: i64 },
    Refused(Report),
}

/// A recorded command: its case, code and what it did.
struct Prior {
    case: [u8; 16],
    code: String,
    to_state: String,
    version: i64,
}

/// Judges and writes one chunk of items (distinct cases, in id order, at most CHUNK of
/// them); the outcome of each, in order. With `common.abort`, the first refusal is the
/// error (the caller's transaction rolls back whatever was written). Without it, an
/// error that is not a refusal (a governed table's constraint or trigger, say) is not
/// the whole call's: the chunk, tried in a subtransaction, is rolled back and its items
/// are tried again one by one, each in its own, and the one that fails is reported
/// with that error — as transition_case per case would have it.
pub(crate) fn run_chunk(spi: &Spi, items: &[Item], common: &Common<'_>) -> SmResult<Vec<Outcome>> {
    if common.abort {
        return judge_and_write(spi, items, common);
    }
    if let Ok(outcomes) = subxact::attempt(|| judge_and_write(spi, items, common)) {
        return outcomes;
    }
    Ok(items
        .iter()
        .map(|item| match subxact::attempt(|| judge_and_write(spi, std::slice::from_ref(item), common)) {
            Ok(Ok(mut one)) => one.pop().unwrap_or_else(|| Outcome::Refused(Refusal::CommandInFlight.report(&CaseFacts::default()))),
            Ok(Err(report)) => Outcome::Refused(report),
            Err(caught) => Outcome::Refused(Report { sqlstate: caught.sqlstate, message: caught.message, detail: None, hint: None, context: None }),
        })
        .collect())
}

fn judge_and_write(spi: &Spi, items: &[Item], common: &Common<'_>) -> SmResult<Vec<Outcome>> {
    let ids: Vec<pgrx::Uuid> = items.iter().map(|i| pgrx::Uuid::from_bytes(i.case)).collect();
    let rows = spi.run(&LOCK_MANY, &[ids.into_datum()], 0);
    let mut locked: HashMap<[u8; 16], Locked> =
        (0..rows.count).filter_map(|r| Some((rows.uuid(r, 1)?, Locked::read(&rows, r, 2)?))).collect();
    let commands: Vec<pgrx::Uuid> = items.iter().map(|i| pgrx::Uuid::from_bytes(i.command)).collect();
    let found = spi.run(&FIND_COMMANDS, &[commands.into_datum()], 0);
    let priors: HashMap<[u8; 16], Prior> = (0..found.count)
        .filter_map(|r| {
            let prior = Prior { case: found.uuid(r, 2)?, code: found.text(r, 3)?, to_state: found.text(r, 4)?, version: found.i64(r, 5)? };
            Some((found.uuid(r, 1)?, prior))
        })
        .collect();
    let mut pending = Pending::default();
    let mut outcomes = Vec::with_capacity(items.len());
    for item in items {
        let outcome = match one(spi, item, common, &mut locked, &priors, &mut pending) {
            Ok(moved) => moved,
            Err(report) if common.abort => return Err(report),
            Err(report) => Outcome::Refused(report),
        };
        outcomes.push(outcome);
    }
    pending.flush(spi);
    Ok(outcomes)
}

/// One item: replayed, refused, or judged and added to `pending`.
fn one(
    spi: &Spi,
    item: &Item,
    common: &Common<'_>,
    locked: &mut HashMap<[u8; 16], Locked>,
    priors: &HashMap<[u8; 16], Prior>,
    pending: &mut Pending,
) -> SmResult<Outcome> {
    let mut target = item.case;
    // A code of one of the case's dimensions moves that dimension (as transition_case),
    // whose row is locked after its case's.
    if let Some(row) = locked.get(&item.case) {
        if row.has_dimensions && !machines::get(spi, &row.version_id).has_code(&item.code) {
            if let Some(dimension) = dimension_with_code(spi, uuid_datum(&item.case), &item.code) {
                if let Entry::Vacant(slot) = locked.entry(dimension) {
                    let r = spi.run(&case_file::LOCK_FOR_TRANSITION, &[Some(uuid_datum(&dimension))], 1);
                    if let Some(row) = Locked::read(&r, 0, 1) {
                        slot.insert(row);
                    }
                }
                target = dimension;
            }
        }
    }
    if let Some(prior) = priors.get(&item.command) {
        if prior.case == target && prior.code == item.code {
            return Ok(Outcome::Moved { to_state: prior.to_state.clone(), version: prior.version });
        }
        let requested = format!("transition {} on case {}", item.code, uuid_string(&item.case));
        return Err(match commands::find(spi, uuid_datum(&item.command)) {
            Some(found) => commands::conflict(&found, requested),
            None => Refusal::CommandInFlight.report(&CaseFacts::default()),
        });
    }
    let Some(row) = locked.get(&target) else {
        let case_id = uuid_string(&target);
        return Err(Refusal::UnknownCase { case_id: case_id.clone() }.report(&CaseFacts { case_id, current_state: String::new() }));
    };
    let machine = machines::get(spi, &row.version_id);
    // What is pending is written first when the case moved already in this chunk (a case
    // and its dimension both asked for), or when the rule has a `sql` guard, which may
    // read anything — other cases of the chunk too — and must see what single calls in a
    // row would have written before it.
    let sql_guarded = machine.find_rule(&row.current, &item.code).is_ok_and(|r| r.guards.iter().any(|g| matches!(g.spec, GuardSpec::Sql { .. })));
    if pending.touched.contains(&target) || (sql_guarded && !pending.history.is_empty()) {
        pending.flush(spi);
    }
    let facts = CaseFacts { case_id: uuid_string(&target), current_state: row.current.clone() };
    let now = history::case_clock(row.updated_at, &target)?;
    let asked = Asked { actor: common.actor, role: common.role, reason_code: common.reason_code, reason_text: common.reason_text, evidence: &[] };
    let judged = judge(spi, uuid_datum(&target), &target, row, &machine, &item.code, &asked, now).map_err(|r| r.report(&facts))?;
    let rule = judged.rule;
    let sealed = SealedRow {
        id: history::row_id(now),
        case_id: target,
        machine: machine.machine.clone(),
        from_state: Some(row.current.clone()),
        to_state: rule.to.clone(),
        transition_code: item.code.clone(),
        transition_kind: rule.kind.as_str().to_owned(),
        state_version: row.version + 1,
        actor_id: common.actor,
        actor_role: common.role.to_owned(),
        reason_code: common.reason_code.map(str::to_owned),
        reason_text: common.reason_text.map(str::to_owned),
        policy_version: machine.version,
        occurred_at: now,
        command_id: item.command,
        correlation_id: common.correlation,
        causation_id: None,
        metadata: "{}".to_owned(),
        recorded_by: common.recorded_by.clone(),
        evidence: Vec::new(),
        guards: judged.guard_rows.iter().map(|(code, passed, (_, stored))| (code.clone(), *passed, now, stored.clone())).collect(),
        correction: None,
    };
    let hash = row_hash(&row.head, &sealed);
    if let Some(event_type) = &rule.emit {
        pending.events.push((event_type.clone(), sealed.id));
    }
    pending.audit.add(&sealed.case_id, &sealed.id, now, &judged.guard_rows);
    let entered_at = judged.entered_at;
    let outcome = Outcome::Moved { to_state: sealed.to_state.clone(), version: sealed.state_version };
    pending.add(sealed, &hash, entered_at);
    // The case as the next item of this call on it will find it.
    if let Some(row) = locked.get_mut(&target) {
        row.current = rule.to.clone();
        row.version += 1;
        row.entered_at = entered_at;
        row.updated_at = now;
        row.head = hash;
    }
    Ok(outcome)
}

/// Accepted transitions not yet written: their history rows, and the cases they move
/// column by column.
#[derive(Default)]
struct Pending {
    history: history::Batch,
    cases: Vec<pgrx::Uuid>,
    states: Vec<String>,
    versions: Vec<i64>,
    entered: Vec<TimestampWithTimeZone>,
    updated: Vec<TimestampWithTimeZone>,
    policies: Vec<i32>,
    heads: Vec<Vec<u8>>,
    /// (machine, case, state) of each move, for a governed table's row.
    moves: Vec<(String, [u8; 16], String)>,
    /// (event type, history row id) of the transitions that emit.
    events: Vec<(String, [u8; 16])>,
    audit: GuardAudit,
    touched: HashSet<[u8; 16]>,
}

impl Pending {
    fn add(&mut self, row: SealedRow, hash: &[u8; 32], entered_at: pg_sys::TimestampTz) {
        self.touched.insert(row.case_id);
        self.cases.push(pgrx::Uuid::from_bytes(row.case_id));
        self.states.push(row.to_state.clone());
        self.versions.push(row.state_version);
        self.entered.push(history::tstz(entered_at));
        self.updated.push(history::tstz(row.occurred_at));
        self.policies.push(row.policy_version);
        self.heads.push(hash.to_vec());
        self.moves.push((row.machine.clone(), row.case_id, row.to_state.clone()));
        self.history.push(row, hash);
    }

    /// Writes what is pending: history rows, then the cases they move (each case once:
    /// a case asked for twice is flushed between), events, guard audit, governed rows.
    fn flush(&mut self, spi: &Spi) {
        if self.history.is_empty() {
            return;
        }
        let p = std::mem::take(self);
        const WRITES: &[Grant] = &[
            history::APPEND_WRITES[0],
            history::APPEND_WRITES[1],
            ("outbox_event", Op::Insert),
            ("case_transition_guard_result", Op::Insert),
        ];
        let _door = door::open(WRITES);
        p.history.write(spi);
        spi.run(
            &UPDATE_CASES,
            &[
                p.cases.into_datum(),
                p.states.into_datum(),
                p.versions.into_datum(),
                p.entered.into_datum(),
                p.updated.into_datum(),
                p.policies.into_datum(),
                p.heads.into_datum(),
            ],
            0,
        );
        outbox::emit(spi, &p.events, history::now(), None);
        p.audit.write(spi);
        for (machine, case, state) in p.moves {
            governance::mirror(spi, &machine, uuid_datum(&case), text_datum(&state));
        }
    }
}

/// The distinct non-NULL ids of a uuid[] argument, in id order (the order cases are
/// locked in).
static DISTINCT_IDS: Stmt = Stmt {
    sql: "SELECT DISTINCT u.id FROM pg_catalog.unnest($1::pg_catalog.uuid[]) AS u(id) WHERE u.id IS NOT NULL ORDER BY 1",
    args: &[UUID_ARRAY],
};

/// Parses on_error: true for 'abort', false for 'skip'.
pub(crate) fn abort_on_error(a: &Args, i: usize) -> SmResult<bool> {
    match a.opt_text(i).as_deref() {
        Some("abort") => Ok(true),
        Some("skip") => Ok(false),
        other => Err(Refusal::InvalidArgument {
            name: "on_error".into(),
            problem: format!("is {}; use 'abort' or 'skip'", other.map_or("NULL".to_owned(), |o| format!("{o:?}"))),
        }
        .report(&CaseFacts::default())),
    }
}

/// bulk_transition(case_ids, transition_code, actor_id, actor_role, reason_code,
/// reason_text, correlation_id, on_error): transition_case for each case with a command
/// id derived from (correlation_id, case, code), set-based.
fn bulk_transition(a: &Args) -> SmResult<pg_sys::Datum> {
    door::refuse_inside_guard("bulk_transition")?;
    let code = a.text(1, "transition_code")?;
    let actor = a.uuid(2, "actor_id")?;
    let role = a.text(3, "actor_role")?;
    let (reason_code, reason_text) = (a.opt_text(4), a.opt_text(5));
    let abort = abort_on_error(a, 7)?;
    let correlation = a.uuid(6, "correlation_id")?;
    let correlation_text = uuid_string(&correlation);
    let ids: Vec<[u8; 16]> = {
        let spi = Spi::connect();
        let rows = spi.run(&DISTINCT_IDS, &[a.datum(0)], 0);
        (0..rows.count).filter_map(|r| rows.uuid(r, 1)).collect()
    };
    // SAFETY: bulk_transition is declared RETURNS TABLE (case_id uuid, ok boolean,
    // to_state text, state_version bigint, error_sqlstate text, error_message text).
    let out = unsafe { Materialized::init(a) };
    let mut secret = None;
    let common = Common {
        actor,
        role: &role,
        reason_code: reason_code.as_deref(),
        reason_text: reason_text.as_deref(),
        correlation: Some(correlation),
        abort,
        recorded_by: crate::facts::session_user(),
    };
    // On a distributed installation a chunk is cut from one shard's cases (shards.rs).
    let chunks: Vec<Vec<[u8; 16]>> = if crate::remote_door::distributed() {
        crate::shards::chunks(&Spi::connect(), &ids, CHUNK)
    } else {
        ids.chunks(CHUNK).map(<[[u8; 16]]>::to_vec).collect()
    };
    for chunk in &chunks {
        // Each chunk's memory is its own connection's, freed when the chunk is done.
        let spi = Spi::connect();
        let secret = secret.get_or_insert_with(|| installation_secret(&spi));
        let items: Vec<Item> = chunk
            .iter()
            .map(|case| Item {
                case: *case,
                code: code.clone(),
                command: ids::derived(secret, "bulk", &[&correlation_text, &uuid_string(case), &code]),
            })
            .collect();
        for (item, outcome) in items.iter().zip(run_chunk(&spi, &items, &common)?) {
            out.put(&match outcome {
                Outcome::Moved { to_state, version } => {
                    vec![Cell::Uuid(item.case), Cell::Bool(true), Cell::Text(Some(to_state)), Cell::Int8(version), Cell::Null, Cell::Null]
                }
                Outcome::Refused(r) => {
                    vec![Cell::Uuid(item.case), Cell::Bool(false), Cell::Null, Cell::Null, Cell::Text(Some(r.sqlstate)), Cell::Text(Some(r.message))]
                }
            });
        }
    }
    Ok(pg_sys::Datum::from(0usize))
}

sql_function!(sm_bulk_transition, pg_finfo_sm_bulk_transition, bulk_transition);
