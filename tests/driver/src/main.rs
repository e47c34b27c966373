//! pg_statemachine through a real client driver (the Rust `postgres` crate) over a socket:
//! 1. every SM SQLSTATE arrives at the client as such, with DETAIL and HINT;
//! 2. guards as a client sees them: SM002/SM004/SM005 with their DETAIL and HINT, a guard
//!    function's own SQLSTATE passed through with a CONTEXT naming the guard;
//! 3. a model-based property test (model.rs): random machines and commands, outcomes
//!    compared with an independent model;
//! 4. hostile inputs (hostile.rs): NULL in every argument of every function, oversized inputs;
//! 5. many concurrent clients hammer a few cases (lock and compare-and-swap modes, retries
//!    with the same command_id); afterwards reconcile() is empty and versions are gapless.
//!
//! Connection from SM_DATABASE_URL, machine files from SM_EXAMPLES. Ends with
//! "N passed, N failed".

mod hostile;
mod model;

use postgres::error::SqlState;
use postgres::{Client, NoTls};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

const CLIENTS: usize = 16;
const COMMANDS_PER_CLIENT: usize = 150;
const CASES: usize = 4;

fn connect() -> Client {
    let url = std::env::var("SM_DATABASE_URL").expect("SM_DATABASE_URL");
    Client::connect(&url, NoTls).expect("connect")
}

fn example(name: &str) -> String {
    let dir = std::env::var("SM_EXAMPLES").expect("SM_EXAMPLES");
    std::fs::read_to_string(format!("{dir}/{name}")).expect("example file")
}

/// Runs `sql` expecting an error with `code`; returns a failure description otherwise.
fn expect_code(c: &mut Client, sql: &str, code: &str) -> Result<(), String> {
    match c.batch_execute(sql) {
        Ok(()) => Err(format!("expected {code}, statement succeeded: {sql}")),
        Err(e) => {
            let db = e.as_db_error().ok_or_else(|| format!("not a database error: {e}"))?;
            if db.code().code() != code {
                return Err(format!("expected {code}, got {}: {}", db.code().code(), db.message()));
            }
            if code.starts_with("SM") && code != "SM010" && db.detail().is_none() {
                return Err(format!("{code} arrived without DETAIL"));
            }
            Ok(())
        }
    }
}

fn sqlstates(c: &mut Client) -> Vec<(String, Result<(), String>)> {
    let inv = example("investigation.json").replace('\'', "''");
    let prod = example("product_status.json").replace('\'', "''");
    c.batch_execute(&format!(
        "CREATE EXTENSION IF NOT EXISTS pg_statemachine;
         SELECT statemachine.define_machine('{inv}');
         SELECT statemachine.define_machine('{prod}');
         SELECT statemachine.create_case('investigation', 'D-1', 'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER', 'd0000000-0000-0000-0000-000000000001', 'dd000000-0000-0000-0000-000000000001');
         SELECT statemachine.create_case('product_status', 'D-2', 'a0000000-0000-0000-0000-000000000001', 'ADMIN', 'd0000000-0000-0000-0000-000000000002', 'dd000000-0000-0000-0000-000000000002');
         SELECT statemachine.transition_case('dd000000-0000-0000-0000-000000000002', 'DISCONTINUE', 'a0000000-0000-0000-0000-000000000001', 'ADMIN', 'd0000000-0000-0000-0000-000000000003', reason_code => 'EOL');"
    ))
    .expect("fixtures");
    let t = |code: &str, role: &str, cmd: &str, extra: &str| {
        format!("SELECT statemachine.transition_case('dd000000-0000-0000-0000-000000000001', '{code}', 'a0000000-0000-0000-0000-000000000001', '{role}', '{cmd}'{extra})")
    };
    let cases: Vec<(&str, String)> = vec![
        ("SM001", t("APPROVE_CASE", "REVIEWER", "d1000000-0000-0000-0000-000000000001", "")),
        ("SM002", "SELECT statemachine.transition_case('dd000000-0000-0000-0000-000000000002', 'DELETE_PRODUCT', 'a0000000-0000-0000-0000-000000000001', 'ADMIN', 'd1000000-0000-0000-0000-000000000002')".into()),
        ("SM003", t("SUBMIT_CASE", "CASE_OWNER", "d1000000-0000-0000-0000-000000000003", ", expected_version => 9")),
        ("SM006", t("SUBMIT_CASE", "REVIEWER", "d1000000-0000-0000-0000-000000000006", "")),
        ("SM007", "UPDATE statemachine.case_file SET current_state = 'APPROVED'".into()),
        ("SM008", t("SUBMIT_CASE", "CASE_OWNER", "d0000000-0000-0000-0000-000000000003", "")),
        ("SM009", "SELECT statemachine.transition_case('99999999-0000-0000-0000-000000000000', 'X', 'a0000000-0000-0000-0000-000000000001', 'R', 'd1000000-0000-0000-0000-000000000009')".into()),
        ("SM010", "SELECT statemachine.define_machine('{\"machine\": \"bad\", \"states\": []}')".into()),
    ];
    let mut out: Vec<(String, Result<(), String>)> = cases.iter().map(|(code, sql)| (format!("sqlstate {code}"), expect_code(c, sql, code))).collect();
    // SM004 and SM005 need the case under review first.
    c.batch_execute(&format!(
        "{}; {}",
        t("SUBMIT_CASE", "CASE_OWNER", "d2000000-0000-0000-0000-000000000001", ""),
        t("ASSIGN_REVIEW", "SUPERVISOR", "d2000000-0000-0000-0000-000000000002", "")
    ))
    .expect("advance");
    out.push(("sqlstate SM004".into(), expect_code(c, &t("REJECT_CASE", "REVIEWER", "d1000000-0000-0000-0000-000000000004", ""), "SM004")));
    out.push(("sqlstate SM005".into(), expect_code(c, &t("APPROVE_CASE", "REVIEWER", "d1000000-0000-0000-0000-000000000005", ", reason_text => 'ok'"), "SM005")));
    // SM001's HINT lists the legal transitions for the UI.
    let hint = match c.batch_execute(&t("CLOSE_CASE", "SUPERVISOR", "d1000000-0000-0000-0000-000000000010", "")) {
        Err(e) => e.as_db_error().and_then(|d| d.hint().map(str::to_owned)),
        Ok(()) => None,
    };
    out.push((
        "SM001 hint lists legal transitions".into(),
        if hint.as_deref() == Some("Legal from UNDER_REVIEW: APPROVE_CASE (-> APPROVED), REJECT_CASE (-> REJECTED).") {
            Ok(())
        } else {
            Err(format!("unexpected hint {hint:?}"))
        },
    ));
    out
}

