//! Parsing one transition object: its keys, `from`/`to` references, roles, evidence
//! requirement, reasons, guards, timer (`after`) and kind.

use super::model::{
    EvidenceRequirement, GuardDef, GuardSpec, Kind, ReasonDef, Severity, TransitionDef, CORRECT_CODE, CREATE_CODE,
    MAX_CODE_LEN, RESERVED_CHECK_NAMES, SYSTEM_ROLE, TIMER_REASON,
};
use super::validate::{type_name, Collector};
use crate::interval::Interval;
use serde_json::{Map, Value};
use std::collections::HashMap;

const TRANSITION_KEYS: &[&str] = &[
    "code",
    "from",
    "to",
    "roles",
    "requires_reason",
    "requires_evidence",
    "min_time_in_state",
    "reasons",
    "guards",
    "audit_guards",
    "emit",
    "after",
    "kind",
];

pub(super) fn parse_transition(
    c: &mut Collector,
    path: &str,
    item: &Value,
    states: Option<&HashMap<String, usize>>,
) -> Option<TransitionDef> {
    let Some(obj) = item.as_object() else {
        c.error(path, format!("a transition must be an object, not {}", type_name(item)));
        return None;
    };
    let before = c.problems.len();
    c.unknown_keys(path, obj, TRANSITION_KEYS);
    let code = c.user_code(&format!("{path}.code"), obj.get("code"), "transition code");
    if code.as_deref() == Some(CREATE_CODE) {
        c.error(format!("{path}.code"), "transition code \"CREATE\" is reserved for the first history row of every case");
    }
    if code.as_deref() == Some(CORRECT_CODE) {
        c.error(format!("{path}.code"), "transition code \"CORRECT\" is reserved for the history rows correct_transition writes");
    }
    if code.as_deref() == Some(crate::migration::MIGRATE_CODE) {
        c.error(format!("{path}.code"), "transition code \"MIGRATE\" is reserved for the history rows migrate_cases writes");
    }
    let known = |c: &mut Collector, p: String, s: &str| {
        if states.is_some_and(|st| !st.contains_key(s)) {
            c.error(p, format!("unknown state {s:?}"));
        }
    };
    let from = match obj.get("from") {
        None => {
            c.error(format!("{path}.from"), "from is required: a state code or an array of state codes");
            Vec::new()
        }
        Some(Value::String(s)) => {
            known(c, format!("{path}.from"), s);
            vec![s.clone()]
        }
        Some(Value::Array(items)) if items.is_empty() => {
            c.error(format!("{path}.from"), "from must not be an empty array");
            Vec::new()
        }
        Some(Value::Array(items)) => {
            let mut out: Vec<String> = Vec::new();
            for (j, v) in items.iter().enumerate() {
                let p = format!("{path}.from[{j}]");
                match v {
                    Value::String(s) if out.contains(s) => c.error(p, format!("state {s:?} listed twice")),
                    Value::String(s) => {
                        known(c, p, s);
                        out.push(s.clone());
                    }
                    other => c.error(p, format!("must be a state code string, not {}", type_name(other))),
                }
            }
            out
        }
        Some(other) => {
            c.error(format!("{path}.from"), format!("from must be a string or an array of strings, not {}", type_name(other)));
            Vec::new()
        }
    };
    let to = match obj.get("to") {
        None => {
            c.error(format!("{path}.to"), "to is required");
            None
        }
        Some(Value::String(s)) => {
            known(c, format!("{path}.to"), s);
            Some(s.clone())
        }
        Some(other) => {
            c.error(format!("{path}.to"), format!("to must be a state code string, not {}", type_name(other)));
            None
        }
    };
    let roles = c.roles(&format!("{path}.roles"), obj.get("roles"));
    let requires_reason = c.opt_bool(&format!("{path}.requires_reason"), obj.get("requires_reason"));
    let evidence = parse_evidence_requirement(c, &format!("{path}.requires_evidence"), obj.get("requires_evidence"));
    let reasons = parse_reasons(c, &format!("{path}.reasons"), obj.get("reasons"));
    let audit_guards = c.opt_bool(&format!("{path}.audit_guards"), obj.get("audit_guards"));
    let min_time_in_state = match obj.get("min_time_in_state") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match Interval::parse(s) {
            Ok(iv) if iv.is_zero() => {
                c.warning(format!("{path}.min_time_in_state"), "a zero interval never blocks; it is dropped");
                None
            }
            Ok(iv) => Some(iv),
            Err(e) => {
                c.error(format!("{path}.min_time_in_state"), e);
                None
            }
        },
        Some(other) => {
            c.error(
                format!("{path}.min_time_in_state"),
                format!("min_time_in_state must be an interval string such as \"5 years\", not {}", type_name(other)),
            );
            None
        }
    };
    let kind = match obj.get("kind") {
        None => Kind::Normal,
        Some(Value::String(s)) => Kind::parse(s).unwrap_or_else(|| {
            c.error(
                format!("{path}.kind"),
                format!("unknown kind {s:?} (one of normal, reopen, reversal, correction, admin)"),
            );
            Kind::Normal
        }),
        Some(other) => {
            c.error(format!("{path}.kind"), format!("kind must be a string, not {}", type_name(other)));
            Kind::Normal
        }
    };
    let guards = parse_guards(c, &format!("{path}.guards"), obj.get("guards"), min_time_in_state.is_some());
    let emit = match obj.get("emit") {
        None | Some(Value::Null) => None,
        v => c.code(&format!("{path}.emit"), v, "event type"),
    };
    let after = match obj.get("after") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match Interval::parse(s) {
            Ok(iv) if iv.is_zero() => {
                c.error(format!("{path}.after"), "a timed transition needs a positive interval");
                None
            }
            Ok(iv) => Some(iv),
            Err(e) => {
                c.error(format!("{path}.after"), e);
                None
            }
        },
        Some(other) => {
            c.error(format!("{path}.after"), format!("after must be an interval string such as \"5 years\", not {}", type_name(other)));
            None
        }
    };
    if after.is_some() {
        // run_due_transitions acts as role SYSTEM with reason code TIMER.
        if !roles.is_empty() && !roles.iter().any(|r| r == SYSTEM_ROLE) {
            c.error(format!("{path}.roles"), format!("a timed transition (\"after\") is performed as role {SYSTEM_ROLE}: list it in roles or leave roles empty"));
        }
        if !reasons.is_empty() && !reasons.iter().any(|r| r.code == TIMER_REASON) {
            c.error(format!("{path}.reasons"), format!("a timed transition (\"after\") gives reason code {TIMER_REASON}: declare it among the reasons"));
        }
    }
    if c.problems[before..].iter().any(|p| p.severity == Severity::Error) {
        return None;
    }
    Some(TransitionDef {
        code: code?,
        from,
        to: to?,
        roles,
        requires_reason,
        evidence,
        min_time_in_state,
        guards,
        audit_guards,
        reasons,
        emit,
        after,
        kind,
    })
}

