//! The blocking floor: a ping-pong of two futex words in a mapped `/dev/shm`
//! file. Each side stores its counter and wakes the other with `FUTEX_WAKE`,
//! then sleeps in `FUTEX_WAIT` until the other's counter moves: every round
//! trip is two wake-ups of a sleeping process, with no spinning at all.
//! Touched payloads as in [`floor`](super::floor).

use super::floor::path;
use crate::shm_file::PingPong;
use crate::{
    check_seq, read_payload, write_payload, Batch, Clock, DriverSide, Histogram, PeerArgs,
    PeerSide, Result, Run, Spec,
};
use std::sync::atomic::{AtomicU32, Ordering};

fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: `word` is a valid aligned u32 in a live shared mapping;
    // FUTEX_WAIT only reads it. Not private: the word is shared.
    unsafe {
        nix::libc::syscall(
            nix::libc::SYS_futex,
            word.as_ptr(),
            nix::libc::FUTEX_WAIT,
            expected,
            std::ptr::null::<nix::libc::timespec>(),
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: as above; FUTEX_WAKE touches no memory.
    unsafe {
        nix::libc::syscall(
            nix::libc::SYS_futex,
            word.as_ptr(),
            nix::libc::FUTEX_WAKE,
            1,
        );
    }
}

/// Sleeps until `word == want`.
fn wait_for(word: &AtomicU32, want: u32) {
    loop {
        let v = word.load(Ordering::Acquire);
        if v == want {
            return;
        }
        futex_wait(word, v);
    }
}

struct Driver {
    pp: PingPong,
    spec: Spec,
    seq: u32,
}

/// Driving side.
pub fn driver(run: &Run, cell: u32, spec: Spec) -> Result<Box<dyn DriverSide>> {
    let pp = PingPong::create(&path(run.cell_name(cell, "futex")), spec.size)?;
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
                // SAFETY: strict alternation, as in the floor.
                write_payload(unsafe { self.pp.ping_buf() }, u64::from(seq), true);
            }
            ping.store(seq, Ordering::Release);
            futex_wake(ping);
            wait_for(pong, seq);
            if touched {
                // SAFETY: as above.
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
    let pp = PingPong::open(&path(args.cell_name("futex")), args.spec.size)?;
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
            wait_for(ping, seq);
            if touched {
                // SAFETY: strict alternation.
                let got = read_payload(unsafe { self.pp.ping_buf() }, true);
                check_seq(got, u64::from(seq))?;
                // SAFETY: as above.
                write_payload(unsafe { self.pp.pong_buf() }, u64::from(seq), true);
            }
            pong.store(seq, Ordering::Release);
            futex_wake(pong);
        }
        Ok(())
    }
}
