//! The supervisor's config file: the static exchanges it creates at start and
//! keeps up.
//!
//! ```toml
//! [[exchange]]
//! name = "orders"
//! pattern = "request-response"
//! chunk_count = 256
//! ```
//!
//! Every key, its default and meaning: the "Supervisor config keys" table
//! of the repository's README.md, the one reference (the test
//! `readme_table_lists_every_key` checks it against this parser).
//!
//! Unknown keys, a missing `name` or `pattern`, an unknown pattern, limits
//! the library refuses ([`Limits::segment_size`]) and duplicate names are
//! errors; each message names the exchange (by position and name) and the
//! problem, and the caller adds the file's path.

use serde::Deserialize;
use shmex::{Limits, Pattern};
use std::path::Path;

/// A parsed, checked config file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// The static exchanges, in file order; names are unique.
    pub exchanges: Vec<StaticExchange>,
}

/// One `[[exchange]]` table, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticExchange {
    /// A valid exchange name ([`shmex::check_exchange_name`]).
    pub name: String,
    /// Its pattern.
    pub pattern: Pattern,
    /// Valid limits (`segment_size()` is `Ok`), `persistent` from `mode`,
    /// `mode` from `permissions`.
    pub limits: Limits,
}

/// The file as written: every key optional so that the checks below can
/// name what is missing; unknown keys are refused by serde.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    exchange: Vec<RawExchange>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExchange {
    name: Option<String>,
    pattern: Option<String>,
    chunk_size: Option<u64>,
    chunk_count: Option<u32>,
    queue_depth: Option<u32>,
    max_ports: Option<u32>,
    mode: Option<String>,
    permissions: Option<String>,
    ack_timeout_ms: Option<u64>,
    max_deliveries: Option<u32>,
}

impl Config {
    /// Reads and checks the config file at `path`. The error names the file
    /// and the problem.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| format!("config file {}: {e}", path.display()))
    }

    /// Parses and checks config text.
    pub fn parse(text: &str) -> Result<Config, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            // toml's message spans lines (it quotes the offending line);
            // keep it, without the trailing newline.
            e.to_string().trim_end().to_string()
        })?;
        let mut exchanges: Vec<StaticExchange> = Vec::with_capacity(raw.exchange.len());
        for (i, x) in raw.exchange.into_iter().enumerate() {
            let which = match &x.name {
                Some(n) => format!("exchange #{} ({n:?})", i + 1),
                None => format!("exchange #{}", i + 1),
            };
            let ex = check_exchange(x).map_err(|e| format!("{which}: {e}"))?;
            if exchanges.iter().any(|other| other.name == ex.name) {
                return Err(format!("{which}: name defined twice"));
            }
            exchanges.push(ex);
        }
        Ok(Config { exchanges })
    }
}

