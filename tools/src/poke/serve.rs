//! `shmex serve`: an echo server on a request-response exchange.

use super::{common_help, emit, next_option, port_failure, Common, Failure, Place, Positionals};
use crate::args::{Args, UsageError};
use shmex::Pattern;
use std::process::ExitCode;

/// Help text of `shmex serve`.
pub const HELP: &str = concat!(
    "\
Usage: shmex serve EXCHANGE [--count N] [--prefix STR] [--hex]
                   [LIMITS] [--namespace NS] [--root DIR]

Serves the request-response exchange EXCHANGE (created when missing) as an
echo server: answers each request with its own payload, preceded by STR when
--prefix is given, and prints one line per request: its tag, a space, its
payload. Stdout is flushed after every line. Several servers on one exchange
share its requests.

A request that cannot be answered (the response exceeds the chunk size, the
client left) is reported on stderr; its client is told it failed.

Options:
  --count N           exit after N requests (default 0: run until killed)
  --prefix STR        put STR before each response's payload
  --hex               print payloads in hexadecimal (default: UTF-8, invalid
                      bytes replaced)
",
    common_help!(),
    "
Exit status: 0 after N requests, 1 on a runtime error, 2 on a usage error.
"
);

/// What `serve` was asked for.
struct Options {
    place: Place,
    exchange: String,
    count: u64,
    prefix: String,
    hex: bool,
}

fn parse(args: Vec<String>) -> Result<Option<Options>, UsageError> {
    let mut args = Args::new(args);
    let mut common = Common::default();
    let mut pos = Positionals::new(["EXCHANGE"]);
    let (mut count, mut prefix, mut hex) = (0, String::new(), false);
    while let Some(opt) = next_option(&mut args, &mut pos, &mut common)? {
        match opt.name.as_str() {
            "--count" => count = args.number(&opt, 0, u64::MAX)?,
            "--prefix" => prefix = args.value(&opt)?,
            "--hex" => {
                opt.flag()?;
                hex = true;
            }
            "-h" | "--help" => return Ok(None),
            _ => return Err(opt.unknown()),
        }
    }
    let [exchange] = pos.finish()?;
    let place = common.resolve()?;
    if prefix.len() > place.limits.chunk_size {
        return Err(UsageError(format!(
            "--prefix of {} bytes exceeds the chunk size of {} bytes: no response would fit",
            prefix.len(),
            place.limits.chunk_size
        )));
    }
    Ok(Some(Options {
        place,
        exchange,
        count,
        prefix,
        hex,
    }))
}

fn exec(o: Options) -> Result<(), Failure> {
    let ex = o
        .place
        .open("serve", &o.exchange, Pattern::RequestResponse)?;
    let server = ex.server().map_err(port_failure)?;
    let mut served = 0u64;
    let mut response = Vec::new();
    while o.count == 0 || served < o.count {
        let request = server
            .receive()
            .map_err(|e| Failure::Runtime(format!("receive failed: {e}")))?;
        let tag = request.tag();
        response.clear();
        response.extend_from_slice(o.prefix.as_bytes());
        response.extend_from_slice(&request);
        // Answer first, print after: a slow reader of our stdout must not
        // delay the client.
        if let Err(e) = request.respond(&response) {
            eprintln!("shmex serve: cannot answer request {tag}: {e}");
        }
        served += 1;
        emit(Some(&tag.to_string()), &response[o.prefix.len()..], o.hex)?;
    }
    Ok(())
}

/// Runs `shmex serve` with the arguments after `serve`.
pub fn run(args: Vec<String>) -> ExitCode {
    super::run("serve", HELP, args, parse, exec)
}
