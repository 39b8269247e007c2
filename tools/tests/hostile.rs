//! Hostile files in a namespace's directory: a FIFO, a socket, a device
//! node, a symbolic link, a hard link, a 1 TB sparse file and a file of
//! another user, each in
//! place of the registry or of an exchange. `shmex ls`, `shmex pub` (node
//! creation, exchange open, node drop) and `shmex supervisor` must refuse them with an error naming
//! the file, never hang (each command is a child process killed after a
//! deadline, which fails the test), and never remove or change them.

use shmex::Namespace;
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Hang protection only.
const DEADLINE: Duration = Duration::from_secs(20);

/// A namespace of its own in a root folder of its own.
struct Ns {
    name: String,
    root: PathBuf,
}

impl Ns {
    fn new(what: &str) -> Ns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "thost-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let root = PathBuf::from("/dev/shm").join(format!("shmex-test-{name}"));
        std::fs::create_dir_all(&root).expect("create root folder");
        let ns = Ns { name, root };
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(ns.namespace().dir())
            .expect("create the per-user directory");
        ns
    }

    fn namespace(&self) -> Namespace {
        Namespace::new(&self.root, &self.name)
    }

    /// Runs `shmex ARGS` on the namespace; kills it and fails at the
    /// deadline. Returns (exit code, stdout, stderr).
    fn shmex(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shmex"))
            .args(args)
            .env("SHMEX_NAMESPACE", &self.name)
            .env("SHMEX_ROOT", &self.root)
            .env_remove("SHMEX_SHARE_GROUP")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shmex");
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for shmex") {
                break status;
            }
            if start.elapsed() > DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!("shmex {args:?} still running after {DEADLINE:?}: it hangs");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut out = String::new();
        let mut err = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status.code(), out, err)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Fifo,
    Socket,
    Symlink,
    HardLink,
    Sparse,
    Foreign,
    Device,
}

const KINDS: [Kind; 7] = [
    Kind::Fifo,
    Kind::Socket,
    Kind::Device,
    Kind::Symlink,
    Kind::HardLink,
    Kind::Sparse,
    Kind::Foreign,
];

/// What the planted object holds on to (a socket's listener).
enum Planted {
    Nothing,
    Listener(#[allow(dead_code)] std::os::unix::net::UnixListener),
}

/// Puts a hostile `kind` at `path`. `victim` is a regular file of ours
/// outside the namespace directory that links point at. `None` when the
/// kind cannot be made here (another user's file needs root).
fn plant(kind: Kind, path: &Path, victim: &Path) -> Option<Planted> {
    match kind {
        Kind::Fifo => {
            nix::unistd::mkfifo(path, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        }
        Kind::Socket => {
            let l = std::os::unix::net::UnixListener::bind(path).expect("bind socket");
            return Some(Planted::Listener(l));
        }
        Kind::Symlink => std::os::unix::fs::symlink(victim, path).expect("symlink"),
        Kind::HardLink => std::fs::hard_link(victim, path).expect("hard link"),
        Kind::Sparse => {
            let f = std::fs::File::create(path).expect("create sparse file");
            f.set_len(1 << 40).expect("make it 1 TB");
        }
        Kind::Device => {
            if !nix::unistd::geteuid().is_root() {
                println!("skipping the device node: not root, cannot mknod");
                return None;
            }
            // The same device as /dev/null.
            nix::sys::stat::mknod(
                path,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
                nix::sys::stat::makedev(1, 3),
            )
            .expect("mknod");
        }
        Kind::Foreign => {
            if !nix::unistd::geteuid().is_root() {
                println!("skipping another user's file: not root, cannot chown");
                return None;
            }
            std::fs::write(path, [0u8; 4096]).expect("write foreign file");
            nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(65534)), None)
                .expect("chown to 65534");
        }
    }
    Some(Planted::Nothing)
}

/// The error text each kind must produce.
fn expected(kind: Kind) -> &'static str {
    match kind {
        Kind::Fifo => "refused: a FIFO",
        Kind::Socket => "refused: a socket",
        Kind::Symlink => "refused: a symbolic link",
        Kind::HardLink => "refused: has 2 hard links",
        Kind::Sparse => "refused: sparse file",
        Kind::Foreign => "owned by uid 65534",
        Kind::Device => "refused: a device node",
    }
}

