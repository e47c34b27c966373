//! Pictures of a published machine version: Mermaid `stateDiagram-v2` or Graphviz DOT,
//! drawn from the compiled rules (the same rows the write path decides with).
//!
//! Every edge is one rule: labelled with its transition code, the roles that may fire it
//! (none listed: any role), and markers for what it asks of the caller — `reason`,
//! `evidence` (with types when limited), `guards` (by code), `after` (timed) and `emits`
//! (outbox event). Kinds other than `normal` are styled apart: in DOT by line style and
//! colour, in Mermaid (whose state diagrams cannot style single edges) by a «kind» tag.
//! The initial state hangs off `[*]`; terminal states lead to `[*]` and are drawn bold.

use crate::definition::{EvidenceRequirement, GuardSpec, Kind};
use crate::rules::{CompiledMachine, Rule};
use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Mermaid,
    Dot,
}

impl Format {
    pub const NAMES: [&'static str; 2] = ["mermaid", "dot"];

    /// `mermaid`, or `dot` (also spelt `graphviz`); case-insensitive.
    pub fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "mermaid" => Some(Format::Mermaid),
            "dot" | "graphviz" => Some(Format::Dot),
            _ => None,
        }
    }
}

pub fn render(m: &CompiledMachine, format: Format) -> String {
    match format {
        Format::Mermaid => mermaid(m),
        Format::Dot => dot(m),
    }
}

/// What an edge asks for beyond the role, one short marker each.
fn markers(r: &Rule) -> Vec<String> {
    let mut out = Vec::new();
    if r.requires_reason || !r.reasons.is_empty() {
        if r.reasons.is_empty() {
            out.push("reason".to_owned());
        } else {
            let codes: Vec<&str> = r.reasons.iter().map(|x| x.code.as_str()).collect();
            out.push(format!("reason {}", codes.join("/")));
        }
    }
    match &r.evidence {
        EvidenceRequirement::None => {}
        EvidenceRequirement::Any => out.push("evidence".to_owned()),
        EvidenceRequirement::Types(types) => out.push(format!("evidence {}", types.join("/"))),
    }
    if !r.guards.is_empty() {
        // A time guard says how long: that is what a reader of the picture wants to know.
        let guards: Vec<String> = r
            .guards
            .iter()
            .map(|g| match &g.spec {
                GuardSpec::MinTimeInState(min) => format!("{} {min}", g.code),
                _ => g.code.clone(),
            })
            .collect();
        out.push(format!("guards {}", guards.join(", ")));
    }
    if let Some(after) = r.after {
        out.push(format!("after {after}"));
    }
    if let Some(event) = &r.emit {
        out.push(format!("emits {event}"));
    }
    out
}

fn roles(r: &Rule) -> Option<String> {
    (!r.roles.is_empty()).then(|| format!("[{}]", r.roles.join(", ")))
}

fn mermaid(m: &CompiledMachine) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "---\ntitle: {} v{}\n---", mermaid_text(&m.machine), m.version);
    out.push_str("stateDiagram-v2\n");
    // States get positional ids: codes may contain '-' and '.', which Mermaid would misread.
    let id = |code: &str| m.states().iter().position(|s| s.code == code).map_or_else(String::new, |i| format!("s{i}"));
    for s in m.states() {
        let _ = writeln!(out, "    state \"{}\" as {}", mermaid_text(&s.code), id(&s.code));
    }
    let _ = writeln!(out, "    [*] --> {}", id(&m.initial));
    for r in m.rules() {
        let mut label = mermaid_text(&r.code);
        if r.kind != Kind::Normal {
            let _ = write!(label, " «{}»", r.kind.as_str());
        }
        if let Some(roles) = roles(r) {
            let _ = write!(label, " {}", mermaid_text(&roles));
        }
        for marker in markers(r) {
            let _ = write!(label, " · {}", mermaid_text(&marker));
        }
        let _ = writeln!(out, "    {} --> {} : {}", id(&r.from), id(&r.to), label);
    }
    let terminals: Vec<String> = m.states().iter().filter(|s| s.terminal).map(|s| id(&s.code)).collect();
    for t in &terminals {
        let _ = writeln!(out, "    {t} --> [*]");
    }
    if !terminals.is_empty() {
        out.push_str("    classDef terminal font-weight:bold,stroke-width:3px\n");
        let _ = writeln!(out, "    class {} terminal", terminals.join(","));
    }
    out
}

