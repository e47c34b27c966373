//! The database's answers to the core's questions (statemachine_core::Facts): role
//! membership, time in state, earlier actors, assignments and SQL guard functions. The
//! write path asks them with the case row locked, so the answers hold until commit.

use crate::door;
use crate::fmgr::{interval_datum, text_datum};
use crate::spi::{Spi, Stmt, INTERVAL, TEXT, TIMESTAMPTZ, UUID};
use crate::sql_guard::{self, Called};
use pgrx::pg_sys;
use serde_json::Value;
use statemachine_core::checks::{ActiveAssignment, PriorActor};
use statemachine_core::refusal::RaisedByGuard;
use statemachine_core::{CompiledMachine, Facts, Interval, Membership, Refusal, RoleSource, SqlOutcome};
use std::ffi::{CStr, CString};

/// Enough time passed? If not, how much is left, counted on the calendar (age), and until
/// when. The calendar is UTC's whatever the session's TimeZone says: a day is 24 hours
/// and a month a calendar month of UTC, so a zone with a crafted DST jump cannot shorten
/// a wait. (Only the "until" text is shown in the session's zone.)
static TIME_LEFT: Stmt = Stmt {
    sql: "WITH t AS (SELECT pg_catalog.timezone('UTC', $1) OPERATOR(pg_catalog.+) $2 AS due, pg_catalog.timezone('UTC', $3) AS now) \
          SELECT t.due OPERATOR(pg_catalog.<=) t.now, \
                 pg_catalog.date_trunc('second', pg_catalog.age(t.due, t.now))::pg_catalog.text, \
                 pg_catalog.timezone('UTC', t.due)::pg_catalog.text \
          FROM t",
    args: &[TIMESTAMPTZ, INTERVAL, TIMESTAMPTZ],
};
/// The latest transition of the case with a given code (served by case_transition_version_uk).
static PRIOR_ACTOR: Stmt = Stmt {
    sql: "SELECT t.actor_id, t.id, t.occurred_at::pg_catalog.text, t.recorded_by FROM ONLY statemachine.case_state_transition t \
          WHERE t.case_id OPERATOR(pg_catalog.=) $1 AND t.transition_code OPERATOR(pg_catalog.=) $2 \
          ORDER BY t.state_version DESC LIMIT 1",
    args: &[UUID, TEXT],
};
/// The actor id standing for the session user (keyed with the installation secret).
static DATABASE_ACTOR_ID: Stmt = Stmt {
    sql: "SELECT statemachine.database_actor_id($1::pg_catalog.name)",
    args: &[TEXT],
};
/// The session user's name (the database identity of the caller).
pub fn session_user() -> String {
    // A call delegated from the coordinator is its session user's (delegation.rs).
    if let Some((_, caller)) = crate::delegation::caller() {
        return caller;
    }
    crate::delegation::refuse_relayed_identity();
    // SAFETY: catalog lookup of the session user's name (missing_ok); the palloc'd C string
    // is copied at once.
    unsafe {
        let session = pg_sys::GetSessionUserId();
        let name_ptr = pg_sys::GetUserNameFromId(session, true);
        if name_ptr.is_null() {
            format!("oid {}", session.to_u32())
        } else {
            CStr::from_ptr(name_ptr).to_string_lossy().into_owned()
        }
    }
}

/// The session user's role (a delegated call's: the coordinator's session user).
pub fn session_user_id() -> pg_sys::Oid {
    match crate::delegation::caller() {
        Some((oid, _)) => oid,
        None => {
            crate::delegation::refuse_relayed_identity();
            // SAFETY: the session user's id, set at connection start.
            unsafe { pg_sys::GetSessionUserId() }
        }
    }
}

/// The actor id that stands for the session user (statemachine.database_actor_id()).
pub fn database_actor_id(spi: &Spi) -> Option<[u8; 16]> {
    spi.run(&DATABASE_ACTOR_ID, &[Some(text_datum(&session_user()))], 1).uuid(0, 1)
}

