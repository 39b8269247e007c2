//! `shmex ls`: the nodes and exchanges of a namespace, read without joining
//! it (the library's [`shmex::list_nodes`] and [`shmex::list_exchanges`]).
//!
//! Human output is two tables; `--json` prints one object:
//! `{"nodes":[...],"exchanges":[...]}`. Each exchange shows its payload type
//! (the table its name, JSON `"payload":{"name","size","align","hash"}` with
//! the hash as a hex string; `bytes` for an untyped exchange). An exchange file that fails validation
//! is listed with its error (`{"name":..,"error":..}`); an unreadable registry
//! adds `"nodes_error"` and makes the exit status 1. A namespace that does not
//! exist has empty lists.

use crate::args::{Args, NamespaceArgs, UsageError};
use crate::json::Json;
use shmex::{ExchangeInfo, Namespace, NodeInfo, SegmentError};
use std::path::Path;
use std::process::ExitCode;

/// Help text of `shmex ls`.
pub const HELP: &str = "\
Usage: shmex ls [--json] [--namespace NS] [--root DIR]

Lists the nodes and exchanges of a namespace without joining it.

Options:
  --json              print one JSON object {\"nodes\":[..],\"exchanges\":[..]}
  -n, --namespace NS  namespace to list (default: $SHMEX_NAMESPACE, else \"default\")
  --root DIR          root folder; files go in DIR/shmex-UID/ (default: $SHMEX_ROOT,
                      else /dev/shm)
  -h, --help          print this help

Exit status: 0 when listed (exchange files that fail validation are listed
with their error), 1 when the namespace registry cannot be read, 2 on a usage
error.
";

/// What `ls` was asked for.
struct Options {
    json: bool,
    namespace: Namespace,
}

fn parse(args: Vec<String>) -> Result<Option<Options>, UsageError> {
    let mut args = Args::new(args);
    let mut json = false;
    let mut ns = NamespaceArgs::default();
    while let Some(opt) = args.next_opt()? {
        if ns.accept(&mut args, &opt)? {
            continue;
        }
        match opt.name.as_str() {
            "--json" => {
                opt.flag()?;
                json = true;
            }
            "-h" | "--help" => return Ok(None),
            _ => return Err(opt.unknown()),
        }
    }
    Ok(Some(Options {
        json,
        namespace: ns.resolve()?,
    }))
}

/// Runs `shmex ls` with the arguments after `ls`.
pub fn run(args: Vec<String>) -> ExitCode {
    let opts = match crate::args::parse_or_exit("ls", HELP, args, parse) {
        Ok(o) => o,
        Err(status) => return status,
    };
    let listing = Listing::read(&opts.namespace);
    if opts.json {
        println!("{}", listing.to_json());
    } else {
        print!("{}", listing.to_table());
    }
    if listing.nodes.is_err() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One exchange file as listed: its name and what reading it gave.
struct ExchangeEntry {
    name: String,
    info: Result<ExchangeInfo, SegmentError>,
}

/// A snapshot of a namespace.
struct Listing {
    namespace: Namespace,
    nodes: Result<Vec<NodeInfo>, SegmentError>,
    exchanges: Vec<ExchangeEntry>,
}

impl Listing {
    fn read(ns: &Namespace) -> Listing {
        let prefix = format!("shmex.{}.x.", ns.name);
        let exchanges = shmex::list_exchanges(ns)
            .into_iter()
            .map(|info| {
                let name = match &info {
                    Ok(i) => i.name.clone(),
                    Err(e) => exchange_name(e.path(), &prefix),
                };
                ExchangeEntry { name, info }
            })
            .collect();
        Listing {
            namespace: ns.clone(),
            nodes: shmex::list_nodes(ns),
            exchanges,
        }
    }

    fn to_json(&self) -> Json {
        let nodes = match &self.nodes {
            Ok(nodes) => nodes.iter().map(node_json).collect(),
            Err(_) => Vec::new(),
        };
        let exchanges = self
            .exchanges
            .iter()
            .map(|e| match &e.info {
                Ok(info) => exchange_json(info),
                Err(err) => Json::Object(vec![
                    ("name", Json::str(&e.name)),
                    ("error", Json::str(err.to_string())),
                ]),
            })
            .collect();
        let mut fields = vec![
            ("nodes", Json::Array(nodes)),
            ("exchanges", Json::Array(exchanges)),
        ];
        if let Err(e) = &self.nodes {
            fields.push(("nodes_error", Json::str(e.to_string())));
        }
        Json::Object(fields)
    }

    fn to_table(&self) -> String {
        let mut out = format!(
            "namespace {} in {}\n\nNODES\n",
            clean(&self.namespace.name),
            clean(&self.namespace.root.display().to_string())
        );
        match &self.nodes {
            Err(e) => out.push_str(&format!("  error: {}\n", clean(&e.to_string()))),
            Ok(nodes) if nodes.is_empty() => out.push_str("  (none)\n"),
            Ok(nodes) => {
                let mut rows = vec![row(&["ID", "NAME", "PID", "STATE", "HEARTBEAT AGE"])];
                for n in nodes {
                    rows.push(vec![
                        n.id.to_string(),
                        clean(&n.name),
                        n.pid.to_string(),
                        n.state.to_string(),
                        format_age(n.heartbeat_age_ms),
                    ]);
                }
                out.push_str(&table(&rows));
            }
        }
        out.push_str("\nEXCHANGES\n");
        if self.exchanges.is_empty() {
            out.push_str("  (none)\n");
            return out;
        }
        let mut rows = vec![row(&[
            "NAME",
            "PATTERN",
            "PAYLOAD",
            "PORTS",
            "HOLDERS",
            "CHUNKS FREE/TOTAL",
            "CHUNK SIZE",
            "QUEUE DEPTH",
            "SIZE",
        ])];
        let mut errors = Vec::new();
        for e in &self.exchanges {
            match &e.info {
                Ok(i) => rows.push(vec![
                    clean(&i.name),
                    i.pattern.to_string(),
                    clean(&i.payload.name),
                    i.ports.to_string(),
                    if i.holders == 0 {
                        "0 (stale)".to_string()
                    } else {
                        i.holders.to_string()
                    },
                    format!("{}/{}", i.chunks_free, i.chunks_total),
                    format_bytes(i.chunk_size),
                    i.queue_depth.to_string(),
                    format_bytes(i.size),
                ]),
                Err(err) => errors.push(format!(
                    "  {}: error: {}\n",
                    clean(&e.name),
                    clean(&err.to_string())
                )),
            }
        }
        if rows.len() > 1 {
            out.push_str(&table(&rows));
        }
        for e in errors {
            out.push_str(&e);
        }
        out
    }
}

fn node_json(n: &NodeInfo) -> Json {
    Json::Object(vec![
        ("name", Json::str(&n.name)),
        ("pid", Json::Num(n.pid.into())),
        ("state", Json::str(n.state)),
        ("heartbeat_age_ms", Json::Num(n.heartbeat_age_ms)),
        ("id", Json::Num(n.id.into())),
    ])
}

fn exchange_json(i: &ExchangeInfo) -> Json {
    Json::Object(vec![
        ("name", Json::str(&i.name)),
        ("pattern", Json::str(i.pattern.as_str())),
        (
            "payload",
            Json::Object(vec![
                ("name", Json::str(&i.payload.name)),
                ("size", Json::Num(i.payload.size)),
                ("align", Json::Num(i.payload.align.into())),
                ("hash", Json::str(format!("{:#018x}", i.payload.hash))),
            ]),
        ),
        ("ports", Json::Num(i.ports.into())),
        ("holders", Json::Num(i.holders.into())),
        ("stale", Json::Bool(i.holders == 0)),
        ("chunks_total", Json::Num(i.chunks_total.into())),
        ("chunks_free", Json::Num(i.chunks_free.into())),
        ("chunk_size", Json::Num(i.chunk_size)),
        ("queue_depth", Json::Num(i.queue_depth.into())),
        ("size", Json::Num(i.size)),
    ])
}

/// `s` with every control character (a terminal escape, a newline, a
/// NUL) written as `\u{..}`: names and messages come from shared memory
/// and file names, which another process chose.
pub(crate) fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Exchange name from its segment path (`ROOT/shmex-UID/shmex.NS.x.NAME`).
fn exchange_name(path: &Path, prefix: &str) -> String {
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match file.strip_prefix(prefix) {
        Some(name) => name.to_string(),
        None => file,
    }
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Left-aligned columns, two spaces apart, indented by two.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::from(" ");
        for (c, cell) in r.iter().enumerate() {
            line.push(' ');
            line.push_str(cell);
            if c + 1 < r.len() {
                let pad = widths[c] - cell.chars().count() + 1;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn format_age(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 120_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min", ms / 60_000)
    }
}

fn format_bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    if n >= KIB * KIB {
        format!("{:.1} MiB", n as f64 / (KIB * KIB) as f64)
    } else if n.is_multiple_of(KIB) && n > 0 {
        format!("{} KiB", n / KIB)
    } else if n >= KIB {
        format!("{:.1} KiB", n as f64 / KIB as f64)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns() {
        let t = table(&[row(&["A", "BB"]), row(&["ccc", "d"])]);
        assert_eq!(t, "  A    BB\n  ccc  d\n");
    }

    #[test]
    fn names_from_paths() {
        let p = Path::new("/dev/shm/shmex.ns.x.a.b");
        assert_eq!(exchange_name(p, "shmex.ns.x."), "a.b");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            super::clean("a\x1b[2Jb\nc\0é"),
            "a\\u{1b}[2Jb\\u{a}c\\u{0}é"
        );
    }

    #[test]
    fn units() {
        assert_eq!(format_bytes(4096), "4 KiB");
        assert_eq!(format_bytes(100), "100 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(format_age(12), "12 ms");
        assert_eq!(format_age(1500), "1.5 s");
    }
}
