//! `shmex`: the command-line companion of the shmex runtime.
//!
//! - `shmex demo` runs request-response, publish-subscribe and fan-in between
//!   real processes (this binary re-executed as children) and prints latency
//!   and throughput figures;
//! - `shmex ls` lists the nodes and exchanges of a namespace.
//!
//! Argument parsing ([`args`]) and JSON output ([`json`]) are hand-written to
//! keep the tool free of dependencies beyond the runtime itself.

mod args;
mod demo;
mod json;
mod ls;

use std::process::ExitCode;

/// Top-level usage, printed by `shmex --help` (stdout) and on a usage error
/// (stderr).
const USAGE: &str = "\
shmex: zero-copy messaging between processes on one host

Usage:
  shmex demo [--namespace NS] [--root DIR] [--requests N] [--spin-us US]
             [--timeout SECS]
  shmex ls [--json] [--namespace NS] [--root DIR]
  shmex help [COMMAND]

Commands:
  demo   run request-response, publish-subscribe and fan-in between real
         processes and print latency and throughput figures
  ls     list the nodes and exchanges of a namespace
  help   print this help, or a command's help

Environment:
  SHMEX_NAMESPACE  namespace to use (default \"default\")
  SHMEX_ROOT       folder of the segment files (default /dev/shm)

Run `shmex COMMAND --help` for a command's options.
";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    }
    let command = args.remove(0);
    match command.as_str() {
        "demo" => demo::run(args),
        "ls" => ls::run(args),
        demo::CHILD_COMMAND => demo::child::run(args),
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
        Some("ls") => print!("{}", ls::HELP),
        Some(other) => {
            eprintln!("shmex help: unknown command {other:?}\n");
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
