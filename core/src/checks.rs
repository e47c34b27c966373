//! Every check of one transition, evaluated in one place.
//!
//! The write path (stop at the first failure), `check_transition` (every check, nothing
//! written) and `available_transitions` (reason and evidence assumed) all call
//! [`evaluate`], so the UI and the write path cannot disagree. Order: role, reason,
//! evidence, then the rule's guards in definition order.
//!
//! Facts that live in the database (membership, time in state, earlier actors,
//! assignments, SQL guard functions) are asked of a [`Facts`] implementation; the
//! extension answers them with SQL under the case lock, tests answer them from memory.

use crate::definition::{EvidenceRequirement, GuardSpec, RoleSource};
use crate::ids::uuid_text;
use crate::interval::Interval;
use crate::refusal::Refusal;
use crate::rules::{CompiledMachine, Rule};
use serde_json::{json, Map, Value};

/// One evidence id a caller passed, with what the database knows about it.
#[derive(Clone, Debug, PartialEq)]
pub struct EvidenceFact {
    /// `None`: the array element was NULL.
    pub id: Option<[u8; 16]>,
    /// `None`: no such evidence.
    pub case_id: Option<[u8; 16]>,
    pub active: bool,
    pub evidence_type: Option<String>,
}

/// What the caller supplies besides actor and role.
#[derive(Clone, Copy, Debug)]
pub enum Supplied<'a> {
    Given { reason_code: Option<&'a str>, reason_text: Option<&'a str>, evidence: &'a [EvidenceFact] },
    /// `available_transitions`: reason and evidence are what the caller will supply.
    Assumed,
}

#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub case_id: [u8; 16],
    pub current_state: &'a str,
    pub code: &'a str,
    /// `None`: guards about the actor are not evaluated (available_transitions without one).
    pub actor_id: Option<[u8; 16]>,
    /// `None`: the role check is skipped.
    pub actor_role: Option<&'a str>,
    pub supplied: Supplied<'a>,
    /// Passed on to SQL guards in their context.
    pub dry_run: bool,
}

/// Is the session user a member of a PostgreSQL role?
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Membership {
    Member,
    NotMember { session_user: String },
    NoSuchRole { session_user: String },
}

/// The actor of the latest transition with some code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriorActor {
    pub actor_id: [u8; 16],
    pub transition_id: [u8; 16],
    pub occurred_at: String,
    /// The database user (session user) that recorded it.
    pub recorded_by: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveAssignment {
    pub id: [u8; 16],
    pub assigned_at: String,
}

/// What a SQL guard function answered.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlOutcome {
    Verdict { passed: Option<bool>, evidence: Option<Value> },
    /// The function raised; the refusal carries its error (Refusal::GuardRaised), or
    /// says it is not registered / not callable.
    Failed(Refusal),
}

/// The database-side facts the checks need.
pub trait Facts {
    fn membership(&mut self, role: &str) -> Membership;
    /// `None` when the case has been in its state at least `min`, else what is left.
    fn time_left(&mut self, min: &Interval) -> Option<String>;
    fn prior_actor(&mut self, transition: &str) -> Option<PriorActor>;
    /// The database identity of the caller (the session user), for role_source database.
    fn session_user(&mut self) -> String;
    /// The actor id that stands for the session user (statemachine.database_actor_id()):
    /// under role_source database the only actor_id a caller may act as.
    fn database_actor_id(&mut self) -> Option<[u8; 16]>;
    fn active_assignment(&mut self, actor: &[u8; 16], role: &str) -> Option<ActiveAssignment>;
    fn sql_guard(&mut self, guard_code: &str, name: &str, context: &Value) -> SqlOutcome;
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// `role`, `reason`, `evidence`, or a guard's code.
    pub name: String,
    pub passed: bool,
    /// For people; empty unless the evaluation was asked to describe.
    pub detail: String,
    /// For the guard audit; `Null` unless described.
    pub evidence: Value,
    pub refusal: Option<Refusal>,
    /// True for guards (stored by `audit_guards`), false for the rule's own checks.
    pub is_guard: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Stop at the first failing check (the write path and available_transitions).
    pub stop_at_failure: bool,
    /// Fill `detail` and `evidence` (dry runs and audited transitions).
    pub describe: bool,
}

