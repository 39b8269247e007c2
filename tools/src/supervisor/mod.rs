//! `shmex supervisor`: one long-running process per namespace that notices
//! dead and hung nodes, triggers reclaim ([`shmex::Node::reclaim_dead`]) and
//! keeps the config file's static exchanges up.
//!
//! - **Crash detection** ([`daemon`]): every node of the registry whose
//!   process runs gets a pidfd ([`sys::Pidfd`]); the supervisor sleeps in
//!   `ppoll` on all of them, so a process exit wakes it at once and it
//!   reclaims within microseconds. The pidfd is checked against the node's
//!   recorded start time, so a reused pid is never mistaken for the node.
//!   Every tick it also rescans the registry (new nodes, nodes gone) and runs
//!   one reclaim pass as a fallback (processes that died between two scans,
//!   kernels without pidfds).
//! - **Hang detection**: a node whose heartbeat is older than
//!   `--hung-after-ms` is reported hung (once), and alive again when it
//!   recovers; with `--kill-hung` it is killed (SIGKILL through its pidfd)
//!   and then reclaimed like any dead process.
//! - **Static exchanges** ([`config`]): created (persistent by default) or
//!   opened at start and held open; one that disappears (removed) or is
//!   replaced is re-created or re-opened at the next tick.
//! - **Log** ([`log`]): one line per event, human-readable or JSON.
//!
//! Exit status: 0 after SIGTERM or SIGINT, 1 on a runtime error (bad config
//! file, namespace cannot be joined, a static exchange cannot be brought up
//! at start), 2 on a usage error.

mod config;
mod daemon;
mod log;
mod sys;

use crate::args::{Args, NamespaceArgs, UsageError};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Help text of `shmex supervisor`.
pub const HELP: &str = "\
Usage: shmex supervisor [--namespace NS] [--root DIR] [--config FILE]
                        [--hung-after-ms MS] [--kill-hung] [--tick-ms MS] [--json]

Watches a namespace: reclaims what dead processes held as soon as they exit
(through pidfds), reports nodes whose heartbeat stopped (hung) and keeps the
static exchanges of the config file up. Runs until SIGTERM or SIGINT, printing
one line per event (flushed at once).