fn parse_evidence_requirement(c: &mut Collector, path: &str, v: Option<&Value>) -> EvidenceRequirement {
    match v {
        None | Some(Value::Bool(false)) => EvidenceRequirement::None,
        Some(Value::Bool(true)) => EvidenceRequirement::Any,
        Some(Value::Array(items)) if items.is_empty() => {
            c.error(path, "requires_evidence must not be an empty array (use true, or list evidence types)");
            EvidenceRequirement::None
        }
        Some(Value::Array(items)) => {
            let mut types: Vec<String> = Vec::new();
            for (j, v) in items.iter().enumerate() {
                let p = format!("{path}[{j}]");
                match v {
                    Value::String(s) if s.trim().is_empty() => c.error(p, "evidence type must not be empty"),
                    Value::String(s) if types.contains(s) => c.error(p, format!("evidence type {s:?} listed twice")),
                    Value::String(s) => types.push(s.clone()),
                    other => c.error(p, format!("evidence type must be a string, not {}", type_name(other))),
                }
            }
            EvidenceRequirement::Types(types)
        }
        Some(other) => {
            c.error(path, format!("requires_evidence must be true, false or an array of evidence types, not {}", type_name(other)));
            EvidenceRequirement::None
        }
    }
}

fn parse_reasons(c: &mut Collector, path: &str, v: Option<&Value>) -> Vec<ReasonDef> {
    let items = match v {
        None => return Vec::new(),
        Some(Value::Array(items)) if items.is_empty() => {
            c.error(path, "reasons must not be empty (omit the key to allow any reason)");
            return Vec::new();
        }
        Some(Value::Array(items)) => items,
        Some(other) => {
            c.error(path, format!("reasons must be an array of {{\"code\", \"label\"}} objects, not {}", type_name(other)));
            return Vec::new();
        }
    };
    let mut out: Vec<ReasonDef> = Vec::new();
    for (j, item) in items.iter().enumerate() {
        let p = format!("{path}[{j}]");
        let Some(obj) = item.as_object() else {
            c.error(p, format!("a reason must be an object, not {}", type_name(item)));
            continue;
        };
        c.unknown_keys(&p, obj, &["code", "label"]);
        let code = c.code(&format!("{p}.code"), obj.get("code"), "reason code");
        let label = match obj.get("label") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(Value::String(_)) => {
                c.error(format!("{p}.label"), "label must not be empty");
                None
            }
            None => {
                c.error(format!("{p}.label"), "label is required");
                None
            }
            Some(other) => {
                c.error(format!("{p}.label"), format!("label must be a string, not {}", type_name(other)));
                None
            }
        };
        if let (Some(code), Some(label)) = (code, label) {
            if out.iter().any(|r| r.code == code) {
                c.error(format!("{p}.code"), format!("reason code {code:?} listed twice"));
            } else {
                out.push(ReasonDef { code, label });
            }
        }
    }
    out
}

