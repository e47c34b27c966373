//! The canonical JSON form of a [`MachineDef`]: what is stored, what
//! `machine_definition` returns and what idempotency compares.

use super::model::{EvidenceRequirement, GuardDef, GuardSpec, Kind, MachineDef, RoleSource};
use serde_json::{Map, Value};

impl MachineDef {
    /// The canonical JSON form: what is stored, what `machine_definition` returns and
    /// what idempotency compares. Keys at their default value are omitted, a single
    /// `from` is a string, intervals are spelled canonically.
    pub fn to_canonical_json(&self) -> Value {
        let mut top = Map::new();
        top.insert("machine".into(), Value::String(self.machine.clone()));
        if let Some(d) = &self.description {
            top.insert("description".into(), Value::String(d.clone()));
        }
        if self.role_source != RoleSource::Asserted {
            top.insert("role_source".into(), self.role_source.as_str().into());
        }
        if !self.assign_roles.is_empty() {
            top.insert("assign_roles".into(), self.assign_roles.clone().into());
        }
        if self.correct_any {
            top.insert("corrections".into(), "any".into());
        }
        if !self.invariants.is_empty() {
            let list = self
                .invariants
                .iter()
                .map(|i| {
                    let mut o = Map::new();
                    o.insert("when".into(), i.when.clone().into());
                    o.insert("dimension".into(), i.dimension.clone().into());
                    o.insert("in".into(), i.allowed.iter().cloned().map(Value::String).collect());
                    Value::Object(o)
                })
                .collect();
            top.insert("invariants".into(), Value::Array(list));
        }
        let states = self
            .states
            .iter()
            .map(|s| {
                let mut m = Map::new();
                m.insert("code".into(), s.code.clone().into());
                if let Some(l) = &s.label {
                    m.insert("label".into(), l.clone().into());
                }
                if let Some(p) = &s.phase {
                    m.insert("phase".into(), p.clone().into());
                }
                if s.initial {
                    m.insert("initial".into(), true.into());
                }
                if s.terminal {
                    m.insert("terminal".into(), true.into());
                }
                if let Some(o) = s.sort_order {
                    m.insert("sort_order".into(), o.into());
                }
                if !s.attributes.is_empty() {
                    m.insert("attributes".into(), Value::Object(s.attributes.clone()));
                }
                Value::Object(m)
            })
            .collect();
        top.insert("states".into(), Value::Array(states));
        let transitions = self
            .transitions
            .iter()
            .map(|t| {
                let mut m = Map::new();
                m.insert("code".into(), t.code.clone().into());
                if t.from.len() == 1 {
                    m.insert("from".into(), t.from[0].clone().into());
                } else {
                    m.insert("from".into(), t.from.iter().cloned().map(Value::String).collect());
                }
                m.insert("to".into(), t.to.clone().into());
                if !t.roles.is_empty() {
                    m.insert("roles".into(), t.roles.iter().cloned().map(Value::String).collect());
                }
                if t.requires_reason {
                    m.insert("requires_reason".into(), true.into());
                }
                match &t.evidence {
                    EvidenceRequirement::None => {}
                    EvidenceRequirement::Any => {
                        m.insert("requires_evidence".into(), true.into());
                    }
                    EvidenceRequirement::Types(types) => {
                        m.insert("requires_evidence".into(), types.iter().cloned().map(Value::String).collect());
                    }
                }
                if let Some(iv) = &t.min_time_in_state {
                    m.insert("min_time_in_state".into(), iv.canonical().into());
                }
                if !t.reasons.is_empty() {
                    let reasons = t
                        .reasons
                        .iter()
                        .map(|r| {
                            let mut o = Map::new();
                            o.insert("code".into(), r.code.clone().into());
                            o.insert("label".into(), r.label.clone().into());
                            Value::Object(o)
                        })
                        .collect();
                    m.insert("reasons".into(), Value::Array(reasons));
                }
                if !t.guards.is_empty() {
                    m.insert("guards".into(), t.guards.iter().map(guard_json).collect());
                }
                if t.audit_guards {
                    m.insert("audit_guards".into(), true.into());
                }
                if let Some(e) = &t.emit {
                    m.insert("emit".into(), e.clone().into());
                }
                if let Some(a) = &t.after {
                    m.insert("after".into(), a.canonical().into());
                }
                if t.kind != Kind::Normal {
                    m.insert("kind".into(), t.kind.as_str().into());
                }
                Value::Object(m)
            })
            .collect();
        top.insert("transitions".into(), Value::Array(transitions));
        Value::Object(top)
    }
}

/// Canonical JSON of one guard: `code` only when it differs from the default.
fn guard_json(g: &GuardDef) -> Value {
    let mut o = Map::new();
    o.insert("guard".into(), g.spec.kind().into());
    if g.code != g.spec.default_code() {
        o.insert("code".into(), g.code.clone().into());
    }
    match &g.spec {
        GuardSpec::MinTimeInState(iv) => {
            o.insert("interval".into(), iv.canonical().into());
        }
        GuardSpec::DistinctActor { transition } => {
            o.insert("transition".into(), transition.clone().into());
        }
        GuardSpec::RequiresAssignment { role } => {
            o.insert("role".into(), role.clone().into());
        }
        GuardSpec::Sql { name, params } => {
            o.insert("name".into(), name.clone().into());
            if !params.is_empty() {
                o.insert("params".into(), Value::Object(params.clone()));
            }
        }
    }
    Value::Object(o)
}
