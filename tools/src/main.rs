//! `shmex`: the command-line companion of the shmex runtime.
//!
//! - `shmex demo` runs request-response, publish-subscribe, fan-in and task
//!   distribution between real processes (this binary re-executed as
//!   children) and prints latency and throughput figures;
//! - `shmex supervisor` watches a namespace: reclaims what dead processes
//!   held as soon as they exit, reports hung nodes and keeps the static
//!   exchanges of its config file up ([`supervisor`]);
//! - `shmex soak` kills peers of every pattern at random moments while
//!   traffic runs and checks nothing leaked, was lost or blocked ([`soak`]);
//! - `shmex ls` lists the nodes and exchanges of a namespace;
//! - `shmex sub` / `shmex pub` subscribe and publish on a publish-subscribe
//!   exchange, `shmex serve` / `shmex call` answer and send requests on a
//!   request-response exchange ([`poke`]), for poking at a running system
//!   from a shell.
//!
//! Argument parsing ([`args`]) and JSON output ([`json`]) are hand-written to
//! keep the tool free of dependencies beyond the runtime itself.

mod args;
mod demo;
mod json;
mod ls;
mod poke;
mod soak;
mod supervisor;

use std::process::ExitCode;

/// Top-level usage, printed by `shmex --help` (stdout) and on a usage error
/// (stderr).
const USAGE: &str = "\
shmex: zero-copy messaging between processes on one host

Usage:
  shmex demo [tasks|stream|dialogue] [--json] [--namespace NS] [--root DIR]
             [--requests N] [--spin-us US] [--stream-mib N] [--tasks N]
             [--dead-letter] [--timeout SECS]
  shmex supervisor [--namespace NS] [--root DIR] [--config FILE]
                   [--hung-after-ms MS] [--kill-hung] [--tick-ms MS] [--json]
  shmex ls [--json] [--namespace NS] [--root DIR]
  shmex sub EXCHANGE PATTERN [--count N] [--timeout-ms MS] [--tag T] [--hex]
  shmex pub EXCHANGE KEY MESSAGE [--count N] [--interval-ms MS]
            [--wait-subscribers N] [--wait-ms MS]
  shmex serve EXCHANGE [--count N] [--prefix STR] [--hex]
              [--stream BYTES [--chunk BYTES]]
  shmex call EXCHANGE MESSAGE [--tag T] [--timeout-ms MS] [--wait-server-ms MS]
             [--hex | --stream [--window N] [--verify]]
  shmex soak [--kills N] [--seed S] [--json] [--namespace NS] [--root DIR]
  shmex help [COMMAND]

sub, pub, serve and call also take --namespace NS, --root DIR and the
exchange limits --chunk-size N, --chunks N, --queue-depth N, --max-ports N;
each opens the exchange, creating it when missing.

Commands:
  demo   run request-response, chunked responses, dialogues,
         publish-subscribe, fan-in and task distribution between real
         processes and print latency and throughput figures (`demo tasks`,
         `demo stream`, `demo dialogue`: that scenario only)
  supervisor
         watch a namespace: reclaim what dead processes held as soon as they
         exit, report hung nodes, keep static exchanges (config file) up
  ls     list the nodes and exchanges of a namespace
  sub    subscribe to a publish-subscribe exchange, print `KEY PAYLOAD` lines
  pub    publish a message on a publish-subscribe exchange
  serve  answer requests on a request-response exchange (echo server, or
         with --stream chunked responses of a known pattern)
  call   send one request on a request-response exchange, print the response
         (with --stream: receive a chunked response, print its GB/s)
  soak   SIGKILL peers of every pattern at random moments while traffic
         runs, then report chunks leaked, acked tasks lost, tasks delivered
         to no one and survivors blocked past their timeout (all must be 0)
  help   print this help, or a command's help

Environment:
  SHMEX_NAMESPACE  namespace to use (default \"default\")
  SHMEX_ROOT       root folder; files go in ROOT/shmex-UID/ (default /dev/shm)
  SHMEX_SHARE_GROUP  share the namespace with this group (ROOT/shmex-gGID/)

Run `shmex COMMAND --help` for a command's options.
";

fn main() -> ExitCode {
    let mut args = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(a) => args.push(a),
            Err(bad) => {
                eprintln!("shmex: argument {bad:?} is not valid UTF-8");
                return ExitCode::from(2);
            }
        }
    }
    if args.is_empty() {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    }
    let command = args.remove(0);
    match command.as_str() {
        "demo" => demo::run(args),
        "supervisor" => supervisor::run(args),
        "ls" => ls::run(args),
        "sub" => poke::sub::run(args),
        "pub" => poke::publish::run(args),
        "serve" => poke::serve::run(args),
        "call" => poke::call::run(args),
        "soak" => soak::run(args),
        demo::CHILD_COMMAND => demo::child::run(args),
        soak::VICTIM_COMMAND => soak::victim::run(args),
        "help" | "--help" | "-h" => help(&args),
        other => {
            eprintln!("shmex: unknown command {other:?}\n");
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// `shmex help [COMMAND]`.
fn help(args: &[String]) -> ExitCode {
    match args.first().map(String::as_str) {
        None => print!("{USAGE}"),
        Some("demo") => print!("{}", demo::HELP),
        Some("supervisor") => print!("{}", supervisor::HELP),
        Some("ls") => print!("{}", ls::HELP),
        Some("sub") => print!("{}", poke::sub::HELP),
        Some("pub") => print!("{}", poke::publish::HELP),
        Some("serve") => print!("{}", poke::serve::HELP),
        Some("call") => print!("{}", poke::call::HELP),
        Some("soak") => print!("{}", soak::HELP),
        Some(other) => {
            eprintln!("shmex help: unknown command {other:?}\n");
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
