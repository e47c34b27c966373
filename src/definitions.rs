//! define_machine, validate_machine, machine_definition, register_guard.

use crate::door::{self, refuse_inside_guard, Grant, Op};
use crate::fmgr::{jsonb_text, text_datum, uuid_datum, Args, SmResult};
use crate::spi::{Spi, Stmt, BOOL, INT4, INTERVAL, OID, TEXT, TEXT_ARRAY, UUID};
use crate::sql_function;
use pgrx::{pg_sys, IntoDatum};
use statemachine_core::{validate_text, CaseFacts, GuardSpec, MachineDef, Problem, Refusal, Severity, Validation};

static INSERT_MACHINE: Stmt = Stmt {
    sql: "INSERT INTO statemachine.machine (code) VALUES ($1) ON CONFLICT DO NOTHING",
    args: &[TEXT],
};
/// Serializes publishing, migrating and retiring per machine, so versions never race.
pub static LOCK_MACHINE: Stmt = Stmt {
    sql: "SELECT 1 FROM ONLY statemachine.machine m WHERE m.code OPERATOR(pg_catalog.=) $1 FOR UPDATE",
    args: &[TEXT],
};
static LATEST_DEFINITION: Stmt = Stmt {
    sql: "SELECT v.version, v.definition OPERATOR(pg_catalog.=) $2::pg_catalog.jsonb \
          FROM ONLY statemachine.machine_version v WHERE v.machine OPERATOR(pg_catalog.=) $1 \
          ORDER BY v.version DESC LIMIT 1",
    args: &[TEXT, TEXT],
};
static INSERT_VERSION: Stmt = Stmt {
    sql: "INSERT INTO statemachine.machine_version (machine, version, description, role_source, corrections, definition, assign_roles) \
          VALUES ($1, $2, $3, $4, $5, $6::pg_catalog.jsonb, $7) RETURNING id",
    args: &[TEXT, INT4, TEXT, TEXT, TEXT, TEXT, TEXT_ARRAY],
};
static INSERT_STATE: Stmt = Stmt {
    sql: "INSERT INTO statemachine.state (machine_version_id, code, label, phase, is_initial, is_terminal, sort_order, attributes) \
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8::pg_catalog.jsonb)",
    args: &[UUID, TEXT, TEXT, TEXT, BOOL, BOOL, INT4, TEXT],
};
static INSERT_RULE: Stmt = Stmt {
    sql: "INSERT INTO statemachine.transition_rule (machine_version_id, from_state, transition_code, to_state, \
              requires_reason, requires_evidence, evidence_types, audit_guards, emit_event, fire_after, kind) \
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    args: &[UUID, TEXT, TEXT, TEXT, BOOL, BOOL, TEXT_ARRAY, BOOL, TEXT, INTERVAL, TEXT],
};
static INSERT_INVARIANT: Stmt = Stmt {
    sql: "INSERT INTO statemachine.state_invariant (machine_version_id, position, when_state, dimension, allowed_states) \
          VALUES ($1, $2, $3, $4, $5)",
    args: &[UUID, INT4, TEXT, TEXT, TEXT_ARRAY],
};
static INSERT_REASON: Stmt = Stmt {
    sql: "INSERT INTO statemachine.transition_reason (machine_version_id, from_state, transition_code, reason_code, label, sort_order) \
          VALUES ($1, $2, $3, $4, $5, $6)",
    args: &[UUID, TEXT, TEXT, TEXT, TEXT, INT4],
};
static INSERT_GUARD: Stmt = Stmt {
    sql: "INSERT INTO statemachine.transition_guard (machine_version_id, from_state, transition_code, position, guard_code, \
              guard_kind, min_time_in_state, other_transition, assignment_role, guard_name, params) \
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, COALESCE($11::pg_catalog.jsonb, '{}'::pg_catalog.jsonb))",
    args: &[UUID, TEXT, TEXT, INT4, TEXT, TEXT, INTERVAL, TEXT, TEXT, TEXT, TEXT],
};
static GUARD_REGISTERED: Stmt = Stmt {
    sql: "SELECT 1 FROM ONLY statemachine.guard_function g WHERE g.code OPERATOR(pg_catalog.=) $1",
    args: &[TEXT],
};
/// What register_guard needs to know about a function (search_path is pinned by the
/// entry point, so catalog names here resolve to pg_catalog).
static INSPECT_FUNCTION: Stmt = Stmt {
    sql: "SELECT p.oid::regprocedure::text, \
                 p.pronargs = 2 AND p.proargtypes[0] = 'uuid'::regtype AND p.proargtypes[1] = 'jsonb'::regtype, \
                 array_to_string(p.proargtypes::regtype[], ', '), p.proretset, p.provolatile::text, p.prokind::text, \
                 p.prorettype = 'bool'::regtype, \
                 (SELECT count(*) FILTER (WHERE c.n = 'passed' AND c.t = 'bool'::regtype) \
                       + count(*) FILTER (WHERE c.n = 'evidence' AND c.t = 'jsonb'::regtype) \
                    FROM (SELECT a.n, a.t FROM unnest(p.proargnames, p.proargmodes::text[], p.proallargtypes) AS a(n, m, t) \
                           WHERE a.m IN ('o', 'b', 't') \
                          UNION ALL \
                          SELECT att.attname::text, att.atttypid FROM pg_type ty JOIN pg_attribute att ON att.attrelid = ty.typrelid \
                           WHERE ty.oid = p.prorettype AND ty.typtype = 'c' AND att.attnum > 0 AND NOT att.attisdropped) c) = 2, \
                 pg_get_function_result(p.oid), \
                 COALESCE(o.rolsuper OR p.proowner = x.extowner, false), o.rolname::text, \
                 (SELECT substr(c, 13) FROM unnest(p.proconfig) AS c WHERE c LIKE 'search_path=%' LIMIT 1), \
                 l.lanname::text \
          FROM pg_proc p JOIN pg_roles o ON o.oid = p.proowner JOIN pg_language l ON l.oid = p.prolang \
          LEFT JOIN pg_extension x ON x.extname = 'pg_statemachine' \
          WHERE p.oid = $1",
    args: &[OID],
};
static UPSERT_GUARD_FUNCTION: Stmt = Stmt {
    sql: "INSERT INTO statemachine.guard_function AS g (code, function, returns, description, registered_at) \
          VALUES ($1, $2::pg_catalog.oid::pg_catalog.regprocedure, $3, $4, pg_catalog.now()) \
          ON CONFLICT (code) DO UPDATE SET function = excluded.function, returns = excluded.returns, \
              description = excluded.description, registered_at = excluded.registered_at, registered_by = excluded.registered_by \
          RETURNING ROW(g.*)::statemachine.guard_function",
    args: &[TEXT, OID, TEXT, TEXT],
};
static INSERT_ROLE: Stmt = Stmt {
    sql: "INSERT INTO statemachine.transition_rule_role (machine_version_id, from_state, transition_code, role_code) \
          VALUES ($1, $2, $3, $4)",
    args: &[UUID, TEXT, TEXT, TEXT],
};
static DEFINITION_OF: Stmt = Stmt {
    sql: "SELECT v.definition FROM ONLY statemachine.machine_version v \
          WHERE v.machine OPERATOR(pg_catalog.=) $1 AND ($2 IS NULL OR v.version OPERATOR(pg_catalog.=) $2) \
          ORDER BY v.version DESC LIMIT 1",
    args: &[TEXT, INT4],
};

