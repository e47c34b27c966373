//! Checks that need the whole parsed machine: `distinct_actor` guard references and
//! graph completeness (ambiguity, terminal exits, dead ends, reachability).

use super::model::{GuardSpec, Kind, StateDef, TransitionDef, CREATE_CODE};
use super::validate::Collector;
use std::collections::{HashMap, VecDeque};

/// A `distinct_actor` guard must name a transition of this machine (or CREATE).
pub(super) fn check_guard_references(c: &mut Collector, transitions: &[TransitionDef]) {
    for (i, t) in transitions.iter().enumerate() {
        for (j, g) in t.guards.iter().enumerate() {
            if let GuardSpec::DistinctActor { transition } = &g.spec {
                if transition != CREATE_CODE && !transitions.iter().any(|o| &o.code == transition) {
                    c.error(
                        format!("$.transitions[{i}].guards[{j}].transition"),
                        format!("unknown transition code {transition:?} (distinct_actor compares with a transition of this machine, or CREATE)"),
                    );
                }
            }
        }
    }
}

/// Graph completeness (seed 003 §29.1): ambiguity, terminal exits, dead ends, reachability.
pub(super) fn check_graph(c: &mut Collector, states: &[StateDef], transitions: &[TransitionDef]) {
    let index: HashMap<&str, usize> = states.iter().enumerate().map(|(i, s)| (s.code.as_str(), i)).collect();

    // One (from, code) pair leads to one target only.
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, t) in transitions.iter().enumerate() {
        for (j, from) in t.from.iter().enumerate() {
            let path = if t.from.len() == 1 { format!("$.transitions[{i}].from") } else { format!("$.transitions[{i}].from[{j}]") };
            if let Some(&first) = seen.get(&(from.as_str(), t.code.as_str())) {
                let other = &transitions[first];
                let what = if other.to == t.to {
                    format!("transition {} from {from} is defined twice (first at $.transitions[{first}])", t.code)
                } else {
                    format!(
                        "ambiguous: transition {} from {from} leads to {} here and to {} at $.transitions[{first}]; one (from, code) pair must lead to one target",
                        t.code, t.to, other.to
                    )
                };
                c.error(path.clone(), what);
            } else {
                seen.insert((from.as_str(), t.code.as_str()), i);
            }
            let from_state = &states[index[from.as_str()]];
            if from_state.terminal && !t.kind.may_leave_terminal() {
                c.error(
                    path,
                    format!(
                        "state {from} is terminal: only reopen, correction or admin transitions may leave it ({} is kind {})",
                        t.code,
                        t.kind.as_str()
                    ),
                );
            }
        }
        if t.kind == Kind::Reopen && t.from.iter().any(|f| !states[index[f.as_str()]].terminal) {
            c.warning(format!("$.transitions[{i}].kind"), "kind reopen usually leaves a terminal state; this one leaves a non-terminal one");
        }
    }

    // Every non-terminal state has an outgoing transition.
    let mut has_outgoing = vec![false; states.len()];
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); states.len()];
    for t in transitions {
        let to = index[t.to.as_str()];
        for from in &t.from {
            let f = index[from.as_str()];
            has_outgoing[f] = true;
            edges[f].push(to);
        }
    }
    for (i, s) in states.iter().enumerate() {
        if !s.terminal && !has_outgoing[i] {
            c.error(
                format!("$.states[{i}]"),
                format!("state {} is a dead end: it is not terminal and no transition leaves it (mark it \"terminal\": true or add a transition from it)", s.code),
            );
        }
    }

    // Every state is reachable from the initial one.
    let Some(start) = states.iter().position(|s| s.initial) else { return };
    let mut reached = vec![false; states.len()];
    let mut queue = VecDeque::from([start]);
    reached[start] = true;
    while let Some(n) = queue.pop_front() {
        for &m in &edges[n] {
            if !reached[m] {
                reached[m] = true;
                queue.push_back(m);
            }
        }
    }
    for (i, s) in states.iter().enumerate() {
        if !reached[i] {
            c.error(
                format!("$.states[{i}]"),
                format!("state {} is unreachable from the initial state {}", s.code, states[start].code),
            );
        }
    }
}