pub const WRITE: Options = Options { stop_at_failure: true, describe: false };
pub const DRY_RUN: Options = Options { stop_at_failure: false, describe: true };

/// The checks' result; the first failure is the refusal. When described, `checks` holds
/// every evaluated check; otherwise only a failing one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evaluation {
    pub checks: Vec<Check>,
}

impl Evaluation {
    pub fn refusal(&self) -> Option<&Refusal> {
        self.checks.iter().find_map(|c| c.refusal.as_ref())
    }
    pub fn into_refusal(self) -> Option<Refusal> {
        self.checks.into_iter().find_map(|c| c.refusal)
    }
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
    pub fn guards(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.is_guard)
    }
}

fn nonblank(s: Option<&str>) -> bool {
    s.is_some_and(|s| !s.trim().is_empty())
}

struct Builder {
    opts: Options,
    checks: Vec<Check>,
}

impl Builder {
    /// Records a check; `detail`/`evidence` are only built when describing.
    fn push(
        &mut self,
        name: &str,
        is_guard: bool,
        outcome: Result<(), Refusal>,
        detail: impl FnOnce() -> String,
        evidence: impl FnOnce() -> Value,
    ) -> bool {
        let passed = outcome.is_ok();
        if passed && !self.opts.describe {
            // The write path only needs a failure; a passing check costs no allocation.
            return false;
        }
        let (detail, evidence) = if self.opts.describe {
            let d = match &outcome {
                Err(r) => r.check_detail(),
                Ok(()) => detail(),
            };
            (d, evidence())
        } else {
            (String::new(), Value::Null)
        };
        self.checks.push(Check { name: name.to_owned(), passed, detail, evidence, refusal: outcome.err(), is_guard });
        !passed && self.opts.stop_at_failure
    }
}

impl CompiledMachine {
    /// The whole decision: rule lookup (SM009/SM001), then [`evaluate`]. `Ok` carries
    /// the rule and the evaluation that passed; for rules with `audit_guards` it is
    /// always described, since its guard checks are what the audit stores.
    pub fn decide<'m>(
        &'m self,
        req: &Request<'_>,
        facts: &mut dyn Facts,
        opts: Options,
    ) -> Result<(&'m Rule, Evaluation), Refusal> {
        let rule = self.find_rule(req.current_state, req.code)?;
        let opts = Options { describe: opts.describe || rule.audit_guards, ..opts };
        let mut evaluation = evaluate(self, rule, req, facts, opts);
        if let Some(refusal) = evaluation.checks.iter_mut().find_map(|c| c.refusal.take()) {
            return Err(refusal);
        }
        Ok((rule, evaluation))
    }
}

/// Evaluates `rule` (already found legal from the case's state) for `req`.
pub fn evaluate(machine: &CompiledMachine, rule: &Rule, req: &Request<'_>, facts: &mut dyn Facts, opts: Options) -> Evaluation {
    let mut b = Builder { opts, checks: Vec::new() };
    if check_role(&mut b, machine, rule, req, facts)
        || check_reason(&mut b, rule, req)
        || check_evidence(&mut b, rule, req)
        || check_due(&mut b, rule, facts)
    {
        return Evaluation { checks: b.checks };
    }
    for guard in &rule.guards {
        let (outcome, detail, evidence) = evaluate_guard(machine, rule, guard, req, facts, opts.describe);
        if b.push(&guard.code, true, outcome, || detail, || evidence) {
            break;
        }
    }
    Evaluation { checks: b.checks }
}

/// A timed transition ("after") is due only once the case has been in its from-state
/// that long — for every caller, not only for run_due_transitions.
fn check_due(b: &mut Builder, rule: &Rule, facts: &mut dyn Facts) -> bool {
    let Some(after) = &rule.after else { return false };
    let left = facts.time_left(after);
    let outcome = match &left {
        None => Ok(()),
        Some(left) => Err(Refusal::GuardFailed {
            code: rule.code.clone(),
            guard: AFTER_CHECK.into(),
            reason: format!("{} is a timed transition, due {} after entering {}; {}", rule.code, after.canonical(), rule.from, left),
        }),
    };
    b.push(
        AFTER_CHECK,
        true,
        outcome,
        || format!("due: in state {} at least {}", rule.from, after.canonical()),
        || json!({"after": after.canonical(), "left": left}),
    )
}