/// Validates the definition argument, including what only the database knows: every
/// `sql` guard must name a registered guard function.
fn validate_arg(args: &Args, spi: &Spi) -> SmResult<Validation> {
    let mut v = validate_text(&jsonb_text(args, 0, "definition")?);
    if let Some(def) = &v.definition {
        let missing: Vec<Problem> = def
            .sql_guard_names()
            .into_iter()
            .filter(|(_, name)| spi.run(&GUARD_REGISTERED, &[Some(text_datum(name))], 1).is_empty())
            .map(|(path, name)| Problem {
                severity: Severity::Error,
                path,
                problem: format!("guard function {name:?} is not registered (statemachine.register_guard)"),
            })
            .collect();
        if !missing.is_empty() {
            v.problems.extend(missing);
            v.definition = None;
        }
    }
    Ok(v)
}

fn bool_datum(b: bool) -> Option<pg_sys::Datum> {
    Some(pg_sys::Datum::from(b))
}

fn define_machine(args: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("define_machine")?;
    let spi = Spi::connect();
    let validation = validate_arg(args, &spi)?;
    let Some(def) = validation.definition else {
        return Err(Refusal::InvalidDefinition { problems: validation.problems }.report(&CaseFacts::default()));
    };
    let canonical = def.to_canonical_json().to_string();
    let name = Some(text_datum(&def.machine));
    const WRITES: &[Grant] = &[
        ("machine", Op::Insert),
        ("machine_version", Op::Insert),
        ("state", Op::Insert),
        ("state_invariant", Op::Insert),
        ("transition_rule", Op::Insert),
        ("transition_rule_role", Op::Insert),
        ("transition_reason", Op::Insert),
        ("transition_guard", Op::Insert),
    ];
    let _door = door::open(WRITES);
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
        &[
            Some(text_datum(&def.machine)),
            Some(pg_sys::Datum::from(version)),
            opt_text(&def.description),
            Some(text_datum(def.role_source.as_str())),
            Some(text_datum(if def.correct_any { "any" } else { "latest" })),
            Some(text_datum(canonical)),
            def.assign_roles.clone().into_datum(),
        ],
        1,
    );
    let id = v.uuid(0, 1).expect("INSERT ... RETURNING id returns a row");
    let idd = Some(uuid_datum(&id));
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
    for (i, inv) in def.invariants.iter().enumerate() {
        spi.run(
            &INSERT_INVARIANT,
            &[
                idd,
                Some(pg_sys::Datum::from(i as i32)),
                Some(text_datum(&inv.when)),
                Some(text_datum(&inv.dimension)),
                inv.allowed.clone().into_datum(),
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
                    bool_datum(t.evidence.is_required()),
                    Some(t.evidence.types().to_vec()).filter(|v| !v.is_empty()).and_then(IntoDatum::into_datum),
                    bool_datum(t.audit_guards),
                    opt_text(&t.emit),
                    t.after.as_ref().map(crate::fmgr::interval_datum),
                    Some(text_datum(t.kind.as_str())),
                ],
                0,
            );
            for role in &t.roles {
                spi.run(&INSERT_ROLE, &[idd, f, c, Some(text_datum(role))], 0);
            }
            for (i, r) in t.reasons.iter().enumerate() {
                let pos = Some(pg_sys::Datum::from(i as i32));
                spi.run(&INSERT_REASON, &[idd, f, c, Some(text_datum(&r.code)), Some(text_datum(&r.label)), pos], 0);
            }
            for (i, g) in t.all_guards().iter().enumerate() {
                let (mut min, mut other, mut role, mut name, mut params) = (None, None, None, None, None);
                match &g.spec {
                    GuardSpec::MinTimeInState(iv) => min = Some(crate::fmgr::interval_datum(iv)),
                    GuardSpec::DistinctActor { transition } => other = Some(text_datum(transition)),
                    GuardSpec::RequiresAssignment { role: r } => role = Some(text_datum(r)),
                    GuardSpec::Sql { name: n, params: p } => {
                        name = Some(text_datum(n));
                        params = Some(text_datum(&serde_json_object(p)));
                    }
                }
                spi.run(
                    &INSERT_GUARD,
                    &[
                        idd,
                        f,
                        c,
                        Some(pg_sys::Datum::from(i as i32)),
                        Some(text_datum(&g.code)),
                        Some(text_datum(g.spec.kind())),
                        min,
                        other,
                        role,
                        name,
                        params,
                    ],
                    0,
                );
            }
        }
    }
}

