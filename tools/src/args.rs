//! Hand-written command-line parsing: long options (`--name value`,
//! `--name=value`), boolean flags, and the options every subcommand that
//! reads a namespace shares (`--namespace`, `--root`).

use std::path::PathBuf;

/// A command line that could not be understood; the caller prints it with the
/// usage text and exits with status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The arguments of one subcommand, consumed front to back.
pub struct Args {
    rest: std::vec::IntoIter<String>,
    /// Set after `--`: every later argument is positional.
    only_positional: bool,
}

/// One item of a command line that takes positional arguments.
pub enum Item {
    /// An option (`--name`, `--name=value`, `-h`).
    Opt(Opt),
    /// A positional argument: one not starting with `-`, a lone `-`, or any
    /// argument after `--`.
    Positional(String),
}

/// One option as written: its name, and the value given after `=` if any.
pub struct Opt {
    /// `--json`, `-h`, ... (the part before any `=`).
    pub name: String,
    inline: Option<String>,
}

impl Args {
    /// Wraps the arguments that follow the subcommand name.
    pub fn new(args: Vec<String>) -> Args {
        Args {
            rest: args.into_iter(),
            only_positional: false,
        }
    }

    /// The next option, or `None` at the end, for subcommands that take no
    /// positional argument: one (not starting with `-`) is an error. The
    /// others read their arguments with [`next_item`](Self::next_item).
    pub fn next_opt(&mut self) -> Result<Option<Opt>, UsageError> {
        match self.next_item() {
            None => Ok(None),
            Some(Item::Opt(opt)) => Ok(Some(opt)),
            Some(Item::Positional(arg)) => Err(UsageError(format!("unexpected argument {arg:?}"))),
        }
    }

    /// The next option or positional argument, or `None` at the end. `--`
    /// ends the options: what follows is positional even if it starts with
    /// `-` (a message such as `-1`).
    pub fn next_item(&mut self) -> Option<Item> {
        let arg = self.rest.next()?;
        if self.only_positional || !arg.starts_with('-') || arg == "-" {
            return Some(Item::Positional(arg));
        }
        if arg == "--" {
            self.only_positional = true;
            return self.next_item();
        }
        Some(Item::Opt(match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => Opt {
                name: name.to_string(),
                inline: Some(value.to_string()),
            },
            _ => Opt {
                name: arg,
                inline: None,
            },
        }))
    }

    /// The value of option `opt`: after its `=`, else the next argument.
    pub fn value(&mut self, opt: &Opt) -> Result<String, UsageError> {
        if let Some(v) = &opt.inline {
            return Ok(v.clone());
        }
        self.rest
            .next()
            .ok_or_else(|| UsageError(format!("{} needs a value", opt.name)))
    }

    /// The value of `opt` parsed as a number within `min..=max`.
    pub fn number(&mut self, opt: &Opt, min: u64, max: u64) -> Result<u64, UsageError> {
        let v = self.value(opt)?;
        match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(UsageError(format!(
                "{} takes a number from {min} to {max}, not {v:?}",
                opt.name
            ))),
        }
    }
}

impl Opt {
    /// Rejects `--flag=value` for an option that takes no value.
    pub fn flag(&self) -> Result<(), UsageError> {
        match &self.inline {
            Some(_) => Err(UsageError(format!("{} takes no value", self.name))),
            None => Ok(()),
        }
    }

    /// The error for an option the subcommand does not know.
    pub fn unknown(&self) -> UsageError {
        UsageError(format!("unknown option {}", self.name))
    }
}

/// `--namespace` / `--root` overrides, applied on top of the environment.
#[derive(Debug, Default)]
pub struct NamespaceArgs {
    /// `--namespace NS`.
    pub name: Option<String>,
    /// `--root DIR`.
    pub root: Option<PathBuf>,
}

