//! define_machine, validate_machine, machine_definition.

use crate::fmgr::{datum_text, text_datum, uuid_from_datum, Args, SmResult};
use crate::spi::{Spi, Stmt, BOOL, INT4, INTERVAL, TEXT, UUID};
use crate::{door, sql_function};
use pgrx::pg_sys;
use statemachine_core::{validate_text, CaseFacts, MachineDef, Refusal, Validation};

static INSERT_MACHINE: Stmt = Stmt {
    sql: "INSERT INTO statemachine.machine (code) VALUES ($1) ON CONFLICT DO NOTHING",
    args: &[TEXT],
};
/// Serializes publishing per machine, so version numbers never race.
static LOCK_MACHINE: Stmt = Stmt {
    sql: "SELECT 1 FROM statemachine.machine m WHERE m.code OPERATOR(pg_catalog.=) $1 FOR UPDATE",
    args: &[TEXT],
};
static LATEST_DEFINITION: Stmt = Stmt {
    sql: "SELECT v.version, v.definition OPERATOR(pg_catalog.=) $2::pg_catalog.jsonb \
          FROM statemachine.machine_version v WHERE v.machine OPERATOR(pg_catalog.=) $1 \
          ORDER BY v.version DESC LIMIT 1",
    args: &[TEXT, TEXT],
};
static INSERT_VERSION: Stmt = Stmt {
    sql: "INSERT INTO statemachine.machine_version (machine, version, description, definition) \
          VALUES ($1, $2, $3, $4::pg_catalog.jsonb) RETURNING id",
    args: &[TEXT, INT4, TEXT, TEXT],
};
static INSERT_STATE: Stmt = Stmt {
    sql: "INSERT INTO statemachine.state (machine_version_id, code, label, phase, is_initial, is_terminal, sort_order, attributes) \
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8::pg_catalog.jsonb)",
    args: &[UUID, TEXT, TEXT, TEXT, BOOL, BOOL, INT4, TEXT],
};
static INSERT_RULE: Stmt = Stmt {
    sql: "INSERT INTO statemachine.transition_rule (machine_version_id, from_state, transition_code, to_state, \
              requires_reason, requires_evidence, min_time_in_state, kind) \
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    args: &[UUID, TEXT, TEXT, TEXT, BOOL, BOOL, INTERVAL, TEXT],
};
static INSERT_ROLE: Stmt = Stmt {
    sql: "INSERT INTO statemachine.transition_rule_role (machine_version_id, from_state, transition_code, role_code) \
          VALUES ($1, $2, $3, $4)",
    args: &[UUID, TEXT, TEXT, TEXT],
};
static DEFINITION_OF: Stmt = Stmt {
    sql: "SELECT v.definition FROM statemachine.machine_version v \
          WHERE v.machine OPERATOR(pg_catalog.=) $1 AND ($2 IS NULL OR v.version OPERATOR(pg_catalog.=) $2) \
          ORDER BY v.version DESC LIMIT 1",
    args: &[TEXT, INT4],
};

fn validate_arg(args: &Args) -> SmResult<Validation> {
    let d = args.required(0, "definition")?;
    Ok(validate_text(&datum_text(d, pg_sys::JSONBOID)))
}

fn bool_datum(b: bool) -> Option<pg_sys::Datum> {
    Some(pg_sys::Datum::from(b))
}

unsafe fn define_machine(fcinfo: pg_sys::FunctionCallInfo) -> SmResult<pg_sys::Datum> {
    let args = Args(fcinfo);
    let validation = validate_arg(&args)?;
    let Some(def) = validation.definition else {
        return Err(Refusal::InvalidDefinition { problems: validation.problems }.report(&CaseFacts::default()));
    };
    let canonical = def.to_canonical_json().to_string();
    let spi = Spi::connect();
    let name = Some(text_datum(&def.machine));
    let _door = door::open();
    spi.run(&INSERT_MACHINE, &[name], 0);
    spi.run(&LOCK_MACHINE, &[name], 0);
    let latest = spi.run(&LATEST_DEFINITION, &[name, Some(text_datum(&canonical))], 1);
    let next = match (latest.i32(0, 1), latest.bool(0, 2)) {
        (Some(v), Some(true)) => return Ok(pg_sys::Datum::from(v)),
        (Some(v), _) => v + 1,
        (None, _) => 1,
    };
    publish(&spi, &def, next, &canonical);
    Ok(pg_sys::Datum::from(next))
}