fn parse_guards(c: &mut Collector, path: &str, v: Option<&Value>, has_min_time_key: bool) -> Vec<GuardDef> {
    let items = match v {
        None => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            c.error(path, format!("guards must be an array of guard objects, not {}", type_name(other)));
            return Vec::new();
        }
    };
    let mut out: Vec<GuardDef> = Vec::new();
    // The transition-level min_time_in_state key is a guard with that code.
    let mut codes: Vec<(String, String)> = Vec::new();
    if has_min_time_key {
        codes.push(("min_time_in_state".into(), "the transition's min_time_in_state key".into()));
    }
    for (j, item) in items.iter().enumerate() {
        let p = format!("{path}[{j}]");
        let Some(obj) = item.as_object() else {
            c.error(p, format!("a guard must be an object, not {}", type_name(item)));
            continue;
        };
        let before = c.problems.len();
        let spec = match obj.get("guard") {
            None => {
                c.error(format!("{p}.guard"), format!("guard is required (one of {})", GuardSpec::KINDS.join(", ")));
                None
            }
            Some(Value::String(kind)) => parse_guard_spec(c, &p, kind, obj),
            Some(other) => {
                c.error(format!("{p}.guard"), format!("guard must be a string, not {}", type_name(other)));
                None
            }
        };
        let code = match obj.get("code") {
            None => spec.as_ref().map(|s| s.default_code().to_owned()),
            v => c.code(&format!("{p}.code"), v, "guard code"),
        };
        if c.problems[before..].iter().any(|p| p.severity == Severity::Error) {
            continue;
        }
        let (Some(spec), Some(code)) = (spec, code) else { continue };
        if RESERVED_CHECK_NAMES.contains(&code.as_str()) {
            c.error(
                format!("{p}.code"),
                format!("guard code {code:?} is reserved for the rule's own checks ({}); name the guard with \"code\"", RESERVED_CHECK_NAMES.join(", ")),
            );
            continue;
        }
        if let Some((_, first)) = codes.iter().find(|(k, _)| *k == code) {
            c.error(
                format!("{p}.code"),
                format!("guard code {code:?} is already used by {first}; give one of them a distinct \"code\""),
            );
            continue;
        }
        codes.push((code.clone(), p.clone()));
        out.push(GuardDef { code, spec });
    }
    out
}

fn parse_guard_spec(c: &mut Collector, p: &str, kind: &str, obj: &Map<String, Value>) -> Option<GuardSpec> {
    match kind {
        "distinct_actor" => {
            c.unknown_keys(p, obj, &["guard", "code", "transition"]);
            let t = c.user_code(&format!("{p}.transition"), obj.get("transition"), "transition code");
            t.map(|transition| GuardSpec::DistinctActor { transition })
        }
        "requires_assignment" => {
            c.unknown_keys(p, obj, &["guard", "code", "role"]);
            match obj.get("role") {
                Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_CODE_LEN => {
                    Some(GuardSpec::RequiresAssignment { role: s.clone() })
                }
                Some(Value::String(_)) => {
                    c.error(format!("{p}.role"), "role must be a non-empty string of at most 63 bytes");
                    None
                }
                None => {
                    c.error(format!("{p}.role"), "role is required: the assignment role the actor must hold");
                    None
                }
                Some(other) => {
                    c.error(format!("{p}.role"), format!("role must be a string, not {}", type_name(other)));
                    None
                }
            }
        }
        "min_time_in_state" => {
            c.unknown_keys(p, obj, &["guard", "code", "interval"]);
            match obj.get("interval") {
                Some(Value::String(s)) => match Interval::parse(s) {
                    Ok(iv) if iv.is_zero() => {
                        c.error(format!("{p}.interval"), "a zero interval never blocks");
                        None
                    }
                    Ok(iv) => Some(GuardSpec::MinTimeInState(iv)),
                    Err(e) => {
                        c.error(format!("{p}.interval"), e);
                        None
                    }
                },
                None => {
                    c.error(format!("{p}.interval"), "interval is required, e.g. \"5 days\"");
                    None
                }
                Some(other) => {
                    c.error(format!("{p}.interval"), format!("interval must be a string such as \"5 days\", not {}", type_name(other)));
                    None
                }
            }
        }
        "sql" => {
            c.unknown_keys(p, obj, &["guard", "code", "name", "params"]);
            let name = c.code(&format!("{p}.name"), obj.get("name"), "guard name");
            let params = match obj.get("params") {
                None => Map::new(),
                Some(Value::Object(m)) => m.clone(),
                Some(other) => {
                    c.error(format!("{p}.params"), format!("params must be an object, not {}", type_name(other)));
                    Map::new()
                }
            };
            name.map(|name| GuardSpec::Sql { name, params })
        }
        other => {
            c.error(format!("{p}.guard"), format!("unknown guard {other:?} (one of {})", GuardSpec::KINDS.join(", ")));
            None
        }
    }
}
