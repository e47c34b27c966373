//! Every refusal the extension can raise, and the one mapping from refusal to SQLSTATE,
//! message, DETAIL and HINT (the table in API.md). Pure: the pgrx layer only raises
//! what [`Refusal::report`] returns.

use crate::ids::uuid_text;
use crate::import::StepProblem;
use crate::definition::{Kind, Problem, ReasonDef};
use std::fmt::Write;

/// Facts about the case that a message should name; filled in by the caller.
#[derive(Clone, Debug, Default)]
pub struct CaseFacts {
    pub case_id: String,
    pub current_state: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    UnknownCase { case_id: String },
    UnknownMachine { machine: String, version: Option<i32> },
    UnknownEvidenceCase { case_id: String },
    UnknownEvidence { evidence_id: String },
    UnknownTransition { machine: String, version: i32, code: String, current_state: String, legal: Vec<(String, String, Kind)> },
    IllegalTransition {
        machine: String,
        version: i32,
        code: String,
        current_state: String,
        terminal: bool,
        defined_from: Vec<String>,
        legal: Vec<(String, String, Kind)>,
    },
    RoleNotPermitted { code: String, from: String, actor_role: String, allowed: Vec<String> },
    /// role_source database: actor_id is not the session user's database identity (SM006).
    ActorNotSessionUser { code: String, actor_id: [u8; 16], session_user: String },
    /// role_source database: the session user is not a member of actor_role (or no such role).
    RoleNotMember { code: String, actor_role: String, session_user: String, role_exists: bool },
    /// `allowed`: the rule's declared reasons (then a reason code is what is required).
    ReasonRequired { code: String, allowed: Vec<ReasonDef> },
    ReasonNotAllowed { code: String, reason_code: String, allowed: Vec<ReasonDef> },
    EvidenceRequired { code: String },
    /// Evidence types the rule requires that no usable evidence item has.
    EvidenceTypesMissing { code: String, missing: Vec<String>, given: Vec<String> },
    /// Each entry: evidence id and what is wrong with it.
    EvidenceInvalid { code: String, problems: Vec<(String, String)> },
    GuardFailed { code: String, guard: String, reason: String },
    /// A SQL guard function raised an error: re-raised as it was, with a CONTEXT line.
    GuardRaised(Box<RaisedByGuard>),
    /// A write-path function was called from inside a guard (SM007).
    GuardReentry { function: String },
    /// A `sql` guard's name is not registered, or its function no longer exists (42883).
    GuardNotRegistered { name: String, problem: String },
    /// register_guard: the function cannot be a guard (42P13).
    GuardFunctionInvalid { function: String, problem: String },
    /// register_guard / evaluation: the function's owner could change it under us (42501).
    GuardFunctionOwner { function: String, owner: String },
    /// transition_case with a dimension the case does not have (SM009).
    UnknownDimension { case_id: String, dimension: String },
    /// correct_transition: no history row with that id (SM009).
    UnknownTransitionRow { transition_id: String },
    /// correct_transition: the machine version has no such state (SM009).
    UnknownState { machine: String, version: i32, state: String },
    /// correct_transition: this transition may not be corrected (SM001).
    /// `transition` names it for people: "CLOSE (state_version 3)".
    CorrectionNotAllowed { transition: String, why: String },
    /// migrate_cases: the state map is unusable (22023); every problem with its path.
    InvalidStateMap { problems: Vec<Problem> },
    /// retire_version: cases are still pinned to the version (55006).
    VersionInUse { machine: String, version: i32, why: String },
    /// migrate_cases: the target version is retired (55006).
    VersionRetired { machine: String, version: i32 },
    /// release_assignment: no such active assignment (SM009).
    AssignmentNotFound { case_id: String, assignee: String, role: String },
    StaleVersion { expected: i64, actual: i64 },
    CommandConflict { command_id: String, existing: String, requested: String },
    DirectWrite { table: String, operation: String, what: String },
    /// DDL that would change the extension's objects or put code on its tables (SM007).
    GuardedDdl { command: String, objects: Vec<String> },
    InvalidDefinition { problems: Vec<Problem> },
    /// A required argument is NULL (22004).
    NullArgument { name: String },
    /// A required text argument is empty or blank (22023).
    EmptyArgument { name: String },
    /// An argument's value is unusable (22023).
    InvalidArgument { name: String, problem: String },
    /// statemachine.distribute() on a database that cannot be distributed (55000).
    NotDistributable { problem: String, hint: String },
    /// statemachine.transition_on_shard (internal) on an installation that does not
    /// delegate calls to the case's node (55000).
    NotDelegating,
    /// A function a distributed installation does not offer (yet) (0A000).
    NotOnDistributed { function: String, why: String },
    /// create_case for a case id or case number that exists, under another command (23505).
    CaseExists { detail: String },
    /// A concurrent transaction took the command id but its row is not visible (40001).
    CommandInFlight,
    /// The guard trigger function was called directly (39P01).
    NotATrigger,
    /// The clock is more than a moment behind the case's last change, so the next history
    /// row would be dated before it or in the future (55000).
    ClockBehind { last_change: String, now: String },
    /// transition_to: no rule leads from the current state to `to_state` (SM001).
    NoRuleToState { machine: String, version: i32, to_state: String, legal: Vec<(String, String, Kind)> },
    /// transition_to: several rules the role may use lead there (SM001).
    SeveralRulesToState { to_state: String, codes: Vec<String> },
    /// A direct write to a governed table that only the write path may make (SM007).
    GovernedWrite { table: String, operation: String, detail: String, hint: String },
    /// import_cases: the `cases` argument is malformed (22023); every problem with its path.
    InvalidImport { problems: Vec<Problem> },
    /// import_cases: a record's steps cannot be imported as given.
    ImportStep { machine: String, version: i32, case_number: String, problem: Box<crate::import::StepProblem> },
}

