//! Shared-memory objects: files under the namespace root, created exclusively
//! with a restrictive mode, owned by us, mapped whole and populated, with a
//! header that says what they are.

use crate::error::SegmentError;
use crate::layout::{layout_hash, SegmentHeader, Shared, LAYOUT_VERSION, MAGIC};
use memmap2::{MmapOptions, MmapRaw};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

// Shared structures hold 64-bit atomics that must be lock-free across
// processes, and read-only mappings rely on relaxed 8-byte loads working on
// read-only memory, which `std` guarantees on 64-bit targets only.
#[cfg(not(all(target_pointer_width = "64", target_has_atomic = "64")))]
compile_error!("shmex needs a 64-bit target with 64-bit atomics");

/// An acquire load that is sound through a read-only mapping
/// ([`Segment::open_read_only`]): a relaxed load, which `std` guarantees not
/// to write, then an acquire fence, which orders what follows exactly as an
/// acquire load would. (An acquire load itself may be compiled to a
/// read-modify-write on some targets and then fault on a read-only page.)
pub(crate) fn load_acquire_read_only(word: &AtomicU32) -> u32 {
    let value = word.load(Ordering::Relaxed);
    std::sync::atomic::fence(Ordering::Acquire);
    value
}

/// A mapped segment file.
pub(crate) struct Segment {
    pub path: PathBuf,
    pub file: File,
    map: MmapRaw,
    /// (device, inode) of the file when opened: tells whether the path still
    /// names this object.
    pub identity: (u64, u64),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SegmentError + '_ {
    move |source| SegmentError::Io {
        path: path.to_owned(),
        source,
    }
}

fn untrusted(path: &Path, what: impl Into<String>) -> SegmentError {
    SegmentError::Untrusted {
        path: path.to_owned(),
        what: what.into(),
    }
}

/// What a file that is not a regular one is, for error messages.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device node"
    } else {
        "not a regular file"
    }
}

/// Mode a namespace directory must have: 0700 private, 02770 (setgid) when
/// shared with a group.
pub(crate) fn dir_mode(group: Option<u32>) -> u32 {
    if group.is_some() {
        0o2770
    } else {
        0o700
    }
}

/// Checks that `dir` (a namespace's directory, not followed if a symlink)
/// is a directory owned by us with mode 0700, or, for a share group `g`, a
/// directory of group `g` with mode 02770.
pub(crate) fn check_dir(dir: &Path, group: Option<u32>) -> Result<(), SegmentError> {
    let meta = std::fs::symlink_metadata(dir).map_err(io(dir))?;
    if !meta.is_dir() {
        return Err(untrusted(
            dir,
            format!("{}, not a directory", kind_of(&meta)),
        ));
    }
    let ours = crate::sys::euid();
    match group {
        None if meta.uid() != ours => Err(SegmentError::ForeignOwner {
            path: dir.to_owned(),
            owner: meta.uid(),
            ours,
        }),
        Some(g) if meta.gid() != g => Err(untrusted(
            dir,
            format!("group is gid {}, not the share group {g}", meta.gid()),
        )),
        _ if meta.mode() & 0o7777 != dir_mode(group) => Err(untrusted(
            dir,
            format!(
                "mode {:04o}, must be {:04o}",
                meta.mode() & 0o7777,
                dir_mode(group)
            ),
        )),
        _ => Ok(()),
    }
}

/// Checks the root folder (`/dev/shm`, `SHMEX_ROOT`): a directory, not a
/// symbolic link, owned by us or by root, and when others may write to it,
/// sticky (so nobody else can rename or remove our directory in it).
pub(crate) fn check_root(root: &Path) -> Result<(), SegmentError> {
    let meta = std::fs::symlink_metadata(root).map_err(io(root))?;
    if !meta.is_dir() {
        return Err(untrusted(
            root,
            format!("{}, not a directory", kind_of(&meta)),
        ));
    }
    let ours = crate::sys::euid();
    if meta.uid() != ours && meta.uid() != 0 {
        return Err(SegmentError::ForeignOwner {
            path: root.to_owned(),
            owner: meta.uid(),
            ours,
        });
    }
    if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
        return Err(untrusted(
            root,
            format!(
                "mode {:04o}: writable by others without the sticky bit",
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Makes sure the namespace directory `dir` inside `root` exists and is
/// trusted ([`check_dir`]): creates it (0700, or group `g` and 02770 for a
/// share group) when missing.
pub(crate) fn prepare_dir(root: &Path, dir: &Path, group: Option<u32>) -> Result<(), SegmentError> {
    check_root(root)?;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            // Nobody else can rename or replace it (sticky or private
            // root): set the group and the exact mode (umask, and chown
            // clears the setgid bit).
            if let Some(g) = group {
                nix::unistd::chown(dir, None, Some(nix::unistd::Gid::from_raw(g)))
                    .map_err(|e| io(dir)(e.into()))?;
            }
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode(group)))
                .map_err(io(dir))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(dir)(e)),
    }
    check_dir(dir, group)
}

