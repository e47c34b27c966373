//! govern_table: puts a user's existing table under a machine (see [`crate::governance`]
//! for what governing means at run time). In one transaction: check the mapping of the
//! status column to the machine's states, lock the table and the machine's cases, check
//! every row against its case (rows without one are adopted at their current value, one
//! 'import' history row each marked {"adopted": true}), record the table in
//! statemachine.governed_table, and put the guard trigger on it (ENABLE ALWAYS).

use crate::door::{self, refuse_inside_guard, Grant, Op};
use crate::fmgr::{datum_text, jsonb_text, text_datum, Args, SmResult};
use crate::governance;
use crate::import::{self, Ctx};
use crate::spi::{Spi, Stmt, JSONB, OID, TEXT};
use crate::{history, machines, sql_function};
use pgrx::pg_sys;
use statemachine_core::import::{CaseIn, PlannedStep, StepIn, CREATE_CODE};
use statemachine_core::{CaseFacts, Refusal};
use std::collections::{HashMap, HashSet};

static TABLE: Stmt = Stmt {
    sql: "SELECT $1::pg_catalog.regclass::pg_catalog.text, c.relkind::pg_catalog.text, \
                 pg_catalog.pg_has_role(SESSION_USER, c.relowner, 'USAGE') \
          FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1",
    args: &[OID],
};
/// A column: its number, whether its type's text form is the same in every session (the
/// key is the case number as text, the state a state code: neither may depend on
/// TimeZone, DateStyle or the like), and whether a unique index makes it a key.
static COLUMN: Stmt = Stmt {
    sql: "SELECT a.attnum::pg_catalog.int4, \
                 (SELECT COALESCE(NULLIF(ty.typbasetype, 0), ty.oid) OPERATOR(pg_catalog.=) ANY ('{text,varchar,int2,int4,int8,uuid}'::pg_catalog.regtype[]::pg_catalog.oid[]) \
                         OR ty.typtype OPERATOR(pg_catalog.=) 'e' FROM pg_catalog.pg_type ty WHERE ty.oid OPERATOR(pg_catalog.=) a.atttypid), \
                 EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid OPERATOR(pg_catalog.=) a.attrelid AND i.indisunique \
                          AND i.indnkeyatts OPERATOR(pg_catalog.=) 1 AND i.indkey[0] OPERATOR(pg_catalog.=) a.attnum AND i.indpred IS NULL), \
                 pg_catalog.format_type(a.atttypid, a.atttypmod) \
          FROM pg_catalog.pg_attribute a \
          WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attname::pg_catalog.text OPERATOR(pg_catalog.=) $2 \
            AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped",
    args: &[OID, TEXT],
};
/// The machine's cases, locked until the table is governed: a transition in flight
/// finishes first, and none starts until governing is committed and seen.
static LOCK_CASES: Stmt = Stmt {
    sql: "SELECT c.case_number, c.current_state FROM ONLY statemachine.case_file c \
          WHERE c.machine OPERATOR(pg_catalog.=) $1 AND c.root_case_id IS NULL FOR SHARE",
    args: &[TEXT],
};
static RECORD: Stmt = Stmt {
    sql: "INSERT INTO statemachine.governed_table AS g (table_name, key_column, state_column, machine, state_values, governed_at) \
          VALUES ($1::pg_catalog.regclass, $2::pg_catalog.name, $3::pg_catalog.name, $4, $5, $6) RETURNING ROW(g.*)::statemachine.governed_table",
    args: &[OID, TEXT, TEXT, TEXT, JSONB, pgrx::pg_sys::TIMESTAMPTZOID],
};
static STATES: Stmt = Stmt {
    sql: "SELECT s.code FROM ONLY statemachine.state s WHERE s.machine_version_id OPERATOR(pg_catalog.=) $1 ORDER BY s.sort_order",
    args: &[crate::spi::UUID],
};

/// The metadata of an adopted row's history row.
const ADOPTED_METADATA: &str = r#"{"adopted": true}"#;
/// At most this many problems are listed.
const LISTED: usize = 10;

fn invalid(name: &str, problem: String) -> statemachine_core::Report {
    Refusal::InvalidArgument { name: name.into(), problem }.report(&CaseFacts::default())
}

fn name_arg(a: &Args, i: usize, name: &str) -> SmResult<String> {
    let d = a.required(i, name)?;
    // SAFETY: declared `name`; a non-NULL datum of it.
    Ok(unsafe { datum_text(d, pg_sys::NAMEOID) })
}

