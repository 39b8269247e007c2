//! The namespace: where a namespace's segments live, the checks of names,
//! and the defaults nodes start from.

use crate::error::{NodeError, SegmentError};
use crate::sys;
use std::path::PathBuf;
use std::time::Duration;

/// Default namespace when neither the builder nor `SHMEX_NAMESPACE` names one.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Default root folder when neither the builder nor `SHMEX_ROOT` names one.
pub const DEFAULT_ROOT: &str = "/dev/shm";
/// Default heartbeat interval.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(100);
/// Heartbeat age after which `list_nodes` reports a live process as hung.
pub const HUNG_AFTER: Duration = Duration::from_secs(1);
/// Longest wait for the namespace's control lock (the registry's `flock`,
/// taken to create or open exchanges, attach or detach ports, join or leave,
/// and by reclaim passes). A holder that stopped or hung makes such calls
/// fail with [`SegmentError::LockTimeout`] after this long instead of
/// blocking; data paths never take the lock.
pub const CONTROL_LOCK_WAIT: Duration = Duration::from_secs(5);
/// How long a pass made on the side (a node joining, a heartbeat) waits for
/// the control lock before leaving the work to the next beat.
pub(crate) const RECLAIM_ON_THE_SIDE_WAIT: Duration = Duration::from_millis(10);
/// Default time a receiver spins before it sleeps.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(20);

/// Where a namespace's segments live.
///
/// `root` is the shared folder every user sees (`/dev/shm` by default,
/// `SHMEX_ROOT`); shmex never puts files in it directly. Each user's
/// namespaces live in a directory of their own inside it,
/// [`dir`](Self::dir): `ROOT/shmex-UID/` (mode 0700, owned by the user), or
/// `ROOT/shmex-gGID/` (setgid, mode 02770, group GID) for a namespace shared
/// with a group ([`NodeBuilder::share_group`](crate::NodeBuilder::share_group)). The directory is created on
/// first use, checked on every open (a directory, not a symbolic link, ours
/// or the share group's, exact mode) and never removed: namespaces of the
/// same user come and go in it. The root must be a directory owned by us or
/// by root, sticky if others may write to it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Namespace {
    /// The shared folder holding the per-user directories.
    pub root: PathBuf,
    /// Prefix of every segment's name (see [`check_namespace_name`]).
    pub name: String,
    /// Group id the namespace is shared with, if any: its files are then
    /// 0660 in the group's directory, and files of other members of the
    /// group are accepted.
    pub share_group: Option<u32>,
}

/// Checks a namespace name: 1–64 bytes of `[A-Za-z0-9_.-]`, not `.` or
/// `..`.
pub fn check_namespace_name(name: &str) -> Result<(), NodeError> {
    check_name("namespace", name, 64).map_err(|(what, reason)| NodeError::InvalidName {
        what,
        name: name.to_string(),
        reason,
    })
}

/// Resolves a group given by name or number to its gid.
pub fn resolve_group(group: &str) -> Result<u32, NodeError> {
    let unknown = || NodeError::UnknownGroup {
        group: group.to_string(),
    };
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        _ => Err(unknown()),
    }
}

/// `SHMEX_ROOT`, else [`DEFAULT_ROOT`].
pub(crate) fn env_root() -> PathBuf {
    std::env::var_os("SHMEX_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
}

/// A variable's value as UTF-8, `None` when unset or empty.
pub(crate) fn env_utf8(var: &'static str) -> Result<Option<String>, NodeError> {
    match std::env::var_os(var) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v
            .into_string()
            .map(Some)
            .map_err(|v| NodeError::InvalidEnv {
                var,
                value: v.to_string_lossy().into_owned(),
                reason: "not UTF-8".into(),
            }),
    }
}

/// `SHMEX_NAMESPACE` (checked), else [`DEFAULT_NAMESPACE`].
pub(crate) fn env_namespace() -> Result<String, NodeError> {
    let name = env_utf8("SHMEX_NAMESPACE")?.unwrap_or_else(|| DEFAULT_NAMESPACE.into());
    check_namespace_name(&name)?;
    Ok(name)
}

/// `SHMEX_SHARE_GROUP` resolved to a gid, else `None`.
pub(crate) fn env_share_group() -> Result<Option<u32>, NodeError> {
    env_utf8("SHMEX_SHARE_GROUP")?
        .map(|g| resolve_group(&g))
        .transpose()
}

impl Namespace {
    /// Namespace `name` under `root`, private to this user.
    pub fn new(root: impl Into<PathBuf>, name: impl Into<String>) -> Namespace {
        Namespace {
            root: root.into(),
            name: name.into(),
            share_group: None,
        }
    }

    /// The namespace from `SHMEX_ROOT` / `SHMEX_NAMESPACE` /
    /// `SHMEX_SHARE_GROUP` (a group name or gid), or the defaults (`/dev/shm`,
    /// `default`, private). A `SHMEX_NAMESPACE` that is not UTF-8 or not a
    /// valid name, and an unknown group, are errors.
    pub fn from_env() -> Result<Namespace, NodeError> {
        Ok(Namespace {
            root: env_root(),
            name: env_namespace()?,
            share_group: env_share_group()?,
        })
    }

    /// The directory holding this namespace's files: `ROOT/shmex-UID` (our
    /// effective uid), or `ROOT/shmex-gGID` when shared with a group.
    pub fn dir(&self) -> PathBuf {
        match self.share_group {
            Some(g) => self.root.join(format!("shmex-g{g}")),
            None => self.root.join(format!("shmex-{}", sys::euid())),
        }
    }

    /// Creates (when missing) and checks [`dir`](Self::dir) and the root.
    pub(crate) fn prepare_dir(&self) -> Result<(), SegmentError> {
        crate::segment::prepare_dir(&self.root, &self.dir(), self.share_group)
    }

    /// Path of the registry segment.
    pub fn registry_path(&self) -> PathBuf {
        self.dir().join(format!("shmex.{}.registry", self.name))
    }

    /// Path of exchange `name`'s segment.
    pub fn exchange_path(&self, name: &str) -> PathBuf {
        self.dir().join(format!("shmex.{}.x.{}", self.name, name))
    }

    /// File-name prefix of this namespace's exchange segments.
    pub(crate) fn exchange_prefix(&self) -> String {
        format!("shmex.{}.x.", self.name)
    }

    /// Every file of this namespace in its directory (registry and
    /// exchanges), whatever their type: listing opens none of them.
    pub fn segment_files(&self) -> Vec<PathBuf> {
        let prefix = format!("shmex.{}.", self.name);
        let mut out = Vec::new();
        if let Ok(dir) = std::fs::read_dir(self.dir()) {
            for e in dir.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                let rest = name.strip_prefix(&prefix);
                if rest.is_some_and(|r| r == "registry" || r.starts_with("x.")) {
                    out.push(e.path());
                }
            }
        }
        out.sort();
        out
    }
}

/// The one rule for namespace, node, exchange names and each of them:
/// 1..=`max` bytes of ASCII letters, digits, `_`, `-` and `.`, and not `.`
/// or `..` (so no `/`, NUL or control character can reach a file name).
pub(crate) fn check_name(
    what: &'static str,
    name: &str,
    max: usize,
) -> Result<(), (&'static str, &'static str)> {
    if name.is_empty() {
        return Err((what, "empty"));
    }
    if name.len() > max {
        return Err((what, "too long"));
    }
    let ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !ok {
        return Err((
            what,
            "only ASCII letters, digits, '_', '-' and '.' are allowed",
        ));
    }
    if name == "." || name == ".." {
        return Err((what, "'.' and '..' are not names"));
    }
    Ok(())
}