/// Text inside a Mermaid label or state name: characters Mermaid treats as syntax become
/// its `#code;` entities.
fn mermaid_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ':' | ';' | '#' | '"' | '<' | '>' | '{' | '}' | '\n' | '\r' => {
                let _ = write!(out, "#{};", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Edge style per kind: the normal path solid, the exceptional paths visibly different.
fn dot_style(kind: Kind) -> &'static str {
    match kind {
        Kind::Normal => "",
        Kind::Reopen => ", style=dashed, color=\"#1f5fbf\", fontcolor=\"#1f5fbf\"",
        Kind::Reversal => ", style=dashed, color=\"#b35c00\", fontcolor=\"#b35c00\"",
        Kind::Correction | Kind::Admin => ", style=dotted, color=\"#b00020\", fontcolor=\"#b00020\"",
    }
}

fn dot(m: &CompiledMachine) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", dot_quote(&format!("{} v{}", m.machine, m.version)));
    out.push_str("    rankdir=LR;\n");
    let _ = writeln!(out, "    label={}; labelloc=t;", dot_quote(&format!("{} v{}", m.machine, m.version)));
    out.push_str("    node [shape=box, style=rounded, fontname=\"Helvetica\"];\n");
    out.push_str("    edge [fontname=\"Helvetica\", fontsize=10];\n");
    out.push_str("    \"[*]\" [shape=point, width=0.2, label=\"\"];\n");
    for s in m.states() {
        let shape = if s.terminal { ", peripheries=2, style=\"rounded,bold\"" } else { "" };
        let _ = writeln!(out, "    {} [label={}{}];", dot_quote(&s.code), dot_quote(&s.code), shape);
    }
    let _ = writeln!(out, "    \"[*]\" -> {};", dot_quote(&m.initial));
    for r in m.rules() {
        let mut lines = vec![if r.kind == Kind::Normal { r.code.clone() } else { format!("{} ({})", r.code, r.kind.as_str()) }];
        lines.extend(roles(r));
        lines.extend(markers(r));
        let label: Vec<String> = lines.iter().map(|l| dot_escape(l)).collect();
        let _ = writeln!(
            out,
            "    {} -> {} [label=\"{}\"{}];",
            dot_quote(&r.from),
            dot_quote(&r.to),
            label.join("\\n"),
            dot_style(r.kind)
        );
    }
    out.push_str("}\n");
    out
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n").replace('\r', "")
}

fn dot_quote(s: &str) -> String {
    format!("\"{}\"", dot_escape(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::validate_text;

    fn compile(json: &str) -> CompiledMachine {
        let v = validate_text(json);
        assert!(!v.has_errors(), "{:?}", v.problems);
        CompiledMachine::from_definition(v.definition.as_ref().expect("definition"), 3)
    }

    const MACHINE: &str = r#"{"machine": "m", "states": [
        {"code": "OPEN", "initial": true}, {"code": "IN-REVIEW.x"}, {"code": "DONE", "terminal": true}],
      "transitions": [
        {"code": "START", "from": "OPEN", "to": "IN-REVIEW.x", "roles": ["CLERK", "BOSS"]},
        {"code": "FINISH", "from": "IN-REVIEW.x", "to": "DONE", "requires_reason": true,
         "requires_evidence": ["REPORT"], "emit": "Finished",
         "guards": [{"guard": "distinct_actor", "transition": "START"}]},
        {"code": "EXPIRE", "from": "OPEN", "to": "DONE", "after": "30 days"},
        {"code": "REOPEN", "from": "DONE", "to": "OPEN", "kind": "reopen", "requires_reason": true,
         "min_time_in_state": "2 hours"}]}"#;

    #[test]
    fn mermaid_marks_initial_terminal_and_every_edge() {
        let text = render(&compile(MACHINE), Format::Mermaid);
        assert!(text.starts_with("---\ntitle: m v3\n---\nstateDiagram-v2\n"), "{text}");
        assert!(text.contains("    state \"IN-REVIEW.x\" as s1\n"), "{text}");
        assert!(text.contains("    [*] --> s0\n"), "{text}");
        assert!(text.contains("    s0 --> s1 : START [CLERK, BOSS]\n"), "{text}");
        assert!(
            text.contains("    s1 --> s2 : FINISH · reason · evidence REPORT · guards distinct_actor · emits Finished\n"),
            "{text}"
        );
        assert!(text.contains("    s0 --> s2 : EXPIRE · after 30 days\n"), "{text}");
        assert!(text.contains("    s2 --> s0 : REOPEN «reopen» · reason · guards min_time_in_state 2 hours\n"), "{text}");
        assert!(text.contains("    s2 --> [*]\n    classDef terminal"), "{text}");
        assert!(text.ends_with("    class s2 terminal\n"), "{text}");
        assert_eq!(text.matches("-->").count(), 6, "one edge per rule plus [*] in and out: {text}");
    }

    #[test]
    fn dot_styles_kinds_and_quotes_everything() {
        let text = render(&compile(MACHINE), Format::Dot);
        assert!(text.starts_with("digraph \"m v3\" {\n"), "{text}");
        assert!(text.contains("    \"[*]\" -> \"OPEN\";\n"), "{text}");
        assert!(text.contains("    \"DONE\" [label=\"DONE\", peripheries=2, style=\"rounded,bold\"];\n"), "{text}");
        assert!(text.contains("    \"OPEN\" -> \"IN-REVIEW.x\" [label=\"START\\n[CLERK, BOSS]\"];\n"), "{text}");
        assert!(text.contains("    \"DONE\" -> \"OPEN\" [label=\"REOPEN (reopen)\\nreason\\nguards min_time_in_state 2 hours\", style=dashed"), "{text}");
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn labels_cannot_break_out_of_the_syntax() {
        assert_eq!(mermaid_text("a:b;c#d\"e<f>"), "a#58;b#59;c#35;d#34;e#60;f#62;");
        assert_eq!(dot_quote("x\"];\ny\\"), "\"x\\\"];\\ny\\\\\"");
    }

    #[test]
    fn formats_by_name() {
        assert_eq!(Format::parse("Mermaid"), Some(Format::Mermaid));
        assert_eq!(Format::parse("graphviz"), Some(Format::Dot));
        assert_eq!(Format::parse("svg"), None);
    }
}