/// The error a SQL guard function raised, and which guard of which transition it was.
#[derive(Clone, Debug, PartialEq)]
pub struct RaisedByGuard {
    pub code: String,
    pub guard: String,
    pub function: String,
    pub sqlstate: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub context: Option<String>,
}

/// What is raised: SQLSTATE, one-line message, DETAIL and HINT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub sqlstate: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// A CONTEXT line (only for errors re-raised from guard functions).
    pub context: Option<String>,
}

pub const ILLEGAL_TRANSITION: &str = "SM001";
pub const GUARD_FAILED: &str = "SM002";
pub const STALE_VERSION: &str = "SM003";
pub const REASON_REQUIRED: &str = "SM004";
pub const EVIDENCE_REQUIRED: &str = "SM005";
pub const ROLE_NOT_PERMITTED: &str = "SM006";
pub const DIRECT_WRITE_REFUSED: &str = "SM007";
pub const COMMAND_CONFLICT: &str = "SM008";
pub const NOT_FOUND: &str = "SM009";
pub const INVALID_DEFINITION: &str = "SM010";

fn reason_list(allowed: &[ReasonDef]) -> String {
    allowed.iter().map(|r| format!("{} ({})", r.code, r.label)).collect::<Vec<_>>().join(", ")
}

/// The report of a record import_cases cannot take as given.
fn import_step_report(machine: &str, version: i32, number: &str, problem: &StepProblem) -> (String, Option<String>, Option<String>) {
    match problem {
        StepProblem::UnknownState { step, state } => (
            format!("machine {machine} v{version} has no state {state}"),
            Some(format!("Case number {number}, step {step}: state {state} is not a state of machine {machine} v{version}.")),
            Some("Map the record's states to the machine's before importing.".into()),
        ),
        StepProblem::Illegal { step, from, to, why, legal_targets } => (
            match from {
                Some(from) => format!("illegal step from {from} to {to} in case number {number}"),
                None => format!("illegal first step {to} in case number {number}"),
            },
            Some(format!("Case number {number}, step {step}: {why} (machine {machine} v{version}). Nothing was imported.")),
            Some(format!(
                "{} Or import the history as it was with on_illegal => 'record' (the step stays marked as imported).",
                match from {
                    Some(from) if legal_targets.is_empty() => format!("No transition leaves {from}."),
                    Some(from) => format!("From {from} the rules lead to: {}.", legal_targets.join(", ")),
                    None => format!("A record starts in the initial state {}.", legal_targets.join(", ")),
                }
            )),
        ),
        StepProblem::Ambiguous { step, from, to, codes } => (
            format!("several transitions lead from {from} to {to} in case number {number}"),
            Some(format!("Case number {number}, step {step}: {} all lead from {from} to {to}.", codes.join(", "))),
            Some(format!("Name the step's transition: \"transition\": one of {}.", codes.join(", "))),
        ),
        StepProblem::OutOfOrder { step, why } => (
            format!("step {step} of case number {number} {why}"),
            Some(format!("Case number {number}: steps are oldest first, none in the future; step {step} {why}.")),
            None,
        ),
    }
}