Options:
  --config FILE       static exchanges to create at start and keep up (TOML):
                        [[exchange]]
                        name = \"orders\"
                        pattern = \"request-response\"  # publish-subscribe, fan-in, tasks
                        chunk_count = 256
                      optional keys (defaults from shmex::Limits): chunk_size,
                      chunk_count, queue_depth, max_ports, mode (\"persistent\"
                      or \"transient\"), permissions (\"0600\" or \"0660\"),
                      ack_timeout_ms, max_deliveries; README.md's \"Supervisor
                      config keys\" table documents each
  --hung-after-ms MS  heartbeat age after which a node counts as hung
                      (default 1000)
  --kill-hung         send SIGKILL to a hung node's process (it is then
                      reclaimed like any dead process)
  --tick-ms MS        how often to rescan the registry, run a fallback reclaim
                      pass and check the static exchanges (default 50)
  --json              one JSON object per line: {\"event\":..}, events start,
                      exchange_up, exchange_recreated, dead, reclaimed, left,
                      hung, alive, busy, error, stop
  -n, --namespace NS  namespace to watch (default: $SHMEX_NAMESPACE, else \"default\")
  --root DIR          root folder; files go in DIR/shmex-UID/ (default: $SHMEX_ROOT,
                      else /dev/shm)
  -h, --help          print this help

Exit status: 0 after SIGTERM or SIGINT, 1 on a runtime error (bad config file,
namespace cannot be joined, static exchange cannot be brought up at start),
2 on a usage error.
";

/// What the supervisor was asked for.
#[derive(Debug)]
pub struct Options {
    namespace: shmex::Namespace,
    config: Option<PathBuf>,
    hung_after: Duration,
    kill_hung: bool,
    tick: Duration,
    json: bool,
}

fn parse(args: Vec<String>) -> Result<Option<Options>, UsageError> {
    let mut args = Args::new(args);
    let mut ns = NamespaceArgs::default();
    let mut config = None;
    let mut hung_after = Duration::from_millis(1000);
    let mut kill_hung = false;
    let mut tick = Duration::from_millis(50);
    let mut json = false;
    while let Some(opt) = args.next_opt()? {
        if ns.accept(&mut args, &opt)? {
            continue;
        }
        match opt.name.as_str() {
            "--config" => config = Some(PathBuf::from(args.value(&opt)?)),
            "--hung-after-ms" => {
                hung_after = Duration::from_millis(args.number(&opt, 1, u64::from(u32::MAX))?);
            }
            "--kill-hung" => {
                opt.flag()?;
                kill_hung = true;
            }
            "--tick-ms" => tick = Duration::from_millis(args.number(&opt, 1, 60_000)?),
            "--json" => {
                opt.flag()?;
                json = true;
            }
            "-h" | "--help" => return Ok(None),
            _ => return Err(opt.unknown()),
        }
    }
    Ok(Some(Options {
        namespace: ns.resolve()?,
        config,
        hung_after,
        kill_hung,
        tick,
        json,
    }))
}

/// Runs `shmex supervisor` with the arguments after `supervisor`.
pub fn run(args: Vec<String>) -> ExitCode {
    let opts = match crate::args::parse_or_exit("supervisor", HELP, args, parse) {
        Ok(o) => o,
        Err(status) => return status,
    };
    let config = match &opts.config {
        None => config::Config::default(),
        Some(path) => match config::Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("shmex supervisor: {e}");
                return ExitCode::from(1);
            }
        },
    };
    // Group access only inside a namespace shared with a group.
    if opts.namespace.share_group.is_none() {
        if let Some(x) = config.exchanges.iter().find(|x| x.limits.mode == 0o660) {
            let file = opts.config.as_deref().unwrap_or(std::path::Path::new("-"));
            eprintln!(
                "shmex supervisor: config file {}: exchange {:?}: permissions \"0660\" need a \
                 namespace shared with a group (set SHMEX_SHARE_GROUP)",
                file.display(),
                x.name
            );
            return ExitCode::from(1);
        }
    }
    match daemon::run(opts, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmex supervisor: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(list: &[&str]) -> Result<Option<Options>, UsageError> {
        parse(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn defaults_and_options() {
        let o = parsed(&["--namespace", "x"]).unwrap().unwrap();
        assert_eq!(o.namespace.name, "x");
        assert_eq!(o.hung_after, Duration::from_millis(1000));
        assert_eq!(o.tick, Duration::from_millis(50));
        assert!(!o.kill_hung && !o.json && o.config.is_none());

        let o = parsed(&[
            "--config=/tmp/c.toml",
            "--hung-after-ms",
            "300",
            "--kill-hung",
            "--tick-ms",
            "10",
            "--json",
            "--root",
            "/tmp",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(o.config, Some(PathBuf::from("/tmp/c.toml")));
        assert_eq!(o.hung_after, Duration::from_millis(300));
        assert_eq!(o.tick, Duration::from_millis(10));
        assert!(o.kill_hung && o.json);
        assert_eq!(o.namespace.root, PathBuf::from("/tmp"));
    }

    #[test]
    fn usage_errors() {
        assert!(parsed(&["--help"]).unwrap().is_none());
        assert!(parsed(&["extra"]).is_err());
        assert!(parsed(&["--tick-ms", "0"]).is_err());
        assert!(parsed(&["--hung-after-ms", "x"]).is_err());
        assert!(parsed(&["--json=1"]).is_err());
        assert!(parsed(&["--kill-hung=yes"]).is_err());
        assert!(parsed(&["--config"]).is_err());
        assert!(parsed(&["--frobnicate"]).is_err());
    }
}