fn serde_json_object(m: &serde_json::Map<String, serde_json::Value>) -> String {
    serde_json::Value::Object(m.clone()).to_string()
}

fn validate_machine(args: &Args) -> SmResult<pg_sys::Datum> {
    let validation = {
        let spi = Spi::read_only();
        validate_arg(args, &spi)?
    };
    let rows: Vec<[Option<String>; 3]> = validation
        .problems
        .iter()
        .map(|p| [Some(p.severity.as_str().to_owned()), Some(p.path.clone()), Some(p.problem.clone())])
        .collect();
    // SAFETY: validate_machine is declared RETURNS TABLE (severity text, path text, problem text).
    unsafe { crate::srf::return_text_rows(args, &rows) };
    Ok(pg_sys::Datum::from(0usize))
}

fn machine_definition(args: &Args) -> SmResult<pg_sys::Datum> {
    let machine = args.text(0, "machine")?;
    let version = args.opt_i32(1);
    let spi = Spi::read_only();
    let rows = spi.run(&DEFINITION_OF, &[Some(text_datum(&machine)), args.datum(1)], 1);
    match rows.get(0, 1) {
        Some(d) => Ok(spi.keep(d)),
        None => Err(Refusal::UnknownMachine { machine, version }.report(&CaseFacts::default())),
    }
}