fn govern_table(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("govern_table")?;
    if crate::remote_door::distributed() {
        return Err(Refusal::NotOnDistributed {
            function: "govern_table".into(),
            why: "A governed table is the user's own table, kept in step with its cases in the same transaction; on Citus that table and the cases' shards would have to be co-located, which this version does not arrange.".into(),
        }
        .report(&CaseFacts::default()));
    }
    let relid_d = a.required(0, "table_name")?;
    let key_column = name_arg(a, 1, "key_column")?;
    let state_column = name_arg(a, 2, "state_column")?;
    let machine_name = a.text(3, "machine")?;
    let state_values = match a.datum(4) {
        Some(_) => Some(jsonb_text(a, 4, "state_values")?),
        None => None,
    };
    let spi = Spi::connect();

    let t = spi.run(&TABLE, &[Some(relid_d)], 1);
    let (Some(table), Some(kind), Some(owns)) = (t.text(0, 1), t.text(0, 2), t.bool(0, 3)) else {
        return Err(invalid("table_name", "is not a table".into()));
    };
    if kind != "r" {
        return Err(invalid("table_name", format!("{table} is not an ordinary table (relkind {kind})")));
    }
    if !owns {
        return Err(Refusal::InvalidArgument { name: "table_name".into(), problem: format!("{table} is not owned by the session user (or a role it is a member of)") }
            .report(&CaseFacts::default()));
    }
    for (arg, column) in [("key_column", &key_column), ("state_column", &state_column)] {
        let c = spi.run(&COLUMN, &[Some(relid_d), Some(text_datum(column))], 1);
        let (Some(_), Some(plain), Some(unique)) = (c.i32(0, 1), c.bool(0, 2), c.bool(0, 3)) else {
            return Err(invalid(arg, format!("{table} has no column {column}")));
        };
        if !plain {
            let kinds = if arg == "key_column" { "text, varchar, smallint, integer, bigint or uuid" } else { "text, varchar, smallint, integer, bigint, uuid or an enum" };
            let shown = c.text(0, 4).unwrap_or_default();
            return Err(invalid(arg, format!("{column} is of type {shown}; it must be {kinds} (or a domain over one): its text form is what cases are matched by, the same in every session")));
        }
        if arg == "key_column" && !unique {
            return Err(invalid(arg, format!("{column} has no unique index of its own: each row must be one case")));
        }
    }
    if key_column == state_column {
        return Err(invalid("state_column", "must not be the key column".into()));
    }
    let relid = pg_sys::Oid::from(u32::try_from(relid_d.value()).unwrap_or(0));
    if governance::config(&spi).tables.iter().any(|g| g.relid == relid || g.machine == machine_name) {
        return Err(invalid("table_name", format!("{table} or machine {machine_name} is already governed (statemachine.governed_table)")));
    }
    let latest = spi.run(&machines::LATEST_VERSION, &[Some(text_datum(&machine_name))], 1);
    let Some(version_id) = latest.uuid(0, 1) else {
        return Err(Refusal::UnknownMachine { machine: machine_name, version: None }.report(&CaseFacts::default()));
    };
    let machine = machines::get(&spi, &version_id);
    let states_rows = spi.run(&STATES, &[Some(crate::fmgr::uuid_datum(&version_id))], 0);
    let states: Vec<String> = (0..states_rows.count).filter_map(|i| states_rows.text(i, 1)).collect();
    let to_state = mapping(state_values.as_deref(), &states)?;
    let state_of = |value: &str| -> Option<String> {
        match &to_state {
            Some(m) => m.get(value).cloned(),
            None => states.contains(&value.to_owned()).then(|| value.to_owned()),
        }
    };

    let (key_q, state_q) = (governance::quote_ident(&key_column), governance::quote_ident(&state_column));
    spi.run_once(&format!("LOCK TABLE ONLY {table} IN SHARE ROW EXCLUSIVE MODE"));
    let cases = spi.run(&LOCK_CASES, &[Some(text_datum(&machine_name))], 0);
    let cases: HashMap<String, String> = (0..cases.count).filter_map(|i| Some((cases.text(i, 1)?, cases.text(i, 2)?))).collect();
    // The values as their types' output functions print them (a cast to text could run
    // code of the table owner's with this function's rights).
    let rows = spi.run_once(&format!("SELECT t.{key_q}, t.{state_q} FROM ONLY {table} t"));
    let mut problems = Vec::new();
    let mut adopt = Vec::new();
    let mut seen = HashSet::with_capacity(rows.count);
    for i in 0..rows.count {
        let (key, value) = (rows.output_text(i, 1), rows.output_text(i, 2));
        let Some(key) = key else {
            problems.push(format!("a row has {key_column} NULL"));
            continue;
        };
        if !seen.insert(key.clone()) {
            problems.push(format!("key {key} appears twice (as text)"));
            continue;
        }
        let Some(value) = value else {
            problems.push(format!("row {key}: {state_column} is NULL"));
            continue;
        };
        let Some(state) = state_of(&value) else {
            problems.push(format!("row {key}: {value} maps to no state of machine {machine_name}"));
            continue;
        };
        match cases.get(&key) {
            Some(current) if *current != state => problems.push(format!("row {key} says {state}, its case is in {current}")),
            Some(_) => {}
            None => adopt.push((key, state)),
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        problems.truncate(LISTED);
        return Err(invalid("table_name", format!("{n} row(s) of {table} cannot be governed: {}", problems.join("; "))));
    }

    let now = history::now();
    // SAFETY: actor_id, when given, is declared uuid.
    let actor = match a.opt_uuid(5) {
        Some(actor) => actor,
        None => crate::facts::database_actor_id(&spi).unwrap_or([0; 16]),
    };
    let role = a.opt_text(6).unwrap_or_else(|| "ADOPT".into());
    let command = a.opt_uuid(7).unwrap_or_else(|| history::row_id(now));
    let records: Vec<CaseIn> = adopt
        .into_iter()
        .map(|(key, state)| CaseIn {
            case_number: key,
            case_id: None,
            metadata: None,
            steps: vec![StepIn { state, at: String::new(), transition: None, actor_id: None, actor_role: None, reason_code: None, reason_text: None }],
        })
        .collect();
    let times: Vec<Vec<i64>> = records.iter().map(|_| vec![now]).collect();
    let plans: Vec<Vec<PlannedStep>> = records.iter().map(|_| vec![PlannedStep { code: CREATE_CODE.into(), legal: true }]).collect();
    let recorded_by = crate::facts::session_user();
    let ctx = Ctx { now, command: &command, actor: &actor, role: &role, recorded_by: &recorded_by, legal_metadata: ADOPTED_METADATA };
    if import::write(&spi, &machine, &version_id, &records, &times, &plans, &ctx).is_err() {
        return Err(Refusal::CommandInFlight.report(&CaseFacts::default()));
    }

    let row = {
        const WRITES: &[Grant] = &[("governed_table", Op::Insert)];
        let _door = door::open(WRITES);
        let r = spi.run(
            &RECORD,
            &[
                Some(relid_d),
                Some(text_datum(&key_column)),
                Some(text_datum(&state_column)),
                Some(text_datum(&machine_name)),
                state_values.as_deref().map(crate::fmgr::jsonb_datum),
                Some(pg_sys::Datum::from(now)),
            ],
            1,
        );
        r.get(0, 1).map(|d| spi.keep(d))
    };
    // The trigger names its columns (the DDL guard checks they stay).
    let columns = format!("{}, {}", quote_literal(&key_column), quote_literal(&state_column));
    let _governing = door::governing();
    for ddl in [
        format!("CREATE TRIGGER zz_statemachine_governed BEFORE INSERT OR UPDATE OR DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION statemachine.guard_governed_row({columns})"),
        format!("CREATE TRIGGER zz_statemachine_governed_truncate BEFORE TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION statemachine.guard_governed_row({columns})"),
        format!("CREATE TRIGGER zz_statemachine_governed_check AFTER INSERT OR UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION statemachine.guard_governed_row({columns})"),
        format!("ALTER TABLE {table} ENABLE ALWAYS TRIGGER zz_statemachine_governed, ENABLE ALWAYS TRIGGER zz_statemachine_governed_truncate, \
                 ENABLE ALWAYS TRIGGER zz_statemachine_governed_check"),
    ] {
        spi.run_once(&ddl);
    }
    governance::invalidate();
    row.ok_or_else(|| Refusal::CommandInFlight.report(&CaseFacts::default()))
}

/// PostgreSQL's quote_literal (E'' when the text has a backslash, so the literal reads
/// the same whatever standard_conforming_strings says).
fn quote_literal(s: &str) -> String {
    let c = std::ffi::CString::new(s).unwrap_or_default();
    // SAFETY: quote_literal_cstr reads a NUL-terminated string and returns a palloc'd one.
    unsafe {
        let q = pg_sys::quote_literal_cstr(c.as_ptr());
        let out = std::ffi::CStr::from_ptr(q).to_string_lossy().into_owned();
        pg_sys::pfree(q.cast());
        out
    }
}

/// The column's values → states: `state_values` (a JSON object), every state given
/// exactly one value; NULL: the column holds state codes.
fn mapping(state_values: Option<&str>, states: &[String]) -> SmResult<Option<HashMap<String, String>>> {
    let Some(text) = state_values else { return Ok(None) };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text) else {
        return Err(invalid("state_values", "must be a JSON object {\"column value\": \"state\", ...}".into()));
    };
    let mut to_state = HashMap::new();
    let mut per_state: HashMap<&str, Vec<&str>> = HashMap::new();
    for (value, state) in &map {
        let Some(state) = state.as_str() else {
            return Err(invalid("state_values", format!("the state of {value:?} must be a string")));
        };
        let Some(known) = states.iter().find(|s| *s == state) else {
            return Err(invalid("state_values", format!("{state:?} (for {value:?}) is not a state of the machine")));
        };
        per_state.entry(known.as_str()).or_default().push(value.as_str());
        to_state.insert(value.clone(), state.to_owned());
    }
    for s in states {
        match per_state.get(s.as_str()).map(Vec::len) {
            Some(1) => {}
            None => return Err(invalid("state_values", format!("state {s:?} has no value: the column could not show it"))),
            Some(_) => return Err(invalid("state_values", format!("state {s:?} has several values ({}): the column could not tell which to show", per_state[s.as_str()].join(", ")))),
        }
    }
    Ok(Some(to_state))
}

sql_function!(sm_govern_table, pg_finfo_sm_govern_table, govern_table);
