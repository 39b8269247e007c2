//! Payloads in shared memory: [`Loan`] (a chunk being written by its sender)
//! and [`Sample`] (a received chunk, read in place).

use crate::error::{PodError, SendError};
use crate::exchange::{
    address_generation, address_port, flags_owner, owner_flags, ExchangeInner, PortCore, FLAG_SOLE,
};
use crate::owned::{OwnedLoan, OwnedSample};
use shmex_core::ring::Descriptor;

/// Who sent a sample ([`Sample::sender`]): the sender's port slot and the
/// slot's attach generation, which moves each time a port attaches there.
/// A port that leaves (or dies) and a later port in the same slot get
/// different ids, so an id never names a different sender later (until one
/// slot has seen 2^32 attaches). Unique within one exchange; it says nothing
/// about ports of other exchanges.
///
/// Displayed as `PORT.GENERATION`, e.g. `3.7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SenderId {
    port: u32,
    generation: u32,
}

impl SenderId {
    pub(crate) fn new(port: u32, generation: u32) -> SenderId {
        SenderId { port, generation }
    }

    /// The id carried in a descriptor's address word (a request's reply
    /// address also carries its stream window, which is not part of it).
    pub(crate) fn from_address(address: u64) -> SenderId {
        SenderId::new(address_port(address), address_generation(address))
    }

    /// The sender's port slot index (reused by later ports).
    pub fn port(self) -> u32 {
        self.port
    }

    /// The slot's attach generation when the sender attached.
    pub fn generation(self) -> u32 {
        self.generation
    }
}

impl std::fmt::Display for SenderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.port, self.generation)
    }
}

/// A chunk loaned from an exchange's pool, written in place, then sent. Dropping
/// an unsent loan returns the chunk to the pool. It borrows the port (or
/// request) it came from, so holding it costs no reference counting.
///
/// The bytes start as whatever the chunk held before (not zeroed). Payloads
/// are 16-byte aligned.
///
/// Not `Send`: dropping it updates its port's records (the busy counter and
/// the holdings bits), which only the thread using the port may write, so it
/// stays on that thread ([`into_owned`](Self::into_owned) makes a `Send`
/// one):
///
/// ```compile_fail,E0277
/// fn needs_send<T: Send>(_: T) {}
/// fn try_it(publisher: &shmex::Publisher) {
///     let loan = publisher.loan(8).unwrap();
///     needs_send(loan); // error: `*const ()` cannot be sent between threads
/// }
/// ```
pub struct Loan<'a> {
    pub(crate) ex: &'a ExchangeInner,
    /// The port it came from (its owned values' keeper).
    core: &'a PortCore,
    pub(crate) chunk: u32,
    pub(crate) len: usize,
    /// Port whose return ring the chunk goes back to.
    pub(crate) owner: Option<u32>,
    /// Port that holds it (its holdings record the loan).
    pub(crate) port: u32,
    /// `!Send` (see the type's docs).
    pub(crate) _not_send: std::marker::PhantomData<*const ()>,
}

impl std::fmt::Debug for Loan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loan")
            .field("exchange", &self.ex.name)
            .field("chunk", &self.chunk)
            .field("len", &self.len)
            .finish()
    }
}