/// The actor run_due_transitions performs timed transitions as.
pub const TIMER_ACTOR: [u8; 16] = [0; 16];

/// The check name of a timed transition's due time.
pub const AFTER_CHECK: &str = "after";

fn check_role(b: &mut Builder, machine: &CompiledMachine, rule: &Rule, req: &Request<'_>, facts: &mut dyn Facts) -> bool {
    let Some(role) = req.actor_role else {
        return b.push("role", false, Ok(()), || "not checked: no actor_role given".into(), || Value::Null);
    };
    let outcome = if !rule.role_permitted(role) {
        Err(Refusal::RoleNotPermitted {
            code: rule.code.clone(),
            from: rule.from.clone(),
            actor_role: role.to_owned(),
            allowed: rule.roles.clone(),
        })
    } else if machine.role_source == RoleSource::Database {
        match facts.membership(role) {
            Membership::Member => match req.actor_id {
                // The timer actor of a timed rule is the system, not a person: it can only
                // perform what is due anyway (check_due).
                Some(actor) if actor == TIMER_ACTOR && rule.after.is_some() => Ok(()),
                // The asserted actor must be the session user's own identity.
                Some(actor) if facts.database_actor_id() != Some(actor) => {
                    Err(Refusal::ActorNotSessionUser { code: rule.code.clone(), actor_id: actor, session_user: facts.session_user() })
                }
                _ => Ok(()),
            },
            Membership::NotMember { session_user } => Err(Refusal::RoleNotMember {
                code: rule.code.clone(),
                actor_role: role.to_owned(),
                session_user,
                role_exists: true,
            }),
            Membership::NoSuchRole { session_user } => Err(Refusal::RoleNotMember {
                code: rule.code.clone(),
                actor_role: role.to_owned(),
                session_user,
                role_exists: false,
            }),
        }
    } else {
        Ok(())
    };
    b.push(
        "role",
        false,
        outcome,
        || {
            let by = if machine.role_source == RoleSource::Database { " (the session user is a member of it)" } else { "" };
            if rule.roles.is_empty() {
                format!("{} is open to every role; acting as {role}{by}", rule.code)
            } else {
                format!("role {role} is permitted{by}")
            }
        },
        || json!({"actor_role": role, "permitted_roles": rule.roles, "role_source": machine.role_source.as_str()}),
    )
}

fn check_reason(b: &mut Builder, rule: &Rule, req: &Request<'_>) -> bool {
    let Supplied::Given { reason_code, reason_text, .. } = req.supplied else {
        return b.push("reason", false, Ok(()), || "assumed: the caller will supply it".into(), || Value::Null);
    };
    let has_code = nonblank(reason_code);
    let has_reason = has_code || nonblank(reason_text);
    let allowed = &rule.reasons;
    let outcome = match reason_code {
        Some(rc) if has_code && !allowed.is_empty() && !allowed.iter().any(|r| r.code == rc) => {
            Err(Refusal::ReasonNotAllowed { code: rule.code.clone(), reason_code: rc.to_owned(), allowed: allowed.clone() })
        }
        _ if rule.requires_reason && (!has_reason || (!allowed.is_empty() && !has_code)) => {
            Err(Refusal::ReasonRequired { code: rule.code.clone(), allowed: allowed.clone() })
        }
        _ => Ok(()),
    };
    b.push(
        "reason",
        false,
        outcome,
        || match (rule.requires_reason, has_reason) {
            (_, true) => match reason_code.filter(|_| has_code) {
                Some(rc) => format!("reason code {rc} given"),
                None => "reason text given".into(),
            },
            (_, false) => "no reason required".into(),
        },
        || json!({"reason_code": reason_code, "allowed": allowed.iter().map(|r| &r.code).collect::<Vec<_>>()}),
    )
}

