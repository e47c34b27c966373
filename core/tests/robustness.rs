//! Property test of the definition parser: seeded random
//! mutations of valid definitions (keys dropped, values replaced by random JSON of any
//! type, elements duplicated, unknown keys, codes changed). For every input:
//! validation never panics, every problem names a JSON path, an accepted definition
//! round-trips through its canonical form unchanged and compiles.

use serde_json::{json, Map, Value};
use statemachine_core::{validate, CompiledMachine, Severity};

const SEEDS: [&str; 3] = [
    include_str!("../../examples/investigation.json"),
    include_str!("../../examples/product_status.json"),
    include_str!("../../examples/sla.json"),
];

/// Seeded, so a failure repeats.
struct Gen(fastrand::Rng);

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        self.0.usize(..n)
    }

    fn value(&mut self, depth: usize) -> Value {
        match self.below(if depth > 2 { 6 } else { 8 }) {
            0 => Value::Null,
            1 => Value::Bool(self.below(2) == 0),
            2 => json!(self.0.i64(-500..500)),
            3 => json!(["A", "B", "DRAFT", "", "x y", "1abc", "CREATE", "5 years", "0 days", "-3 weeks"][self.below(10)]),
            4 => json!(format!("S{}", self.below(5))),
            5 => json!(1.5),
            6 => Value::Array((0..self.below(4)).map(|_| self.value(depth + 1)).collect()),
            _ => {
                let keys = ["code", "from", "to", "initial", "terminal", "roles", "guards", "guard", "after", "in", "when", "zz"];
                let mut m = Map::new();
                for _ in 0..self.below(4) {
                    m.insert(keys[self.below(keys.len())].to_string(), self.value(depth + 1));
                }
                Value::Object(m)
            }
        }
    }

    /// Changes one random place of `v`.
    fn mutate(&mut self, v: &mut Value, depth: usize) {
        let descend = depth < 4 && self.below(3) != 0;
        match v {
            Value::Object(m) if !m.is_empty() => {
                let keys: Vec<String> = m.keys().cloned().collect();
                let k = keys[self.below(keys.len())].clone();
                match self.below(5) {
                    0 => {
                        m.remove(&k);
                    }
                    1 => {
                        m.insert(format!("unknown_{}", self.below(3)), self.value(0));
                    }
                    2 if descend => {
                        if let Some(child) = m.get_mut(&k) {
                            self.mutate(child, depth + 1);
                        }
                    }
                    _ => {
                        let new = self.value(0);
                        m.insert(k, new);
                    }
                }
            }
            Value::Array(a) if !a.is_empty() => {
                let i = self.below(a.len());
                match self.below(4) {
                    0 => {
                        a.remove(i);
                    }
                    1 => {
                        let dup = a[i].clone();
                        a.push(dup);
                    }
                    _ if descend => self.mutate(&mut a[i], depth + 1),
                    _ => a[i] = self.value(0),
                }
            }
            other => *other = self.value(0),
        }
    }
}

#[test]
fn random_mutations_never_panic_and_always_explain_themselves() {
    let seeds: Vec<Value> = SEEDS.iter().map(|s| serde_json::from_str(s).unwrap()).collect();
    let mut g = Gen(fastrand::Rng::with_seed(0x5eed_cafe));
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..20_000 {
        let mut def = seeds[round % seeds.len()].clone();
        for _ in 0..1 + g.below(4) {
            g.mutate(&mut def, 0);
        }
        let v = validate(&def);
        for p in &v.problems {
            assert!(p.path.starts_with('$'), "round {round}: problem without a JSON path: {p:?}");
            assert!(!p.problem.is_empty(), "round {round}: empty problem text at {}", p.path);
        }
        match v.definition {
            Some(d) => {
                accepted += 1;
                assert!(v.problems.iter().all(|p| p.severity == Severity::Warning), "round {round}: accepted with errors");
                let again = validate(&d.to_canonical_json());
                assert_eq!(again.definition.as_ref(), Some(&d), "round {round}: canonical form does not round-trip");
                let m = CompiledMachine::from_definition(&d, 1);
                assert!(m.has_state(&m.initial));
            }
            None => {
                refused += 1;
                assert!(v.problems.iter().any(|p| p.severity == Severity::Error), "round {round}: refused without an error");
            }
        }
    }
    // The generator must exercise both outcomes, or this test proves little.
    assert!(accepted > 500 && refused > 5_000, "accepted {accepted}, refused {refused}");
}

#[test]
fn arbitrary_json_text_never_panics() {
    let mut g = Gen(fastrand::Rng::with_seed(42));
    for _ in 0..5_000 {
        let text = g.value(0).to_string();
        let cut = g.below(text.len() + 1);
        let _ = statemachine_core::validate_text(&text[..cut]);
        let _ = statemachine_core::validate_text(&text);
    }
}
