//! machine_diagram(): a published version drawn as Mermaid or Graphviz DOT, from the
//! same compiled rules the write path decides with (core's `diagram` module renders).

use crate::fmgr::{text_datum, Args, SmResult};
use crate::spi::Spi;
use crate::sql_function;
use pgrx::pg_sys;
use statemachine_core::diagram::{render, Format};
use statemachine_core::{CaseFacts, Refusal};

fn machine_diagram(a: &Args) -> SmResult<pg_sys::Datum> {
    let machine = a.text(0, "machine")?;
    let number = a.opt_i32(1);
    let format_name = a.text(2, "format")?;
    let format = Format::parse(&format_name).ok_or_else(|| {
        Refusal::InvalidArgument {
            name: "format".into(),
            problem: format!("{format_name:?} is not one of {}", Format::NAMES.join(", ")),
        }
        .report(&CaseFacts::default())
    })?;
    let text = {
        let spi = Spi::read_only();
        // No version: the latest active one, the version new cases get.
        let id = match number {
            // Retired versions too: their cases may still be pinned to them.
            Some(n) => crate::versions::version(&spi, &machine, n)?.0,
            None => spi
                .run(&crate::machines::LATEST_VERSION, &[Some(text_datum(&machine))], 1)
                .uuid(0, 1)
                .ok_or_else(|| Refusal::UnknownMachine { machine, version: None }.report(&CaseFacts::default()))?,
        };
        render(&crate::machines::get(&spi, &id), format)
    };
    // Built after SPI is finished, so it lives in the caller's memory context.
    Ok(text_datum(&text))
}

sql_function!(sm_machine_diagram, pg_finfo_sm_machine_diagram, machine_diagram);
