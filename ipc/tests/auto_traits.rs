//! `Send` and `Sync` of every public handle, checked at compile time: this
//! file does not build when a handle gains or loses one of them. The table
//! in the crate docs (`lib.rs`, "Threads") states the same.
//!
//! Positive claims are plain bounds; negative ones use the ambiguity trick
//! (as the `static_assertions` crate does): `<T as NotSend<_>>::check`
//! names one impl when `T: !Send` and two, ambiguously, when `T: Send`.

use shmex::{
    Client, Consumer, DeadLetter, Delivery, Error, Exchange, Loan, Node, NodeBuilder,
    OwnedDelivery, OwnedLoan, OwnedSample, Producer, Publisher, Request, ResponseStream, Sample,
    Server, Submitter, Subscriber, TypedConsumer, TypedExchange, TypedLoan, TypedProducer,
    TypedPublisher, TypedSample, TypedSubscriber, WaitSet, Watch, Worker,
};
use shmex::{
    TypedClient, TypedDelivery, TypedReply, TypedRequest, TypedResponseStream, TypedRpcExchange,
    TypedServer, TypedSubmitter, TypedWorker,
};

fn send<T: Send>() {}
fn sync<T: Sync>() {}

/// Implemented twice for `Send` types, so naming `check` is ambiguous.
trait NotSend<A> {
    fn check() {}
}
impl<T: ?Sized> NotSend<()> for T {}
struct IfSend;
impl<T: ?Sized + Send> NotSend<IfSend> for T {}

/// Implemented twice for `Sync` types, so naming `check` is ambiguous.
trait NotSync<A> {
    fn check() {}
}
impl<T: ?Sized> NotSync<()> for T {}
struct IfSync;
impl<T: ?Sized + Sync> NotSync<IfSync> for T {}

/// `Send + Sync`: shared handles (clone them or share a reference).
macro_rules! send_sync {
    ($($t:ty),* $(,)?) => {
        const _: fn() = || { $( send::<$t>(); sync::<$t>(); )* };
    };
}

#[cfg(feature = "serde")]
send_sync!(shmex::SerialError);

/// `Send`, not `Sync`: ports (one thread at a time; move them).
macro_rules! send_only {
    ($($t:ty),* $(,)?) => {
        const _: fn() = || { $( send::<$t>(); <$t as NotSync<_>>::check(); )* };
    };
}

/// Neither: values borrowing a port, which stay on its thread.
macro_rules! neither {
    ($($t:ty),* $(,)?) => {
        const _: fn() = || { $( <$t as NotSend<_>>::check(); <$t as NotSync<_>>::check(); )* };
    };
}

send_sync!(
    Node,
    NodeBuilder,
    Exchange,
    TypedExchange<u64>,
    TypedRpcExchange<u64, u32>,
    OwnedSample,
    OwnedLoan,
    OwnedDelivery,
    Error,
);

send_only!(
    Publisher,
    Subscriber,
    Client,
    Server,
    Producer,
    Consumer,
    Submitter,
    Worker,
    TypedPublisher<u64>,
    TypedSubscriber<u64>,
    TypedProducer<u64>,
    TypedConsumer<u64>,
    TypedClient<u64, u32>,
    TypedServer<u64, u32>,
    TypedSubmitter<u64>,
    TypedWorker<u64>,
    Watch,
);

neither!(
    Sample<'static>,
    Loan<'static>,
    Delivery<'static>,
    Request<'static>,
    ResponseStream<'static>,
    DeadLetter<'static>,
    TypedSample<'static, u64>,
    TypedSample<'static, [u64]>,
    TypedLoan<'static, u64>,
    TypedRequest<'static, u64, u32>,
    TypedReply<'static, u32>,
    TypedResponseStream<'static, u32>,
    TypedDelivery<'static, u64>,
    WaitSet<'static>,
);

/// The checks above are compile-time; this test only makes the file show up
/// in the test list.
#[test]
fn handles_have_the_stated_auto_traits() {}