impl<'a> Loan<'a> {
    /// Wraps chunk `chunk`, just loaned by `core` (recorded in its holdings).
    pub(crate) fn new(core: &'a PortCore, chunk: u32, len: usize) -> Loan<'a> {
        Loan {
            ex: &core.ex,
            core,
            chunk,
            len,
            owner: Some(core.index),
            port: core.index,
            _not_send: std::marker::PhantomData,
        }
    }

    /// Turns it into an [`OwnedLoan`]: `Send`, `'static`, droppable on any
    /// thread, sent through its port with e.g.
    /// [`Publisher::send_owned`](crate::Publisher::send_owned).
    pub fn into_owned(mut self) -> OwnedLoan {
        let chunk = std::mem::replace(&mut self.chunk, Descriptor::NO_CHUNK);
        OwnedLoan::new(self.core.keeper(), chunk, self.len)
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length payload.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Shortens or grows the payload within the chunk size.
    pub fn set_len(&mut self, len: usize) -> Result<(), SendError> {
        let max = self.ex.limits.chunk_size as usize;
        if len > max {
            return Err(SendError::PayloadTooLarge { len, max });
        }
        self.len = len;
        Ok(())
    }

    /// The payload as a `T` (length and alignment must fit `T`).
    pub fn as_pod_mut<T: bytemuck::Pod>(&mut self) -> Result<&mut T, PodError> {
        let len = self.len;
        bytemuck::try_from_bytes_mut(self).map_err(|e| PodError::new::<T>(len, e))
    }

    /// Takes the chunk out; the caller now owns its reference. Returns the
    /// chunk, the length and the owner bits for the descriptor's flags.
    /// Call inside the sending operation ([`ExchangeInner::enter`]).
    pub(crate) fn into_raw(mut self) -> (u32, u32, u32) {
        let chunk = std::mem::replace(&mut self.chunk, Descriptor::NO_CHUNK);
        self.ex.unhold(self.port, chunk);
        (chunk, self.len as u32, owner_flags(self.owner))
    }

    /// The chunk, the length and the owner bits, as [`into_raw`](Self::into_raw)
    /// returns them, while the loan keeps holding the chunk.
    pub(crate) fn raw_parts(&self) -> (u32, u32, u32) {
        (self.chunk, self.len as u32, owner_flags(self.owner))
    }

    /// Checks the loan came from `ex`.
    pub(crate) fn check_owner(&self, ex: &ExchangeInner) -> Result<(), SendError> {
        if std::ptr::eq(self.ex, ex) {
            Ok(())
        } else {
            Err(SendError::ForeignLoan)
        }
    }
}

impl std::ops::Deref for Loan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self.ex.payload_ptr(self.chunk, self.len) {
            // SAFETY: payload_ptr checked that chunk and len lie inside the
            // mapping; the chunk is ours (refcount held) until sent.
            Ok(p) => unsafe { std::slice::from_raw_parts(p, self.len) },
            Err(_) => &[],
        }
    }
}

impl std::ops::DerefMut for Loan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self.ex.payload_ptr(self.chunk, self.len) {
            // SAFETY: as in Deref; nobody else holds a reference to an
            // unsent chunk, so the mutable view is exclusive in this process.
            Ok(p) => unsafe { std::slice::from_raw_parts_mut(p, self.len) },
            Err(_) => &mut [],
        }
    }
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        if self.chunk == Descriptor::NO_CHUNK {
            return;
        }
        // A down exchange is never used again: nothing to give back.
        if let Ok(_op) = self.ex.enter(self.port) {
            release_loan(self.ex, self.port, self.chunk);
        }
    }
}

/// Returns an unsent loan's chunk held by port `port`. Inside an operation
/// on `port`, by the port's single writer.
pub(crate) fn release_loan(ex: &ExchangeInner, port: u32, chunk: u32) {
    ex.unhold(port, chunk);
    ex.give_back(chunk);
}

/// A received payload, read in place in shared memory. Dropping it releases
/// the chunk (returned to the pool when its last receiver lets go). It
/// borrows the port it was received on: a sample cannot outlive its port.
///
/// The bytes live in memory other processes map: a well-behaved sender never
/// writes a chunk after sending it, but a hostile one could.
///
/// Not `Send`, like [`Loan`]: its drop updates its port's records, which
/// only the thread using the port may write ([`into_owned`](Self::into_owned)
/// makes a `Send` one).
///
/// ```compile_fail,E0277
/// fn needs_send<T: Send>(_: T) {}
/// fn try_it(subscriber: &shmex::Subscriber) {
///     let sample = subscriber.receive().unwrap();
///     needs_send(sample); // error: `*const ()` cannot be sent between threads
/// }
/// ```
pub struct Sample<'a> {
    pub(crate) ex: &'a ExchangeInner,
    /// The port it was received on (its owned values' keeper).
    pub(crate) core: &'a PortCore,
    pub(crate) chunk: u32,
    pub(crate) len: usize,
    pub(crate) tag: u64,
    /// The descriptor's flags: how to release the chunk.
    flags: u32,
    /// The port it was received on (its holdings record the sample; a sole
    /// chunk's release waits there).
    pub(crate) port: u32,
    /// Set for publications: `key()` then reads the routing key.
    pub(crate) publication: bool,
    key: std::cell::OnceCell<Option<Box<str>>>,
    pub(crate) sender: Option<SenderId>,
    /// What kind of response it is (client side).
    pub(crate) kind: Kind,
    /// A stream chunk's stream slot and its generation: releasing the chunk
    /// gives the server's window one more chunk.
    pub(crate) stream: Option<(u32, u32)>,
    /// A question's server port address (where the answer goes).
    pub(crate) reply_to: u64,
    /// `!Send` (see the type's docs).
    _not_send: std::marker::PhantomData<*const ()>,
}