fn legal_hint(state: &str, legal: &[(String, String, Kind)]) -> String {
    if legal.is_empty() {
        return format!("No transition leaves {state}.");
    }
    let mut s = format!("Legal from {state}: ");
    for (i, (code, to, kind)) in legal.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{code} (-> {to}");
        if *kind != Kind::Normal {
            let _ = write!(s, ", {}", kind.as_str());
        }
        s.push(')');
    }
    s.push('.');
    s
}

impl Refusal {
    pub fn sqlstate(&self) -> &str {
        match self {
            Refusal::GuardRaised(r) => &r.sqlstate,
            Refusal::RoleNotMember { .. } => ROLE_NOT_PERMITTED,
            Refusal::ReasonNotAllowed { .. } => REASON_REQUIRED,
            Refusal::EvidenceTypesMissing { .. } => EVIDENCE_REQUIRED,
            Refusal::GuardReentry { .. } => DIRECT_WRITE_REFUSED,
            Refusal::AssignmentNotFound { .. }
            | Refusal::UnknownTransitionRow { .. }
            | Refusal::UnknownState { .. }
            | Refusal::UnknownDimension { .. } => NOT_FOUND,
            Refusal::CorrectionNotAllowed { .. } => ILLEGAL_TRANSITION,
            Refusal::InvalidStateMap { .. } => "22023",
            Refusal::VersionInUse { .. } | Refusal::VersionRetired { .. } => "55006",
            Refusal::GuardNotRegistered { .. } => "42883",
            Refusal::GuardFunctionInvalid { .. } => "42P13",
            Refusal::GuardFunctionOwner { .. } => "42501",
            Refusal::IllegalTransition { .. } => ILLEGAL_TRANSITION,
            Refusal::GuardFailed { .. } => GUARD_FAILED,
            Refusal::StaleVersion { .. } => STALE_VERSION,
            Refusal::ReasonRequired { .. } => REASON_REQUIRED,
            Refusal::EvidenceRequired { .. } | Refusal::EvidenceInvalid { .. } => EVIDENCE_REQUIRED,
            Refusal::RoleNotPermitted { .. } | Refusal::ActorNotSessionUser { .. } => ROLE_NOT_PERMITTED,
            Refusal::DirectWrite { .. } | Refusal::GuardedDdl { .. } | Refusal::GovernedWrite { .. } => DIRECT_WRITE_REFUSED,
            Refusal::CommandConflict { .. } => COMMAND_CONFLICT,
            Refusal::UnknownCase { .. }
            | Refusal::UnknownMachine { .. }
            | Refusal::UnknownEvidenceCase { .. }
            | Refusal::UnknownEvidence { .. }
            | Refusal::UnknownTransition { .. } => NOT_FOUND,
            Refusal::InvalidDefinition { .. } => INVALID_DEFINITION,
            Refusal::NullArgument { .. } => "22004",
            Refusal::EmptyArgument { .. } | Refusal::InvalidArgument { .. } => "22023",
            Refusal::NotDistributable { .. } | Refusal::NotDelegating => "55000",
            Refusal::NotOnDistributed { .. } => "0A000",
            Refusal::CaseExists { .. } => "23505",
            Refusal::CommandInFlight => "40001",
            Refusal::NotATrigger => "39P01",
            Refusal::ClockBehind { .. } => "55000",
            Refusal::NoRuleToState { .. } | Refusal::SeveralRulesToState { .. } => ILLEGAL_TRANSITION,
            Refusal::InvalidImport { .. } => "22023",
            Refusal::ImportStep { problem, .. } => match problem.as_ref() {
                StepProblem::UnknownState { .. } => NOT_FOUND,
                StepProblem::Illegal { .. } | StepProblem::Ambiguous { .. } => ILLEGAL_TRANSITION,
                StepProblem::OutOfOrder { .. } => "22023",
            },
        }
    }