fn check_evidence(b: &mut Builder, rule: &Rule, req: &Request<'_>) -> bool {
    let Supplied::Given { evidence, .. } = req.supplied else {
        return b.push("evidence", false, Ok(()), || "assumed: the caller will supply it".into(), || Value::Null);
    };
    let problems: Vec<(String, String)> = evidence
        .iter()
        .filter_map(|e| {
            let Some(id) = e.id else { return Some(("NULL".into(), "is not an evidence id".into())) };
            let problem = match e.case_id {
                None => "does not exist".to_string(),
                Some(owner) if owner != req.case_id => format!("belongs to case {}", uuid_text(&owner)),
                Some(_) if !e.active => "is not active".to_string(),
                Some(_) => return None,
            };
            Some((uuid_text(&id), problem))
        })
        .collect();
    let given_types = || {
        let mut t: Vec<String> = evidence.iter().filter_map(|e| e.evidence_type.clone()).collect();
        t.sort();
        t.dedup();
        t
    };
    let outcome = if !problems.is_empty() {
        Err(Refusal::EvidenceInvalid { code: rule.code.clone(), problems })
    } else {
        match &rule.evidence {
            EvidenceRequirement::Any if evidence.is_empty() => Err(Refusal::EvidenceRequired { code: rule.code.clone() }),
            EvidenceRequirement::Types(types) => {
                let given = given_types();
                let missing: Vec<String> = types.iter().filter(|t| !given.contains(t)).cloned().collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(Refusal::EvidenceTypesMissing { code: rule.code.clone(), missing, given })
                }
            }
            _ => Ok(()),
        }
    };
    b.push(
        "evidence",
        false,
        outcome,
        || match (&rule.evidence, evidence.len()) {
            (EvidenceRequirement::None, 0) => "no evidence required".into(),
            (EvidenceRequirement::Types(t), n) => format!("{n} usable item(s) covering {}", t.join(", ")),
            (_, n) => format!("{n} usable item(s)"),
        },
        || {
            json!({
                "evidence_ids": evidence.iter().filter_map(|e| e.id.as_ref().map(uuid_text)).collect::<Vec<_>>(),
                "types": given_types(),
                "required_types": rule.evidence.types(),
            })
        },
    )
}