/// Under role_source database: SM006 unless the session user is a member of `role` (when
/// one is given) and `actor` is the session user's own identity (`code` names what was
/// attempted). Nothing to check under role_source asserted.
pub fn database_identity_refusal(spi: &Spi, machine: &CompiledMachine, role: Option<&str>, actor: &[u8; 16], code: &str) -> Option<Refusal> {
    if machine.role_source != RoleSource::Database {
        return None;
    }
    if let Some(role) = role {
        let (session_user, role_exists) = match membership(role) {
            Membership::Member => (String::new(), true),
            Membership::NotMember { session_user } => (session_user, true),
            Membership::NoSuchRole { session_user } => (session_user, false),
        };
        if !session_user.is_empty() {
            return Some(Refusal::RoleNotMember { code: code.into(), actor_role: role.into(), session_user, role_exists });
        }
    }
    (database_actor_id(spi).as_ref() != Some(actor))
        .then(|| Refusal::ActorNotSessionUser { code: code.into(), actor_id: *actor, session_user: session_user() })
}

/// Is the session user a member of PostgreSQL role `role`? (role_source database)
pub fn membership(role: &str) -> Membership {
    let session_user = session_user();
    let Ok(c_role) = CString::new(role) else { return Membership::NoSuchRole { session_user } };
    // SAFETY: catalog lookups by name and oid, inside a transaction; `c_role` outlives
    // get_role_oid.
    unsafe {
        let role_oid = pg_sys::get_role_oid(c_role.as_ptr(), true);
        if role_oid == pg_sys::InvalidOid {
            Membership::NoSuchRole { session_user }
        } else if pg_sys::is_member_of_role(session_user_id(), role_oid) {
            Membership::Member
        } else {
            Membership::NotMember { session_user }
        }
    }
}

/// Another identity for a while: `user`, with `extra` security-context flags, and
/// (with `read_only`) a read-only transaction; what was there before is restored when
/// dropped — also when an error unwinds through the write path. This is what
/// fmgr_security_definer does around a SECURITY DEFINER call.
///
/// A `sql` guard runs as the session user (never the extension owner, whom every entry
/// point runs as), restricted (no temporary objects, no SET ROLE, as for a maintenance
/// command) and read-only (any write it attempts, through any function, fails): see
/// [`AsUser::session_user_restricted`]. A governed table's mirror write runs as the
/// table's owner, restricted; the governed-row trigger reads and creates cases as the
/// extension's owner.
pub(crate) struct AsUser {
    user: pg_sys::Oid,
    context: i32,
    read_only: bool,
}

impl AsUser {
    pub(crate) fn enter(user: pg_sys::Oid, extra: u32, read_only: bool) -> AsUser {
        let (mut saved_user, mut context) = (pg_sys::InvalidOid, 0);
        // SAFETY: reads and sets the backend's current user and security context, as
        // fmgr_security_definer does around a SECURITY DEFINER call; XactReadOnly is the
        // transaction's read-only flag, restored in Drop.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut context);
            pg_sys::SetUserIdAndSecContext(user, context | (pg_sys::SECURITY_LOCAL_USERID_CHANGE | extra) as i32);
            let was_read_only = pg_sys::XactReadOnly;
            if read_only {
                pg_sys::XactReadOnly = true;
            }
            AsUser { user: saved_user, context, read_only: was_read_only }
        }
    }

    /// A `sql` guard's surroundings while it runs.
    fn session_user_restricted() -> AsUser {
        AsUser::enter(session_user_id(), pg_sys::SECURITY_RESTRICTED_OPERATION, true)
    }
}

impl Drop for AsUser {
    fn drop(&mut self) {
        // SAFETY: restores exactly what enter() saved.
        unsafe {
            pg_sys::SetUserIdAndSecContext(self.user, self.context);
            pg_sys::XactReadOnly = self.read_only;
        }
    }
}

/// Facts about one case, read through the caller's SPI connection.
pub struct DbFacts<'a> {
    pub spi: &'a Spi,
    pub case_d: pg_sys::Datum,
    pub entered_at: i64,
    pub now: i64,
}