/// What a sample is, beyond its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Plain,
    StreamChunk,
    StreamEnd,
    Question,
}

impl<'a> Sample<'a> {
    /// Wraps a received descriptor after checking its chunk and length, and
    /// records the chunk in the port's holdings. Call inside the receiving
    /// operation ([`ExchangeInner::enter`]).
    pub(crate) fn from_descriptor(
        core: &'a PortCore,
        d: &Descriptor,
    ) -> Result<Sample<'a>, shmex_core::Corrupt> {
        let ex: &'a ExchangeInner = &core.ex;
        let s = Sample {
            ex,
            core,
            port: core.index,
            chunk: d.chunk,
            len: d.len as usize,
            tag: d.tag,
            flags: d.flags,
            publication: false,
            key: std::cell::OnceCell::new(),
            sender: Some(SenderId::from_address(d.meta)),
            kind: Kind::Plain,
            stream: None,
            reply_to: 0,
            _not_send: std::marker::PhantomData,
        };
        ex.hold(core.index, d.chunk);
        // On error the Sample's drop releases the chunk if its index is valid.
        ex.payload_ptr(d.chunk, d.len as usize)?;
        Ok(s)
    }

    /// The end marker of a chunked response to request `tag`: no payload.
    pub(crate) fn stream_end(core: &'a PortCore, tag: u64) -> Sample<'a> {
        Sample {
            ex: &core.ex,
            core,
            port: core.index,
            chunk: Descriptor::NO_CHUNK,
            len: 0,
            tag,
            flags: 0,
            publication: false,
            key: std::cell::OnceCell::new(),
            sender: None,
            kind: Kind::StreamEnd,
            stream: None,
            reply_to: 0,
            _not_send: std::marker::PhantomData,
        }
    }

    /// True for a part of a chunked response ([`Client::request_stream`]);
    /// releasing it (dropping it) lets the server send one more.
    ///
    /// [`Client::request_stream`]: crate::Client::request_stream
    pub fn is_stream_chunk(&self) -> bool {
        self.kind == Kind::StreamChunk
    }

    /// True for the end marker of a chunked response: every part came
    /// before it; it has no payload.
    pub fn is_stream_end(&self) -> bool {
        self.kind == Kind::StreamEnd
    }

    /// True for a server's question in a dialogue: answer it with
    /// [`Client::answer`](crate::Client::answer).
    pub fn is_question(&self) -> bool {
        self.kind == Kind::Question
    }

    /// Name of the exchange it came through.
    pub fn exchange(&self) -> &str {
        &self.ex.name
    }

    /// The tag: the request's tag for a response or request, the
    /// subscription's tag for a publication, the producer's tag for fan-in.
    pub fn tag(&self) -> u64 {
        self.tag
    }

    /// The routing key it was published under (publish-subscribe only;
    /// `None` otherwise, or when the chunk's key bytes are invalid). Read from
    /// the chunk on first call and copied, so receivers that never ask never
    /// touch the key's cache lines.
    pub fn key(&self) -> Option<&str> {
        if !self.publication {
            return None;
        }
        self.key
            .get_or_init(|| read_key(self.ex, self.chunk))
            .as_deref()
    }

    /// Turns it into an [`OwnedSample`]: `Send + Sync`, `'static`, droppable
    /// on any thread. Its routing key is read now (a publication's).
    /// Chunked-response and dialogue steps ([`is_stream_chunk`],
    /// [`is_question`]) keep their meaning only on the `Sample`: an owned
    /// stream chunk still credits the server's window when it drops, and an
    /// owned question can no longer be answered.
    ///
    /// [`is_stream_chunk`]: Self::is_stream_chunk
    /// [`is_question`]: Self::is_question
    pub fn into_owned(mut self) -> OwnedSample {
        let key = if self.publication {
            self.key
                .take()
                .unwrap_or_else(|| read_key(self.ex, self.chunk))
        } else {
            None
        };
        let chunk = std::mem::replace(&mut self.chunk, Descriptor::NO_CHUNK);
        OwnedSample::new(
            self.core.keeper(),
            crate::owned::SampleParts {
                chunk,
                len: self.len,
                tag: self.tag,
                flags: self.flags,
                stream: self.stream,
                key,
                sender: self.sender,
            },
        )
    }

    /// Who sent it: the publisher, producer, client (a request, on the
    /// server side) or server (a question). `None` for responses and their
    /// stream chunks and end markers, which come from the server the request
    /// went to.
    pub fn sender(&self) -> Option<SenderId> {
        self.sender
    }

    /// The payload bytes, in place.
    pub fn payload(&self) -> &[u8] {
        self
    }

    /// The payload as a `T` (length and alignment must fit `T`).
    pub fn as_pod<T: bytemuck::Pod>(&self) -> Result<&T, PodError> {
        bytemuck::try_from_bytes(self).map_err(|e| PodError::new::<T>(self.len, e))
    }
}

