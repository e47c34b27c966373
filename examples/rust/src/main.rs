//! pg_statemachine from Rust (tokio-postgres): the seed investigation case, start to review.
//!
//! Connects with the standard libpq variables (PGHOST, PGPORT, PGUSER, PGDATABASE).
//! Usage: cargo run -p statemachine-example -- CASE_NUMBER

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls, Row};
use uuid::Uuid;

const OWNER: Uuid = Uuid::from_u128(0xa0000000_0000_0000_0000_000000000001);
const SUPERVISOR: Uuid = Uuid::from_u128(0xa0000000_0000_0000_0000_000000000002);
const MACHINE: &str = include_str!("../../investigation.json");

type Error = Box<dyn std::error::Error>;

/// transition_case, retried on SM003 with the *same* command_id: if the first attempt did
/// commit after all, the retry returns its row instead of moving the case twice.
async fn transition(
    db: &Client,
    case_id: Uuid,
    code: &str,
    actor: Uuid,
    role: &str,
    command_id: Uuid,
    mut expected_version: Option<i64>,
) -> Result<Row, tokio_postgres::Error> {
    let stale = SqlState::from_code("SM003");
    let mut attempt = 0;
    loop {
        attempt += 1;
        match db
            .query_one(
                "SELECT from_state, to_state, state_version, id FROM statemachine.transition_case(\
                 $1, $2, $3, $4, $5, expected_version => $6)",
                &[&case_id, &code, &actor, &role, &command_id, &expected_version],
            )
            .await
        {
            // Three attempts, like the other examples; after that the SM003 goes to the caller.
            Err(e) if e.code() == Some(&stale) && attempt < 3 => {
                println!("SM003: the case moved since we read it; re-reading and retrying with the same command_id");
                let row = db.query_one("SELECT state_version FROM statemachine.case_file WHERE id = $1", &[&case_id]).await?;
                expected_version = Some(row.get(0));
            }
            other => return other,
        }
    }
}

async fn show_available(db: &Client, case_id: Uuid, role: &str) -> Result<(), Error> {
    let rows = db
        .query(
            "SELECT transition_code, to_state, requires_reason, requires_evidence, allowed, blocked_by \
             FROM statemachine.available_transitions($1, $2) ORDER BY transition_code",
            &[&case_id, &role],
        )
        .await?;
    for r in rows {
        let needs: Vec<&str> = [("reason", r.get::<_, bool>(2)), ("evidence", r.get::<_, bool>(3))]
            .into_iter()
            .filter_map(|(name, on)| on.then_some(name))
            .collect();
        let mut line = format!("available to {role}: {} -> {}", r.get::<_, &str>(0), r.get::<_, &str>(1));
        if !needs.is_empty() {
            line += &format!(" (needs {})", needs.join(", "));
        }
        if !r.get::<_, bool>(4) {
            line += &format!(" blocked: {}", r.get::<_, Option<&str>>(5).unwrap_or(""));
        }
        println!("{line}");
    }
    Ok(())
}

/// The libpq environment variables tokio-postgres does not read by itself.
fn config_from_env() -> Config {
    let mut config = Config::new();
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    config.host(var("PGHOST").as_deref().unwrap_or("/var/run/postgresql"));
    config.port(var("PGPORT").and_then(|p| p.parse().ok()).unwrap_or(5432));
    let user = var("PGUSER").or_else(|| var("USER")).unwrap_or_else(|| "postgres".into());
    config.dbname(var("PGDATABASE").as_deref().unwrap_or(&user));
    config.user(&user);
    config
}

async fn run(case_number: &str) -> Result<(), Error> {
    let (db, connection) = config_from_env().connect(NoTls).await?;
    tokio::spawn(connection);

    db.execute("SELECT statemachine.define_machine($1::text::jsonb)", &[&MACHINE]).await?;
    let created = db
        .query_one(
            "SELECT id, current_state FROM statemachine.create_case('investigation', $1, $2, 'CASE_OWNER', $3)",
            &[&case_number, &OWNER, &Uuid::new_v4()],
        )
        .await?;
    let case_id: Uuid = created.get(0);
    println!("created case {case_number} in {}", created.get::<_, &str>(1));
    show_available(&db, case_id, "CASE_OWNER").await?;

    // The supervisor's screen was loaded at version 0; then the owner submitted.
    let seen: i64 = db.query_one("SELECT state_version FROM statemachine.case_file WHERE id = $1", &[&case_id]).await?.get(0);
    println!("the supervisor's screen shows version {seen}");
    let row = transition(&db, case_id, "SUBMIT_CASE", OWNER, "CASE_OWNER", Uuid::new_v4(), None).await?;
    println!("the owner submits: {} -> {} (version {})", row.get::<_, &str>(0), row.get::<_, &str>(1), row.get::<_, i64>(2));

    let command = Uuid::new_v4();
    let row = transition(&db, case_id, "ASSIGN_REVIEW", SUPERVISOR, "SUPERVISOR", command, Some(seen)).await?;
    println!("ASSIGN_REVIEW: {} -> {} (version {})", row.get::<_, &str>(0), row.get::<_, &str>(1), row.get::<_, i64>(2));
    let again = transition(&db, case_id, "ASSIGN_REVIEW", SUPERVISOR, "SUPERVISOR", command, None).await?;
    let same = again.get::<_, Uuid>(3) == row.get::<_, Uuid>(3);
    println!("replayed the same command_id: {}", if same { "same history row" } else { "A NEW ROW?!" });

    match transition(&db, case_id, "CLOSE_CASE", SUPERVISOR, "SUPERVISOR", Uuid::new_v4(), None).await {
        Ok(_) => println!("CLOSE_CASE was allowed?!"),
        // SM001's HINT lists what is legal from here: worth showing to a person.
        Err(e) => match e.as_db_error() {
            Some(db_error) => {
                println!("{}: {}", db_error.code().code(), db_error.message());
                println!("hint for the user: {}", db_error.hint().unwrap_or(""));
            }
            None => return Err(e.into()),
        },
    }
    show_available(&db, case_id, "REVIEWER").await?;
    Ok(())
}

fn main() -> Result<(), Error> {
    let case_number = std::env::args().nth(1).ok_or("usage: statemachine-example CASE_NUMBER")?;
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(run(&case_number))
}