/// The error a statement raises, if any.
fn error_of(c: &mut Client, sql: &str) -> Option<postgres::error::DbError> {
    c.batch_execute(sql).err().and_then(|e| e.as_db_error().cloned())
}

fn guards(c: &mut Client) -> Vec<(String, Result<(), String>)> {
    c.batch_execute(
        r#"CREATE FUNCTION public.driver_policy(case_id uuid, context jsonb) RETURNS boolean LANGUAGE plpgsql STABLE SET search_path = public, pg_temp AS $$
           BEGIN RAISE EXCEPTION USING ERRCODE = 'PX001', MESSAGE = 'policy service says no', DETAIL = 'case type unknown'; END $$;
           SELECT statemachine.register_guard('driver_policy', 'public.driver_policy(uuid,jsonb)', 'raises its own SQLSTATE');
           SELECT statemachine.define_machine('{"machine": "driver_guarded",
             "states": [{"code": "OPEN", "initial": true}, {"code": "SUBMITTED"}, {"code": "DONE", "terminal": true}],
             "transitions": [
               {"code": "SUBMIT", "from": "OPEN", "to": "SUBMITTED"},
               {"code": "APPROVE", "from": "SUBMITTED", "to": "DONE", "requires_evidence": ["REVIEW_REPORT"],
                "guards": [{"guard": "distinct_actor", "transition": "SUBMIT"}]},
               {"code": "REJECT", "from": "SUBMITTED", "to": "DONE", "requires_reason": true,
                "reasons": [{"code": "DUPLICATE", "label": "Duplicate"}]},
               {"code": "ASK_POLICY", "from": "SUBMITTED", "to": "SUBMITTED", "guards": [{"guard": "sql", "name": "driver_policy"}]}]}');
           SELECT statemachine.create_case('driver_guarded', 'G-1', 'a0000000-0000-0000-0000-000000000001', 'CLERK', 'e0000000-0000-0000-0000-000000000001', 'e1000000-0000-0000-0000-0000000000e1');
           SELECT statemachine.transition_case('e1000000-0000-0000-0000-0000000000e1', 'SUBMIT', 'a0000000-0000-0000-0000-000000000001', 'CLERK', 'e0000000-0000-0000-0000-000000000002');
           SELECT statemachine.add_evidence('e1000000-0000-0000-0000-0000000000e1', 'PHOTO', 's3://p', 'sha256:p', 'a0000000-0000-0000-0000-000000000001');"#,
    )
    .expect("guard fixtures");
    let t = |code: &str, actor: &str, extra: &str| {
        format!("SELECT statemachine.transition_case('e1000000-0000-0000-0000-0000000000e1', '{code}', '{actor}', 'R', gen_random_uuid(){extra})")
    };
    let (submitter, reviewer) = ("a0000000-0000-0000-0000-000000000001", "a0000000-0000-0000-0000-000000000002");
    let evidence_of = |ty: &str| format!(", evidence_ids => ARRAY(SELECT id FROM statemachine.case_evidence WHERE evidence_type = '{ty}')");
    let mut out: Vec<(String, Result<(), String>)> = Vec::new();
    let mut check = |name: &str, ok: bool, got: Option<postgres::error::DbError>| {
        out.push((format!("guards: {name}"), if ok { Ok(()) } else { Err(format!("{got:?}")) }));
    };

    let e = error_of(c, &t("APPROVE", reviewer, &evidence_of("PHOTO")));
    let ok = e.as_ref().is_some_and(|e| e.code().code() == "SM005" && e.message() == "transition APPROVE requires evidence of type REVIEW_REPORT");
    check("SM005 names the missing evidence type", ok, e);

    c.batch_execute("SELECT statemachine.add_evidence('e1000000-0000-0000-0000-0000000000e1', 'REVIEW_REPORT', 's3://r', 'sha256:r', 'a0000000-0000-0000-0000-000000000001')")
        .expect("report");
    let e = error_of(c, &t("APPROVE", submitter, &evidence_of("REVIEW_REPORT")));
    let ok = e.as_ref().is_some_and(|e| e.code().code() == "SM002" && e.detail().is_some_and(|d| d.contains("also performed SUBMIT")));
    check("SM002 four-eyes, DETAIL names the earlier transition", ok, e);

    let e = error_of(c, &t("REJECT", reviewer, ", reason_code => 'NOPE'"));
    let ok = e.as_ref().is_some_and(|e| e.code().code() == "SM004" && e.hint() == Some("Allowed reason codes for REJECT: DUPLICATE (Duplicate)."));
    check("SM004 HINT lists the allowed reason codes", ok, e);

    let e = error_of(c, &t("ASK_POLICY", reviewer, ""));
    let ok = e.as_ref().is_some_and(|e| {
        e.code().code() == "PX001"
            && e.message() == "policy service says no"
            && e.detail() == Some("case type unknown")
            && e.where_().is_some_and(|w| w.contains("statemachine guard driver_policy (public.driver_policy(uuid,jsonb)) of transition ASK_POLICY"))
    });
    check("a guard's own SQLSTATE arrives unchanged, CONTEXT names the guard", ok, e);

    let e = error_of(c, &t("APPROVE", reviewer, &evidence_of("REVIEW_REPORT")));
    let done: Option<String> = c
        .query_one("SELECT current_state FROM statemachine.case_file WHERE id = 'e1000000-0000-0000-0000-0000000000e1'", &[])
        .ok()
        .map(|r| r.get(0));
    check("another actor with the report approves", e.is_none() && done.as_deref() == Some("DONE"), e);
    out
}

