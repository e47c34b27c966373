//! Hostile inputs through a real client: every function of the schema called with NULL
//! in each argument (the others given plausible values), and with every argument NULL;
//! oversized inputs. Each call must succeed or fail with a clean SQLSTATE — never an
//! internal error (XX000), never a lost connection.

use postgres::Client;

/// A plausible literal for an argument type, or NULL.
fn literal(ty: &str, null: bool) -> String {
    if null {
        return format!("NULL::{ty}");
    }
    match ty {
        "uuid" => "'d0d0d0d0-0000-0000-0000-000000000001'::uuid".into(),
        "text" => "'X'::text".into(),
        "jsonb" => "'{}'::jsonb".into(),
        "integer" => "1".into(),
        "bigint" => "1::bigint".into(),
        "boolean" => "false".into(),
        "interval" => "'1 minute'::interval".into(),
        "timestamp with time zone" => "now()".into(),
        "uuid[]" => "'{}'::uuid[]".into(),
        "regprocedure" => "'pg_catalog.now()'::regprocedure".into(),
        other => format!("NULL::{other}"),
    }
}

pub fn run(c: &mut Client) -> Vec<(String, Result<(), String>)> {
    let functions = c
        .query(
            "SELECT p.proname::text, coalesce(array_agg(format_type(t, NULL) ORDER BY n) FILTER (WHERE t IS NOT NULL), '{}')
               FROM pg_proc p LEFT JOIN LATERAL unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, n) ON true
              WHERE p.pronamespace = 'statemachine'::regnamespace AND p.prorettype <> 'trigger'::regtype
                AND p.prorettype <> 'event_trigger'::regtype
              GROUP BY p.oid, p.proname ORDER BY 1",
            &[],
        )
        .expect("function list");
    let mut calls = 0;
    let mut bad: Vec<String> = Vec::new();
    for f in &functions {
        let (name, types): (String, Vec<String>) = (f.get(0), f.get(1));
        // Each argument NULL in turn, then all of them.
        let mut variants: Vec<Vec<bool>> = (0..types.len()).map(|i| (0..types.len()).map(|j| j == i).collect()).collect();
        variants.push(vec![true; types.len()]);
        for nulls in variants {
            let args: Vec<String> = types.iter().zip(&nulls).map(|(t, n)| literal(t, *n)).collect();
            // In a transaction that is rolled back: some calls succeed and would write.
            let sql = format!("BEGIN; SELECT * FROM statemachine.{name}({}); ROLLBACK;", args.join(", "));
            calls += 1;
            if let Err(e) = c.batch_execute(&sql) {
                let code = e.as_db_error().map(|d| d.code().code().to_string());
                match code.as_deref() {
                    None => bad.push(format!("{name}: not a database error ({e}) for {sql}")),
                    Some("XX000") => bad.push(format!("{name}: internal error {e} for {sql}")),
                    Some(_) => {}
                }
                if c.is_closed() {
                    bad.push(format!("{name}: the connection died on {sql}"));
                    return vec![("hostile: NULL arguments".into(), Err(bad.join("\n")))];
                }
                c.batch_execute("ROLLBACK").ok();
            }
        }
    }
    let mut out = vec![(
        format!("hostile: {calls} calls with NULL arguments over {} functions, no internal error", functions.len()),
        if bad.is_empty() { Ok(()) } else { Err(bad.into_iter().take(5).collect::<Vec<_>>().join("\n")) },
    )];
    // Oversized inputs are refused cleanly.
    let big_code = "X".repeat(1 << 20);
    let states: Vec<String> = (0..1500).map(|i| format!("{{\"code\": \"S{i}\"{}}}", if i == 0 { ", \"initial\": true" } else { "" })).collect();
    let huge_machine = format!("{{\"machine\": \"huge\", \"states\": [{}], \"transitions\": []}}", states.join(", "));
    for (what, sql, want) in [
        (
            "a 1 MiB transition code",
            format!("SELECT statemachine.transition_case('d0d0d0d0-0000-0000-0000-000000000001', '{big_code}', gen_random_uuid(), 'R', gen_random_uuid())"),
            "SM009",
        ),
        ("a definition with 1500 states", format!("SELECT statemachine.define_machine('{huge_machine}')"), "SM010"),
        ("a 1 MiB case number", format!("SELECT statemachine.create_case('nope', '{big_code}', gen_random_uuid(), 'R', gen_random_uuid())"), "SM009"),
    ] {
        let got = c.batch_execute(&sql).err().and_then(|e| e.as_db_error().map(|d| d.code().code().to_string()));
        out.push((format!("hostile: {what} is refused ({want})"), if got.as_deref() == Some(want) { Ok(()) } else { Err(format!("got {got:?}")) }));
    }
    out
}
