//! A Unix domain stream socket (abstract address: no file), one `write` and
//! one `read` per message, no batching. Busy-polling: non-blocking sockets
//! retried in a loop; blocking: blocking sockets (fan-in: `poll` on both).
//! Round trips: the peer reads a whole message and writes one back. The
//! kernel copies every byte both ways, so "untouched" only spares the user
//! space fill and sum.

use crate::{
    check_seq, err, read_payload, spin_pause, write_payload, Batch, Case, Clock, DriverSide,
    Histogram, Mode, PeerArgs, PeerSide, Result, Run, Spec,
};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};

fn address(name: &str) -> Result<SocketAddr> {
    Ok(SocketAddr::from_abstract_name(name.as_bytes())?)
}

/// Writes all of `buf`, spinning on `WouldBlock` (non-blocking sockets).
fn write_msg(s: &mut UnixStream, buf: &[u8]) -> Result<()> {
    let mut off = 0;
    while off < buf.len() {
        match s.write(&buf[off..]) {
            Ok(0) => return Err(err("socket closed")),
            Ok(k) => off += k,
            Err(e) if e.kind() == ErrorKind::WouldBlock => spin_pause(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A message being read, possibly in several pieces.
struct Reader {
    buf: Vec<u8>,
    filled: usize,
}

impl Reader {
    fn new(size: usize) -> Reader {
        Reader {
            buf: vec![0; size],
            filled: 0,
        }
    }

    /// Reads what is there; true once the message is complete (then the
    /// next call starts a new one). Blocking sockets wait for data.
    fn poll(&mut self, s: &mut UnixStream) -> Result<bool> {
        if self.filled == self.buf.len() {
            self.filled = 0;
        }
        match s.read(&mut self.buf[self.filled..]) {
            Ok(0) => Err(err("socket closed")),
            Ok(k) => {
                self.filled += k;
                Ok(self.filled == self.buf.len())
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reads one whole message.
    fn read(&mut self, s: &mut UnixStream) -> Result<&[u8]> {
        while !self.poll(s)? {
            spin_pause();
        }
        Ok(&self.buf)
    }
}

/// The cases a socket does not take part in.
fn reject(case: Case) -> Result<()> {
    match case {
        Case::Tasks { .. } => Err(err("a socket has no task distribution")),
        Case::StreamResponse => Err(err("a socket has no chunked responses written in place")),
        _ => Ok(()),
    }
}

struct Driver {
    listener: UnixListener,
    conns: Vec<(UnixStream, Reader, u64)>,
    spec: Spec,
    out: Vec<u8>,
    seq: u64,
}

/// Driving side: listens; the peers connect.
pub fn driver(run: &Run, cell: u32, spec: Spec) -> Result<Box<dyn DriverSide>> {
    reject(spec.case)?;
    let listener = UnixListener::bind_addr(&address(&run.cell_name(cell, "uds"))?)?;
    Ok(Box::new(Driver {
        listener,
        conns: Vec::new(),
        spec,
        out: vec![0; spec.size],
        seq: 0,
    }))
}

impl DriverSide for Driver {
    fn connected(&mut self) -> Result<()> {
        for _ in 0..self.spec.case.peers() {
            let (s, _) = self.listener.accept()?;
            s.set_nonblocking(self.spec.mode == Mode::Spin)?;
            self.conns.push((s, Reader::new(self.spec.size), 1));
        }
        Ok(())
    }

    fn run(&mut self, n: u64, peers: usize, clock: &Clock, hist: &mut Histogram) -> Result<Batch> {
        let touched = self.spec.touched;
        if self.spec.case.is_latency() {
            let (s, reader, _) = self.conns.first_mut().ok_or_else(|| err("no peer"))?;
            let start = clock.now();
            let mut prev = start;
            for _ in 0..n {
                self.seq += 1;
                write_payload(&mut self.out, self.seq, touched);
                write_msg(s, &self.out)?;
                let got = read_payload(reader.read(s)?, touched);
                check_seq(got, self.seq)?;
                let now = clock.now();
                hist.record(clock.ns(now.wrapping_sub(prev)));
                prev = now;
            }
            return Ok(Batch {
                elapsed: clock.duration(prev.wrapping_sub(start)),
                msgs: n,
            });
        }
        let total = n * peers as u64;
        let mut got = 0;
        let mut first = None;
        let mut last = 0;
        let blocking = self.spec.mode == Mode::Blocking;
        while got < total {
            if blocking && self.conns.len() > 1 {
                let mut fds: Vec<_> = self
                    .conns
                    .iter()
                    .map(|(s, _, _)| {
                        nix::poll::PollFd::new(s.as_fd(), nix::poll::PollFlags::POLLIN)
                    })
                    .collect();
                nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE)?;
                let ready: Vec<bool> = fds
                    .iter()
                    .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                    .collect();
                drop(fds);
                for ((s, reader, next), ready) in self.conns.iter_mut().zip(ready) {
                    if ready && reader.poll(s)? {
                        last = clock.now();
                        first.get_or_insert(last);
                        check_seq(read_payload(&reader.buf, touched), *next)?;
                        *next += 1;
                        got += 1;
                    }
                }
                continue;
            }
            let mut progress = false;
            for (s, reader, next) in &mut self.conns {
                if reader.poll(s)? {
                    last = clock.now();
                    first.get_or_insert(last);
                    check_seq(read_payload(&reader.buf, touched), *next)?;
                    *next += 1;
                    got += 1;
                    progress = true;
                }
            }
            if !progress {
                spin_pause();
            }
        }
        Ok(Batch {
            elapsed: clock.duration(last.wrapping_sub(first.unwrap_or(last))),
            msgs: total,
        })
    }
}

struct Peer {
    s: UnixStream,
    reader: Reader,
    out: Vec<u8>,
    spec: Spec,
    seq: u64,
}

/// Peer side: echo (round trips) or writer (streams).
pub fn peer(args: &PeerArgs) -> Result<Box<dyn PeerSide>> {
    reject(args.spec.case)?;
    let s = UnixStream::connect_addr(&address(&args.cell_name("uds"))?)?;
    s.set_nonblocking(args.spec.mode == Mode::Spin)?;
    Ok(Box::new(Peer {
        s,
        reader: Reader::new(args.spec.size),
        out: vec![0; args.spec.size],
        spec: args.spec,
        seq: 0,
    }))
}

impl PeerSide for Peer {
    fn run(&mut self, n: u64) -> Result<()> {
        let touched = self.spec.touched;
        match self.spec.case {
            Case::PubsubRtt | Case::ReqrespRtt => {
                for _ in 0..n {
                    self.seq += 1;
                    let got = read_payload(self.reader.read(&mut self.s)?, touched);
                    check_seq(got, self.seq)?;
                    write_payload(&mut self.out, self.seq, touched);
                    write_msg(&mut self.s, &self.out)?;
                }
            }
            Case::Stream | Case::Fanin => {
                for _ in 0..n {
                    self.seq += 1;
                    write_payload(&mut self.out, self.seq, touched);
                    write_msg(&mut self.s, &self.out)?;
                }
            }
            Case::Tasks { .. } | Case::StreamResponse => reject(self.spec.case)?,
        }
        Ok(())
    }
}
