//! `shmex sub`: subscribes to a publish-subscribe exchange and prints what
//! arrives, one `KEY PAYLOAD` line per publication.

use super::{
    common_help, emit, millis, next_option, port_failure, Common, Failure, Place, Positionals,
};
use crate::args::{Args, UsageError};
use shmex::{Pattern, RecvError};
use std::process::ExitCode;
use std::time::Duration;

/// Help text of `shmex sub`.
pub const HELP: &str = concat!(
    "\
Usage: shmex sub EXCHANGE PATTERN [--count N] [--timeout-ms MS] [--tag T] [--hex]
                 [LIMITS] [--namespace NS] [--root DIR]

Subscribes to the publish-subscribe exchange EXCHANGE (created when missing)
with the topic PATTERN (words separated by '.'; '*' matches one word, '#' zero
or more) and prints one line per publication: its routing key, a space, its
payload. Stdout is flushed after every line.

Options:
  --count N           exit after N publications (default 0: run until killed)
  --timeout-ms MS     exit with status 1 when nothing arrives for MS milliseconds
  --tag T             the subscription's tag (default 0)
  --hex               print payloads in hexadecimal (default: UTF-8, invalid
                      bytes replaced)
",
    common_help!(),
    "
Publications missed because the inbox was full are counted on stderr at exit.

Exit status: 0 after N publications, 1 on timeout or a runtime error, 2 on a
usage error.
"
);

/// What `sub` was asked for.
struct Options {
    place: Place,
    exchange: String,
    pattern: String,
    count: u64,
    timeout: Option<Duration>,
    tag: u64,
    hex: bool,
}

fn parse(args: Vec<String>) -> Result<Option<Options>, UsageError> {
    let mut args = Args::new(args);
    let mut common = Common::default();
    let mut pos = Positionals::new(["EXCHANGE", "PATTERN"]);
    let (mut count, mut timeout, mut tag, mut hex) = (0, None, 0, false);
    while let Some(opt) = next_option(&mut args, &mut pos, &mut common)? {
        match opt.name.as_str() {
            "--count" => count = args.number(&opt, 0, u64::MAX)?,
            "--timeout-ms" => timeout = Some(millis(args.number(&opt, 1, super::MAX_MS)?)),
            "--tag" => tag = args.number(&opt, 0, u64::MAX)?,
            "--hex" => {
                opt.flag()?;
                hex = true;
            }
            "-h" | "--help" => return Ok(None),
            _ => return Err(opt.unknown()),
        }
    }
    let [exchange, pattern] = pos.finish()?;
    shmex::topic::Topic::parse(&pattern)
        .map_err(|reason| UsageError(format!("invalid topic pattern {pattern:?}: {reason}")))?;
    Ok(Some(Options {
        place: common.resolve()?,
        exchange,
        pattern,
        count,
        timeout,
        tag,
        hex,
    }))
}

fn exec(o: Options) -> Result<(), Failure> {
    let ex = o
        .place
        .open("sub", &o.exchange, Pattern::PublishSubscribe)?;
    let sub = ex.subscriber(&o.pattern, o.tag).map_err(port_failure)?;
    let mut received = 0u64;
    let result = loop {
        if o.count != 0 && received >= o.count {
            break Ok(());
        }
        let sample = match o.timeout {
            Some(t) => sub.receive_timeout(t),
            None => sub.receive(),
        };
        match sample {
            Ok(s) => {
                received += 1;
                if let Err(e) = emit(Some(s.key().unwrap_or("?")), &s, o.hex) {
                    break Err(e);
                }
            }
            Err(RecvError::Timeout) => {
                let of = match o.count {
                    0 => String::new(),
                    n => format!(" of {n}"),
                };
                break Err(Failure::Runtime(format!(
                    "timed out: nothing arrived for {} ms ({received}{of} received)",
                    o.timeout.map_or(0, |t| t.as_millis())
                )));
            }
            Err(e) => break Err(Failure::Runtime(format!("receive failed: {e}"))),
        }
    };
    let gaps = sub.gaps();
    if gaps > 0 {
        eprintln!("shmex sub: {gaps} publications missed (inbox full)");
    }
    result
}

/// Runs `shmex sub` with the arguments after `sub`.
pub fn run(args: Vec<String>) -> ExitCode {
    super::run("sub", HELP, args, parse, exec)
}
