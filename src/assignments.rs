//! Assignments (seed 003 §24): assign_case and release_assignment. Both are append-only
//! (a release is a second row) and idempotent on command_id, and both take the case's
//! row lock and touch the row, so they serialize with the transitions whose
//! requires_assignment guard reads them. A machine that names `assign_roles` lets only
//! those roles assign and release (SM006), and under `role_source: database` the role
//! must be a database role of the session user — so nobody assigns themselves past a
//! requires_assignment guard.

use crate::door::{self, refuse_inside_guard, Grant, Op};
use crate::fmgr::{text_datum, uuid_datum, uuid_string, Args, SmResult};
use crate::spi::{Spi, Stmt, TEXT, TIMESTAMPTZ, UUID};
use crate::facts::database_identity_refusal;
use crate::{case_file, history, machines, sql_function};
use pgrx::pg_sys;
use statemachine_core::{CaseFacts, Refusal};

/// The assignment in force of (case, assignee, role): its id, when, and the whole row.
pub static ACTIVE_ASSIGNMENT: Stmt = Stmt {
    sql: "SELECT a.id, a.assigned_at::pg_catalog.text, a FROM ONLY statemachine.case_assignment a \
          WHERE a.case_id OPERATOR(pg_catalog.=) $1 AND a.assignee_id OPERATOR(pg_catalog.=) $2 \
            AND a.role_code OPERATOR(pg_catalog.=) $3 \
            AND NOT EXISTS (SELECT 1 FROM ONLY statemachine.case_assignment_release r \
                            WHERE r.case_id OPERATOR(pg_catalog.=) a.case_id AND r.assignment_id OPERATOR(pg_catalog.=) a.id) \
          ORDER BY a.assigned_at DESC LIMIT 1",
    args: &[UUID, UUID, TEXT],
};
/// The case, locked, and the machine version whose assign_roles apply.
static LOCK_CASE_VERSION: Stmt = Stmt {
    sql: "SELECT c.machine_version_id, c.current_state FROM ONLY statemachine.case_file c \
          WHERE c.id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
    args: &[UUID],
};
/// What a command id recorded: across all cases, or (command_scope 'case') in its case.
struct ByCommand {
    across: Stmt,
    in_case: Stmt,
}
macro_rules! assignment_by_command {
    ($case:literal, $args:expr) => {
        Stmt {
            sql: concat!("SELECT a.case_id, a.assignee_id, a.role_code, a FROM ONLY statemachine.case_assignment a \
                          WHERE a.command_id OPERATOR(pg_catalog.=) $1", $case),
            args: $args,
        }
    };
}
static ASSIGNMENT_BY_COMMAND: ByCommand = ByCommand {
    across: assignment_by_command!("", &[UUID]),
    in_case: assignment_by_command!(" AND a.case_id OPERATOR(pg_catalog.=) $2", &[UUID, UUID]),
};
static INSERT_ASSIGNMENT: Stmt = Stmt {
    sql: "INSERT INTO statemachine.case_assignment AS a (id, case_id, assignee_id, role_code, assigned_by, assigned_at, command_id) \
          VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING ROW(a.*)::statemachine.case_assignment",
    args: &[UUID, UUID, UUID, TEXT, UUID, TIMESTAMPTZ, UUID],
};
macro_rules! release_by_command {
    ($case:literal, $args:expr) => {
        Stmt {
            sql: concat!("SELECT a.case_id, a.assignee_id, a.role_code, r FROM ONLY statemachine.case_assignment_release r \
                          JOIN ONLY statemachine.case_assignment a \
                            ON a.case_id OPERATOR(pg_catalog.=) r.case_id AND a.id OPERATOR(pg_catalog.=) r.assignment_id \
                          WHERE r.command_id OPERATOR(pg_catalog.=) $1", $case),
            args: $args,
        }
    };
}
static RELEASE_BY_COMMAND: ByCommand = ByCommand {
    across: release_by_command!("", &[UUID]),
    in_case: release_by_command!(" AND r.case_id OPERATOR(pg_catalog.=) $2", &[UUID, UUID]),
};
static INSERT_RELEASE: Stmt = Stmt {
    sql: "INSERT INTO statemachine.case_assignment_release AS r (assignment_id, released_by, released_at, command_id, case_id) \
          VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING ROW(r.*)::statemachine.case_assignment_release",
    args: &[UUID, UUID, TIMESTAMPTZ, UUID, UUID],
};

