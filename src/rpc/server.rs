//! The handler registry and the per-connection loop.
//!
//! Handlers are plain async functions registered by message type (`TypeId`), once each:
//! `add_request_handler(f)` for `f(request, Response<M>, session)` and
//! `add_message_handler(f)` for `f(message, session)`. The session type `S` belongs to the
//! caller (the domain), so this module stays free of users, rooms and databases.
//!
//! The loop runs a connection's handlers concurrently (up to `max_in_flight`, then it
//! stops reading: back-pressure rather than unbounded tasks) and guarantees an answer to
//! every request: the handler's response, its error, `Internal` when it returned without
//! responding or panicked, or `UnknownMessage` when nobody handles the message.

use std::{
    any::TypeId,
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use futures::{FutureExt, StreamExt, future::BoxFuture, stream::FuturesUnordered};
use rustc_hash::FxHashMap;
use tokio_util::sync::CancellationToken;

use super::{
    envelope::{ConnectionId, Receipt, TypedEnvelope, into_typed},
    error::RpcError,
    peer::{Incoming, Peer},
    proto::{self, EnvelopedMessage, RequestMessage},
    queue,
};

type Handler<S> =
    Box<dyn Fn(ConnectionId, proto::Envelope, S) -> BoxFuture<'static, ()> + Send + Sync>;

/// The answer slot of one request. Consuming `send` answers it; if the handler returns
/// without calling it, the registry answers `Internal` instead.
pub struct Response<M: RequestMessage> {
    peer: Arc<Peer>,
    receipt: Receipt<M>,
    responded: Arc<AtomicBool>,
}

impl<M: RequestMessage> Response<M> {
    /// Answers the request. If the answer cannot be queued (e.g. it is over the frame
    /// cap), the request is still unanswered and the registry sends the error instead.
    pub fn send(self, response: M::Response) -> Result<(), RpcError> {
        self.peer.respond(self.receipt, response)?;
        self.responded.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// The connection that sent the request.
    pub fn sender_id(&self) -> ConnectionId {
        self.receipt.sender_id
    }
}

pub struct Server<S> {
    peer: Arc<Peer>,
    handlers: FxHashMap<TypeId, Handler<S>>,
    max_in_flight: usize,
}

impl<S: Clone + Send + Sync + 'static> Server<S> {
    pub fn new(peer: Arc<Peer>, max_in_flight: usize) -> Self {
        Server {
            peer,
            handlers: FxHashMap::default(),
            max_in_flight: max_in_flight.max(1),
        }
    }

    pub fn peer(&self) -> &Arc<Peer> {
        &self.peer
    }

    fn insert(&mut self, type_id: TypeId, name: &str, handler: Handler<S>) {
        if self.handlers.insert(type_id, handler).is_some() {
            panic!("a handler for {name} is already registered");
        }
    }

    /// Registers the handler of request `M`. Panics if `M` already has one.
    pub fn add_request_handler<M, F, Fut, E>(&mut self, handler: F) -> &mut Self
    where
        M: RequestMessage,
        F: Fn(M, Response<M>, S) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<RpcError> + Send + 'static,
    {
        let peer = self.peer.clone();
        let handler = Arc::new(handler);
        self.insert(
            TypeId::of::<M>(),
            M::NAME,
            Box::new(move |sender, envelope, session| {
                let peer = peer.clone();
                let handler = handler.clone();
                async move {
                    let Some(TypedEnvelope { message_id, payload, .. }) = into_typed::<M>(sender, envelope)
                    else {
                        return;
                    };
                    let responded = Arc::new(AtomicBool::new(false));
                    let response = Response {
                        peer: peer.clone(),
                        receipt: Receipt::new(sender, message_id),
                        responded: responded.clone(),
                    };
                    let outcome = AssertUnwindSafe(handler(payload, response, session))
                        .catch_unwind()
                        .await;
                    let error = match outcome {
                        Ok(Ok(())) if responded.load(Ordering::SeqCst) => return,
                        Ok(Ok(())) => {
                            tracing::error!(message = M::NAME, "request handler returned without responding");
                            RpcError::internal()
                        }
                        Ok(Err(error)) => error.into(),
                        Err(_) => {
                            tracing::error!(message = M::NAME, "request handler panicked");
                            RpcError::internal()
                        }
                    };
                    if responded.load(Ordering::SeqCst) {
                        tracing::warn!(message = M::NAME, %error, "handler failed after responding");
                    } else if let Err(send_error) = peer.respond_with_error_to(sender, message_id, error) {
                        tracing::debug!(%sender, %send_error, "could not send error response");
                    }
                }
                .boxed()
            }),
        );
        self
    }

    /// Registers a synchronous handler of request `M`: it runs inline, before the next
    /// envelope of the connection is read, so a connection's requests of such types are
    /// handled (and what they relay is queued) strictly in arrival order, with no task
    /// or allocation per message. For hot relay paths that never wait on anything.
    pub fn add_inline_request_handler<M, F, E>(&mut self, handler: F) -> &mut Self
    where
        M: RequestMessage,
        F: Fn(M, Response<M>, &S) -> Result<(), E> + Send + Sync + 'static,
        E: Into<RpcError> + Send + 'static,
    {
        let peer = self.peer.clone();
        self.insert(
            TypeId::of::<M>(),
            M::NAME,
            Box::new(move |sender, envelope, session| {
                let Some(TypedEnvelope {
                    message_id,
                    payload,
                    ..
                }) = into_typed::<M>(sender, envelope)
                else {
                    return futures::future::ready(()).boxed();
                };
                let responded = Arc::new(AtomicBool::new(false));
                let response = Response {
                    peer: peer.clone(),
                    receipt: Receipt::new(sender, message_id),
                    responded: responded.clone(),
                };
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    handler(payload, response, &session)
                }));
                let error = match outcome {
                    Ok(Ok(())) if responded.load(Ordering::SeqCst) => None,
                    Ok(Ok(())) => {
                        tracing::error!(
                            message = M::NAME,
                            "request handler returned without responding"
                        );
                        Some(RpcError::internal())
                    }
                    Ok(Err(error)) => Some(error.into()),
                    Err(_) => {
                        tracing::error!(message = M::NAME, "request handler panicked");
                        Some(RpcError::internal())
                    }
                };
                if let Some(error) = error.filter(|_| !responded.load(Ordering::SeqCst)) {
                    let _ = peer.respond_with_error_to(sender, message_id, error);
                }
                futures::future::ready(()).boxed()
            }),
        );
        self
    }

    /// Registers a synchronous handler of message `M`, run inline like
    /// [`Self::add_inline_request_handler`]'s.
    pub fn add_inline_message_handler<M, F, E>(&mut self, handler: F) -> &mut Self
    where
        M: EnvelopedMessage,
        F: Fn(M, &S) -> Result<(), E> + Send + Sync + 'static,
        E: Into<RpcError> + Send + 'static,
    {
        self.insert(
            TypeId::of::<M>(),
            M::NAME,
            Box::new(move |sender, envelope, session| {
                if let Some(typed) = into_typed::<M>(sender, envelope) {
                    match std::panic::catch_unwind(AssertUnwindSafe(|| handler(typed.payload, &session))) {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => {
                            let error: RpcError = error.into();
                            tracing::warn!(message = M::NAME, %sender, %error, "message handler failed");
                        }
                        Err(_) => tracing::error!(message = M::NAME, "message handler panicked"),
                    }
                }
                futures::future::ready(()).boxed()
            }),
        );
        self
    }

    /// Registers the handler of message `M` (no response). Panics if `M` already has one.
    pub fn add_message_handler<M, F, Fut, E>(&mut self, handler: F) -> &mut Self
    where
        M: EnvelopedMessage,
        F: Fn(M, S) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<RpcError> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.insert(
            TypeId::of::<M>(),
            M::NAME,
            Box::new(move |sender, envelope, session| {
                let handler = handler.clone();
                async move {
                    let Some(typed) = into_typed::<M>(sender, envelope) else {
                        return;
                    };
                    match AssertUnwindSafe(handler(typed.payload, session)).catch_unwind().await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => {
                            let error: RpcError = error.into();
                            tracing::warn!(message = M::NAME, %sender, %error, "message handler failed");
                        }
                        Err(_) => tracing::error!(message = M::NAME, "message handler panicked"),
                    }
                }
                .boxed()
            }),
        );
        self
    }

    /// Runs the handlers of one connection until its incoming queue ends or `shutdown`
    /// fires; then waits for the handlers already running.
    pub async fn handle_connection(
        self: Arc<Self>,
        connection_id: ConnectionId,
        mut incoming: queue::Receiver<Incoming>,
        session: S,
        shutdown: CancellationToken,
    ) {
        // Created on the first handler that waits: most connections never have one, and
        // the set allocates on creation.
        let mut in_flight: Option<FuturesUnordered<BoxFuture<'static, ()>>> = None;
        let running = |in_flight: &Option<FuturesUnordered<_>>| {
            in_flight.as_ref().map_or(0, FuturesUnordered::len)
        };
        loop {
            tokio::select! {
                biased;
                _ = async { in_flight.as_mut().unwrap().next().await }, if running(&in_flight) > 0 => {}
                _ = shutdown.cancelled() => break,
                item = incoming.recv(), if running(&in_flight) < self.max_in_flight => {
                    let Some(item) = item else { break };
                    let (envelope, budget) = item.into_parts();
                    let mut handled = self.dispatch(connection_id, *envelope, session.clone());
                    // Inline handlers (and quick ones) finish on their first poll: no
                    // task set, no allocation. The envelope's budget share returns when
                    // its handler is done.
                    if (&mut handled).now_or_never().is_none() {
                        let in_flight = in_flight.get_or_insert_with(FuturesUnordered::new);
                        in_flight.push(async move { handled.await; drop(budget) }.boxed());
                    }
                }
            }
        }
        if let Some(mut in_flight) = in_flight {
            while in_flight.next().await.is_some() {}
        }
    }

    fn dispatch(
        &self,
        sender: ConnectionId,
        envelope: proto::Envelope,
        session: S,
    ) -> BoxFuture<'static, ()> {
        let received_at = Instant::now();
        let Some(payload) = envelope.payload.as_ref() else {
            // A payload field this build does not know (a newer client): answer so a
            // waiting requester fails fast; a stray response is ignored by the client.
            let error = RpcError::new(proto::ErrorCode::UnknownMessage, "unknown message payload");
            let _ = self.peer.respond_with_error_to(sender, envelope.id, error);
            return futures::future::ready(()).boxed();
        };
        let (type_id, name) = proto::payload_type(payload);
        match self.handlers.get(&type_id) {
            Some(handler) => {
                let mut future = handler(sender, envelope, session);
                let histogram = self
                    .peer
                    .metrics()
                    .handler_seconds
                    .with_label_values(&[name]);
                // Inline handlers are done by now: no second box for them.
                if (&mut future).now_or_never().is_some() {
                    histogram.observe(received_at.elapsed().as_secs_f64());
                    return futures::future::ready(()).boxed();
                }
                async move {
                    future.await;
                    histogram.observe(received_at.elapsed().as_secs_f64());
                }
                .boxed()
            }
            None => {
                tracing::debug!(%sender, message = name, "no handler");
                if proto::is_request(payload) {
                    let _ = self.peer.respond_with_error_to(
                        sender,
                        envelope.id,
                        RpcError::unknown_message(name),
                    );
                }
                futures::future::ready(()).boxed()
            }
        }
    }
}