fn publish(spi: &Spi, def: &MachineDef, version: i32, canonical: &str) {
    let opt_text = |s: &Option<String>| s.as_deref().map(text_datum);
    let v = spi.run(
        &INSERT_VERSION,
        &[Some(text_datum(&def.machine)), Some(pg_sys::Datum::from(version)), opt_text(&def.description), Some(text_datum(canonical))],
        1,
    );
    let id = v.get(0, 1).map(|d| unsafe { uuid_from_datum(d) }).expect("INSERT ... RETURNING id returned a row");
    let idd = Some(crate::fmgr::uuid_datum(&id));
    for (i, s) in def.states.iter().enumerate() {
        spi.run(
            &INSERT_STATE,
            &[
                idd,
                Some(text_datum(&s.code)),
                opt_text(&s.label),
                opt_text(&s.phase),
                bool_datum(s.initial),
                bool_datum(s.terminal),
                Some(pg_sys::Datum::from(def.effective_sort_order(i))),
                Some(text_datum(&serde_json_object(&s.attributes))),
            ],
            0,
        );
    }
    for t in &def.transitions {
        for from in &t.from {
            let (f, c) = (Some(text_datum(from)), Some(text_datum(&t.code)));
            spi.run(
                &INSERT_RULE,
                &[
                    idd,
                    f,
                    c,
                    Some(text_datum(&t.to)),
                    bool_datum(t.requires_reason),
                    bool_datum(t.requires_evidence),
                    t.min_time_in_state.as_ref().map(crate::fmgr::interval_datum),
                    Some(text_datum(t.kind.as_str())),
                ],
                0,
            );
            for role in &t.roles {
                spi.run(&INSERT_ROLE, &[idd, f, c, Some(text_datum(role))], 0);
            }
        }
    }
}

fn serde_json_object(m: &serde_json::Map<String, serde_json::Value>) -> String {
    serde_json::Value::Object(m.clone()).to_string()
}

unsafe fn validate_machine(fcinfo: pg_sys::FunctionCallInfo) -> SmResult<pg_sys::Datum> {
    let args = Args(fcinfo);
    let validation = validate_arg(&args)?;
    let rows: Vec<[Option<String>; 3]> = validation
        .problems
        .iter()
        .map(|p| [Some(p.severity.as_str().to_owned()), Some(p.path.clone()), Some(p.problem.clone())])
        .collect();
    crate::available::return_text_rows(fcinfo, &rows);
    Ok(pg_sys::Datum::from(0usize))
}

unsafe fn machine_definition(fcinfo: pg_sys::FunctionCallInfo) -> SmResult<pg_sys::Datum> {
    let args = Args(fcinfo);
    let machine = args.text(0, "machine")?;
    let version = args.opt_i32(1);
    let spi = Spi::connect();
    let rows = spi.run(&DEFINITION_OF, &[Some(text_datum(&machine)), args.datum(1)], 1);
    match rows.get(0, 1) {
        Some(d) => Ok(spi.keep(d)),
        None => Err(Refusal::UnknownMachine { machine, version }.report(&CaseFacts::default())),
    }
}

sql_function!(sm_define_machine, pg_finfo_sm_define_machine, define_machine);
sql_function!(sm_validate_machine, pg_finfo_sm_validate_machine, validate_machine);
sql_function!(sm_machine_definition, pg_finfo_sm_machine_definition, machine_definition);

