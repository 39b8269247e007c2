//! The floor: a busy-polled ping-pong of two cache-line-padded counters in a
//! mapped `/dev/shm` file. For touched payloads each side also writes its
//! whole buffer before bumping its counter, and the other reads it all
//! after; untouched, only the counters move (the 8-byte payload *is* the
//! counter). Nothing a real transport does can be faster.

use crate::shm_file::PingPong;
use crate::{
    check_seq, read_payload, spin_pause, write_payload, Batch, Clock, DriverSide, Histogram,
    PeerArgs, PeerSide, Result, Run, Spec,
};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

pub(crate) fn path(name: String) -> PathBuf {
    PathBuf::from("/dev/shm").join(name)
}

struct Driver {
    pp: PingPong,
    spec: Spec,
    seq: u32,
}

/// Driving side.
pub fn driver(run: &Run, cell: u32, spec: Spec) -> Result<Box<dyn DriverSide>> {
    let pp = PingPong::create(&path(run.cell_name(cell, "floor")), spec.size)?;
    Ok(Box::new(Driver { pp, spec, seq: 0 }))
}

impl DriverSide for Driver {
    fn connected(&mut self) -> Result<()> {
        self.pp.unlink();
        Ok(())
    }

    fn run(&mut self, n: u64, _peers: usize, clock: &Clock, hist: &mut Histogram) -> Result<Batch> {
        let touched = self.spec.touched && self.spec.size > 8;
        let (ping, pong) = (self.pp.ping(), self.pp.pong());
        let start = clock.now();
        let mut prev = start;
        for _ in 0..n {
            self.seq = self.seq.wrapping_add(1);
            let seq = self.seq;
            if touched {
                // SAFETY: the peer reads this buffer only between our store
                // below and its answer, which we wait for before writing again.
                write_payload(unsafe { self.pp.ping_buf() }, u64::from(seq), true);
            }
            ping.store(seq, Ordering::Release);
            while pong.load(Ordering::Acquire) != seq {
                spin_pause();
            }
            if touched {
                // SAFETY: the peer wrote it before its store we just saw and
                // writes it again only after our next store.
                let got = read_payload(unsafe { self.pp.pong_buf() }, true);
                check_seq(got, u64::from(seq))?;
            }
            let now = clock.now();
            hist.record(clock.ns(now.wrapping_sub(prev)));
            prev = now;
        }
        Ok(Batch {
            elapsed: clock.duration(prev.wrapping_sub(start)),
            msgs: n,
        })
    }
}

struct Peer {
    pp: PingPong,
    spec: Spec,
    seq: u32,
}

/// Peer side: echoes.
pub fn peer(args: &PeerArgs) -> Result<Box<dyn PeerSide>> {
    let pp = PingPong::open(&path(args.cell_name("floor")), args.spec.size)?;
    Ok(Box::new(Peer {
        pp,
        spec: args.spec,
        seq: 0,
    }))
}

impl PeerSide for Peer {
    fn run(&mut self, n: u64) -> Result<()> {
        let touched = self.spec.touched && self.spec.size > 8;
        let (ping, pong) = (self.pp.ping(), self.pp.pong());
        for _ in 0..n {
            self.seq = self.seq.wrapping_add(1);
            let seq = self.seq;
            while ping.load(Ordering::Acquire) != seq {
                spin_pause();
            }
            if touched {
                // SAFETY: see the driver: strict alternation.
                let got = read_payload(unsafe { self.pp.ping_buf() }, true);
                check_seq(got, u64::from(seq))?;
                // SAFETY: as above.
                write_payload(unsafe { self.pp.pong_buf() }, u64::from(seq), true);
            }
            pong.store(seq, Ordering::Release);
        }
        Ok(())
    }
}
