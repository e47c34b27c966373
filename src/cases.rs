//! The write path: create_case, transition_case, add_evidence, deactivate_evidence,
//! assign_case, release_assignment.
//!
//! transition_case in one transaction (seed 003 §6): lock the case row (§7.1; with
//! expected_version the comparison happens under that lock, §7.2), decide from the
//! cached rules and the guards' facts, append the history row (`ON CONFLICT
//! (command_id) DO NOTHING` makes a concurrent replay wait for the first and then
//! return its row, §15), move the case, link the evidence, store the guard audit. Four
//! statements on the happy path of an unguarded rule, each a plan kept per backend.

use crate::facts::{membership, DbFacts, ACTIVE_ASSIGNMENT};
use crate::fmgr::{text_datum, uuid_datum, uuid_from_datum, uuid_string, Args, SmResult};
use crate::spi::{Spi, Stmt, BOOL, INT4, INT8, JSONB, TEXT, TEXT_ARRAY, TIMESTAMPTZ, UUID, UUID_ARRAY};
use crate::{door, machines, sql_function};
use pgrx::{pg_sys, IntoDatum};
use statemachine_core::checks::WRITE;
use statemachine_core::definition::CORRECT_CODE;
use statemachine_core::ids::{uuid_v7, SplitMix64};
use statemachine_core::{
    check_invariants, CaseFacts, EvidenceFact, Membership, Refusal, Report, Request, RoleSource, Sibling, Supplied,
};
use std::cell::RefCell;