/// The arguments of assign_case and release_assignment.
struct AssignmentArgs {
    case_d: pg_sys::Datum,
    case_id: [u8; 16],
    assignee_d: pg_sys::Datum,
    assignee: [u8; 16],
    role: String,
    actor_d: pg_sys::Datum,
    command_d: pg_sys::Datum,
    command_id: [u8; 16],
    actor_role: Option<String>,
}

impl AssignmentArgs {
    fn read(a: &Args) -> SmResult<Self> {
        Ok(AssignmentArgs {
            case_d: a.required(0, "case_id")?,
            case_id: a.uuid(0, "case_id")?,
            assignee_d: a.required(1, "assignee_id")?,
            assignee: a.uuid(1, "assignee_id")?,
            role: a.text(2, "role_code")?,
            actor_d: a.required(3, "actor_id")?,
            command_d: a.required(4, "command_id")?,
            command_id: a.uuid(4, "command_id")?,
            actor_role: a.opt_text(5).filter(|r| !r.trim().is_empty()),
        })
    }

    fn describe(&self, what: &str) -> String {
        format!("{what} of {} as {} on case {}", uuid_string(&self.assignee), self.role, uuid_string(&self.case_id))
    }

    /// An earlier use of the command id: the same command's row, or SM008.
    fn replay(&self, spi: &Spi, by_command: &'static ByCommand, what: &str) -> Option<SmResult<pg_sys::Datum>> {
        // command_scope 'case': the id names a command of this case only (as for transitions).
        let r = if crate::remote_door::commands_per_case() {
            spi.run(&by_command.in_case, &[Some(self.command_d), Some(self.case_d)], 1)
        } else {
            spi.run(&by_command.across, &[Some(self.command_d)], 1)
        };
        let (case_id, assignee, role, row) = (r.uuid(0, 1)?, r.uuid(0, 2)?, r.text(0, 3)?, r.get(0, 4)?);
        if case_id == self.case_id && assignee == self.assignee && role == self.role {
            return Some(Ok(spi.keep(row)));
        }
        let existing = format!("{what} of {} as {role} on case {}", uuid_string(&assignee), uuid_string(&case_id));
        Some(Err(Refusal::CommandConflict { command_id: uuid_string(&self.command_id), existing, requested: self.describe(what) }
            .report(&CaseFacts::default())))
    }

    /// After an insert that appended nothing: the concurrent command that won, replayed.
    fn lost_race(&self, spi: &Spi, by_command: &'static ByCommand, what: &str) -> SmResult<pg_sys::Datum> {
        self.replay(spi, by_command, what).unwrap_or_else(|| Err(Refusal::CommandInFlight.report(&CaseFacts::default())))
    }
}

/// What both functions do first: refuse inside a guard, read the arguments, lock the
/// case, answer a replay (or SM008) of the command id, and check that the caller may
/// assign. `Err(Ok(row))` is a replay.
fn begin(a: &Args, function: &str, by_command: &'static ByCommand, what: &str) -> Result<(AssignmentArgs, Spi), SmResult<pg_sys::Datum>> {
    refuse_inside_guard(function).map_err(Err)?;
    let args = AssignmentArgs::read(a).map_err(Err)?;
    let spi = Spi::connect();
    let case = spi.run(&LOCK_CASE_VERSION, &[Some(args.case_d)], 1);
    let (Some(version_id), Some(state)) = (case.uuid(0, 1), case.text(0, 2)) else {
        return Err(Err(case_file::unknown(&args.case_id)));
    };
    // Distributed: the command id's lock first, so that its look across the shards holds
    // (commands.rs).
    crate::commands::lock(&spi, args.command_d);
    if let Some(replayed) = args.replay(&spi, by_command, what) {
        return Err(replayed);
    }
    let machine = machines::get(&spi, &version_id);
    let facts = CaseFacts { case_id: uuid_string(&args.case_id), current_state: state.clone() };
    let code = function.to_uppercase();
    if !machine.assign_roles.is_empty() && !args.actor_role.as_ref().is_some_and(|r| machine.assign_roles.contains(r)) {
        let refusal = Refusal::RoleNotPermitted {
            code,
            from: state,
            actor_role: args.actor_role.clone().unwrap_or_else(|| "(none given)".into()),
            allowed: machine.assign_roles.clone(),
        };
        return Err(Err(refusal.report(&facts)));
    }
    // SAFETY: actor_id is declared uuid and was required non-NULL (AssignmentArgs::read).
    let actor = unsafe { crate::fmgr::uuid_from_datum(args.actor_d) };
    if let Some(refusal) = database_identity_refusal(&spi, &machine, args.actor_role.as_deref(), &actor, &code) {
        return Err(Err(refusal.report(&facts)));
    }
    Ok((args, spi))
}

