//! Model-based property test: random valid machines and random command sequences run
//! against a small, independent Rust model of the semantics and against the real
//! extension; every command's outcome (success, or its SQLSTATE) and every state and
//! version after it must agree. Replays of earlier commands are mixed in.

use postgres::Client;
use serde_json::json;
use std::collections::HashMap;

/// splitmix64: deterministic, seedable.
struct Rng(fastrand::Rng);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0.u64(..)
    }
    fn below(&mut self, n: usize) -> usize {
        self.0.usize(..n)
    }
    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xfff, b >> 52, b & 0xffff_ffff_ffff)
    }
}

const ROLES: [&str; 3] = ["R1", "R2", "R3"];
const CODES: [&str; 5] = ["C0", "C1", "C2", "C3", "C4"];

struct Rule {
    to: usize,
    roles: Vec<&'static str>,
    requires_reason: bool,
}

/// The model: what the API promises, written independently of the extension.
struct Model {
    rules: HashMap<(usize, String), Rule>,
    state: usize,
    version: i64,
}

impl Model {
    fn decide(&self, code: &str, role: &str, reason: bool) -> Result<usize, &'static str> {
        if !self.rules.keys().any(|(_, c)| c == code) {
            return Err("SM009");
        }
        let rule = self.rules.get(&(self.state, code.to_string())).ok_or("SM001")?;
        if !rule.roles.is_empty() && !rule.roles.contains(&role) {
            return Err("SM006");
        }
        if rule.requires_reason && !reason {
            return Err("SM004");
        }
        Ok(rule.to)
    }
}

/// A random machine that validates: a path S0 -> ... -> Sk-1 -> S0 keeps every state
/// reachable and none a dead end; more random edges on top, one target per (from, code).
fn random_machine(rng: &mut Rng, name: &str) -> (serde_json::Value, Model) {
    let k = 2 + rng.below(5);
    let mut rules: HashMap<(usize, String), Rule> = HashMap::new();
    for s in 0..k {
        let code = CODES[rng.below(CODES.len())].to_string();
        rules.entry((s, code)).or_insert(Rule { to: (s + 1) % k, roles: Vec::new(), requires_reason: false });
    }
    for _ in 0..rng.below(2 * k) {
        let key = (rng.below(k), CODES[rng.below(CODES.len())].to_string());
        let to = rng.below(k);
        rules.entry(key).or_insert(Rule { to, roles: Vec::new(), requires_reason: false });
    }
    for rule in rules.values_mut() {
        rule.roles = ROLES.iter().copied().filter(|_| rng.below(3) == 0).collect();
        rule.requires_reason = rng.below(3) == 0;
    }
    let states: Vec<serde_json::Value> =
        (0..k).map(|s| if s == 0 { json!({"code": "S0", "initial": true}) } else { json!({"code": format!("S{s}")}) }).collect();
    let mut keys: Vec<&(usize, String)> = rules.keys().collect();
    keys.sort();
    let transitions: Vec<serde_json::Value> = keys
        .iter()
        .map(|key| {
            let r = &rules[*key];
            json!({"code": key.1, "from": format!("S{}", key.0), "to": format!("S{}", r.to), "roles": r.roles,
                   "requires_reason": r.requires_reason})
        })
        .collect();
    let def = json!({"machine": name, "states": states, "transitions": transitions});
    (def, Model { rules, state: 0, version: 0 })
}

fn sqlstate(e: &postgres::Error) -> String {
    e.as_db_error().map_or_else(|| format!("not a database error: {e}"), |d| d.code().code().to_string())
}