/// A cheap deterministic generator per client.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn hammer(c: &mut Client) -> Vec<(String, Result<(), String>)> {
    // A machine that cycles forever, so every command is legal from some state.
    c.batch_execute(
        r#"SELECT statemachine.define_machine('{"machine": "cycle", "states": [{"code": "A", "initial": true}, {"code": "B"}, {"code": "C"}], "transitions": [{"code": "AB", "from": "A", "to": "B"}, {"code": "BC", "from": "B", "to": "C"}, {"code": "CA", "from": "C", "to": "A"}, {"code": "STAY", "from": ["A", "B", "C"], "to": "A"}]}');"#,
    )
    .expect("cycle machine");
    for i in 0..CASES {
        c.execute(
            "SELECT statemachine.create_case('cycle', $1, gen_random_uuid(), 'R', gen_random_uuid(), $2::text::uuid)",
            &[&format!("H-{i}"), &format!("ee000000-0000-0000-0000-00000000000{i}")],
        )
        .expect("create case");
    }
    let ok = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let replays = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let (ok, refused, replays) = (Arc::clone(&ok), Arc::clone(&refused), Arc::clone(&replays));
            thread::spawn(move || -> Result<(), String> {
                let mut c = connect();
                let mut rng = Lcg(n as u64 + 1);
                let codes = ["AB", "BC", "CA", "STAY"];
                for k in 0..COMMANDS_PER_CLIENT {
                    let case = format!("ee000000-0000-0000-0000-00000000000{}", rng.next() as usize % CASES);
                    let code = codes[rng.next() as usize % codes.len()];
                    let command = format!("f{n:07x}-0000-0000-0000-{k:012x}");
                    let cas = rng.next().is_multiple_of(2);
                    let sql = "SELECT state_version FROM statemachine.transition_case($1::text::uuid, $2, gen_random_uuid(), 'R', $3::text::uuid, \
                               expected_version => CASE WHEN $4 THEN (SELECT state_version FROM statemachine.case_file WHERE id = $1::text::uuid) END)";
                    let result = c.query_one(sql, &[&case, &code, &command, &cas]);
                    match result {
                        Ok(row) => {
                            let v: i64 = row.get(0);
                            ok.fetch_add(1, Ordering::Relaxed);
                            // Retrying the same command (as after a lost reply) returns the same row.
                            if k % 10 == 0 {
                                let again = c.query_one(sql, &[&case, &code, &command, &false]).map_err(|e| e.to_string())?;
                                if again.get::<_, i64>(0) != v {
                                    return Err(format!("replay of {command} returned version {} not {v}", again.get::<_, i64>(0)));
                                }
                                replays.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(e) => {
                            let code = e.code().map(|c| c.code().to_owned()).unwrap_or_default();
                            if code != "SM001" && code != "SM003" && e.code() != Some(&SqlState::T_R_SERIALIZATION_FAILURE) {
                                return Err(format!("unexpected error {code}: {e}"));
                            }
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Ok(())
            })
        })
        .collect();
    let mut out = Vec::new();
    let mut thread_errors: Vec<String> = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => thread_errors.push(e),
            Err(_) => thread_errors.push("client thread panicked".into()),
        }
    }
    let (ok, refused, replays) = (ok.load(Ordering::Relaxed), refused.load(Ordering::Relaxed), replays.load(Ordering::Relaxed));
    println!("hammer: {CLIENTS} clients, {ok} transitions, {refused} refused (SM001/SM003), {replays} replays checked");
    out.push(("hammer: only SM001/SM003 refusals, replays return the same row".into(), if thread_errors.is_empty() { Ok(()) } else { Err(thread_errors.join("; ")) }));
    let disagreements: i64 = c.query_one("SELECT count(*) FROM statemachine.reconcile()", &[]).unwrap().get(0);
    out.push(("hammer: reconcile() is empty".into(), if disagreements == 0 { Ok(()) } else { Err(format!("{disagreements} rows")) }));
    let gaps: i64 = c
        .query_one(
            "SELECT count(*) FROM (SELECT case_id FROM statemachine.case_state_transition GROUP BY case_id
               HAVING count(*) <> max(state_version) + 1 OR min(state_version) <> 0) g",
            &[],
        )
        .unwrap()
        .get(0);
    out.push(("hammer: every case's versions are gapless".into(), if gaps == 0 { Ok(()) } else { Err(format!("{gaps} cases with gaps")) }));
    let chain_breaks: i64 = c
        .query_one(
            "SELECT count(*) FROM statemachine.case_state_transition t JOIN statemachine.case_state_transition p
               ON p.case_id = t.case_id AND p.state_version = t.state_version - 1 WHERE t.from_state <> p.to_state",
            &[],
        )
        .unwrap()
        .get(0);
    out.push(("hammer: each row starts where the previous ended".into(), if chain_breaks == 0 { Ok(()) } else { Err(format!("{chain_breaks} breaks")) }));
    let total: i64 = c.query_one("SELECT count(*) - $1::bigint FROM statemachine.case_state_transition t JOIN statemachine.case_file c ON c.id = t.case_id WHERE c.machine = 'cycle'", &[&(CASES as i64)]).unwrap().get(0);
    out.push(("hammer: one history row per successful transition".into(), if total == ok as i64 { Ok(()) } else { Err(format!("{total} rows for {ok} successes")) }));
    out
}

fn main() {
    let mut c = connect();
    let mut results = sqlstates(&mut c);
    results.extend(guards(&mut c));
    results.extend(model::run(&mut c, 40, 80));
    results.extend(hostile::run(&mut c));
    results.extend(hammer(&mut c));
    let mut failed = 0;
    for (name, r) in &results {
        match r {
            Ok(()) => println!("ok   {name}"),
            Err(e) => {
                failed += 1;
                println!("FAIL {name}: {e}");
            }
        }
    }
    println!("{} passed, {} failed", results.len() - failed, failed);
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
