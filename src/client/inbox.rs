//! The client's inbox: incoming messages that are not responses, sorted by type as the
//! connection's reader decodes them, until `Client::recv` takes them.
//!
//! The reader calls `Inbox::deliver` (no queue or task in between). Each type has a slot:
//! its messages, and the wakers of the `recv`s waiting for it, registered under the same
//! lock as the check, so a message wakes only the receivers of its type. A `recv` that is
//! dropped while waiting takes its waker back. Past the capacity the oldest message of a
//! type is dropped and counted. A type with a handler (`Client::on`) is not kept: the
//! reader hands each message of it to the handler.

use std::{
    any::TypeId,
    collections::VecDeque,
    pin::Pin,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    task::{Context, Poll, Waker},
};

use parking_lot::{Mutex, RwLock};
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::Notify;

use crate::rpc::{ConnectionId, Peer, RpcError, peer::Disconnect, proto};

/// Messages waiting for `recv`, sorted by type as the connection's reader decodes them
/// (no queue or task in between). Each type keeps the wakers of the `recv`s waiting for
/// it, registered under the same lock as the check, so a message wakes only those.
/// Runs in the connection's reader for each message of its type (`Client::on`).
pub(super) type Handler = Box<dyn FnMut(Box<proto::Envelope>) + Send>;

#[derive(Default)]
pub(super) struct Inbox {
    /// Types handed to a handler instead of kept. Held while a message is sorted, so a
    /// handler registered meanwhile cannot miss one (see `set_handler`).
    handlers: Mutex<FxHashMap<TypeId, Handler>>,
    /// Request types the application answers; any other request is refused at once.
    pub(super) answered: RwLock<FxHashSet<TypeId>>,
    slots: Mutex<FxHashMap<TypeId, Slot>>,
    /// Numbers the waiting `recv`s, so a cancelled one can take its waker back.
    next_waiter: AtomicU64,
    pub(super) closed: AtomicBool,
    /// Why the connection ended, once it has.
    pub(super) ended: Mutex<Option<Disconnect>>,
    /// Wakes `closed()` (every waiting `recv` is woken too) and a failed handshake.
    pub(super) closing: Notify,
    /// The first message was not `Hello`: the handshake failed.
    pub(super) bad_greeting: AtomicBool,
    pub(super) dropped: AtomicU64,
}

#[derive(Default)]
struct Slot {
    queue: VecDeque<Box<proto::Envelope>>,
    /// The `recv`s waiting for this type, by number.
    waiters: Vec<(u64, Waker)>,
}

impl Inbox {
    /// Sorts one incoming envelope into its type's slot (runs in the connection's reader).
    pub(super) fn deliver(
        &self,
        peer: &Peer,
        connection_id: ConnectionId,
        envelope: Box<proto::Envelope>,
        capacity: usize,
    ) {
        let Some(payload) = envelope.payload.as_ref() else {
            return;
        };
        let (type_id, name) = proto::payload_type(payload);
        if proto::is_request(payload)
            && !envelope.one_way
            && !self.answered.read().contains(&type_id)
        {
            // Nobody here will answer: say so now rather than let the requester wait
            // for its timeout.
            let error = RpcError::unknown_message(name);
            let _ = peer.respond_with_error_to(connection_id, envelope.id, error);
            return;
        }
        let mut handlers = self.handlers.lock();
        if let Some(handler) = handlers.get_mut(&type_id) {
            handler(envelope);
            return;
        }
        let mut slots = self.slots.lock();
        drop(handlers);
        let slot = slots.entry(type_id).or_default();
        if slot.queue.len() >= capacity {
            slot.queue.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        slot.queue.push_back(envelope);
        // Woken under the lock: waking only schedules the task, and `drain` keeps the
        // list's memory for the next wait.
        for (_, waker) in slot.waiters.drain(..) {
            waker.wake();
        }
    }

    /// From now on messages of `type_id` go to `handler`, the ones already waiting first,
    /// in order. Under the handlers lock, which `deliver` holds until the message is in
    /// its slot, so none is left behind in the slot.
    pub(super) fn set_handler(&self, type_id: TypeId, mut handler: Handler) {
        let mut handlers = self.handlers.lock();
        let waiting = self
            .slots
            .lock()
            .get_mut(&type_id)
            .map(|slot| std::mem::take(&mut slot.queue))
            .unwrap_or_default();
        for envelope in waiting {
            handler(envelope);
        }
        handlers.insert(type_id, handler);
    }

    pub(super) fn take(&self, type_id: TypeId) -> Option<Box<proto::Envelope>> {
        self.slots.lock().get_mut(&type_id)?.queue.pop_front()
    }

    /// Moves up to `max` waiting messages of `type_id`, oldest first, into `out`.
    // Boxed as the slot holds them: moving a box does not copy the 256-byte envelope.
    #[allow(clippy::vec_box)]
    pub(super) fn take_up_to(
        &self,
        type_id: TypeId,
        max: usize,
        out: &mut Vec<Box<proto::Envelope>>,
    ) {
        if let Some(slot) = self.slots.lock().get_mut(&type_id) {
            let count = max.min(slot.queue.len());
            out.extend(slot.queue.drain(..count));
        }
    }

    pub(super) fn close(&self, ended: Disconnect) {
        *self.ended.lock() = Some(ended);
        self.closed.store(true, Ordering::SeqCst);
        // A `recv` checks `closed` under this lock before it registers, so each one
        // either saw the flag or is woken here.
        for slot in self.slots.lock().values_mut() {
            for (_, waker) in slot.waiters.drain(..) {
                waker.wake();
            }
        }
        self.closing.notify_waiters();
    }
}

/// `recv`'s future: the next message of one type, or `Disconnected`.
pub(super) struct Recv<'a> {
    pub(super) inbox: &'a Inbox,
    pub(super) type_id: TypeId,
    /// This future's number while its waker is registered.
    pub(super) waiter: Option<u64>,
}