fn assign_case(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("assign_case")?;
    if let Some(row) = crate::delegation::assignment(a, false)? {
        return Ok(row);
    }
    assign_case_here(a)
}

/// assign_case on this node (also delegated to it: delegation.rs).
pub(crate) fn assign_case_here(a: &Args) -> SmResult<pg_sys::Datum> {
    let (args, spi) = match begin(a, "assign_case", &ASSIGNMENT_BY_COMMAND, "assignment") {
        Ok(started) => started,
        Err(answer) => return answer,
    };
    let role_d = Some(text_datum(&args.role));
    // Already assigned in that role: nothing to add; the assignment in force is the answer.
    let active = spi.run(&ACTIVE_ASSIGNMENT, &[Some(args.case_d), Some(args.assignee_d), role_d], 1);
    if let Some(row) = active.get(0, 3) {
        return Ok(spi.keep(row));
    }
    let now = history::now();
    const WRITES: &[Grant] = &[("case_assignment", Op::Insert), ("case_file", Op::Update)];
    let _door = door::open(WRITES);
    let r = spi.run(
        &INSERT_ASSIGNMENT,
        &[
            Some(uuid_datum(&history::row_id(now))),
            Some(args.case_d),
            Some(args.assignee_d),
            role_d,
            Some(args.actor_d),
            Some(pg_sys::Datum::from(now)),
            Some(args.command_d),
        ],
        1,
    );
    let Some(row) = r.get(0, 1) else { return args.lost_race(&spi, &ASSIGNMENT_BY_COMMAND, "assignment") };
    let row = spi.keep(row);
    case_file::touch(&spi, args.case_d, now);
    Ok(row)
}

fn release_assignment(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("release_assignment")?;
    if let Some(row) = crate::delegation::assignment(a, true)? {
        return Ok(row);
    }
    release_assignment_here(a)
}

/// release_assignment on this node (also delegated to it: delegation.rs).
pub(crate) fn release_assignment_here(a: &Args) -> SmResult<pg_sys::Datum> {
    let (args, spi) = match begin(a, "release_assignment", &RELEASE_BY_COMMAND, "release") {
        Ok(started) => started,
        Err(answer) => return answer,
    };
    let active = spi.run(&ACTIVE_ASSIGNMENT, &[Some(args.case_d), Some(args.assignee_d), Some(text_datum(&args.role))], 1);
    let Some(assignment_id) = active.get(0, 1) else {
        return Err(Refusal::AssignmentNotFound {
            case_id: uuid_string(&args.case_id),
            assignee: uuid_string(&args.assignee),
            role: args.role,
        }
        .report(&CaseFacts::default()));
    };
    let now = history::now();
    const WRITES: &[Grant] = &[("case_assignment_release", Op::Insert), ("case_file", Op::Update)];
    let _door = door::open(WRITES);
    let r = spi.run(&INSERT_RELEASE, &[Some(assignment_id), Some(args.actor_d), Some(pg_sys::Datum::from(now)), Some(args.command_d), Some(args.case_d)], 1);
    let Some(row) = r.get(0, 1) else { return args.lost_race(&spi, &RELEASE_BY_COMMAND, "release") };
    let row = spi.keep(row);
    case_file::touch(&spi, args.case_d, now);
    Ok(row)
}

sql_function!(sm_assign_case, pg_finfo_sm_assign_case, assign_case);
sql_function!(sm_release_assignment, pg_finfo_sm_release_assignment, release_assignment);