/// One guard: its outcome, and (when describing) its detail and evidence.
fn evaluate_guard(
    machine: &CompiledMachine,
    rule: &Rule,
    guard: &crate::definition::GuardDef,
    req: &Request<'_>,
    facts: &mut dyn Facts,
    describe: bool,
) -> (Result<(), Refusal>, String, Value) {
    let fail = |reason: String| Refusal::GuardFailed { code: rule.code.clone(), guard: guard.code.clone(), reason };
    let not_evaluated = || (Ok(()), "not evaluated: no actor_id given".to_string(), Value::Null);
    match &guard.spec {
        GuardSpec::MinTimeInState(min) => {
            let left = facts.time_left(min);
            let evidence = if describe { json!({"min_time_in_state": min.canonical(), "left": left}) } else { Value::Null };
            match left {
                None => (Ok(()), format!("in state {} at least {}", rule.from, min.canonical()), evidence),
                Some(left) => (
                    Err(fail(format!("{} requires at least {} in state {}; {}", rule.code, min.canonical(), rule.from, left))),
                    String::new(),
                    evidence,
                ),
            }
        }
        GuardSpec::DistinctActor { transition } if machine.role_source == RoleSource::Database => {
            // Under role_source database the four eyes are two database users: an
            // asserted actor_id proves nothing about who is calling.
            let me = facts.session_user();
            let prior = facts.prior_actor(transition);
            let evidence = if describe {
                json!({
                    "transition": transition,
                    "session_user": me,
                    "prior_recorded_by": prior.as_ref().map(|p| p.recorded_by.clone()),
                    "prior_transition_id": prior.as_ref().map(|p| uuid_text(&p.transition_id)),
                })
            } else {
                Value::Null
            };
            match prior {
                None => (Ok(()), format!("no {transition} recorded on this case"), evidence),
                Some(p) if p.recorded_by == me => (
                    Err(fail(format!("database user {me} also performed {transition}; {} needs a different user", rule.code))),
                    String::new(),
                    evidence,
                ),
                Some(p) => (Ok(()), format!("{transition} was performed by another database user ({})", p.recorded_by), evidence),
            }
        }
        GuardSpec::DistinctActor { transition } => {
            let Some(actor) = req.actor_id else { return not_evaluated() };
            let prior = facts.prior_actor(transition);
            let evidence = if describe {
                json!({
                    "transition": transition,
                    "actor_id": uuid_text(&actor),
                    "prior_actor_id": prior.as_ref().map(|p| uuid_text(&p.actor_id)),
                    "prior_transition_id": prior.as_ref().map(|p| uuid_text(&p.transition_id)),
                })
            } else {
                Value::Null
            };
            match prior {
                None => (Ok(()), format!("no {transition} recorded on this case"), evidence),
                Some(p) if p.actor_id == actor => (
                    Err(fail(format!(
                        "actor {} also performed {transition}; {} needs a different actor",
                        uuid_text(&actor),
                        rule.code
                    ))),
                    String::new(),
                    evidence,
                ),
                Some(p) => (Ok(()), format!("{transition} was performed by another actor ({})", uuid_text(&p.actor_id)), evidence),
            }
        }
        GuardSpec::RequiresAssignment { role } => {
            let Some(actor) = req.actor_id else { return not_evaluated() };
            let a = facts.active_assignment(&actor, role);
            let evidence = if describe {
                json!({
                    "role": role,
                    "actor_id": uuid_text(&actor),
                    "assignment_id": a.as_ref().map(|a| uuid_text(&a.id)),
                    "assigned_at": a.as_ref().map(|a| a.assigned_at.clone()),
                })
            } else {
                Value::Null
            };
            match a {
                Some(_) => (Ok(()), format!("actor holds an active {role} assignment"), evidence),
                None => (
                    Err(fail(format!("actor {} holds no active {role} assignment on this case", uuid_text(&actor)))),
                    String::new(),
                    evidence,
                ),
            }
        }
        GuardSpec::Sql { name, params } => {
            let context = guard_context(machine, rule, req, params);
            match facts.sql_guard(&guard.code, name, &context) {
                SqlOutcome::Failed(refusal) => (Err(refusal), String::new(), Value::Null),
                SqlOutcome::Verdict { passed, evidence } => {
                    let evidence = evidence.unwrap_or(Value::Object(Map::new()));
                    match passed {
                        Some(true) => (Ok(()), format!("{name} returned true"), evidence),
                        Some(false) => {
                            let reason = match evidence.get("reason").and_then(Value::as_str) {
                                Some(r) => r.to_owned(),
                                None if evidence.as_object().is_some_and(|o| !o.is_empty()) => {
                                    format!("{name} returned false (evidence {evidence})")
                                }
                                None => format!("{name} returned false"),
                            };
                            (Err(fail(reason)), String::new(), evidence)
                        }
                        None => (
                            Err(fail(format!("{name} returned NULL; a guard must return true or false, and NULL counts as a refusal"))),
                            String::new(),
                            evidence,
                        ),
                    }
                }
            }
        }
    }
}

/// The `context` argument of a SQL guard function.
pub fn guard_context(machine: &CompiledMachine, rule: &Rule, req: &Request<'_>, params: &Map<String, Value>) -> Value {
    let (reason_code, reason_text, evidence_ids): (Option<&str>, Option<&str>, Vec<String>) = match req.supplied {
        Supplied::Given { reason_code, reason_text, evidence } => {
            (reason_code, reason_text, evidence.iter().filter_map(|e| e.id.as_ref().map(uuid_text)).collect())
        }
        Supplied::Assumed => (None, None, Vec::new()),
    };
    json!({
        "case_id": uuid_text(&req.case_id),
        "machine": machine.machine,
        "version": machine.version,
        "transition": rule.code,
        "from_state": rule.from,
        "to_state": rule.to,
        "actor_id": req.actor_id.as_ref().map(uuid_text),
        "actor_role": req.actor_role,
        "reason_code": reason_code,
        "reason_text": reason_text,
        "evidence_ids": evidence_ids,
        "params": params,
        "dry_run": req.dry_run,
    })
}