impl Future for Recv<'_> {
    type Output = Result<Box<proto::Envelope>, RpcError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut slots = this.inbox.slots.lock();
        let slot = slots.entry(this.type_id).or_default();
        let registered = this
            .waiter
            .and_then(|number| slot.waiters.iter().position(|(n, _)| *n == number));
        let ready = match slot.queue.pop_front() {
            Some(envelope) => Some(Ok(envelope)),
            None if this.inbox.closed.load(Ordering::SeqCst) => Some(Err(RpcError::disconnected())),
            None => None,
        };
        if let Some(ready) = ready {
            if let Some(index) = registered {
                slot.waiters.swap_remove(index);
            }
            this.waiter = None;
            return Poll::Ready(ready);
        }
        match registered {
            Some(index) => slot.waiters[index].1.clone_from(cx.waker()),
            None => {
                let number = *this
                    .waiter
                    .get_or_insert_with(|| this.inbox.next_waiter.fetch_add(1, Ordering::Relaxed));
                slot.waiters.push((number, cx.waker().clone()));
            }
        }
        Poll::Pending
    }
}

impl Drop for Recv<'_> {
    fn drop(&mut self) {
        // Cancelled while waiting: take the waker back, or the list would keep it.
        if let Some(number) = self.waiter
            && let Some(slot) = self.inbox.slots.lock().get_mut(&self.type_id)
        {
            slot.waiters.retain(|(n, _)| *n != number);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, atomic::AtomicUsize},
        task::Wake,
    };

    use super::*;
    use crate::rpc::{PeerConfig, metrics::RpcMetrics};

    /// Counts its wakeups.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn update(n: u64) -> Box<proto::Envelope> {
        Box::new(proto::Envelope {
            id: n as u32,
            payload: Some(proto::envelope::Payload::UpdateContacts(
                proto::UpdateContacts {
                    outgoing_requests: vec![n],
                    ..Default::default()
                },
            )),
            ..Default::default()
        })
    }

    fn recv(inbox: &Inbox) -> Recv<'_> {
        Recv {
            inbox,
            type_id: TypeId::of::<proto::UpdateContacts>(),
            waiter: None,
        }
    }

    fn waiting(inbox: &Inbox) -> usize {
        let slots = inbox.slots.lock();
        slots
            .get(&TypeId::of::<proto::UpdateContacts>())
            .map_or(0, |slot| slot.waiters.len())
    }

    #[test]
    fn a_message_wakes_the_waiting_recvs_of_its_type_only() {
        let peer = Peer::new(0, PeerConfig::default(), RpcMetrics::new(None));
        let inbox = Inbox::default();
        let (first, second) = (Arc::new(Counter::default()), Arc::new(Counter::default()));
        let mut a = Box::pin(recv(&inbox));
        let mut b = Box::pin(recv(&inbox));
        let (waker_a, waker_b) = (Waker::from(first.clone()), Waker::from(second.clone()));
        let mut cx_a = Context::from_waker(&waker_a);
        let mut cx_b = Context::from_waker(&waker_b);
        assert!(a.as_mut().poll(&mut cx_a).is_pending());
        assert!(b.as_mut().poll(&mut cx_b).is_pending());
        // Polling again replaces the waker rather than adding one.
        assert!(a.as_mut().poll(&mut cx_a).is_pending());
        assert_eq!(waiting(&inbox), 2);

        // Another type wakes nobody.
        let other = Box::new(proto::Envelope {
            payload: Some(proto::envelope::Payload::Ack(proto::Ack {})),
            ..Default::default()
        });
        inbox.deliver(
            &peer,
            ConnectionId {
                server_id: 0,
                id: 1,
            },
            other,
            8,
        );
        assert_eq!(first.0.load(Ordering::SeqCst), 0);

        inbox.deliver(
            &peer,
            ConnectionId {
                server_id: 0,
                id: 1,
            },
            update(1),
            8,
        );
        assert_eq!(first.0.load(Ordering::SeqCst), 1);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
        // One message: the first to look takes it, the other waits on.
        let Poll::Ready(Ok(got)) = a.as_mut().poll(&mut cx_a) else {
            panic!("the woken recv takes the message");
        };
        assert_eq!(got.id, 1);
        assert!(b.as_mut().poll(&mut cx_b).is_pending());
        assert_eq!(waiting(&inbox), 1);
    }

    #[test]
    fn a_cancelled_recv_takes_its_waker_back() {
        let inbox = Inbox::default();
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        for _ in 0..100 {
            let mut pending = Box::pin(recv(&inbox));
            assert!(pending.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(waiting(&inbox), 0, "dropped recvs left their wakers behind");
    }

    #[test]
    fn closing_wakes_every_recv_with_disconnected_after_the_queued_messages() {
        let peer = Peer::new(0, PeerConfig::default(), RpcMetrics::new(None));
        let inbox = Inbox::default();
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut waiting_recv = Box::pin(recv(&inbox));
        assert!(waiting_recv.as_mut().poll(&mut cx).is_pending());
        inbox.deliver(
            &peer,
            ConnectionId {
                server_id: 0,
                id: 1,
            },
            update(7),
            8,
        );
        inbox.close(Disconnect {
            kind: "closed",
            detail: "test".into(),
        });
        assert!(counter.0.load(Ordering::SeqCst) >= 1);
        // What arrived before the end is still read, then the end is reported.
        let Poll::Ready(Ok(got)) = waiting_recv.as_mut().poll(&mut cx) else {
            panic!("the queued message comes first");
        };
        assert_eq!(got.id, 7);
        let mut after = Box::pin(recv(&inbox));
        let Poll::Ready(Err(error)) = after.as_mut().poll(&mut cx) else {
            panic!("a closed inbox reports Disconnected");
        };
        assert_eq!(error.code, proto::ErrorCode::Disconnected);
    }

    /// An inbox that was delivered updates 1..=`count`, keeping at most `capacity`.
    fn with_updates(count: u64, capacity: usize) -> Inbox {
        let peer = Peer::new(0, PeerConfig::default(), RpcMetrics::new(None));
        let inbox = Inbox::default();
        for n in 1..=count {
            inbox.deliver(
                &peer,
                ConnectionId {
                    server_id: 0,
                    id: 1,
                },
                update(n),
                capacity,
            );
        }
        inbox
    }

    #[test]
    fn a_batch_takes_the_oldest_messages_up_to_its_size() {
        let inbox = with_updates(5, 8);
        let type_id = TypeId::of::<proto::UpdateContacts>();
        let mut batch = Vec::new();
        inbox.take_up_to(type_id, 3, &mut batch);
        assert_eq!(batch.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2, 3]);
        batch.clear();
        inbox.take_up_to(type_id, 10, &mut batch);
        assert_eq!(batch.iter().map(|e| e.id).collect::<Vec<_>>(), [4, 5]);
        batch.clear();
        inbox.take_up_to(type_id, 10, &mut batch);
        assert!(batch.is_empty());
    }

    #[test]
    fn a_handler_gets_the_waiting_messages_then_every_new_one_in_order() {
        let peer = Peer::new(0, PeerConfig::default(), RpcMetrics::new(None));
        let inbox = with_updates(2, 8);
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let sink = seen.clone();
        inbox.set_handler(
            TypeId::of::<proto::UpdateContacts>(),
            Box::new(move |envelope| sink.lock().push(envelope.id)),
        );
        assert_eq!(*seen.lock(), [1, 2], "the waiting messages go first");
        let from = ConnectionId {
            server_id: 0,
            id: 1,
        };
        inbox.deliver(&peer, from, update(3), 8);
        let ack = Box::new(proto::Envelope {
            id: 4,
            payload: Some(proto::envelope::Payload::Ack(proto::Ack {})),
            ..Default::default()
        });
        inbox.deliver(&peer, from, ack, 8);
        assert_eq!(*seen.lock(), [1, 2, 3]);
        // Nothing of the handled type is kept; other types still are.
        assert!(inbox.take(TypeId::of::<proto::UpdateContacts>()).is_none());
        assert_eq!(
            inbox.take(TypeId::of::<proto::Ack>()).map(|e| e.id),
            Some(4)
        );
    }

    #[test]
    fn a_full_inbox_drops_the_oldest_and_counts_it() {
        let inbox = with_updates(5, 3);
        assert_eq!(inbox.dropped.load(Ordering::SeqCst), 2);
        let kept: Vec<u32> =
            std::iter::from_fn(|| inbox.take(TypeId::of::<proto::UpdateContacts>()))
                .map(|e| e.id)
                .collect();
        assert_eq!(kept, [3, 4, 5]);
    }
}