impl Facts for DbFacts<'_> {
    fn membership(&mut self, role: &str) -> Membership {
        membership(role)
    }

    fn time_left(&mut self, min: &Interval) -> Option<String> {
        let r = self.spi.run(
            &TIME_LEFT,
            &[Some(pg_sys::Datum::from(self.entered_at)), Some(interval_datum(min)), Some(pg_sys::Datum::from(self.now))],
            1,
        );
        if r.bool(0, 1).unwrap_or(false) {
            return None;
        }
        Some(format!("{} left (until {})", r.text(0, 2).unwrap_or_default(), r.text(0, 3).unwrap_or_default()))
    }

    fn prior_actor(&mut self, transition: &str) -> Option<PriorActor> {
        let r = self.spi.run(&PRIOR_ACTOR, &[Some(self.case_d), Some(text_datum(transition))], 1);
        Some(PriorActor { actor_id: r.uuid(0, 1)?, transition_id: r.uuid(0, 2)?, occurred_at: r.text(0, 3)?, recorded_by: r.text(0, 4)? })
    }

    fn session_user(&mut self) -> String {
        session_user()
    }

    fn database_actor_id(&mut self) -> Option<[u8; 16]> {
        database_actor_id(self.spi)
    }

    fn active_assignment(&mut self, actor: &[u8; 16], role: &str) -> Option<ActiveAssignment> {
        let r = self.spi.run(
            &crate::assignments::ACTIVE_ASSIGNMENT,
            &[Some(self.case_d), Some(crate::fmgr::uuid_datum(actor)), Some(text_datum(role))],
            1,
        );
        Some(ActiveAssignment { id: r.uuid(0, 1)?, assigned_at: r.text(0, 2)? })
    }

    fn sql_guard(&mut self, guard_code: &str, name: &str, context_json: &Value) -> SqlOutcome {
        let Some(g) = sql_guard::registered(self.spi, name) else {
            return SqlOutcome::Failed(Refusal::GuardNotRegistered { name: name.into(), problem: "is not registered".into() });
        };
        let (oid, function) = (g.oid, g.function.clone());
        if !g.exists {
            return SqlOutcome::Failed(Refusal::GuardNotRegistered {
                name: name.into(),
                problem: format!("is registered for function oid {function}, which no longer exists"),
            });
        }
        if !g.owner_may_own {
            return SqlOutcome::Failed(Refusal::GuardFunctionOwner { function, owner: g.owner.clone() });
        }
        let raised = |sqlstate: String, message: String, detail, hint, context| {
            SqlOutcome::Failed(Refusal::GuardRaised(Box::new(RaisedByGuard {
                code: context_code(context_json),
                guard: guard_code.into(),
                function: function.clone(),
                sqlstate,
                message,
                detail,
                hint,
                context,
            })))
        };
        if !sql_guard::session_user_may_execute(self.spi, &g) {
            // What calling it in SQL as the session user would say.
            return raised("42501".into(), format!("permission denied for function {function}"), None, None, None);
        }
        let called = {
            // While a guard runs, the write path's functions refuse to be called (SM007),
            // and it runs as the session user, restricted and read-only.
            let _inside = door::evaluating_guard();
            let _as = AsUser::session_user_restricted();
            // SAFETY: a jsonb datum of the context's text.
            let context_d = crate::fmgr::jsonb_datum(&context_json.to_string());
            sql_guard::call(oid, g.verdict, self.case_d, context_d)
        };
        match called {
            Called::Raised { sqlstate, message, detail, hint, context } => raised(
                sqlstate,
                message,
                detail.filter(|s| !s.is_empty()),
                hint.filter(|s| !s.is_empty()),
                context.filter(|s| !s.is_empty()),
            ),
            Called::Returned { passed, evidence } => {
                let evidence = evidence.map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t)));
                SqlOutcome::Verdict { passed, evidence }
            }
        }
    }
}

/// The transition code a guard's context names.
fn context_code(context: &Value) -> String {
    context["transition"].as_str().unwrap_or_default().to_owned()
}
