//! `shmex call`: sends one request on a request-response exchange and prints
//! the response.

use super::{
    common_help, emit, millis, next_option, port_failure, Common, Failure, Place, Positionals,
};
use crate::args::{Args, UsageError};
use shmex::{Pattern, RecvError, SendError};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Help text of `shmex call`.
pub const HELP: &str = concat!(
    "\
Usage: shmex call EXCHANGE MESSAGE [--tag T] [--timeout-ms MS] [--wait-server-ms MS]
                  [--hex] [LIMITS] [--namespace NS] [--root DIR]

Sends MESSAGE as one request on the request-response exchange EXCHANGE
(created when missing) and prints the response's payload on stdout. Put `--`
before a MESSAGE that starts with '-'.

Options:
  --tag T               the request's tag (default 0)
  --timeout-ms MS       how long to wait for the response once a server is
                        found (default 5000)
  --wait-server-ms MS   when no server is attached, keep trying for up to MS
                        milliseconds instead of failing at once
  --hex                 print the payload in hexadecimal (default: UTF-8,
                        invalid bytes replaced)
",
    common_help!(),
    "
Exit status: 0 when a response was printed; 1 when there is no server, the
response did not come in time, the server failed the request (dropped it, or
left before answering) or another runtime error happened; 2 on a usage error.
"
);

/// What `call` was asked for.
struct Options {
    place: Place,
    exchange: String,
    message: String,
    tag: u64,
    timeout: Duration,
    wait_server: Option<Duration>,
    hex: bool,
}

fn parse(args: Vec<String>) -> Result<Option<Options>, UsageError> {
    let mut args = Args::new(args);
    let mut common = Common::default();
    let mut pos = Positionals::new(["EXCHANGE", "MESSAGE"]);
    let (mut tag, mut timeout, mut wait_server, mut hex) = (0, 5000, None, false);
    while let Some(opt) = next_option(&mut args, &mut pos, &mut common)? {
        match opt.name.as_str() {
            "--tag" => tag = args.number(&opt, 0, u64::MAX)?,
            "--timeout-ms" => timeout = args.number(&opt, 1, super::MAX_MS)?,
            "--wait-server-ms" => {
                wait_server = Some(millis(args.number(&opt, 0, super::MAX_MS)?))
            }
            "--hex" => {
                opt.flag()?;
                hex = true;
            }
            "-h" | "--help" => return Ok(None),
            _ => return Err(opt.unknown()),
        }
    }
    let [exchange, message] = pos.finish()?;
    let place = common.resolve()?;
    if message.len() > place.limits.chunk_size {
        return Err(UsageError(format!(
            "MESSAGE of {} bytes exceeds the chunk size of {} bytes (see --chunk-size)",
            message.len(),
            place.limits.chunk_size
        )));
    }
    Ok(Some(Options {
        place,
        exchange,
        message,
        tag,
        timeout: millis(timeout),
        wait_server,
        hex,
    }))
}

fn exec(o: Options) -> Result<(), Failure> {
    let ex = o
        .place
        .open("call", &o.exchange, Pattern::RequestResponse)?;
    let client = ex.client().map_err(port_failure)?;
    let start = Instant::now();
    let wait_deadline = o.wait_server.map(|w| start + w);
    // Set once a server is found: --timeout-ms covers sending (retried while
    // every server's inbox is full) and waiting for the response.
    let mut deadline = None;
    loop {
        match client.request(o.tag, o.message.as_bytes()) {
            Ok(()) => {
                deadline.get_or_insert(Instant::now() + o.timeout);
                break;
            }
            Err(SendError::NoServer) => match wait_deadline {
                Some(d) if Instant::now() < d => std::thread::sleep(Duration::from_millis(2)),
                Some(_) => {
                    return Err(Failure::Runtime(format!(
                        "no server on exchange {:?}: none attached within {} ms",
                        o.exchange,
                        o.wait_server.unwrap_or_default().as_millis()
                    )))
                }
                None => {
                    return Err(Failure::Runtime(format!(
                        "no server on exchange {:?} (start one, e.g. `shmex serve {}`, or \
                         wait for one with --wait-server-ms)",
                        o.exchange, o.exchange
                    )))
                }
            },
            Err(e @ (SendError::QueueFull | SendError::PoolExhausted { .. })) => {
                let now = Instant::now();
                if now >= *deadline.get_or_insert(now + o.timeout) {
                    return Err(Failure::Runtime(format!(
                        "timed out after {} ms: the request could not be sent: {e}",
                        o.timeout.as_millis()
                    )));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(Failure::Runtime(format!("cannot send the request: {e}"))),
        }
    }
    let left = deadline.map_or(o.timeout, |d| d.saturating_duration_since(Instant::now()));
    let outcome = match client.receive_timeout(left) {
        Ok(response) if response.tag() == o.tag => emit(None, &response, o.hex),
        Ok(response) => Err(Failure::Runtime(format!(
            "the response carries tag {}, the request had tag {}",
            response.tag(),
            o.tag
        ))),
        Err(RecvError::Timeout) => Err(Failure::Runtime(format!(
            "timed out: no response within {} ms",
            o.timeout.as_millis()
        ))),
        Err(e @ RecvError::RequestFailed { .. }) => Err(Failure::Runtime(e.to_string())),
        Err(e) => Err(Failure::Runtime(format!("receive failed: {e}"))),
    };
    outcome
}

/// Runs `shmex call` with the arguments after `call`.
pub fn run(args: Vec<String>) -> ExitCode {
    super::run("call", HELP, args, parse, exec)
}
