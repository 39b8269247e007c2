//! Shared-memory objects: files under the namespace root, created exclusively
//! with a restrictive mode, owned by us, mapped whole and populated, with a
//! header that says what they are.

use crate::error::SegmentError;
use crate::layout::{layout_hash, SegmentHeader, Shared, LAYOUT_VERSION, MAGIC};
use memmap2::{MmapOptions, MmapRaw};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

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

/// Outcome of trying to create a segment exclusively.
pub(crate) enum Created {
    /// We created it; it is all zeros and `size` bytes long.
    New(Segment),
    /// Something of that name exists already.
    Exists,
}

impl Segment {
    /// Creates `path` exclusively (`O_EXCL`, `mode`), reserves `size` bytes and
    /// maps it.
    pub fn create(path: &Path, size: usize, mode: u32) -> Result<Created, SegmentError> {
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
    pub fn open(path: &Path) -> Result<Option<Segment>, SegmentError> {
        Self::open_writable(path, true)
    }

    /// Like [`open`](Self::open) without populating the mapping: for a
    /// short visit (a reclaim pass) that touches a few lines of a possibly
    /// large segment.
    pub fn open_lazy(path: &Path) -> Result<Option<Segment>, SegmentError> {
        Self::open_writable(path, false)
    }

    fn open_writable(path: &Path, populate: bool) -> Result<Option<Segment>, SegmentError> {
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(path)(e)),
        };
        Self::map_with(path.to_owned(), file, true, populate).map(Some)
    }

    /// Opens an existing segment for inspection only: read-only descriptor
    /// and mapping, so listing never writes to what it lists. `Ok(None)` when
    /// nothing of that name exists.
    pub fn open_read_only(path: &Path) -> Result<Option<Segment>, SegmentError> {
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(path)(e)),
        };
        Self::map_with(path.to_owned(), file, false, false).map(Some)
    }

    fn map(path: PathBuf, file: File) -> Result<Segment, SegmentError> {
        Self::map_with(path, file, true, true)
    }

    fn map_with(
        path: PathBuf,
        file: File,
        writable: bool,
        populate: bool,
    ) -> Result<Segment, SegmentError> {
        let meta = file.metadata().map_err(io(&path))?;
        let ours = crate::sys::euid();
        if meta.uid() != ours {
            return Err(SegmentError::ForeignOwner {
                path,
                owner: meta.uid(),
                ours,
            });
        }
        if !meta.is_file() {
            return Err(SegmentError::Corrupt {
                path,
                what: "not a regular file".into(),
            });
        }
        let len = meta.len() as usize;
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
                .is_none_or(|h| h.ready.load(Ordering::Acquire) == 0)
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
        let magic = h.magic.load(Ordering::Acquire);
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