fn check_dir_of(path: &Path, group: Option<u32>) -> Result<(), SegmentError> {
    match path.parent() {
        Some(dir) => check_dir(dir, group),
        None => Err(untrusted(path, "has no parent directory")),
    }
}

/// Checks the status of a segment file (from `lstat` or `fstat`): a regular
/// file, owned by us (or of the share group), with exactly one link.
fn check_file(
    path: &Path,
    meta: &std::fs::Metadata,
    group: Option<u32>,
) -> Result<(), SegmentError> {
    if !meta.file_type().is_file() {
        return Err(untrusted(path, kind_of(meta)));
    }
    let ours = crate::sys::euid();
    let shared = group.is_some_and(|g| meta.gid() == g);
    if meta.uid() != ours && !shared {
        return Err(SegmentError::ForeignOwner {
            path: path.to_owned(),
            owner: meta.uid(),
            ours,
        });
    }
    if meta.nlink() > 1 {
        return Err(untrusted(path, format!("has {} hard links", meta.nlink())));
    }
    Ok(())
}

/// Outcome of trying to create a segment exclusively.
pub(crate) enum Created {
    /// We created it; it is all zeros and `size` bytes long.
    New(Segment),
    /// Something of that name exists already.
    Exists,
}

impl Segment {
    /// Creates `path` exclusively (`O_EXCL`, mode 0600, or 0660 in a share
    /// group's directory), reserves `size` bytes and maps it.
    pub fn create(path: &Path, size: usize, group: Option<u32>) -> Result<Created, SegmentError> {
        check_dir_of(path, group)?;
        let mode = if group.is_some() { 0o660 } else { 0o600 };
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(Created::Exists),
            Err(e) => return Err(io(path)(e)),
        };
        // The umask may have narrowed the mode; set it exactly.
        let set_mode = nix::sys::stat::fchmod(
            file.as_raw_fd(),
            nix::sys::stat::Mode::from_bits_truncate(mode as nix::libc::mode_t),
        );
        let reserved =
            set_mode.map_err(|e| io(path)(e.into())).and_then(
                |()| match nix::fcntl::posix_fallocate(
                    file.as_raw_fd(),
                    0,
                    size as nix::libc::off_t,
                ) {
                    Ok(()) => Ok(()),
                    Err(nix::errno::Errno::ENOSPC) => Err(SegmentError::NoSpace {
                        path: path.to_owned(),
                        needed: size as u64,
                    }),
                    Err(e) => Err(io(path)(e.into())),
                },
            );
        if let Err(e) = reserved {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        match Self::map(path.to_owned(), file) {
            Ok(s) => Ok(Created::New(s)),
            Err(e) => {
                let _ = std::fs::remove_file(path);
                Err(e)
            }
        }
    }

    /// Opens an existing segment, refusing objects of other users. `Ok(None)`
    /// when nothing of that name exists.
    pub fn open(path: &Path, group: Option<u32>) -> Result<Option<Segment>, SegmentError> {
        Self::open_with(path, group, true, true)
    }

    /// Like [`open`](Self::open) without populating the mapping: for a
    /// short visit (a reclaim pass) that touches a few lines of a possibly
    /// large segment.
    pub fn open_lazy(path: &Path, group: Option<u32>) -> Result<Option<Segment>, SegmentError> {
        Self::open_with(path, group, true, false)
    }

    /// Opens an existing segment for inspection only: read-only descriptor
    /// and mapping, so listing never writes to what it lists. `Ok(None)` when
    /// nothing of that name exists.
    ///
    /// Only relaxed loads of at most 8 bytes may touch such a mapping: they
    /// are the one kind of atomic access the standard library guarantees to
    /// work on read-only memory (on the 64-bit targets shmex builds for; see
    /// "Atomic accesses to read-only memory" in `std::sync::atomic`). Where
    /// ordering matters use [`load_acquire_read_only`].
    pub fn open_read_only(
        path: &Path,
        group: Option<u32>,
    ) -> Result<Option<Segment>, SegmentError> {
        Self::open_with(path, group, false, false)
    }