/// Runs `machines` random machines with `commands` random commands each.
pub fn run(c: &mut Client, machines: usize, commands: usize) -> Vec<(String, Result<(), String>)> {
    let mut rng = Rng(fastrand::Rng::with_seed(0x0123_4567_89ab_cdef));
    let mut checked = 0;
    let mut failures: Vec<String> = Vec::new();
    for m in 0..machines {
        let name = format!("model_{m}");
        let (def, mut model) = random_machine(&mut rng, &name);
        if let Err(e) = c.execute("SELECT statemachine.define_machine($1::text::jsonb)", &[&def.to_string()]) {
            failures.push(format!("{name}: the generated machine was refused: {e}"));
            continue;
        }
        let case_id = rng.uuid();
        let created = c.execute(
            "SELECT statemachine.create_case($1, 'M-1', '00000000-0000-0000-0000-000000000001', 'R1', $2::text::uuid, $3::text::uuid)",
            &[&name, &rng.uuid(), &case_id],
        );
        if let Err(e) = created {
            failures.push(format!("{name}: create_case: {e}"));
            continue;
        }
        // Successful commands, for replays: (command id, code, version it produced).
        let mut done: Vec<(String, String, i64)> = Vec::new();
        for step in 0..commands {
            let replay = !done.is_empty() && rng.below(10) == 0;
            let (command, code, expected): (String, String, Result<(usize, i64), String>) = if replay {
                let (cmd, code, version) = done[rng.below(done.len())].clone();
                (cmd, code, Ok((model.state, version)))
            } else {
                let code = if rng.below(12) == 0 { "NOPE".to_string() } else { CODES[rng.below(CODES.len())].to_string() };
                let role = ROLES[rng.below(ROLES.len())];
                let reason = rng.below(2) == 0;
                let expected = model.decide(&code, role, reason).map(|to| (to, model.version + 1)).map_err(str::to_string);
                let command = rng.uuid();
                let got = c.query_one(
                    "SELECT state_version FROM statemachine.transition_case($1::text::uuid, $2, '00000000-0000-0000-0000-000000000002', $3, \
                     $4::text::uuid, reason_text => $5)",
                    &[&case_id, &code, &role, &command, &if reason { Some("because") } else { None }],
                );
                let outcome = match (&expected, got) {
                    (Ok((to, v)), Ok(row)) if row.get::<_, i64>(0) == *v => {
                        model.state = *to;
                        model.version = *v;
                        done.push((command.clone(), code.clone(), *v));
                        Ok(())
                    }
                    (Err(want), Err(e)) if &sqlstate(&e) == want => Ok(()),
                    (want, got) => Err(format!("{name} step {step}: {code} as {role} (reason {reason}) from S{}: model {want:?}, extension {:?}",
                        model.state, got.map(|r| r.get::<_, i64>(0)).map_err(|e| sqlstate(&e)))),
                };
                if let Err(f) = outcome {
                    failures.push(f);
                }
                checked += 1;
                continue;
            };
            // A replay returns the row it first produced and moves nothing.
            let got = c.query_one(
                "SELECT state_version FROM statemachine.transition_case($1::text::uuid, $2, '00000000-0000-0000-0000-000000000002', 'R1', \
                 $3::text::uuid, reason_text => 'because')",
                &[&case_id, &code, &command],
            );
            match (expected, got) {
                (Ok((_, v)), Ok(row)) if row.get::<_, i64>(0) == v => {}
                (want, got) => failures.push(format!("{name} step {step}: replay of {code}: model {want:?}, extension {:?}",
                    got.map(|r| r.get::<_, i64>(0)).map_err(|e| sqlstate(&e)))),
            }
            checked += 1;
        }
        let row = c.query_one("SELECT current_state, state_version FROM statemachine.case_file WHERE id = $1::text::uuid", &[&case_id]);
        match row {
            Ok(r) if r.get::<_, String>(0) == format!("S{}", model.state) && r.get::<_, i64>(1) == model.version => {}
            Ok(r) => failures.push(format!("{name}: final state {}/{} but the model says S{}/{}", r.get::<_, String>(0), r.get::<_, i64>(1), model.state, model.version)),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    println!("model: {machines} random machines, {checked} commands compared");
    vec![(
        format!("model-based: {machines} random machines x {commands} commands agree with the model"),
        if failures.is_empty() { Ok(()) } else { Err(failures.into_iter().take(5).collect::<Vec<_>>().join("\n")) },
    )]
}
