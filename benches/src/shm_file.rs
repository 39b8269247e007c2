//! A plain mapped file in `/dev/shm`, for the floor and futex peers.

use crate::{err, Result};
use memmap2::{MmapOptions, MmapRaw};
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A mapped, populated shared file.
pub struct ShmFile {
    map: MmapRaw,
    path: PathBuf,
    owner: bool,
}

impl ShmFile {
    /// Creates `path` (exclusively, mode 0600) with `len` zero bytes and maps
    /// it. The creator removes the file when it unlinks it or drops.
    pub fn create(path: &Path, len: usize) -> Result<ShmFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
        file.set_len(len as u64)?;
        let map = MmapOptions::new().len(len).populate().map_raw(&file)?;
        Ok(ShmFile {
            map,
            path: path.to_owned(),
            owner: true,
        })
    }

    /// Maps an existing file whole.
    pub fn open(path: &Path) -> Result<ShmFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
        let len = file.metadata()?.len() as usize;
        let map = MmapOptions::new().len(len).populate().map_raw(&file)?;
        Ok(ShmFile {
            map,
            path: path.to_owned(),
            owner: false,
        })
    }

    /// Removes the file name (the mapping stays).
    pub fn unlink(&mut self) {
        if self.owner {
            let _ = std::fs::remove_file(&self.path);
            self.owner = false;
        }
    }

    /// Base address.
    pub fn ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Mapped length.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True for an empty mapping.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }
}

impl Drop for ShmFile {
    fn drop(&mut self) {
        self.unlink();
    }
}

/// The layout the floor and futex peers share: two counters, each alone on
/// its own 128-byte line pair, then one payload buffer per direction
/// (page-aligned, `size` bytes each).
pub struct PingPong {
    file: ShmFile,
    size: usize,
}

const PAGE: usize = 4096;

impl PingPong {
    fn len(size: usize) -> usize {
        PAGE + 2 * size.div_ceil(PAGE) * PAGE
    }

    /// Creates the file for payloads of `size` bytes.
    pub fn create(path: &Path, size: usize) -> Result<PingPong> {
        Ok(PingPong {
            file: ShmFile::create(path, Self::len(size))?,
            size,
        })
    }

    /// Opens the file created by [`create`](Self::create).
    pub fn open(path: &Path, size: usize) -> Result<PingPong> {
        let file = ShmFile::open(path)?;
        if file.len() < Self::len(size) {
            return Err(err(format!("{}: too small", path.display())));
        }
        Ok(PingPong { file, size })
    }

    /// Removes the file name once both sides have mapped it.
    pub fn unlink(&mut self) {
        self.file.unlink();
    }

    fn word(&self, offset: usize) -> &std::sync::atomic::AtomicU32 {
        // SAFETY: offsets 0 and 128 lie inside the mapping (at least one
        // page), are 4-byte aligned (the mapping is page-aligned), and the
        // word is only accessed atomically by either process.
        unsafe { &*(self.file.ptr().add(offset) as *const std::sync::atomic::AtomicU32) }
    }

    /// Driver → peer counter.
    pub fn ping(&self) -> &std::sync::atomic::AtomicU32 {
        self.word(0)
    }

    /// Peer → driver counter.
    pub fn pong(&self) -> &std::sync::atomic::AtomicU32 {
        self.word(128)
    }

    /// The driver → peer payload buffer.
    ///
    /// # Safety
    /// The protocol must give the caller exclusive use of the buffer while
    /// the slice lives: the writer only between receiving the other side's
    /// counter and publishing its own, the reader only after seeing the
    /// writer's counter and before publishing its answer.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn ping_buf(&self) -> &mut [u8] {
        // SAFETY: [PAGE, PAGE + size) lies inside the mapping (see `len`);
        // exclusivity is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.file.ptr().add(PAGE), self.size) }
    }

    /// The peer → driver payload buffer. Same contract as [`ping_buf`](Self::ping_buf).
    ///
    /// # Safety
    /// As for [`ping_buf`](Self::ping_buf).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn pong_buf(&self) -> &mut [u8] {
        let off = PAGE + self.size.div_ceil(PAGE) * PAGE;
        // SAFETY: [off, off + size) lies inside the mapping (see `len`).
        unsafe { std::slice::from_raw_parts_mut(self.file.ptr().add(off), self.size) }
    }
}
