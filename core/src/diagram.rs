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
use std::collections::HashMap;
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
    // States get positional ids (s0, s1, … in display order): a code is any text (spaces,
    // quotes, `->`, `;`), never a usable Mermaid id. The code itself is the quoted label.
    let ids: HashMap<&str, String> = m.states().iter().enumerate().map(|(i, s)| (s.code.as_str(), format!("s{i}"))).collect();
    let id = |code: &str| ids.get(code).cloned().unwrap_or_default();
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
/// its `#code;` entities (decimal: `;` is `#59;`), which Mermaid turns back into the
/// character when it draws. Checked against mermaid 11's parser:
/// - `"` ends a `state "…" as sN` name; `;` ends a statement, even inside an edge label;
///   `:` starts an edge label;
/// - `#` would start an entity of the code's own (`#59;` in a code must stay as written);
/// - `<`, `>` and `&` would be read as HTML (`<b>`, `&lt;`) when the label is drawn;
/// - `{`, `}` open and close composite states; control characters end lines.
///
/// Everything else (spaces, `'`, `->`, `[*]`, `%%`, `\`, non-ASCII letters) is safe.
fn mermaid_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ':' | ';' | '#' | '"' | '<' | '>' | '&' | '{' | '}' => {
                let _ = write!(out, "#{};", u32::from(c));
            }
            c if c.is_control() => {
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
    // The start point's node id: "[*]", unless a state is called that; then one no code
    // can have (codes never start with a space).
    let start = if m.has_state("[*]") { dot_quote(" [*]") } else { dot_quote("[*]") };
    let _ = writeln!(out, "    {start} [shape=point, width=0.2, label=\"\"];");
    for s in m.states() {
        let shape = if s.terminal { ", peripheries=2, style=\"rounded,bold\"" } else { "" };
        let _ = writeln!(out, "    {} [label={}{}];", dot_quote(&s.code), dot_quote(&s.code), shape);
    }
    let _ = writeln!(out, "    {start} -> {};", dot_quote(&m.initial));
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

/// Text inside a DOT double-quoted string: `\` and `"` escaped (so a label's `\N`,
/// `\G`, `\l` … stay literal and a trailing backslash cannot swallow the closing quote),
/// `&` as `&amp;` (Graphviz decodes HTML entities in labels: `&lt;` would be drawn as
/// `<`), a newline as the label escape `\n`, other control characters dropped.
/// Everything else, UTF-8 included, is literal inside quotes.
fn dot_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '&' => out.push_str("&amp;"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A DOT id or attribute value: always a double-quoted string.
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

    /// Codes as users write them: spaces, quotes, arrows, semicolons, non-ASCII letters,
    /// a state called `[*]` and one ending in a backslash.
    const USER_CODES: &str = r#"{"machine": "product_status", "states": [
        {"code": "in stock", "initial": true}, {"code": "it's \"new\""}, {"code": "a -> b; c"},
        {"code": "geprüft"}, {"code": "état", "terminal": true}, {"code": "[*]"}, {"code": "C:\\temp\\"}],
      "transitions": [
        {"code": "order it", "from": "in stock", "to": "a -> b; c", "roles": ["sales; EU", "boss \"B\""]},
        {"code": "say \"hi\" #59; &lt;", "from": "a -> b; c", "to": "it's \"new\""},
        {"code": "prüfen", "from": "it's \"new\"", "to": "geprüft", "requires_reason": true,
         "guards": [{"guard": "distinct_actor", "transition": "order it"}]},
        {"code": "close: état", "from": "geprüft", "to": "état"},
        {"code": "wieder öffnen", "from": "état", "to": "in stock", "kind": "reopen"},
        {"code": "to [*]", "from": "in stock", "to": "[*]"},
        {"code": "<b>bold</b>", "from": "[*]", "to": "C:\\temp\\"},
        {"code": "%% not a comment", "from": "C:\\temp\\", "to": "in stock"}]}"#;

    #[test]
    fn mermaid_quotes_codes_as_users_write_them() {
        let text = render(&compile(USER_CODES), Format::Mermaid);
        for line in [
            "    state \"in stock\" as s0\n",
            "    state \"it's #34;new#34;\" as s1\n",
            "    state \"a -#62; b#59; c\" as s2\n",
            "    state \"geprüft\" as s3\n",
            "    state \"état\" as s4\n",
            "    state \"[*]\" as s5\n",
            "    state \"C#58;\\temp\\\" as s6\n",
            "    [*] --> s0\n",
            "    s0 --> s2 : order it [sales#59; EU, boss #34;B#34;]\n",
            "    s2 --> s1 : say #34;hi#34; #35;59#59; #38;lt#59;\n",
            "    s1 --> s3 : prüfen · reason · guards distinct_actor\n",
            "    s3 --> s4 : close#58; état\n",
            "    s4 --> s0 : wieder öffnen «reopen»\n",
            "    s0 --> s5 : to [*]\n",
            "    s5 --> s6 : #60;b#62;bold#60;/b#62;\n",
            "    s6 --> s0 : %% not a comment\n",
            "    s4 --> [*]\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        // Past the title, no code's syntax survives: with its `#N;` entities taken out, a
        // `state` name or an edge label holds no `"`, `;`, `:`, `#`, `<`, `>`, `&`, `{`, `}`.
        let bare = |text: &str| -> String {
            let mut out = String::new();
            let mut rest = text;
            while let Some(at) = rest.find('#') {
                out.push_str(&rest[..at]);
                let (n, tail) = rest[at + 1..].split_once(';').expect("an entity ends with ';'");
                assert!(n.parse::<u32>().is_ok(), "not a numeric entity: {text}");
                rest = tail;
            }
            out + rest
        };
        let syntax = ['"', ';', ':', '#', '<', '>', '&', '{', '}'];
        for line in text.lines().skip(4) {
            if let Some(rest) = line.trim_start().strip_prefix("state \"") {
                let (name, id) = rest.rsplit_once("\" as ").expect(line);
                assert!(!bare(name).contains(syntax), "{line}");
                assert!(id.starts_with('s') && id[1..].bytes().all(|b| b.is_ascii_digit()), "{line}");
            } else if let Some((_, label)) = line.split_once(" : ") {
                assert!(!bare(label).contains(syntax), "{line}");
            }
        }
    }

    #[test]
    fn dot_quotes_codes_as_users_write_them_and_renders() {
        let text = render(&compile(USER_CODES), Format::Dot);
        for line in [
            "    \" [*]\" [shape=point, width=0.2, label=\"\"];\n",
            "    \"in stock\" [label=\"in stock\"];\n",
            "    \"it's \\\"new\\\"\" [label=\"it's \\\"new\\\"\"];\n",
            "    \"a -> b; c\" [label=\"a -> b; c\"];\n",
            "    \"état\" [label=\"état\", peripheries=2, style=\"rounded,bold\"];\n",
            "    \"[*]\" [label=\"[*]\"];\n",
            "    \"C:\\\\temp\\\\\" [label=\"C:\\\\temp\\\\\"];\n",
            "    \" [*]\" -> \"in stock\";\n",
            "    \"in stock\" -> \"a -> b; c\" [label=\"order it\\n[sales; EU, boss \\\"B\\\"]\"];\n",
            "    \"a -> b; c\" -> \"it's \\\"new\\\"\" [label=\"say \\\"hi\\\" #59; &amp;lt;\"];\n",
            "    \"[*]\" -> \"C:\\\\temp\\\\\" [label=\"<b>bold</b>\"];\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }

        let dot = std::path::Path::new("/usr/bin/dot");
        if !dot.exists() {
            println!("note: /usr/bin/dot not found; the DOT output was not rendered");
            return;
        }
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let mut child = Command::new(dot)
            .arg("-Tsvg")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run dot");
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write DOT");
        let out = child.wait_with_output().expect("dot output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && stderr.trim().is_empty(), "dot -Tsvg failed: {stderr}\n{text}");
        let svg = String::from_utf8_lossy(&out.stdout);
        // One node per state plus the start point, one edge per rule plus the start edge.
        assert_eq!(svg.matches("class=\"node\"").count(), 8, "{svg}");
        assert_eq!(svg.matches("class=\"edge\"").count(), 9, "{svg}");
        // SVG escapes `<`, `"` and `&` itself: `&amp;lt;` there is the code's own `&lt;`.
        for shown in ["geprüft", "état", "wieder öffnen", "C:\\temp\\", "&lt;b&gt;bold&lt;/b&gt;", "#59; &amp;lt;"] {
            assert!(svg.contains(shown), "{shown:?} not drawn verbatim:\n{svg}");
        }
    }

    #[test]
    fn labels_cannot_break_out_of_the_syntax() {
        assert_eq!(mermaid_text("a:b;c#d\"e<f>"), "a#58;b#59;c#35;d#34;e#60;f#62;");
        assert_eq!(mermaid_text("a&lt;\tb é"), "a#38;lt#59;#9;b é");
        assert_eq!(dot_quote("x\"];\ny\\"), "\"x\\\"];\\ny\\\\\"");
        assert_eq!(dot_quote("a &lt; b\t"), "\"a &amp;lt; b\"");
    }

    #[test]
    fn formats_by_name() {
        assert_eq!(Format::parse("Mermaid"), Some(Format::Mermaid));
        assert_eq!(Format::parse("graphviz"), Some(Format::Dot));
        assert_eq!(Format::parse("svg"), None);
    }
}