impl NamespaceArgs {
    /// Takes `opt` if it is `--namespace` or `--root`; returns whether it did.
    pub fn accept(&mut self, args: &mut Args, opt: &Opt) -> Result<bool, UsageError> {
        match opt.name.as_str() {
            "--namespace" | "-n" => {
                let name = args.value(opt)?;
                check_namespace(&name)?;
                self.name = Some(name);
            }
            "--root" => self.root = Some(PathBuf::from(args.value(opt)?)),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The namespace: the flags, else `SHMEX_NAMESPACE` / `SHMEX_ROOT`, else
    /// the defaults.
    pub fn resolve(self) -> Result<shmex::Namespace, UsageError> {
        let mut ns = shmex::Namespace::from_env().map_err(|e| UsageError(e.to_string()))?;
        if let Some(root) = self.root {
            ns.root = root;
        }
        if let Some(name) = self.name {
            ns.name = name;
        }
        check_namespace(&ns.name)?;
        Ok(ns)
    }
}

/// The rule the library applies to namespace names
/// ([`shmex::check_namespace_name`]: 1–64 bytes of `[A-Za-z0-9_.-]`, not `.`
/// or `..`). Checked here too because the tools read namespaces without
/// joining them, and a name holding `/` would point outside the root.
pub fn check_namespace(name: &str) -> Result<(), UsageError> {
    shmex::check_namespace_name(name).map_err(|e| UsageError(e.to_string()))
}

/// Parses a command's arguments with `parse`. `Err` carries the exit status
/// when there is nothing to run: help was asked for (printed, 0) or the
/// arguments are wrong (message and help on stderr, 2).
pub fn parse_or_exit<O>(
    name: &str,
    help: &str,
    args: Vec<String>,
    parse: fn(Vec<String>) -> Result<Option<O>, UsageError>,
) -> Result<O, std::process::ExitCode> {
    match parse(args) {
        Ok(Some(o)) => Ok(o),
        Ok(None) => {
            print!("{help}");
            Err(std::process::ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("shmex {name}: {e}\n\n{help}");
            Err(std::process::ExitCode::from(2))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::new(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn options_and_values() {
        let mut a = args(&["--json", "--namespace=abc", "--root", "/tmp/x"]);
        let o = a.next_opt().unwrap().unwrap();
        assert_eq!(o.name, "--json");
        assert!(o.flag().is_ok());
        let o = a.next_opt().unwrap().unwrap();
        assert_eq!(o.name, "--namespace");
        assert_eq!(a.value(&o).unwrap(), "abc");
        let o = a.next_opt().unwrap().unwrap();
        assert_eq!(a.value(&o).unwrap(), "/tmp/x");
        assert!(a.next_opt().unwrap().is_none());
    }

    #[test]
    fn positionals() {
        let mut a = args(&["ex", "--count", "2", "-", "--", "-1", "--x"]);
        let mut seen = Vec::new();
        while let Some(item) = a.next_item() {
            match item {
                Item::Positional(p) => seen.push(format!("P{p}")),
                Item::Opt(o) => {
                    let v = a.value(&o).unwrap();
                    seen.push(format!("O{}={v}", o.name));
                }
            }
        }
        assert_eq!(seen, ["Pex", "O--count=2", "P-", "P-1", "P--x"]);
    }

    #[test]
    fn errors() {
        let mut a = args(&["positional"]);
        assert!(a.next_opt().is_err());
        let mut a = args(&["--json=1"]);
        assert!(a.next_opt().unwrap().unwrap().flag().is_err());
        let mut a = args(&["--requests"]);
        let o = a.next_opt().unwrap().unwrap();
        assert!(a.value(&o).is_err());
        let mut a = args(&["--requests", "0"]);
        let o = a.next_opt().unwrap().unwrap();
        assert!(a.number(&o, 1, 10).is_err());
        assert!(check_namespace("../etc").is_err());
        assert!(check_namespace("").is_err());
        assert!(check_namespace("demo-12_x").is_ok());
    }
}
