//! `shmex pub`: publishes a message on a publish-subscribe exchange.

use super::{common_help, millis, next_option, port_failure, Common, Failure, Place, Positionals};
use crate::args::{Args, UsageError};
use shmex::Pattern;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Help text of `shmex pub`.
pub const HELP: &str = concat!(
    "\
Usage: shmex pub EXCHANGE KEY MESSAGE [--count N] [--interval-ms MS]
                 [--wait-subscribers N [--wait-ms MS]]
                 [LIMITS] [--namespace NS] [--root DIR]

Publishes MESSAGE under the routing KEY on the publish-subscribe exchange
EXCHANGE (created when missing) and prints \"published N, delivered D,
missed M\" on stderr: D deliveries were queued, M matching subscribers had a
full inbox and missed a publication. Put `--` before a MESSAGE that starts
with '-'.

Options:
  --count N             publish N times (default 1)
  --interval-ms MS      pause between publications (default 0)
  --wait-subscribers N  before publishing, wait until at least N other ports
                        (subscribers) are attached to the exchange
  --wait-ms MS          how long --wait-subscribers waits before failing
                        (default 5000)
",
    common_help!(),
    "
Exit status: 0 when every publication was made (whether or not anyone
received it), 1 when waiting for subscribers timed out or publishing failed,
2 on a usage error.
"
);

/// What `pub` was asked for.
struct Options {
    place: Place,
    exchange: String,
    key: String,
    message: String,
    count: u64,
    interval: Duration,
    wait_subscribers: Option<u32>,
    wait: Duration,
}

fn parse(args: Vec<String>) -> Result<Option<Options>, UsageError> {
    let mut args = Args::new(args);
    let mut common = Common::default();
    let mut pos = Positionals::new(["EXCHANGE", "KEY", "MESSAGE"]);
    let (mut count, mut interval, mut wait_subscribers, mut wait) = (1, 0, None, None);
    while let Some(opt) = next_option(&mut args, &mut pos, &mut common)? {
        match opt.name.as_str() {
            "--count" => count = args.number(&opt, 0, u64::MAX)?,
            "--interval-ms" => interval = args.number(&opt, 0, super::MAX_MS)?,
            "--wait-subscribers" => wait_subscribers = Some(args.number(&opt, 1, 1023)? as u32),
            "--wait-ms" => wait = Some(args.number(&opt, 0, super::MAX_MS)?),
            "-h" | "--help" => return Ok(None),
            _ => return Err(opt.unknown()),
        }
    }
    let [exchange, key, message] = pos.finish()?;
    shmex::topic::check_key(&key)
        .map_err(|reason| UsageError(format!("invalid routing key {key:?}: {reason}")))?;
    if wait.is_some() && wait_subscribers.is_none() {
        return Err(UsageError("--wait-ms needs --wait-subscribers".into()));
    }
    let place = common.resolve()?;
    if message.len() > place.limits.chunk_size {
        return Err(UsageError(format!(
            "MESSAGE of {} bytes exceeds the chunk size of {} bytes (see --chunk-size)",
            message.len(),
            place.limits.chunk_size
        )));
    }
    if let Some(n) = wait_subscribers {
        if n >= place.limits.max_ports {
            return Err(UsageError(format!(
                "--wait-subscribers {n} can never be met: the exchange has {} ports, one \
                 of them this publisher's (see --max-ports)",
                place.limits.max_ports
            )));
        }
    }
    Ok(Some(Options {
        place,
        exchange,
        key,
        message,
        count,
        interval: millis(interval),
        wait_subscribers,
        wait: millis(wait.unwrap_or(5000)),
    }))
}

fn exec(o: Options) -> Result<(), Failure> {
    let ex = o
        .place
        .open("pub", &o.exchange, Pattern::PublishSubscribe)?;
    let publisher = ex.publisher().map_err(port_failure)?;
    if let Some(want) = o.wait_subscribers {
        // `ports()` counts every attached port, this publisher's included.
        let deadline = Instant::now() + o.wait;
        loop {
            let others = ex.ports().saturating_sub(1);
            if others >= want {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Failure::Runtime(format!(
                    "timed out after {} ms waiting for {want} subscribers on {:?} \
                     ({others} attached)",
                    o.wait.as_millis(),
                    o.exchange
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let mut published = 0u64;
    let (mut delivered, mut missed) = (0u64, 0u64);
    let mut result = Ok(());
    for i in 0..o.count {
        if i > 0 && !o.interval.is_zero() {
            std::thread::sleep(o.interval);
        }
        match publisher.send(&o.key, o.message.as_bytes()) {
            Ok(r) => {
                published += 1;
                delivered += u64::from(r.delivered);
                missed += u64::from(r.missed);
            }
            Err(e) => {
                result = Err(Failure::Runtime(format!(
                    "publication {} failed: {e}",
                    published + 1
                )));
                break;
            }
        }
    }
    eprintln!("published {published}, delivered {delivered}, missed {missed}");
    result
}

/// Runs `shmex pub` with the arguments after `pub`.
pub fn run(args: Vec<String>) -> ExitCode {
    super::run("pub", HELP, args, parse, exec)
}