impl std::ops::Deref for Sample<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self.ex.payload_ptr(self.chunk, self.len) {
            // SAFETY: checked inside the mapping; we hold a reference on the
            // chunk so the pool does not hand it out until we drop.
            Ok(p) => unsafe { std::slice::from_raw_parts(p, self.len) },
            Err(_) => &[],
        }
    }
}

impl std::fmt::Debug for Sample<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sample")
            .field("exchange", &self.exchange())
            .field("tag", &self.tag)
            .field("key", &self.key())
            .field("len", &self.len)
            .finish()
    }
}

impl Drop for Sample<'_> {
    fn drop(&mut self) {
        if self.chunk >= self.ex.limits.chunk_count {
            return;
        }
        // A down exchange is never used again: nothing to give back.
        let Ok(_op) = self.ex.enter(self.port) else {
            return;
        };
        release_sample(
            self.ex,
            self.port,
            self.chunk,
            self.flags,
            self.stream,
            true,
        );
    }
}

/// Releases a received chunk held by port `port` (`flags` and `stream` as
/// the sample had them). A sole chunk parks in the port's deferred slot when
/// `defer`, else goes back at once. Inside an operation on `port`, by the
/// port's single writer.
pub(crate) fn release_sample(
    ex: &ExchangeInner,
    port: u32,
    chunk: u32,
    flags: u32,
    stream: Option<(u32, u32)>,
    defer: bool,
) {
    if chunk >= ex.limits.chunk_count {
        return;
    }
    ex.unhold(port, chunk);
    if let Some((slot, generation)) = stream {
        ex.stream_released(port, slot, generation);
    }
    if flags & FLAG_SOLE == 0 {
        ex.release_ref(chunk);
    } else if defer {
        ex.defer_return(port, chunk, flags_owner(flags));
    } else {
        ex.return_free(chunk, flags_owner(flags), true);
    }
}

/// A publication's routing key, copied from chunk `chunk` (`None` when its
/// bytes are invalid).
pub(crate) fn read_key(ex: &ExchangeInner, chunk: u32) -> Option<Box<str>> {
    let h = ex.chunk_header(chunk)?;
    let len = h.key_len.load(std::sync::atomic::Ordering::Relaxed) as usize;
    if len > crate::layout::MAX_KEY_LEN {
        return None;
    }
    let bytes = crate::layout::load_bytes(&ex.chunk_key(chunk)?.0, len);
    String::from_utf8(bytes).ok().map(String::into_boxed_str)
}
