//! The floor of `stream-response`: the same bytes moved by `memcpy` in one
//! process, no peer. Two buffers of [`STREAM_WINDOW`] blocks of
//! [`STREAM_CHUNK`] bytes each (2 MiB: the memory a stream's window
//! cycles through; the source written once at set-up, both faulted in); a
//! response is its size copied block by block from the one to the other
//! (`copy_from_slice`, i.e. `memcpy`), going round both buffers, nothing
//! else: no fill, no check. The buffer size does not depend on the
//! response size, so quick and full runs measure the same thing.

use crate::{
    err, fill_words, Batch, Case, Clock, DriverSide, Histogram, Result, Run, Spec, STREAM_CHUNK,
    STREAM_WINDOW,
};

struct Driver {
    src: Vec<u8>,
    dst: Vec<u8>,
    /// Blocks per response.
    blocks: u64,
}

/// Driving side (the whole case).
pub fn driver(_run: &Run, _cell: u32, spec: Spec) -> Result<Box<dyn DriverSide>> {
    if spec.case != Case::StreamResponse {
        return Err(err("memcpy is the floor of stream-response only"));
    }
    let len = STREAM_WINDOW as usize * STREAM_CHUNK;
    let mut src = vec![0u8; len];
    for (k, block) in src.chunks_exact_mut(STREAM_CHUNK).enumerate() {
        fill_words(block, k as u64 + 1);
    }
    // Written once so that no page is first touched while timed.
    let dst = vec![0xA5u8; len];
    Ok(Box::new(Driver {
        src,
        dst,
        blocks: (spec.size / STREAM_CHUNK) as u64,
    }))
}

impl DriverSide for Driver {
    fn run(
        &mut self,
        n: u64,
        _peers: usize,
        clock: &Clock,
        _hist: &mut Histogram,
    ) -> Result<Batch> {
        let total = n * self.blocks;
        let start = clock.now();
        let mut left = total;
        while left > 0 {
            for (d, s) in self
                .dst
                .chunks_exact_mut(STREAM_CHUNK)
                .zip(self.src.chunks_exact(STREAM_CHUNK))
                .take(left.min(u64::from(STREAM_WINDOW)) as usize)
            {
                d.copy_from_slice(s);
                std::hint::black_box(d);
                left -= 1;
            }
        }
        let end = clock.now();
        if self.dst.get(8..16) != self.src.get(8..16) {
            return Err(err("memcpy: the destination differs from the source"));
        }
        Ok(Batch {
            elapsed: clock.duration(end.wrapping_sub(start)),
            msgs: total,
        })
    }
}
