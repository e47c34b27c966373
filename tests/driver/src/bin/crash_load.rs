//! Load for the crash test (tests/crash/run): clients transition cases until the deadline,
//! reconnecting after the server goes away. Every command id is logged as `sent <id>`
//! before it is sent and `ack <id>` once its commit returned, each line flushed, so the
//! test can tell what a client saw committed from what was merely in flight.
//! Usage: crash_load <seconds> <log file>; connection from SM_DATABASE_URL.

use postgres::{Client, NoTls};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let log = Arc::new(Mutex::new(std::fs::File::create(args.get(2).map_or("crash_load.log", String::as_str)).expect("log file")));
    let url = std::env::var("SM_DATABASE_URL").expect("SM_DATABASE_URL");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let (log, url) = (Arc::clone(&log), url.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut client: Option<Client> = None;
                while Instant::now() < deadline {
                    let Some(c) = client.as_mut() else {
                        client = Client::connect(&url, NoTls).ok();
                        if client.is_none() {
                            std::thread::sleep(Duration::from_millis(200));
                        }
                        continue;
                    };
                    n += 1;
                    let case = format!("00000000-0000-0000-0000-{:012}", 1 + (t * 7919 + n) % 50);
                    let command = format!("{:08x}-0000-4000-8000-{:012x}", t, n);
                    writeln!(log.lock().unwrap(), "sent {command}").ok();
                    let r = c.execute(
                        "SELECT statemachine.transition_case($1::text::uuid, 'PING', '00000000-0000-0000-0000-0000000000aa', 'AGENT', $2::text::uuid)",
                        &[&case, &command],
                    );
                    match r {
                        Ok(_) => {
                            writeln!(log.lock().unwrap(), "ack {command}").ok();
                        }
                        Err(e) if e.is_closed() || e.as_db_error().is_none() => client = None,
                        Err(_) => {}
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().ok();
    }
    log.lock().unwrap().flush().ok();
}