static LOCK_CASE: Stmt = Stmt {
    sql: "SELECT c.current_state, c.state_version, c.state_entered_at, c.updated_at, c.machine_version_id, \
                 c.root_case_id, pg_catalog.cardinality(c.dimensions) OPERATOR(pg_catalog.>) 0 \
          FROM statemachine.case_file c WHERE c.id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
    args: &[UUID],
};
static INSERT_TRANSITION: Stmt = Stmt {
    sql: "INSERT INTO statemachine.case_state_transition AS t (id, case_id, machine, from_state, to_state, \
              transition_code, transition_kind, state_version, actor_id, actor_role, reason_code, reason_text, \
              policy_version, occurred_at, command_id, correlation_id, causation_id, metadata) \
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
              COALESCE($18, '{}'::pg_catalog.jsonb)) \
          ON CONFLICT (command_id) DO NOTHING RETURNING t",
    args: &[UUID, UUID, TEXT, TEXT, TEXT, TEXT, TEXT, INT8, UUID, TEXT, TEXT, TEXT, INT4, TIMESTAMPTZ, UUID, UUID, UUID, JSONB],
};
/// The hot path's two writes in one statement (as the benchmark's floor does): append
/// the history row and, only if it was appended (not a concurrent replay), move the case.
static RECORD_TRANSITION: Stmt = Stmt {
    sql: "WITH t AS ( \
              INSERT INTO statemachine.case_state_transition AS t (id, case_id, machine, from_state, to_state, \
                  transition_code, transition_kind, state_version, actor_id, actor_role, reason_code, reason_text, \
                  policy_version, occurred_at, command_id, correlation_id, causation_id, metadata) \
              VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
                  COALESCE($18, '{}'::pg_catalog.jsonb)) \
              ON CONFLICT (command_id) DO NOTHING RETURNING t), \
          u AS ( \
              UPDATE statemachine.case_file c SET current_state = $5, state_version = $8, state_entered_at = $19, updated_at = $14 \
              WHERE c.id OPERATOR(pg_catalog.=) $2 AND EXISTS (SELECT 1 FROM t) RETURNING 1) \
          SELECT t.t FROM t",
    args: &[UUID, UUID, TEXT, TEXT, TEXT, TEXT, TEXT, INT8, UUID, TEXT, TEXT, TEXT, INT4, TIMESTAMPTZ, UUID, UUID, UUID, JSONB, TIMESTAMPTZ],
};
static UPDATE_CASE: Stmt = Stmt {
    sql: "UPDATE statemachine.case_file SET current_state = $2, state_version = $3, state_entered_at = $4, updated_at = $5 \
          WHERE id OPERATOR(pg_catalog.=) $1",
    args: &[UUID, TEXT, INT8, TIMESTAMPTZ, TIMESTAMPTZ],
};
static FIND_COMMAND: Stmt = Stmt {
    sql: "SELECT t.case_id, t.transition_code, t, c.machine, c.case_number, c, t.id \
          FROM statemachine.case_state_transition t JOIN statemachine.case_file c ON c.id OPERATOR(pg_catalog.=) t.case_id \
          WHERE t.command_id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
pub static EVIDENCE_ROWS: Stmt = Stmt {
    sql: "SELECT u.id, e.case_id, e.is_active, e.evidence_type \
          FROM pg_catalog.unnest($1::pg_catalog.uuid[]) WITH ORDINALITY AS u(id, n) \
          LEFT JOIN statemachine.case_evidence e ON e.id OPERATOR(pg_catalog.=) u.id ORDER BY u.n",
    args: &[UUID_ARRAY],
};
/// purpose: `required` when the item met requires_evidence ($2; of a listed type when
/// $3 lists types), else `supporting`.
static LINK_EVIDENCE: Stmt = Stmt {
    sql: "INSERT INTO statemachine.case_transition_evidence (transition_id, evidence_id, purpose) \
          SELECT DISTINCT $1::pg_catalog.uuid, e.id, \
                 CASE WHEN $2 AND ($3 IS NULL OR e.evidence_type OPERATOR(pg_catalog.=) ANY ($3)) \
                      THEN 'required' ELSE 'supporting' END \
          FROM pg_catalog.unnest($4::pg_catalog.uuid[]) AS u(id) \
          JOIN statemachine.case_evidence e ON e.id OPERATOR(pg_catalog.=) u.id",
    args: &[UUID, BOOL, TEXT_ARRAY, UUID_ARRAY],
};
/// The outbox event of an emitting transition (seed 003 §16), built from its history
/// row in the same transaction; the NOTIFY ("<event type> <case id>" on channel
/// statemachine_outbox) is delivered when that transaction commits.
static INSERT_OUTBOX: Stmt = Stmt {
    sql: "INSERT INTO statemachine.outbox_event (id, aggregate_id, aggregate_seq, event_type, transition_id, payload, \
              correlation_id, causation_id, created_at) \
          SELECT $1, t.case_id, t.state_version, $2, t.id, \
                 pg_catalog.jsonb_build_object('transition', pg_catalog.jsonb_build_object( \
                     'id', t.id, 'case_id', t.case_id, 'machine', t.machine, 'policy_version', t.policy_version, \
                     'from_state', t.from_state, 'to_state', t.to_state, 'transition_code', t.transition_code, \
                     'state_version', t.state_version, 'actor_id', t.actor_id, 'actor_role', t.actor_role, \
                     'reason_code', t.reason_code, 'reason_text', t.reason_text, 'occurred_at', t.occurred_at, \
                     'command_id', t.command_id), \
                   'correlation_id', t.correlation_id, 'causation_id', t.causation_id), \
                 t.correlation_id, t.causation_id, t.occurred_at \
          FROM statemachine.case_state_transition t WHERE t.id OPERATOR(pg_catalog.=) $3 \
          RETURNING pg_catalog.pg_notify('statemachine_outbox', $2 OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) aggregate_id::pg_catalog.text)",
    args: &[UUID, TEXT, UUID],
};
/// The guard audit (seed 003 §9.3): one row per evaluated guard, from a JSON array.
static INSERT_GUARD_RESULTS: Stmt = Stmt {
    sql: "INSERT INTO statemachine.case_transition_guard_result (id, transition_id, guard_code, passed, evaluated_at, evidence) \
          SELECT pg_catalog.gen_random_uuid(), $1, g.guard_code, g.passed, $2, g.evidence \
          FROM pg_catalog.jsonb_to_recordset($3) AS g(guard_code text, passed boolean, evidence jsonb)",
    args: &[UUID, TIMESTAMPTZ, JSONB],
};
static INSERT_CASE: Stmt = Stmt {
    sql: "INSERT INTO statemachine.case_file AS c (id, machine, machine_version, machine_version_id, case_number, \
              current_state, state_version, state_entered_at, created_at, updated_at, metadata, root_case_id) \
          VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7, $7, COALESCE($8, '{}'::pg_catalog.jsonb), $9) \
          ON CONFLICT DO NOTHING RETURNING c",
    args: &[UUID, TEXT, INT4, UUID, TEXT, TEXT, TIMESTAMPTZ, JSONB, UUID],
};
static EXISTING_CASE: Stmt = Stmt {
    sql: "SELECT c.id, c.machine, c.case_number FROM statemachine.case_file c \
          WHERE c.id OPERATOR(pg_catalog.=) $1 OR (c.machine OPERATOR(pg_catalog.=) $2 AND c.case_number OPERATOR(pg_catalog.=) $3) LIMIT 1",
    args: &[UUID, TEXT, TEXT],
};
static CASE_EXISTS: Stmt = Stmt {
    sql: "SELECT 1 FROM statemachine.case_file c WHERE c.id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
static INSERT_EVIDENCE: Stmt = Stmt {
    sql: "INSERT INTO statemachine.case_evidence (id, case_id, evidence_type, storage_uri, content_hash, submitted_by, submitted_at) \
          SELECT $1, c.id, $3, $4, $5, $6, $7 FROM statemachine.case_file c WHERE c.id OPERATOR(pg_catalog.=) $2 RETURNING id",
    args: &[UUID, UUID, TEXT, TEXT, TEXT, UUID, TIMESTAMPTZ],
};
/// Deactivation is an appended event; the first one stands (ON CONFLICT waits for a
/// concurrent one and then yields to it).
static INSERT_DEACTIVATION: Stmt = Stmt {
    sql: "INSERT INTO statemachine.case_evidence_deactivation AS d (evidence_id, case_id, deactivated_by, deactivated_at, reason) \
          SELECT e.id, e.case_id, $2, $4, $3 FROM statemachine.case_evidence e WHERE e.id OPERATOR(pg_catalog.=) $1 \
          ON CONFLICT (evidence_id) DO NOTHING RETURNING d",
    args: &[UUID, UUID, TEXT, TIMESTAMPTZ],
};
/// is_active is the deactivation record's summary, kept in the same transaction.
static MARK_EVIDENCE_INACTIVE: Stmt = Stmt {
    sql: "UPDATE statemachine.case_evidence SET is_active = false WHERE id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
static DEACTIVATION_ROW: Stmt = Stmt {
    sql: "SELECT d FROM statemachine.case_evidence_deactivation d WHERE d.evidence_id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
static EVIDENCE_EXISTS: Stmt = Stmt {
    sql: "SELECT 1 FROM statemachine.case_evidence e WHERE e.id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
/// Assignment changes take the case lock too, so they serialize with transitions whose
/// requires_assignment guard reads them.
static LOCK_CASE_ONLY: Stmt = Stmt {
    sql: "SELECT 1 FROM statemachine.case_file c WHERE c.id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
    args: &[UUID],
};
static CORRECTION_TARGET: Stmt = Stmt {
    sql: "SELECT t.case_id, t.state_version, t.transition_code FROM statemachine.case_state_transition t \
          WHERE t.id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
/// The case to correct, locked, with its version's correction scope and whether $2 is
/// one of its states.
static LOCK_FOR_CORRECTION: Stmt = Stmt {
    sql: "SELECT c.current_state, c.state_version, c.state_entered_at, c.updated_at, v.corrections, v.machine, v.version, \
                 EXISTS (SELECT 1 FROM statemachine.state s WHERE s.machine_version_id OPERATOR(pg_catalog.=) c.machine_version_id \
                         AND s.code OPERATOR(pg_catalog.=) $2) \
          FROM statemachine.case_file c JOIN statemachine.machine_version v ON v.id OPERATOR(pg_catalog.=) c.machine_version_id \
          WHERE c.id OPERATOR(pg_catalog.=) $1 FOR UPDATE OF c",
    args: &[UUID, TEXT],
};
static CORRECTED_BY: Stmt = Stmt {
    sql: "SELECT k.correcting_transition_id, t.state_version FROM statemachine.case_state_correction k \
          JOIN statemachine.case_state_transition t ON t.id OPERATOR(pg_catalog.=) k.correcting_transition_id \
          WHERE k.wrong_transition_id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
static INSERT_CORRECTION: Stmt = Stmt {
    sql: "INSERT INTO statemachine.case_state_correction (id, case_id, wrong_transition_id, correcting_transition_id, \
              corrected_by, corrected_at, reason_text) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    args: &[UUID, UUID, UUID, UUID, UUID, TIMESTAMPTZ, TEXT],
};
/// A dimension of a case, by machine name (the case itself when it runs that machine).
static DIMENSION_BY_NAME: Stmt = Stmt {
    sql: "SELECT c.id FROM statemachine.case_file c \
          WHERE (c.id OPERATOR(pg_catalog.=) $1 OR c.root_case_id OPERATOR(pg_catalog.=) $1) AND c.machine OPERATOR(pg_catalog.=) $2",
    args: &[UUID, TEXT],
};
/// The other members of a case's family (the case and its dimensions), but one.
static FAMILY: Stmt = Stmt {
    sql: "SELECT c.id, c.machine_version_id, c.current_state FROM statemachine.case_file c \
          WHERE (c.id OPERATOR(pg_catalog.=) $1 OR c.root_case_id OPERATOR(pg_catalog.=) $1) AND c.id OPERATOR(pg_catalog.<>) $2",
    args: &[UUID, UUID],
};
/// A dimension's transition locks its case too (root first is the rule for everything
/// that reads more than one member), so dimensions of one case move one at a time.
static LOCK_ROOT: Stmt = Stmt {
    sql: "SELECT 1 FROM statemachine.case_file c WHERE c.id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
    args: &[UUID],
};
static LOCK_FOR_ATTACH: Stmt = Stmt {
    sql: "SELECT c.root_case_id, c.case_number, c.machine FROM statemachine.case_file c \
          WHERE c.id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
    args: &[UUID],
};
/// A dimension's id follows from its case and machine, so callers can compute it.
static DIMENSION_ID: Stmt = Stmt {
    sql: "SELECT pg_catalog.md5('dimension:' OPERATOR(pg_catalog.||) $1::pg_catalog.text OPERATOR(pg_catalog.||) ':' \
                 OPERATOR(pg_catalog.||) $2)::pg_catalog.uuid",
    args: &[UUID, TEXT],
};
static ADD_DIMENSION: Stmt = Stmt {
    sql: "UPDATE statemachine.case_file SET dimensions = pg_catalog.array_append(dimensions, $2), \
              updated_at = GREATEST(updated_at, $3) WHERE id OPERATOR(pg_catalog.=) $1",
    args: &[UUID, TEXT, TIMESTAMPTZ],
};
/// An assignment change is a change of the case: it updates the row (not just locks
/// it), so a REPEATABLE READ transition that waited for it fails with 40001 instead of
/// deciding on a snapshot that misses it.
static TOUCH_CASE: Stmt = Stmt {
    sql: "UPDATE statemachine.case_file SET updated_at = GREATEST(updated_at, $2) WHERE id OPERATOR(pg_catalog.=) $1",
    args: &[UUID, TIMESTAMPTZ],
};
static ASSIGNMENT_BY_COMMAND: Stmt = Stmt {
    sql: "SELECT a.case_id, a.assignee_id, a.role_code, a FROM statemachine.case_assignment a \
          WHERE a.command_id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
static INSERT_ASSIGNMENT: Stmt = Stmt {
    sql: "INSERT INTO statemachine.case_assignment AS a (id, case_id, assignee_id, role_code, assigned_by, assigned_at, command_id) \
          VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (command_id) DO NOTHING RETURNING a",
    args: &[UUID, UUID, UUID, TEXT, UUID, TIMESTAMPTZ, UUID],
};
static RELEASE_BY_COMMAND: Stmt = Stmt {
    sql: "SELECT a.case_id, a.assignee_id, a.role_code, r FROM statemachine.case_assignment_release r \
          JOIN statemachine.case_assignment a ON a.id OPERATOR(pg_catalog.=) r.assignment_id \
          WHERE r.command_id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
static INSERT_RELEASE: Stmt = Stmt {
    sql: "INSERT INTO statemachine.case_assignment_release AS r (assignment_id, released_by, released_at, command_id) \
          VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING r",
    args: &[UUID, UUID, TIMESTAMPTZ, UUID],
};

thread_local! {
    static RNG: RefCell<Option<SplitMix64>> = const { RefCell::new(None) };
}

/// PostgreSQL timestamps count microseconds from 2000-01-01; Unix time from 1970.
const PG_EPOCH_UNIX_MS: i64 = 946_684_800_000;

/// A UUID v7 for a history row written at `ts` (also for migrate_cases).
pub fn history_id(ts: pg_sys::TimestampTz) -> [u8; 16] {
    new_id(ts)
}

/// A UUID v7 for a row written at `ts`.
fn new_id(ts: pg_sys::TimestampTz) -> [u8; 16] {
    RNG.with(|r| {
        let mut r = r.borrow_mut();
        let rng = r.get_or_insert_with(|| {
            let mut seed = [0u8; 8];
            // pg_strong_random may fail on exotic platforms; pid and time still vary.
            let ok = unsafe { pg_sys::pg_strong_random(seed.as_mut_ptr().cast(), seed.len()) };
            let mixed = u64::from_le_bytes(seed) ^ if ok { 0 } else { (unsafe { pg_sys::MyProcPid } as u64) << 32 ^ ts as u64 };
            SplitMix64::new(mixed)
        });
        let ms = (ts / 1000 + PG_EPOCH_UNIX_MS).max(0) as u64;
        uuid_v7(ms, rng.next_u64(), rng.next_u64())
    })
}

/// The machines and states of a case family (the case and its dimensions) but `except`.
fn family_members(
    spi: &Spi,
    root_d: pg_sys::Datum,
    except_d: pg_sys::Datum,
) -> Vec<(std::rc::Rc<statemachine_core::CompiledMachine>, String)> {
    let family = spi.run(&FAMILY, &[Some(root_d), Some(except_d)], 0);
    // Copied out first: loading a machine into the cache runs statements of its own.
    let rows: Vec<([u8; 16], String)> = (0..family.count).filter_map(|i| Some((family.uuid(i, 2)?, family.text(i, 3)?))).collect();
    rows.into_iter().map(|(v, state)| (machines::get(spi, &v), state)).collect()
}

/// Cross-dimension invariants (seed 003 §21) for a member of a case family moving to
/// `to`: locks the family's root (a dimension's own lock is already held), then reads
/// the other members' states.
fn family_allows(
    spi: &Spi,
    case_d: pg_sys::Datum,
    root_id: Option<[u8; 16]>,
    machine: &statemachine_core::CompiledMachine,
    to: &str,
) -> Result<(), String> {
    let root_d = match root_id {
        Some(root) => {
            let root_d = uuid_datum(&root);
            spi.run(&LOCK_ROOT, &[Some(root_d)], 1);
            root_d
        }
        None => case_d,
    };
    let members = family_members(spi, root_d, case_d);
    let siblings: Vec<Sibling<'_>> = members.iter().map(|(m, state)| Sibling { machine: m, state }).collect();
    check_invariants(machine, to, &siblings)
}

/// Write-path functions refuse to run inside a SQL guard (SM007): a guard decides
/// whether a transition may happen; it must not change cases while doing so.
pub fn refuse_inside_guard(function: &str) -> SmResult<()> {
    if door::inside_guard() {
        return Err(Refusal::GuardReentry { function: function.into() }.report(&CaseFacts::default()));
    }
    Ok(())
}

/// The evidence ids a caller passed, with what the database knows of each.
pub fn evidence_facts(spi: &Spi, ids: Option<pg_sys::Datum>) -> Vec<EvidenceFact> {
    let Some(d) = ids else { return Vec::new() };
    let r = spi.run(&EVIDENCE_ROWS, &[Some(d)], 0);
    (0..r.count)
        .map(|i| EvidenceFact { id: r.uuid(i, 1), case_id: r.uuid(i, 2), active: r.bool(i, 3).unwrap_or(false), evidence_type: r.text(i, 4) })
        .collect()
}

/// What an earlier use of a command id recorded.
struct PriorCommand {
    case_id: [u8; 16],
    code: String,
    machine: String,
    case_number: String,
    transition_row: pg_sys::Datum,
    case_row: pg_sys::Datum,
    transition_id: [u8; 16],
}

fn find_command(spi: &Spi, command_id: pg_sys::Datum) -> Option<PriorCommand> {
    let r = spi.run(&FIND_COMMAND, &[Some(command_id)], 1);
    Some(PriorCommand {
        case_id: r.uuid(0, 1)?,
        code: r.text(0, 2)?,
        transition_row: r.get(0, 3)?,
        machine: r.text(0, 4)?,
        case_number: r.text(0, 5)?,
        case_row: r.get(0, 6)?,
        transition_id: r.uuid(0, 7)?,
    })
}

fn describe_prior(p: &PriorCommand) -> String {
    if p.code == "CREATE" {
        format!("CREATE of case {} (machine {}, case number {})", uuid_string(&p.case_id), p.machine, p.case_number)
    } else {
        format!("transition {} on case {}", p.code, uuid_string(&p.case_id))
    }
}

fn conflict(command_id: pg_sys::Datum, prior: &PriorCommand, requested: String) -> Report {
    Refusal::CommandConflict {
        command_id: uuid_string(&unsafe { uuid_from_datum(command_id) }),
        existing: describe_prior(prior),
        requested,
    }
    .report(&CaseFacts::default())
}

/// Before raising a refusal: a replay of an earlier command returns that command's row
/// instead (the case may have moved on since), a reuse for something else is SM008.
fn replay_or_refuse(
    spi: &Spi,
    command_id: pg_sys::Datum,
    case_id: &[u8; 16],
    code: &str,
    refusal: Refusal,
    facts: &CaseFacts,
) -> SmResult<pg_sys::Datum> {
    match find_command(spi, command_id) {
        Some(p) if &p.case_id == case_id && p.code == code => Ok(spi.keep(p.transition_row)),
        Some(p) => Err(conflict(command_id, &p, format!("transition {code} on case {}", uuid_string(case_id)))),
        None => Err(refusal.report(facts)),
    }
}

unsafe fn transition_case(fcinfo: pg_sys::FunctionCallInfo) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("transition_case")?;
    let a = Args(fcinfo);
    let case_d = a.required(0, "case_id")?;
    let spi = Spi::connect();
    match a.opt_text(12) {
        // An explicit dimension: the case's own machine, or one attached to it.
        Some(dimension) => {
            // The case's row first, then the dimension's: the same order as a dimension
            // found by code, so the two ways of calling cannot deadlock each other.
            spi.run(&LOCK_ROOT, &[Some(case_d)], 1);
            let found = spi.run(&DIMENSION_BY_NAME, &[Some(case_d), Some(text_datum(&dimension))], 1);
            let Some(target) = found.get(0, 1) else {
                let case_id = uuid_string(&unsafe { uuid_from_datum(case_d) });
                return Err(Refusal::UnknownDimension { case_id, dimension }.report(&CaseFacts::default()));
            };
            transition_in(&a, &spi, target, false)
        }
        None => transition_in(&a, &spi, case_d, true),
    }
}

/// transition_case on one case row. `find_dimension`: a code the case's machine does not
/// know may belong to one of its dimensions; move that one instead.
fn transition_in(a: &Args, spi: &Spi, case_d: pg_sys::Datum, find_dimension: bool) -> SmResult<pg_sys::Datum> {
    let code = a.text(1, "transition_code")?;
    let actor_d = a.required(2, "actor_id")?;
    let role = a.text(3, "actor_role")?;
    let command_d = a.required(4, "command_id")?;
    let (reason_code, reason_text) = (a.opt_text(5), a.opt_text(6));
    let expected_version = a.opt_i64(7);
    let evidence_d = a.datum(8);
    let case_id = unsafe { uuid_from_datum(case_d) };

    let lock = spi.run(&LOCK_CASE, &[Some(case_d)], 1);
    let (Some(current), Some(version), Some(entered_at), Some(updated_at), Some(version_id)) =
        (lock.text(0, 1), lock.i64(0, 2), lock.i64(0, 3), lock.i64(0, 4), lock.uuid(0, 5))
    else {
        let facts = CaseFacts { case_id: uuid_string(&case_id), current_state: String::new() };
        let refusal = Refusal::UnknownCase { case_id: facts.case_id.clone() };
        return replay_or_refuse(spi, command_d, &case_id, &code, refusal, &facts);
    };
    let (root_id, has_dimensions) = (lock.uuid(0, 6), lock.bool(0, 7) == Some(true));
    let facts = CaseFacts { case_id: uuid_string(&case_id), current_state: current.clone() };
    let refuse = |refusal: Refusal| replay_or_refuse(spi, command_d, &case_id, &code, refusal, &facts);
    let machine = machines::get(spi, &version_id);
    if find_dimension && has_dimensions && !machine.has_code(&code) {
        // Codes are unique across a case's machines (attach_dimension checks), so at most
        // one dimension knows this one.
        let family = spi.run(&FAMILY, &[Some(case_d), Some(case_d)], 0);
        let members: Vec<([u8; 16], [u8; 16])> = (0..family.count).filter_map(|i| Some((family.uuid(i, 1)?, family.uuid(i, 2)?))).collect();
        if let Some((dimension, _)) = members.iter().find(|(_, v)| machines::get(spi, v).has_code(&code)) {
            return transition_in(a, spi, uuid_datum(dimension), false);
        }
    }

    if let Some(expected) = expected_version {
        if expected != version {
            return refuse(Refusal::StaleVersion { expected, actual: version });
        }
    }

    let evidence = evidence_facts(spi, evidence_d);
    // Transitions of one case are serialized by the row lock; occurred_at never goes
    // backwards within a case even if the clock does.
    let now = unsafe { pg_sys::GetCurrentTimestamp() }.max(updated_at);
    let request = Request {
        case_id,
        current_state: &current,
        code: &code,
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
        if let Err(reason) = family_allows(spi, case_d, root_id, &machine, &rule.to) {
            return refuse(Refusal::GuardFailed { code: code.clone(), guard: "dimension_invariant".into(), reason });
        }
    }

    let transition_id = new_id(now);
    let entered_now = if rule.to != current { now } else { entered_at };
    // The caller's own datums serve as parameters: rule.code is transition_code, the
    // role is actor_role, and the from-state is the locked row's current_state.
    let (code_d, role_d, from_d) = (a.datum(1), a.datum(3), lock.get(0, 1));
    let to_d = Some(text_datum(&rule.to));
    let _door = door::open();
    let recorded = spi.run(
        &RECORD_TRANSITION,
        &[
            Some(uuid_datum(&transition_id)),
            Some(case_d),
            Some(text_datum(&machine.machine)),
            from_d,
            to_d,
            code_d,
            Some(text_datum(rule.kind.as_str())),
            Some(pg_sys::Datum::from(version + 1)),
            Some(actor_d),
            role_d,
            a.datum(5),
            a.datum(6),
            Some(pg_sys::Datum::from(machine.version)),
            Some(pg_sys::Datum::from(now)),
            Some(command_d),
            a.datum(9),
            a.datum(10),
            a.datum(11),
            Some(pg_sys::Datum::from(entered_now)),
        ],
        1,
    );
    let Some(row) = recorded.get(0, 1) else {
        // The command id is taken, by a committed transaction we waited for: a replay or
        // SM008. (Not finding that row would mean it is invisible to us: retry.)
        return refuse(Refusal::CommandInFlight);
    };
    let row = spi.keep(row);
    if let Some(ids) = evidence_d.filter(|_| !evidence.is_empty()) {
        let types = Some(rule.evidence.types().to_vec()).filter(|t| !t.is_empty()).and_then(IntoDatum::into_datum);
        spi.run(
            &LINK_EVIDENCE,
            &[Some(uuid_datum(&transition_id)), Some(pg_sys::Datum::from(rule.requires_evidence())), types, Some(ids)],
            0,
        );
    }
    if let Some(event_type) = &rule.emit {
        spi.run(&INSERT_OUTBOX, &[Some(uuid_datum(&new_id(now))), Some(text_datum(event_type)), Some(uuid_datum(&transition_id))], 1);
    }
    if rule.audit_guards && evaluation.guards().next().is_some() {
        let results: Vec<serde_json::Value> = evaluation
            .guards()
            .map(|c| {
                // The table keeps evidence as an object; anything else a function returned is wrapped.
                let evidence = match &c.evidence {
                    serde_json::Value::Object(_) => c.evidence.clone(),
                    serde_json::Value::Null => serde_json::json!({}),
                    other => serde_json::json!({ "value": other }),
                };
                serde_json::json!({"guard_code": c.name, "passed": c.passed, "evidence": evidence})
            })
            .collect();
        spi.run(
            &INSERT_GUARD_RESULTS,
            &[
                Some(uuid_datum(&transition_id)),
                Some(pg_sys::Datum::from(now)),
                Some(crate::fmgr::jsonb_datum(&serde_json::Value::Array(results).to_string())),
            ],
            0,
        );
    }
    Ok(row)
}

unsafe fn create_case(fcinfo: pg_sys::FunctionCallInfo) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("create_case")?;
    let a = Args(fcinfo);
    let machine_name = a.text(0, "machine")?;
    let case_number = a.text(1, "case_number")?;
    let actor_d = a.required(2, "actor_id")?;
    let role = a.text(3, "actor_role")?;
    let command_d = a.required(4, "command_id")?;
    let given_id = a.datum(5).map(|d| unsafe { uuid_from_datum(d) });

    let spi = Spi::connect();
    let latest = spi.run(&machines::LATEST_VERSION, &[Some(text_datum(&machine_name))], 1);
    let Some(version_id) = latest.uuid(0, 1) else {
        return Err(Refusal::UnknownMachine { machine: machine_name, version: None }.report(&CaseFacts::default()));
    };
    let machine = machines::get(&spi, &version_id);
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let case_id = given_id.unwrap_or_else(|| new_id(now));
    let requested = format!("CREATE of case number {case_number} (machine {machine_name})");
    let same_create = |p: &PriorCommand| {
        p.code == "CREATE" && p.machine == machine_name && p.case_number == case_number && given_id.is_none_or(|id| id == p.case_id)
    };
    if machine.role_source == RoleSource::Database {
        let refusal = match membership(&role) {
            Membership::Member => None,
            Membership::NotMember { session_user } => Some((session_user, true)),
            Membership::NoSuchRole { session_user } => Some((session_user, false)),
        };
        if let Some((session_user, role_exists)) = refusal {
            // A replay of a create that once succeeded still returns its case.
            if let Some(p) = find_command(&spi, command_d).filter(|p| same_create(p)) {
                return Ok(spi.keep(p.case_row));
            }
            let refusal = Refusal::RoleNotMember { code: "CREATE".into(), actor_role: role, session_user, role_exists };
            return Err(refusal.report(&CaseFacts { case_id: uuid_string(&case_id), current_state: String::new() }));
        }
    }

    let new_case = NewCase { case_id, machine: &machine, version_id, case_number: &case_number, metadata: a.datum(6), root: None };
    if let Some(row) = insert_case(&spi, &new_case, actor_d, &role, command_d, now, &requested)? {
        return Ok(row);
    }
    // The case id or number exists: a replay of this very command, or a clash.
    if let Some(p) = find_command(&spi, command_d) {
        return if same_create(&p) { Ok(spi.keep(p.case_row)) } else { Err(conflict(command_d, &p, requested)) };
    }
    let e = spi.run(&EXISTING_CASE, &[Some(uuid_datum(&case_id)), Some(text_datum(&machine_name)), Some(text_datum(&case_number))], 1);
    let detail = match e.uuid(0, 1) {
        Some(id) if id == case_id => format!("A case with id {} already exists.", uuid_string(&id)),
        _ => format!("Machine {machine_name} already has a case numbered {case_number}."),
    };
    Err(Refusal::CaseExists { detail }.report(&CaseFacts::default()))
}

unsafe fn attach_dimension(fcinfo: pg_sys::FunctionCallInfo) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("attach_dimension")?;
    let a = Args(fcinfo);
    let case_d = a.required(0, "case_id")?;
    let machine_name = a.text(1, "machine")?;
    let actor_d = a.required(2, "actor_id")?;
    let role = a.text(3, "actor_role")?;
    let command_d = a.required(4, "command_id")?;
    let root_id = unsafe { uuid_from_datum(case_d) };
    let root_text = uuid_string(&root_id);
    let plain = |r: Refusal| r.report(&CaseFacts::default());

    let spi = Spi::connect();
    let root = spi.run(&LOCK_FOR_ATTACH, &[Some(case_d)], 1);
    let (Some(number), Some(root_machine)) = (root.text(0, 2), root.text(0, 3)) else {
        return Err(plain(Refusal::UnknownCase { case_id: root_text }));
    };
    if let Some(parent) = root.uuid(0, 1) {
        let problem = format!("{root_text} is itself a dimension of case {}; attach dimensions to that case", uuid_string(&parent));
        return Err(plain(Refusal::InvalidArgument { name: "case_id".into(), problem }));
    }
    let requested = format!("attach dimension {machine_name} to case {root_text}");
    let existing = spi.run(&DIMENSION_BY_NAME, &[Some(case_d), Some(text_datum(&machine_name))], 1).uuid(0, 1);
    if let Some(p) = find_command(&spi, command_d) {
        return if p.code == "CREATE" && existing == Some(p.case_id) {
            Ok(spi.keep(p.case_row))
        } else {
            Err(conflict(command_d, &p, requested))
        };
    }
    if existing.is_some() || machine_name == root_machine {
        return Err(plain(Refusal::CaseExists { detail: format!("Case {root_text} already has dimension {machine_name}.") }));
    }
    let latest = spi.run(&machines::LATEST_VERSION, &[Some(text_datum(&machine_name))], 1);
    let Some(version_id) = latest.uuid(0, 1) else {
        return Err(plain(Refusal::UnknownMachine { machine: machine_name, version: None }));
    };
    let machine = machines::get(&spi, &version_id);
    // The family as it is: the case and its dimensions.
    let members = family_members(&spi, case_d, uuid_datum(&[0; 16]));
    // transition_case finds a dimension by code, so codes must not be shared.
    for (m, _) in &members {
        let mut shared: Vec<&str> = machine.codes().filter(|c| m.has_code(c)).collect();
        if !shared.is_empty() {
            shared.sort_unstable();
            let problem = format!(
                "{machine_name} shares transition code{} {} with dimension {}; transition_case could not tell them apart",
                if shared.len() == 1 { "" } else { "s" },
                shared.join(", "),
                m.machine
            );
            return Err(plain(Refusal::InvalidArgument { name: "machine".into(), problem }));
        }
    }
    let siblings: Vec<Sibling<'_>> = members.iter().map(|(m, state)| Sibling { machine: m, state }).collect();
    if let Err(reason) = check_invariants(&machine, &machine.initial, &siblings) {
        let facts = CaseFacts { case_id: root_text, current_state: String::new() };
        return Err(Refusal::GuardFailed { code: "CREATE".into(), guard: "dimension_invariant".into(), reason }.report(&facts));
    }

    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let case_number = format!("{number}/{machine_name}");
    let dimension_id = spi.run(&DIMENSION_ID, &[Some(case_d), Some(text_datum(&machine_name))], 1).uuid(0, 1).unwrap_or_else(|| new_id(now));
    let new_case =
        NewCase { case_id: dimension_id, machine: &machine, version_id, case_number: &case_number, metadata: None, root: Some(case_d) };
    let Some(row) = insert_case(&spi, &new_case, actor_d, &role, command_d, now, &requested)? else {
        let detail = format!("Machine {machine_name} already has a case numbered {case_number}.");
        return Err(plain(Refusal::CaseExists { detail }));
    };
    let _door = door::open();
    spi.run(&ADD_DIMENSION, &[Some(case_d), Some(text_datum(&machine_name)), Some(pg_sys::Datum::from(now))], 0);
    Ok(row)
}

/// A case row to create: a case, or (with `root`) a dimension of one.
struct NewCase<'a> {
    case_id: [u8; 16],
    machine: &'a statemachine_core::CompiledMachine,
    version_id: [u8; 16],
    case_number: &'a str,
    metadata: Option<pg_sys::Datum>,
    root: Option<pg_sys::Datum>,
}

/// Inserts the case row in its machine's initial state and its CREATE history row.
/// `Ok(None)`: the case id or number exists (the caller tells a replay from a clash).
fn insert_case(
    spi: &Spi,
    new: &NewCase<'_>,
    actor_d: pg_sys::Datum,
    role: &str,
    command_d: pg_sys::Datum,
    now: i64,
    requested: &str,
) -> SmResult<Option<pg_sys::Datum>> {
    let machine = new.machine;
    let _door = door::open();
    let inserted = spi.run(
        &INSERT_CASE,
        &[
            Some(uuid_datum(&new.case_id)),
            Some(text_datum(&machine.machine)),
            Some(pg_sys::Datum::from(machine.version)),
            Some(uuid_datum(&new.version_id)),
            Some(text_datum(new.case_number)),
            Some(text_datum(&machine.initial)),
            Some(pg_sys::Datum::from(now)),
            new.metadata,
            new.root,
        ],
        1,
    );
    let Some(case_row) = inserted.get(0, 1) else { return Ok(None) };
    let case_row = spi.keep(case_row);
    let created = spi.run(
        &INSERT_TRANSITION,
        &[
            Some(uuid_datum(&new_id(now))),
            Some(uuid_datum(&new.case_id)),
            Some(text_datum(&machine.machine)),
            None,
            Some(text_datum(&machine.initial)),
            Some(text_datum("CREATE")),
            Some(text_datum("create")),
            Some(pg_sys::Datum::from(0i64)),
            Some(actor_d),
            Some(text_datum(role)),
            None,
            None,
            Some(pg_sys::Datum::from(machine.version)),
            Some(pg_sys::Datum::from(now)),
            Some(command_d),
            None,
            None,
            None,
        ],
        1,
    );
    if created.is_empty() {
        return Err(match find_command(spi, command_d) {
            Some(p) => conflict(command_d, &p, requested.to_owned()),
            None => Refusal::CommandInFlight.report(&CaseFacts::default()),
        });
    }
    Ok(Some(case_row))
}

unsafe fn add_evidence(fcinfo: pg_sys::FunctionCallInfo) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("add_evidence")?;
    let a = Args(fcinfo);
    let case_d = a.required(0, "case_id")?;
    let evidence_type = a.text(1, "evidence_type")?;
    let storage_uri = a.text(2, "storage_uri")?;
    let content_hash = a.text(3, "content_hash")?;
    let submitted_by = a.required(4, "submitted_by")?;
    let spi = Spi::connect();
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let id = new_id(now);
    let _door = door::open();
    let r = spi.run(
        &INSERT_EVIDENCE,
        &[
            Some(uuid_datum(&id)),
            Some(case_d),
            Some(text_datum(&evidence_type)),
            Some(text_datum(&storage_uri)),
            Some(text_datum(&content_hash)),
            Some(submitted_by),
            Some(pg_sys::Datum::from(now)),
        ],
        1,
    );
    if r.is_empty() {
        let case_id = uuid_string(&unsafe { uuid_from_datum(case_d) });
        return Err(Refusal::UnknownEvidenceCase { case_id }.report(&CaseFacts::default()));
    }
    Ok(spi.keep_uuid(&id))
}

unsafe fn deactivate_evidence(fcinfo: pg_sys::FunctionCallInfo) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("deactivate_evidence")?;
    let a = Args(fcinfo);
    let evidence_d = a.required(0, "evidence_id")?;
    let actor_d = a.required(1, "actor_id")?;
    let reason = a.text(2, "reason")?;
    let spi = Spi::connect();
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    {
        let _door = door::open();
        let r = spi.run(&INSERT_DEACTIVATION, &[Some(evidence_d), Some(actor_d), Some(text_datum(&reason)), Some(pg_sys::Datum::from(now))], 1);
        if let Some(row) = r.get(0, 1) {
            let row = spi.keep(row);
            spi.run(&MARK_EVIDENCE_INACTIVE, &[Some(evidence_d)], 0);
            return Ok(row);
        }
    }
    // Already deactivated: the first deactivation stands and is returned.
    if let Some(row) = spi.run(&DEACTIVATION_ROW, &[Some(evidence_d)], 1).get(0, 1) {
        return Ok(spi.keep(row));
    }
    let evidence_id = uuid_string(&unsafe { uuid_from_datum(evidence_d) });
    if spi.run(&EVIDENCE_EXISTS, &[Some(evidence_d)], 1).is_empty() {
        return Err(Refusal::UnknownEvidence { evidence_id }.report(&CaseFacts::default()));
    }
    Err(Refusal::CommandInFlight.report(&CaseFacts::default()))
}

/// The arguments of assign_case and release_assignment.
struct AssignmentArgs {
    case_d: pg_sys::Datum,
    assignee_d: pg_sys::Datum,
    role: String,
    actor_d: pg_sys::Datum,
    command_d: pg_sys::Datum,
}

impl AssignmentArgs {
    fn read(a: &Args) -> SmResult<Self> {
        Ok(AssignmentArgs {
            case_d: a.required(0, "case_id")?,
            assignee_d: a.required(1, "assignee_id")?,
            role: a.text(2, "role_code")?,
            actor_d: a.required(3, "actor_id")?,
            command_d: a.required(4, "command_id")?,
        })
    }

    fn describe(&self, what: &str) -> String {
        format!(
            "{what} of {} as {} on case {}",
            uuid_string(&unsafe { uuid_from_datum(self.assignee_d) }),
            self.role,
            uuid_string(&unsafe { uuid_from_datum(self.case_d) })
        )
    }

    /// Locks the case (SM009 if there is none).
    fn lock_case(&self, spi: &Spi) -> SmResult<()> {
        if spi.run(&LOCK_CASE_ONLY, &[Some(self.case_d)], 1).is_empty() {
            let case_id = uuid_string(&unsafe { uuid_from_datum(self.case_d) });
            return Err(Refusal::UnknownCase { case_id }.report(&CaseFacts::default()));
        }
        Ok(())
    }

    /// Marks the case changed (see TOUCH_CASE); the door must be open.
    fn touch_case(&self, spi: &Spi, now: i64) {
        spi.run(&TOUCH_CASE, &[Some(self.case_d), Some(pg_sys::Datum::from(now))], 0);
    }

    /// An earlier use of the command id: the same command's row, or SM008.
    fn replay(&self, spi: &Spi, by_command: &'static Stmt, what: &str) -> Option<SmResult<pg_sys::Datum>> {
        let r = spi.run(by_command, &[Some(self.command_d)], 1);
        let (case_id, assignee, role, row) = (r.uuid(0, 1)?, r.uuid(0, 2)?, r.text(0, 3)?, r.get(0, 4)?);
        let same = unsafe { case_id == uuid_from_datum(self.case_d) && assignee == uuid_from_datum(self.assignee_d) } && role == self.role;
        if same {
            return Some(Ok(spi.keep(row)));
        }
        let existing = format!(
            "{what} of {} as {role} on case {}",
            uuid_string(&assignee),
            uuid_string(&case_id)
        );
        Some(Err(Refusal::CommandConflict {
            command_id: uuid_string(&unsafe { uuid_from_datum(self.command_d) }),
            existing,
            requested: self.describe(what),
        }
        .report(&CaseFacts::default())))
    }
}

unsafe fn assign_case(fcinfo: pg_sys::FunctionCallInfo) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("assign_case")?;
    let args = AssignmentArgs::read(&Args(fcinfo))?;
    let spi = Spi::connect();
    args.lock_case(&spi)?;
    if let Some(replayed) = args.replay(&spi, &ASSIGNMENT_BY_COMMAND, "assignment") {
        return replayed;
    }
    let role_d = Some(text_datum(&args.role));
    // Already assigned in that role: nothing to add; the assignment in force is the answer.
    let active = spi.run(&ACTIVE_ASSIGNMENT, &[Some(args.case_d), Some(args.assignee_d), role_d], 1);
    if let Some(row) = active.get(0, 3) {
        return Ok(spi.keep(row));
    }
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let _door = door::open();
    let r = spi.run(
        &INSERT_ASSIGNMENT,
        &[
            Some(uuid_datum(&new_id(now))),
            Some(args.case_d),
            Some(args.assignee_d),
            role_d,
            Some(args.actor_d),
            Some(pg_sys::Datum::from(now)),
            Some(args.command_d),
        ],
        1,
    );
    match r.get(0, 1) {
        Some(row) => {
            let row = spi.keep(row);
            args.touch_case(&spi, now);
            Ok(row)
        }
        None => args.replay(&spi, &ASSIGNMENT_BY_COMMAND, "assignment").unwrap_or_else(|| Err(Refusal::CommandInFlight.report(&CaseFacts::default()))),
    }
}

unsafe fn release_assignment(fcinfo: pg_sys::FunctionCallInfo) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("release_assignment")?;
    let args = AssignmentArgs::read(&Args(fcinfo))?;
    let spi = Spi::connect();
    args.lock_case(&spi)?;
    if let Some(replayed) = args.replay(&spi, &RELEASE_BY_COMMAND, "release") {
        return replayed;
    }
    let active = spi.run(&ACTIVE_ASSIGNMENT, &[Some(args.case_d), Some(args.assignee_d), Some(text_datum(&args.role))], 1);
    let Some(assignment_id) = active.get(0, 1) else {
        return Err(Refusal::AssignmentNotFound {
            case_id: uuid_string(&unsafe { uuid_from_datum(args.case_d) }),
            assignee: uuid_string(&unsafe { uuid_from_datum(args.assignee_d) }),
            role: args.role,
        }
        .report(&CaseFacts::default()));
    };
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let _door = door::open();
    let r = spi.run(&INSERT_RELEASE, &[Some(assignment_id), Some(args.actor_d), Some(pg_sys::Datum::from(now)), Some(args.command_d)], 1);
    match r.get(0, 1) {
        Some(row) => {
            let row = spi.keep(row);
            args.touch_case(&spi, now);
            Ok(row)
        }
        None => args.replay(&spi, &RELEASE_BY_COMMAND, "release").unwrap_or_else(|| Err(Refusal::CommandInFlight.report(&CaseFacts::default()))),
    }
}

unsafe fn require_case(fcinfo: pg_sys::FunctionCallInfo) -> SmResult<pg_sys::Datum> {
    let a = Args(fcinfo);
    let case_d = a.required(0, "case_id")?;
    let spi = Spi::connect();
    if spi.run(&CASE_EXISTS, &[Some(case_d)], 1).is_empty() {
        let case_id = uuid_string(&unsafe { uuid_from_datum(case_d) });
        return Err(Refusal::UnknownCase { case_id }.report(&CaseFacts::default()));
    }
    Ok(pg_sys::Datum::from(0usize))
}

unsafe fn correct_transition(fcinfo: pg_sys::FunctionCallInfo) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("correct_transition")?;
    let a = Args(fcinfo);
    let wrong_d = a.required(0, "transition_id")?;
    let to_state = a.text(1, "to_state")?;
    let reason = a.opt_text(2).filter(|r| !r.trim().is_empty());
    let actor_d = a.required(3, "actor_id")?;
    let _role = a.text(4, "actor_role")?;
    let command_d = a.required(5, "command_id")?;
    let wrong_id = unsafe { uuid_from_datum(wrong_d) };

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
    let facts = CaseFacts { case_id: uuid_string(&case_id), current_state: current.clone() };
    // A replay of this very correction returns its row; any other use of the id is SM008.
    let corrected = spi.run(&CORRECTED_BY, &[Some(wrong_d)], 1);
    let (correcting, correcting_version) = (corrected.uuid(0, 1), corrected.i64(0, 2));
    if let Some(p) = find_command(&spi, command_d) {
        return if p.code == CORRECT_CODE && p.case_id == case_id && correcting == Some(p.transition_id) {
            Ok(spi.keep(p.transition_row))
        } else {
            Err(conflict(command_d, &p, format!("correction of transition {} on case {}", uuid_string(&wrong_id), facts.case_id)))
        };
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

    let now = unsafe { pg_sys::GetCurrentTimestamp() }.max(updated_at);
    let transition_id = new_id(now);
    let metadata = serde_json::json!({"corrects": uuid_string(&wrong_id), "corrects_code": wrong_code}).to_string();
    let to_d = Some(text_datum(&to_state));
    let _door = door::open();
    let inserted = spi.run(
        &INSERT_TRANSITION,
        &[
            Some(uuid_datum(&transition_id)),
            Some(case_d),
            Some(text_datum(&machine)),
            Some(text_datum(&current)),
            to_d,
            Some(text_datum(CORRECT_CODE)),
            Some(text_datum("correction")),
            Some(pg_sys::Datum::from(version + 1)),
            Some(actor_d),
            a.datum(4),
            None,
            Some(text_datum(&reason)),
            Some(pg_sys::Datum::from(machine_version)),
            Some(pg_sys::Datum::from(now)),
            Some(command_d),
            None,
            Some(wrong_d),
            Some(crate::fmgr::jsonb_datum(&metadata)),
        ],
        1,
    );
    let Some(row) = inserted.get(0, 1) else {
        return Err(Refusal::CommandInFlight.report(&facts));
    };
    let row = spi.keep(row);
    spi.run(
        &INSERT_CORRECTION,
        &[
            Some(uuid_datum(&new_id(now))),
            Some(case_d),
            Some(wrong_d),
            Some(uuid_datum(&transition_id)),
            Some(actor_d),
            Some(pg_sys::Datum::from(now)),
            Some(text_datum(&reason)),
        ],
        0,
    );
    let entered_now = if to_state != current { now } else { entered_at };
    spi.run(
        &UPDATE_CASE,
        &[Some(case_d), to_d, Some(pg_sys::Datum::from(version + 1)), Some(pg_sys::Datum::from(entered_now)), Some(pg_sys::Datum::from(now))],
        0,
    );
    Ok(row)
}

sql_function!(sm_correct_transition, pg_finfo_sm_correct_transition, correct_transition);
sql_function!(sm_attach_dimension, pg_finfo_sm_attach_dimension, attach_dimension);
sql_function!(sm_transition_case, pg_finfo_sm_transition_case, transition_case);
sql_function!(sm_create_case, pg_finfo_sm_create_case, create_case);
sql_function!(sm_add_evidence, pg_finfo_sm_add_evidence, add_evidence);
sql_function!(sm_deactivate_evidence, pg_finfo_sm_deactivate_evidence, deactivate_evidence);
sql_function!(sm_require_case, pg_finfo_sm_require_case, require_case);
sql_function!(sm_assign_case, pg_finfo_sm_assign_case, assign_case);
sql_function!(sm_release_assignment, pg_finfo_sm_release_assignment, release_assignment);