    /// Why a check failed, for `check_transition.detail` (the check's name is its own column).
    pub fn check_detail(&self) -> String {
        match self {
            Refusal::GuardFailed { reason, .. } => reason.clone(),
            Refusal::GuardRaised(r) => format!("raised {}: {}", r.sqlstate, r.message),
            Refusal::RoleNotPermitted { actor_role, allowed, .. } => {
                format!("role {actor_role} is not permitted (permitted: {})", allowed.join(", "))
            }
            other => other.blocked_by(),
        }
    }

    /// A short reason for `available_transitions.blocked_by`.
    pub fn blocked_by(&self) -> String {
        match self {
            Refusal::RoleNotPermitted { allowed, .. } => format!("role: permitted to {}", allowed.join(", ")),
            Refusal::RoleNotMember { actor_role, session_user, role_exists: true, .. } => {
                format!("role: session user {session_user} is not a member of {actor_role}")
            }
            Refusal::RoleNotMember { actor_role, .. } => format!("role: no PostgreSQL role {actor_role}"),
            Refusal::GuardFailed { guard, reason, .. } => format!("{guard}: {reason}"),
            Refusal::GuardRaised(r) => format!("{}: raised {}: {}", r.guard, r.sqlstate, r.message),
            Refusal::ReasonRequired { allowed, .. } if !allowed.is_empty() => {
                format!("reason code required ({})", allowed.iter().map(|r| r.code.as_str()).collect::<Vec<_>>().join(", "))
            }
            Refusal::ReasonRequired { .. } => "reason required".into(),
            Refusal::ReasonNotAllowed { reason_code, allowed, .. } => format!(
                "reason code {reason_code} not allowed ({})",
                allowed.iter().map(|r| r.code.as_str()).collect::<Vec<_>>().join(", ")
            ),
            Refusal::EvidenceRequired { .. } => "evidence required".into(),
            Refusal::EvidenceTypesMissing { missing, .. } => format!("evidence of type {} required", missing.join(", ")),
            other => other.report(&CaseFacts::default()).message,
        }
    }