/// A guard's unqualified names must not reach objects the caller controls: a function in
/// a language that resolves names (anything but C and internal) must pin its search_path,
/// with pg_temp named last — PostgreSQL searches pg_temp first for relations unless the
/// path names it, so `SET search_path = policy` would read a caller's temporary view
/// `approval_policy` before `policy.approval_policy`.
fn search_path_problem(search_path: Option<&str>, language: &str) -> Option<String> {
    if matches!(language, "c" | "internal") {
        return None;
    }
    let Some(path) = search_path else {
        return Some(format!(
            "is LANGUAGE {language} without SET search_path; pin it with pg_temp last (e.g. SET search_path = myschema, pg_temp) so a caller's temporary objects cannot stand in for what it reads"
        ));
    };
    let schemas = search_path_schemas(path);
    match schemas.iter().position(|s| s == "pg_temp") {
        Some(i) if i + 1 == schemas.len() => None,
        _ => Some(format!(
            "has SET search_path = {path}, which searches pg_temp before the schemas it names; name pg_temp last (SET search_path = <its schemas>, pg_temp)"
        )),
    }
}

/// The schema names of a search_path setting, as PostgreSQL splits it: commas separate
/// names except inside double quotes; unquoted names fold to lower case ("x, pg_temp"
/// quoted is one schema of that name, not pg_temp).
fn search_path_schemas(path: &str) -> Vec<String> {
    let mut names = Vec::new();
    let (mut name, mut quoted, mut in_quotes) = (String::new(), false, false);
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if in_quotes && chars.peek() == Some(&'"') => {
                name.push('"');
                chars.next();
            }
            '"' => {
                in_quotes = !in_quotes;
                quoted = true;
            }
            ',' if !in_quotes => {
                names.push(std::mem::take(&mut name));
                quoted = false;
            }
            c if in_quotes => name.push(c),
            c if c.is_whitespace() => {}
            c => name.push(if quoted { c } else { c.to_ascii_lowercase() }),
        }
    }
    names.push(name);
    names.into_iter().filter(|n| !n.is_empty()).collect()
}

fn register_guard(args: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("register_guard")?;
    let code = args.text(0, "code")?;
    if let Some(problem) = statemachine_core::definition::code_problem(&code) {
        return Err(Refusal::InvalidArgument { name: "code".into(), problem: format!("{code:?} {problem}") }.report(&CaseFacts::default()));
    }
    let function = args.required(1, "function")?;
    let description = args.text(2, "description")?;
    let spi = Spi::connect();
    let f = spi.run(&INSPECT_FUNCTION, &[Some(function)], 1);
    let invalid = |function: String, problem: String| Err(Refusal::GuardFunctionInvalid { function, problem }.report(&CaseFacts::default()));
    let Some(name) = f.text(0, 1) else {
        return invalid(format!("with oid {}", function.value()), "does not exist".into());
    };
    let returns = if f.bool(0, 7) == Some(true) {
        "boolean"
    } else if f.bool(0, 8) == Some(true) {
        "verdict"
    } else {
        return invalid(name, format!("returns {}", f.text(0, 9).unwrap_or_default()));
    };
    let problem = if f.bool(0, 2) != Some(true) {
        Some(format!("takes ({})", f.text(0, 3).unwrap_or_default()))
    } else if f.bool(0, 4) == Some(true) {
        Some("returns a set".to_string())
    } else if f.text(0, 6).as_deref() != Some("f") {
        Some("is not a plain function".to_string())
    } else if f.text(0, 5).as_deref() == Some("v") {
        Some("is VOLATILE; a guard decides and does not write, so it must be STABLE or IMMUTABLE".to_string())
    } else {
        None
    };
    if let Some(problem) = problem {
        return invalid(name, problem);
    }
    if let Some(problem) = search_path_problem(f.text(0, 12).as_deref(), f.text(0, 13).as_deref().unwrap_or_default()) {
        return invalid(name, problem);
    }
    if f.bool(0, 10) != Some(true) {
        return Err(Refusal::GuardFunctionOwner { function: name, owner: f.text(0, 11).unwrap_or_default() }.report(&CaseFacts::default()));
    }
    const WRITES: &[Grant] = &[("guard_function", Op::Insert), ("guard_function", Op::Update)];
    let _door = door::open(WRITES);
    let row = spi.run(
        &UPSERT_GUARD_FUNCTION,
        &[Some(text_datum(&code)), Some(function), Some(text_datum(returns)), Some(text_datum(&description))],
        1,
    );
    crate::sql_guard::guards_changed();
    match row.get(0, 1) {
        Some(d) => Ok(spi.keep(d)),
        None => unreachable!("INSERT ... ON CONFLICT DO UPDATE ... RETURNING returns its row"),
    }
}

sql_function!(sm_register_guard, pg_finfo_sm_register_guard, register_guard);
sql_function!(sm_define_machine, pg_finfo_sm_define_machine, define_machine);
sql_function!(sm_validate_machine, pg_finfo_sm_validate_machine, validate_machine);
sql_function!(sm_machine_definition, pg_finfo_sm_machine_definition, machine_definition);