    /// Opens `path` only if it is a regular file we may trust (see
    /// [`check_file`]), without following a symlink or blocking on a FIFO,
    /// then reads its header with `pread` and maps it only once the header
    /// agrees with the file: a hostile file is refused before any mapping.
    fn open_with(
        path: &Path,
        group: Option<u32>,
        writable: bool,
        populate: bool,
    ) -> Result<Option<Segment>, SegmentError> {
        check_dir_of(path, group)?;
        // lstat first: never open a device, FIFO or socket at all.
        match std::fs::symlink_metadata(path) {
            Ok(m) => check_file(path, &m, group)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(path)(e)),
        }
        let file = match OpenOptions::new()
            .read(true)
            .write(writable)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(path)(e)),
        };
        let meta = file.metadata().map_err(io(path))?;
        if meta.nlink() == 0 {
            // Unlinked between lookup and open (a last node leaving).
            return Ok(None);
        }
        check_file(path, &meta, group)?;
        let len = meta.len();
        let header = std::mem::size_of::<SegmentHeader>() as u64;
        let mut map_len = len;
        if len >= header {
            let mut buf = [0u8; std::mem::size_of::<SegmentHeader>()];
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf, 0).map_err(io(path))?;
            let word = |at: usize| {
                let mut w = [0u8; 8];
                w.copy_from_slice(&buf[at..at + 8]);
                u64::from_ne_bytes(w)
            };
            let magic = word(std::mem::offset_of!(SegmentHeader, magic));
            let total = word(std::mem::offset_of!(SegmentHeader, total_size));
            let ready_at = std::mem::offset_of!(SegmentHeader, ready);
            let ready = buf[ready_at..ready_at + 4].iter().any(|&b| b != 0);
            // The creator writes the header, then `ready`: only a ready
            // header is held to its size.
            let magic = if ready { magic } else { 0 };
            if magic == MAGIC && total != len {
                return Err(SegmentError::SizeMismatch {
                    path: path.to_owned(),
                    what: "header size vs file size",
                    expected: len,
                    found: total,
                });
            }
            if magic != MAGIC {
                // Not initialised (yet): map the header only; whoever
                // initialises it reserves and remaps.
                map_len = header;
            }
        }
        if meta.blocks().saturating_mul(512) < map_len.min(len) {
            // Segments are reserved whole (posix_fallocate): a file with
            // holes is not one of ours, and mapping it would let a reader
            // populate memory nobody reserved.
            return Err(SegmentError::Untrusted {
                path: path.to_owned(),
                what: format!(
                    "sparse file ({len} bytes, {} allocated)",
                    meta.blocks() * 512
                ),
            });
        }
        Self::map_with(
            path.to_owned(),
            file,
            &meta,
            map_len as usize,
            writable,
            populate,
        )
        .map(Some)
    }

    fn map(path: PathBuf, file: File) -> Result<Segment, SegmentError> {
        let meta = file.metadata().map_err(io(&path))?;
        let len = meta.len() as usize;
        Self::map_with(path, file, &meta, len, true, true)
    }

    fn map_with(
        path: PathBuf,
        file: File,
        meta: &std::fs::Metadata,
        len: usize,
        writable: bool,
        populate: bool,
    ) -> Result<Segment, SegmentError> {
        // A zero-length file (a creator that has not reserved its size yet,
        // or died before) maps one page; callers see size 0.
        let mut options = MmapOptions::new();
        options.len(len.max(1));
        let map = if !writable {
            options.map_raw_read_only(&file)
        } else if len == 0 || !populate {
            options.map_raw(&file)
        } else {
            options.populate().map_raw(&file)
        }
        .map_err(io(&path))?;
        let identity = (meta.dev(), meta.ino());
        Ok(Segment {
            path,
            file,
            map,
            identity,
        })
    }

    /// Size of the file when it was mapped.
    pub fn len(&self) -> usize {
        match self.file.metadata() {
            Ok(m) => (m.len() as usize).min(self.map.len()),
            Err(_) => 0,
        }
    }

    /// Base address of the mapping.
    pub fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Mapped length.
    pub fn mapped_len(&self) -> usize {
        self.map.len()
    }

    /// A `T` at `offset`, or `None` when it would not lie inside the mapping
    /// or would be misaligned.
    pub fn get<T: Shared>(&self, offset: usize) -> Option<&T> {
        let end = offset.checked_add(std::mem::size_of::<T>())?;
        if end > self.map.len() {
            return None;
        }
        let ptr = self.map.as_ptr().wrapping_add(offset);
        if !(ptr as usize).is_multiple_of(std::mem::align_of::<T>()) {
            return None;
        }
        // SAFETY: the range lies inside the live mapping (checked above), is
        // aligned for T, and T: Shared is valid for every bit pattern and
        // only mutated through atomics.
        Some(unsafe { &*(ptr as *const T) })
    }

    /// `n` consecutive `T`s at `offset`, or `None` as for [`get`](Self::get).
    pub fn slice<T: Shared>(&self, offset: usize, n: usize) -> Option<&[T]> {
        let bytes = std::mem::size_of::<T>().checked_mul(n)?;
        let end = offset.checked_add(bytes)?;
        if end > self.map.len() {
            return None;
        }
        let ptr = self.map.as_ptr().wrapping_add(offset);
        if !(ptr as usize).is_multiple_of(std::mem::align_of::<T>()) {
            return None;
        }
        // SAFETY: as in `get`, for n elements.
        Some(unsafe { std::slice::from_raw_parts(ptr as *const T, n) })
    }

    /// The common header.
    pub fn header(&self) -> Option<&SegmentHeader> {
        self.get(0)
    }

    /// Writes the common header; `ready` is published last.
    pub fn write_header(&self, kind: u32) {
        if let Some(h) = self.header() {
            h.magic.store(MAGIC, Ordering::Relaxed);
            h.kind.store(kind, Ordering::Relaxed);
            h.version.store(LAYOUT_VERSION, Ordering::Relaxed);
            h.layout_hash.store(layout_hash(), Ordering::Relaxed);
            h.total_size.store(self.len() as u64, Ordering::Relaxed);
        }
    }

    /// Marks the segment initialised.
    pub fn publish_ready(&self) {
        if let Some(h) = self.header() {
            h.ready.store(1, Ordering::Release);
        }
    }

    /// True while nobody has initialised the segment (size 0 or `ready` unset).
    pub fn is_uninitialised(&self) -> bool {
        self.len() < std::mem::size_of::<SegmentHeader>()
            || self
                .header()
                .is_none_or(|h| load_acquire_read_only(&h.ready) == 0)
    }

    /// Checks magic, kind, version, layout hash and size.
    pub fn check_header(&self, kind: u32, kind_name: &'static str) -> Result<(), SegmentError> {
        let path = self.path.clone();
        let h = self.header().ok_or_else(|| SegmentError::SizeMismatch {
            path: path.clone(),
            what: "file size",
            expected: std::mem::size_of::<SegmentHeader>() as u64,
            found: self.len() as u64,
        })?;
        let magic = h.magic.load(Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Acquire); // as in `load_acquire_read_only`
        let found_kind = h.kind.load(Ordering::Relaxed);
        if magic != MAGIC || found_kind != kind {
            return Err(SegmentError::NotShmex {
                path,
                expected: kind_name,
                found: if magic != MAGIC {
                    magic
                } else {
                    u64::from(found_kind)
                },
            });
        }
        let version = h.version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(SegmentError::VersionMismatch {
                path,
                ours: LAYOUT_VERSION,
                theirs: version,
            });
        }
        let hash = h.layout_hash.load(Ordering::Relaxed);
        if hash != layout_hash() {
            return Err(SegmentError::LayoutMismatch {
                path,
                ours: layout_hash(),
                theirs: hash,
            });
        }
        let size = h.total_size.load(Ordering::Relaxed);
        if size != self.len() as u64 || size as usize > self.map.len() {
            return Err(SegmentError::SizeMismatch {
                path,
                what: "header size vs file size",
                expected: self.len() as u64,
                found: size,
            });
        }
        Ok(())
    }

    /// True when `self.path` still names the object we mapped.
    pub fn path_is_ours(&self) -> bool {
        std::fs::symlink_metadata(&self.path)
            .map(|m| (m.dev(), m.ino()) == self.identity)
            .unwrap_or(false)
    }

    /// Grows a zero-length file to `size` (the initialiser's first step) and
    /// remaps it.
    pub fn reserve(self, size: usize) -> Result<Segment, SegmentError> {
        let len = self.file.metadata().map_err(io(&self.path))?.len();
        if len > size as u64 {
            return Err(SegmentError::SizeMismatch {
                path: self.path,
                what: "file size of an uninitialised segment",
                expected: size as u64,
                found: len,
            });
        }
        match nix::fcntl::posix_fallocate(self.file.as_raw_fd(), 0, size as nix::libc::off_t) {
            Ok(()) => {}
            Err(nix::errno::Errno::ENOSPC) => {
                return Err(SegmentError::NoSpace {
                    path: self.path,
                    needed: size as u64,
                })
            }
            Err(e) => return Err(io(&self.path)(e.into())),
        }
        let Segment { path, file, .. } = self;
        Self::map(path, file)
    }
}