    /// The full report; `case` names the case for refusals that concern one.
    pub fn report(&self, case: &CaseFacts) -> Report {
        let id = &case.case_id;
        let state = &case.current_state;
        let (message, detail, hint): (String, Option<String>, Option<String>) = match self {
            Refusal::UnknownCase { case_id } => (
                format!("case {case_id} not found"),
                Some(format!("No row in statemachine.case_file has id {case_id}.")),
                Some("Create cases with statemachine.create_case(...).".into()),
            ),
            Refusal::UnknownEvidenceCase { case_id } => (
                format!("case {case_id} not found"),
                Some(format!("Evidence can only be added to an existing case; no case has id {case_id}.")),
                None,
            ),
            Refusal::UnknownEvidence { evidence_id } => (
                format!("evidence {evidence_id} not found"),
                Some(format!("No row in statemachine.case_evidence has id {evidence_id}.")),
                None,
            ),
            Refusal::UnknownMachine { machine, version } => (
                match version {
                    Some(v) => format!("machine {machine:?} has no version {v}"),
                    None => format!("machine {machine:?} not found"),
                },
                Some(format!("No published definition of machine {machine:?} matches.")),
                Some("Publish one with statemachine.define_machine(definition); list machines with SELECT * FROM statemachine.machine_version.".into()),
            ),
            Refusal::UnknownTransition { machine, version, code, current_state, legal } => (
                format!("unknown transition code {code} for machine {machine} v{version}"),
                Some(format!("Case {id} is in state {current_state}; machine {machine} v{version} defines no transition {code}.")),
                Some(legal_hint(current_state, legal)),
            ),
            Refusal::IllegalTransition { machine, version, code, current_state, terminal, defined_from, legal } => (
                if *terminal {
                    format!("illegal transition {code} from terminal state {current_state}")
                } else {
                    format!("illegal transition {code} from state {current_state}")
                },
                Some(format!(
                    "Case {id} (machine {machine} v{version}) is in state {current_state}; {code} is defined only from {}.",
                    defined_from.join(", ")
                )),
                Some(legal_hint(current_state, legal)),
            ),
            Refusal::RoleNotPermitted { code, from, actor_role, allowed } => (
                format!("role {actor_role} may not perform {code}"),
                Some(format!(
                    "Case {id}: {code} from {from} is permitted to role{} {}; the actor acted as {actor_role}.",
                    if allowed.len() == 1 { "" } else { "s" },
                    allowed.join(", ")
                )),
                Some(format!("Act in one of the permitted roles: {}.", allowed.join(", "))),
            ),
            Refusal::RoleNotMember { code, actor_role, session_user, role_exists } => (
                format!("role {actor_role} may not perform {code}"),
                Some(if *role_exists {
                    format!("Case {id}: this machine takes roles from the database (role_source database), and session user {session_user} is not a member of role {actor_role}.")
                } else {
                    format!("Case {id}: this machine takes roles from the database (role_source database), and no PostgreSQL role named {actor_role} exists.")
                }),
                Some(if *role_exists {
                    format!("Act as a PostgreSQL role the session user is a member of (GRANT {actor_role} TO {session_user}).")
                } else {
                    format!("Act as a PostgreSQL role the session user is a member of; {actor_role} would have to be created and granted to {session_user}.")
                }),
            ),
            Refusal::ReasonRequired { code, allowed } if !allowed.is_empty() => (
                format!("transition {code} requires a reason code"),
                Some(format!("Case {id} is in state {state}; {code} declares its reasons, and no reason_code was given.")),
                Some(format!("Allowed reason codes for {code}: {}.", reason_list(allowed))),
            ),
            Refusal::ReasonRequired { code, .. } => (
                format!("transition {code} requires a reason"),
                Some(format!("Case {id} is in state {state}; neither reason_code nor reason_text was given.")),
                Some("Pass reason_code and/or reason_text (a non-blank value).".into()),
            ),
            Refusal::ReasonNotAllowed { code, reason_code, allowed } => (
                format!("reason code {reason_code} is not allowed for {code}"),
                Some(format!("Case {id} is in state {state}; {code} declares its reasons and {reason_code} is not one of them.")),
                Some(format!("Allowed reason codes for {code}: {}.", reason_list(allowed))),
            ),
            Refusal::EvidenceTypesMissing { code, missing, given } => (
                format!("transition {code} requires evidence of type {}", missing.join(", ")),
                Some(format!(
                    "Case {id} is in state {state}; {}.",
                    if given.is_empty() {
                        "no evidence_ids were given".to_string()
                    } else {
                        format!("the evidence given has type {}", given.join(", "))
                    }
                )),
                Some(format!(
                    "Attach evidence of type {} with statemachine.add_evidence(...) and pass its id in evidence_ids.",
                    missing.join(", ")
                )),
            ),
            Refusal::EvidenceRequired { code } => (
                format!("transition {code} requires evidence"),
                Some(format!("Case {id} is in state {state}; no evidence_ids were given.")),
                Some("Attach evidence with statemachine.add_evidence(...) and pass its id in evidence_ids.".into()),
            ),
            Refusal::EvidenceInvalid { code, problems } => (
                format!("evidence for {code} is not usable"),
                Some(format!(
                    "Case {id}: {}.",
                    problems.iter().map(|(e, p)| format!("evidence {e} {p}")).collect::<Vec<_>>().join("; ")
                )),
                Some("Pass only active evidence that was added to this case.".into()),
            ),
            Refusal::GuardFailed { code, guard, reason } => (
                format!("guard {guard} refused {code}"),
                Some(format!("Case {id}: guard {guard}: {reason}.")),
                Some(if guard == "min_time_in_state" {
                    "Retry once the case has been in its state long enough.".to_string()
                } else {
                    format!("Satisfy guard {guard} and retry.")
                }),
            ),
            Refusal::GuardRaised(r) => (r.message.clone(), r.detail.clone(), r.hint.clone()),
            Refusal::GuardReentry { function } => (
                format!("statemachine.{function}() cannot be called from inside a guard"),
                Some("Guards decide whether a transition may happen; they do not change cases, history, evidence or assignments.".into()),
                Some("Make the guard function read-only.".into()),
            ),
            Refusal::GuardNotRegistered { name, problem } => (
                format!("guard function {name} {problem}"),
                Some(format!("A \"sql\" guard names a function registered with statemachine.register_guard(); {name} {problem}.")),
                Some(format!("Register it: SELECT statemachine.register_guard('{name}', 'schema.function(uuid, jsonb)', 'description').")),
            ),
            Refusal::GuardFunctionInvalid { function, problem } => (
                format!("function {function} cannot be a guard"),
                Some(format!("{function} {problem}.")),
                Some("A guard function takes (case_id uuid, context jsonb), is STABLE or IMMUTABLE, and returns boolean or (passed boolean, evidence jsonb).".into()),
            ),
            Refusal::GuardFunctionOwner { function, owner } => (
                format!("guard function {function} must be owned by a superuser or by the extension's owner"),
                Some(format!("{function} is owned by {owner}. Guards run inside the write path with its privileges, so only roles that already hold them may own (and so change) a guard.")),
                Some(format!("ALTER FUNCTION {function} OWNER TO <the extension's owner>;")),
            ),
            Refusal::NoRuleToState { machine, version, to_state, legal } => (
                format!("no transition leads from state {state} to {to_state}"),
                Some(format!("Case {id} (machine {machine} v{version}) is in state {state}; no rule of that version leads from it to {to_state}.")),
                Some(if legal.is_empty() {
                    format!("No transition leaves {state}.")
                } else {
                    let mut targets: Vec<&str> = legal.iter().map(|(_, to, _)| to.as_str()).collect();
                    targets.dedup();
                    format!("States reachable from {state}: {}.", targets.join(", "))
                }),
            ),
            Refusal::SeveralRulesToState { to_state, codes } => (
                format!("several transitions lead from state {state} to {to_state}"),
                Some(format!("Case {id} is in state {state}; {} all lead to {to_state}.", codes.join(", "))),
                Some(format!("Choose one with statemachine.transition_case(case_id, transition_code, ...): {}.", codes.join(", "))),
            ),
            Refusal::InvalidImport { problems } => (
                format!("invalid cases for import_cases: {} problem{}", problems.len(), if problems.len() == 1 { "" } else { "s" }),
                Some(problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n")),
                Some("cases is a JSON array of {\"case_number\": ..., \"steps\": [{\"state\": ..., \"at\": ...}, ...]}, steps oldest first.".into()),
            ),
            Refusal::ImportStep { machine, version, case_number, problem } => import_step_report(machine, *version, case_number, problem),
            Refusal::InvalidStateMap { problems } => (
                format!("invalid state_map: {} problem{}", problems.len(), if problems.len() == 1 { "" } else { "s" }),
                Some(problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n")),
                Some("Map each old state to a state of the target version: {\"OLD\": \"NEW\"}, {\"OLD\": {\"to\": \"NEW\", \"reason\": \"...\"}} or {\"OLD\": {\"requires_manual_review\": true}}.".into()),
            ),
            Refusal::VersionInUse { machine, version, why } => (
                format!("machine {machine} v{version} {why}"),
                None,
                Some("Migrate its cases first with statemachine.migrate_cases(...).".into()),
            ),
            Refusal::VersionRetired { machine, version } => (
                format!("machine {machine} v{version} is retired; cases cannot be migrated to it"),
                None,
                Some(format!("Migrate to an active version: SELECT version FROM statemachine.machine_version WHERE machine = '{machine}' AND status = 'active';")),
            ),
            Refusal::UnknownDimension { case_id, dimension } => (
                format!("case {case_id} has no dimension {dimension}"),
                Some(format!("Neither case {case_id} nor any dimension attached to it runs machine {dimension}.")),
                Some("Attach one with statemachine.attach_dimension(case_id, machine, ...), or leave dimension NULL to find it by transition code.".into()),
            ),
            Refusal::UnknownTransitionRow { transition_id } => (
                format!("transition {transition_id} not found"),
                Some(format!("No row in statemachine.case_state_transition has id {transition_id}.")),
                None,
            ),
            Refusal::UnknownState { machine, version, state } => (
                format!("machine {machine} v{version} has no state {state}"),
                Some(format!("Case {id} is pinned to machine {machine} v{version}, which does not define state {state}.")),
                Some("Correct to one of the version's states (SELECT code FROM statemachine.state ...).".into()),
            ),
            Refusal::CorrectionNotAllowed { transition, why } => (
                format!("transition {transition} of case {id} cannot be corrected"),
                Some(format!("Case {id} is in state {state}; {why}.")),
                Some("Correct the case's latest transition, or publish the machine with \"corrections\": \"any\".".into()),
            ),
            Refusal::AssignmentNotFound { case_id, assignee, role } => (
                format!("no active {role} assignment of {assignee} on case {case_id}"),
                Some(format!("Case {case_id} has no unreleased assignment of {assignee} in role {role}.")),
                Some("List current assignments with SELECT * FROM statemachine.v_case_assignment_current WHERE case_id = ...;".into()),
            ),
            Refusal::StaleVersion { expected, actual } => (
                format!("stale version for case {id}"),
                Some(format!("expected_version is {expected}, but the case is at state_version {actual} (state {state}).")),
                Some("Re-read the case and decide again; retry with the same command_id.".into()),
            ),
            Refusal::CommandConflict { command_id, existing, requested } => (
                format!("command_id {command_id} was already used for a different command"),
                Some(format!("It recorded {existing}; this call asked for {requested}.")),
                Some("Use a fresh command_id for a new command; reuse one only to retry the same command.".into()),
            ),
            Refusal::DirectWrite { table, operation, what } => (
                format!("direct {operation} on {table} refused"),
                Some(format!("{what} Cases change state only through statemachine.transition_case(); history is append-only.")),
                Some("Use statemachine.create_case, transition_case or add_evidence. The guard applies to every role, superusers and session_replication_role = replica included.".into()),
            ),
            Refusal::GovernedWrite { table, operation, detail, hint } => (
                format!("direct {operation} on governed table {table} refused"),
                Some(detail.clone()),
                Some(format!("{hint} The guard applies to every role, superusers and session_replication_role = replica included.")),
            ),
            Refusal::ActorNotSessionUser { code, actor_id, session_user } => (
                format!("{code} refused: actor_id is not session user {session_user}'s own"),
                Some(format!(
                    "Case {id}: this machine takes identities from the database (role_source database); actor_id {} is not the identity of session user {session_user}.",
                    uuid_text(actor_id)
                )),
                Some("Act as yourself: pass statemachine.database_actor_id() as actor_id.".into()),
            ),
            Refusal::GuardedDdl { command, objects } => (
                format!("{command} would change what guards the statemachine tables"),
                Some(format!(
                    "It touches {}. The extension's tables, functions and schema, and what runs on its tables (rules, triggers, policies, indexes, child tables), change only through the extension's own scripts.",
                    objects.join(", ")
                )),
                Some("The guard applies to every role, superusers and session_replication_role = replica included. For an audited exception call statemachine.break_glass(reason) earlier in the same transaction.".into()),
            ),
            Refusal::InvalidDefinition { problems } => {
                let errors: Vec<&Problem> = problems.iter().filter(|p| p.severity == crate::definition::Severity::Error).collect();
                (
                    format!(
                        "invalid machine definition: {} problem{}",
                        errors.len(),
                        if errors.len() == 1 { "" } else { "s" }
                    ),
                    Some(errors.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n")),
                    Some("statemachine.validate_machine(definition) lists every problem as a row.".into()),
                )
            }
            Refusal::NullArgument { name } => (format!("{name} must not be NULL"), None, None),
            Refusal::EmptyArgument { name } => (format!("{name} must not be empty"), None, None),
            Refusal::InvalidArgument { name, problem } => (format!("invalid {name}: {problem}"), None, None),
            Refusal::NotDelegating => (
                "this installation does not delegate calls to the node of a case".into(),
                Some("transition_on_shard serves distributed installations whose command ids are unique per case (statemachine.distribute(command_scope => 'case')).".into()),
                Some("It is internal: call transition_case or transition_to.".into()),
            ),
            Refusal::NotOnDistributed { function, why } => (
                format!("{function} is not supported on a distributed installation"),
                Some(why.clone()),
                Some("See docs/scaling.md for what a distributed installation offers.".into()),
            ),
            Refusal::NotDistributable { problem, hint } => (
                "this installation cannot be distributed".into(),
                Some(problem.clone()),
                Some(hint.clone()),
            ),
            Refusal::CaseExists { detail } => (
                "case already exists".into(),
                Some(detail.clone()),
                Some("To retry a create_case or import_cases, pass the same command_id as the first call.".into()),
            ),
            Refusal::CommandInFlight => (
                "command_id was taken by a concurrent transaction".into(),
                None,
                Some("Retry with the same command_id.".into()),
            ),
            Refusal::NotATrigger => ("statemachine.guard_direct_write() can only run as a trigger".into(), None, None),
            Refusal::ClockBehind { last_change, now } => (
                format!("case {id} changed last at {last_change}, after the server's clock ({now})"),
                Some("History is never dated backwards within a case, nor in the future.".into()),
                Some("Check the server's clock (NTP); the transition can be retried once the clock has passed the case's last change.".into()),
            ),
        };
        let context = match self {
            Refusal::GuardRaised(r) => {
                let ours = format!("statemachine guard {} ({}) of transition {} on case {id}", r.guard, r.function, r.code);
                Some(match &r.context {
                    Some(c) if !c.is_empty() => format!("{c}\n{ours}"),
                    _ => ours,
                })
            }
            _ => None,
        };
        Report { sqlstate: self.sqlstate().to_owned(), message, detail, hint, context }
    }
}