const VICTIM: &[u8] = b"not a segment\n";

/// Checks the hostile file is still there, and the victim unchanged.
fn assert_untouched(kind: Kind, path: &Path, victim: &Path) {
    assert!(
        std::fs::symlink_metadata(path).is_ok(),
        "{kind:?} at {} was removed",
        path.display()
    );
    assert_eq!(
        std::fs::read(victim).expect("victim still there"),
        VICTIM,
        "{kind:?}: the file a link pointed at was changed"
    );
}

#[test]
fn hostile_registry_is_refused_without_hanging() {
    for kind in KINDS {
        let ns = Ns::new("reg");
        let victim = ns.root.join("victim");
        std::fs::write(&victim, VICTIM).unwrap();
        let path = ns.namespace().registry_path();
        let Some(_planted) = plant(kind, &path, &victim) else {
            continue;
        };
        // ls reports the error (and exits 1 for it).
        let (_, out, err) = ns.shmex(&["ls", "--json"]);
        assert!(
            out.contains("nodes_error") && out.contains(expected(kind)),
            "{kind:?}: ls does not report the registry: {out} {err}"
        );
        // Node creation (and, had it succeeded, exchange open and drop).
        let (code, _, err) = ns.shmex(&["pub", "x", "k", "m"]);
        assert_eq!(code, Some(1), "{kind:?}: pub joined: {err}");
        assert!(
            err.contains(expected(kind)) && err.contains(&*path.to_string_lossy()),
            "{kind:?}: pub's error does not name the file and the problem: {err}"
        );
        // The supervisor refuses to start on it rather than hang.
        let (code, _, err) = ns.shmex(&["supervisor"]);
        assert_eq!(code, Some(1), "{kind:?}: supervisor ran: {err}");
        assert!(
            err.contains(expected(kind)),
            "{kind:?}: the supervisor's error does not name the problem: {err}"
        );
        assert_untouched(kind, &path, &victim);
    }
}

#[test]
fn hostile_exchange_is_refused_and_survives_the_last_node() {
    for kind in KINDS {
        let ns = Ns::new("ex");
        let victim = ns.root.join("victim");
        std::fs::write(&victim, VICTIM).unwrap();
        let path = ns.namespace().exchange_path("x");
        let Some(_planted) = plant(kind, &path, &victim) else {
            continue;
        };
        let (code, out, err) = ns.shmex(&["ls", "--json"]);
        assert_eq!(code, Some(0), "{kind:?}: ls failed: {err}");
        assert!(
            out.contains("\"error\"") && out.contains(expected(kind)),
            "{kind:?}: ls does not report the exchange: {out}"
        );
        // pub joins (creating the registry), fails to open the exchange,
        // and its node, the last, leaves: the hostile file must stay.
        let (code, _, err) = ns.shmex(&["pub", "x", "k", "m"]);
        assert_eq!(code, Some(1), "{kind:?}: pub opened it: {err}");
        assert!(
            err.contains(expected(kind)) && err.contains(&*path.to_string_lossy()),
            "{kind:?}: pub's error does not name the file and the problem: {err}"
        );
        assert_untouched(kind, &path, &victim);
        // The registry went with the last node; only the planted file is
        // left.
        let left: Vec<_> = std::fs::read_dir(ns.namespace().dir())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(left, vec![path.clone()], "{kind:?}");
    }
}

#[test]
fn ls_escapes_control_characters_in_file_names() {
    let ns = Ns::new("esc");
    let path = ns.namespace().exchange_path("a\x1b[2Jb\nc");
    std::fs::write(&path, [7u8; 4096]).unwrap();
    let (_, out, err) = ns.shmex(&["ls"]);
    assert!(
        !out.contains('\x1b') && !err.contains('\x1b'),
        "ls printed a raw escape: {out:?}"
    );
    assert!(
        out.contains("a\\u{1b}[2Jb\\u{a}c: error:"),
        "the file is not listed, escaped, with its error: {out}"
    );
}