fn check_exchange(x: RawExchange) -> Result<StaticExchange, String> {
    let name = x.name.ok_or("missing key `name`")?;
    shmex::check_exchange_name(&name).map_err(|e| e.to_string())?;
    let pattern: Pattern = x
        .pattern
        .ok_or("missing key `pattern` (request-response, publish-subscribe, fan-in or tasks)")?
        .parse()?;
    let defaults = Limits::default();
    let chunk_size = match x.chunk_size {
        None => defaults.chunk_size,
        Some(n) => usize::try_from(n).map_err(|_| format!("chunk_size {n} is too large"))?,
    };
    let persistent = match x.mode.as_deref() {
        None | Some("persistent") => true,
        Some("transient") => false,
        Some(other) => return Err(format!("unknown mode {other:?} (persistent or transient)")),
    };
    let mode = match x.permissions.as_deref() {
        None | Some("0600" | "600" | "0o600") => 0o600,
        Some("0660" | "660" | "0o660") => 0o660,
        Some(other) => {
            return Err(format!(
                "unsupported permissions {other:?} (\"0600\" or \"0660\")"
            ))
        }
    };
    let limits = Limits::default()
        .chunk_size(chunk_size)
        .chunk_count(x.chunk_count.unwrap_or(defaults.chunk_count))
        .queue_depth(x.queue_depth.unwrap_or(defaults.queue_depth))
        .max_ports(x.max_ports.unwrap_or(defaults.max_ports))
        .mode(mode)
        .ack_timeout(
            x.ack_timeout_ms
                .map_or(defaults.ack_timeout, std::time::Duration::from_millis),
        )
        .max_deliveries(x.max_deliveries.unwrap_or(defaults.max_deliveries))
        .persistent(persistent);
    limits.segment_size(pattern).map_err(|e| e.to_string())?;
    Ok(StaticExchange {
        name,
        pattern,
        limits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_defaults() {
        let c = Config::parse(
            r#"
            # comment
            [[exchange]]
            name = "orders"
            pattern = "request-response"
            chunk_size = 512
            chunk_count = 32
            queue_depth = 16
            max_ports = 4
            mode = "transient"
            permissions = "0660"

            [[exchange]]
            name = "events.v1"
            pattern = "publish-subscribe"
            "#,
        )
        .unwrap();
        assert_eq!(c.exchanges.len(), 2);
        let o = &c.exchanges[0];
        assert_eq!(o.name, "orders");
        assert_eq!(o.pattern, Pattern::RequestResponse);
        assert_eq!(
            o.limits,
            Limits::default()
                .chunk_size(512)
                .chunk_count(32)
                .queue_depth(16)
                .max_ports(4)
                .mode(0o660)
                .persistent(false)
        );
        let e = &c.exchanges[1];
        assert_eq!(e.pattern, Pattern::PublishSubscribe);
        assert_eq!(e.limits, Limits::default().persistent(true));
    }

    #[test]
    fn empty_file_has_no_exchange() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert_eq!(Config::parse("# nothing\n").unwrap(), Config::default());
    }

    #[test]
    fn fan_in_pattern() {
        let c = Config::parse("[[exchange]]\nname = \"logs\"\npattern = \"fan-in\"\n").unwrap();
        assert_eq!(c.exchanges[0].pattern, Pattern::FanIn);
    }

    /// The config takes each pattern's one spelling (`Pattern::as_str`, as
    /// `shmex ls` prints it) and the missing-pattern error lists them all.
    #[test]
    fn pattern_spelling_is_as_str() {
        for p in Pattern::ALL {
            let text = format!("[[exchange]]\nname = \"a\"\npattern = \"{p}\"\n");
            assert_eq!(Config::parse(&text).unwrap().exchanges[0].pattern, p);
        }
        let e = error("[[exchange]]\nname = \"a\"\n");
        for p in Pattern::ALL {
            assert!(e.contains(p.as_str()), "{e}");
        }
    }

    /// The keys of README.md's "Supervisor config keys" table, each with its
    /// example value.
    fn readme_keys() -> Vec<(String, String)> {
        let readme = include_str!("../../../README.md");
        let table = readme
            .split("#### Supervisor config keys")
            .nth(1)
            .expect("README.md has a \"Supervisor config keys\" section");
        table
            .lines()
            .skip_while(|l| !l.starts_with("| Key |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|row| {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                let unquote = |c: &str| c.trim_matches('`').to_string();
                (unquote(cells[1]), unquote(cells[2]))
            })
            .collect()
    }

    /// The keys an `[[exchange]]` table takes, as the parser itself names
    /// them when refusing an unknown one.
    fn parser_keys() -> Vec<String> {
        let e = error("[[exchange]]\nname = \"a\"\npattern = \"tasks\"\nzz_probe = 1\n");
        let list = e
            .split("expected one of ")
            .nth(1)
            .unwrap_or_else(|| panic!("no key list in {e}"));
        let list = list.lines().next().unwrap_or_default();
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    /// README.md's table lists every key the parser takes, and nothing
    /// else; each listed key, set to the table's example value, is accepted.
    #[test]
    fn readme_table_lists_every_key() {
        let listed = readme_keys();
        let mut listed_keys: Vec<String> = listed.iter().map(|(k, _)| k.clone()).collect();
        let mut accepted = parser_keys();
        assert!(accepted.len() >= 10, "{accepted:?}");
        listed_keys.sort();
        accepted.sort();
        assert_eq!(listed_keys, accepted, "README.md table vs parser");
        for key in &accepted {
            assert!(
                super::super::HELP.contains(key.as_str()),
                "{key} not in --help"
            );
        }
        for (key, example) in &listed {
            let mut text = String::from("[[exchange]]\n");
            for (k, v) in [("name", "\"t\""), ("pattern", "\"tasks\"")] {
                if k != key {
                    text.push_str(&format!("{k} = {v}\n"));
                }
            }
            text.push_str(&format!("{key} = {example}\n"));
            if let Err(e) = Config::parse(&text) {
                panic!("README.md's `{key} = {example}` is refused: {e}");
            }
        }
    }

    #[track_caller]
    fn error(text: &str) -> String {
        Config::parse(text).expect_err(text)
    }

    #[test]
    fn errors_name_the_problem() {
        let e = error("[[exchange]]\nname = \"a\"\npattern = \"gossip\"\n");
        assert!(
            e.contains("exchange #1 (\"a\")") && e.contains("gossip"),
            "{e}"
        );

        let e = error("[[exchange]]\nname = \"a\"\npattern = \"fan-in\"\ncolour = 1\n");
        assert!(e.contains("colour"), "{e}");

        let e = error("[server]\nport = 1\n");
        assert!(e.contains("server"), "{e}");

        let e = error("[[exchange]]\npattern = \"fan-in\"\n");
        assert!(e.contains("exchange #1") && e.contains("`name`"), "{e}");

        let e = error("[[exchange]]\nname = \"a\"\n");
        assert!(e.contains("`pattern`"), "{e}");

        let e = error("[[exchange]]\nname = \"a/b\"\npattern = \"fan-in\"\n");
        assert!(e.contains("invalid exchange name"), "{e}");

        let e = error("[[exchange]]\nname = \"a\"\npattern = \"fan-in\"\nqueue_depth = 3\n");
        assert!(e.contains("invalid limits"), "{e}");

        let e = error("[[exchange]]\nname = \"a\"\npattern = \"fan-in\"\nchunk_count = -1\n");
        assert!(e.contains("chunk_count") || e.contains("-1"), "{e}");

        let e = error("[[exchange]]\nname = \"a\"\npattern = \"fan-in\"\nmode = \"forever\"\n");
        assert!(e.contains("forever"), "{e}");

        let e = error("[[exchange]]\nname = \"a\"\npattern = \"fan-in\"\npermissions = \"0644\"\n");
        assert!(e.contains("0644"), "{e}");

        let e = error(
            "[[exchange]]\nname = \"a\"\npattern = \"fan-in\"\n\
             [[exchange]]\nname = \"a\"\npattern = \"fan-in\"\n",
        );
        assert!(e.contains("exchange #2") && e.contains("twice"), "{e}");

        let e = error("[[exchange]\n");
        assert!(!e.is_empty());
    }

    #[test]
    fn nonsensical_limits_are_refused() {
        let base = "[[exchange]]\nname = \"t\"\npattern = \"tasks\"\n";
        for (extra, what) in [
            ("ack_timeout_ms = 0\n", "ack_timeout"),
            ("chunk_size = 0\n", "chunk_size"),
            ("chunk_count = 0\n", "chunk_count"),
            ("queue_depth = 0\n", "queue_depth"),
            ("max_ports = 0\n", "max_ports"),
            ("max_deliveries = 0\n", "max_deliveries"),
            ("chunk_size = 1073741824\nchunk_count = 1024\n", "more than"),
        ] {
            let e = error(&format!("{base}{extra}"));
            assert!(
                e.contains("exchange #1") && e.contains(what),
                "{extra}: {e}"
            );
        }
    }

    #[test]
    fn missing_file() {
        let e = Config::load(Path::new("/nonexistent/shmex-supervisor.toml")).unwrap_err();
        assert!(
            e.contains("/nonexistent/shmex-supervisor.toml") && e.contains("cannot read"),
            "{e}"
        );
    }
}
