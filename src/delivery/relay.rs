//! The worker side of fan-out: one relay per thread per HTTP worker.
//!
//! A thread actor publishes each frame once into its ring (`Fanout`). On
//! every HTTP worker that has subscribers of that thread, one relay task
//! reads the ring and hands the frame to each local subscriber
//! (`Subscriber::deliver`, which writes into its response pipe or, its
//! pipe full, marks it behind): per chunk, one wake-up per worker instead
//! of one per subscriber, and no session actor runs at all while a
//! subscriber keeps up. Everything here lives on the worker's thread
//! (`Rc`, no locks); heartbeats follow the thread's `Tick`, so no timer
//! runs per subscriber.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    rc::Rc,
    sync::Arc,
};

use futures_util::StreamExt;

use super::subscriber::Subscriber;
use crate::broadcast::{Lagged, Signal, SignalStream};
use crate::{
    domain::{
        codes::{EventKind, StreamCode},
        frame::StreamPos,
    },
    metrics::Metrics,
};

/// One thread's relay on this worker.
struct Relay {
    subscribers: RefCell<Vec<Rc<Subscriber>>>,
    /// The position of the last frame read from the ring.
    last: Cell<StreamPos>,
    /// The ring skipped signals and no frame has been read since.
    lagging: Cell<bool>,
    task: Cell<Option<actix_rt::task::JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

thread_local! {
    /// This worker's relays, by the fan-out they read (`Fanout::id`).
    static RELAYS: RefCell<HashMap<u64, Rc<Relay>>> = RefCell::new(HashMap::new());
}

/// Adds `subscriber` to this worker's relay of fan-out `fanout_id`,
/// starting the relay with `signals` if there is none. The subscriber
/// joins (`Delivery::join`): its session writes what its subscription
/// replayed up to `head`, then catches up on what the relay read past it.
pub fn join(
    fanout_id: u64,
    signals: SignalStream,
    subscriber: Rc<Subscriber>,
    head: StreamPos,
    metrics: &Arc<Metrics>,
) {
    let relay = RELAYS.with(|relays| {
        let mut relays = relays.borrow_mut();
        if let Some(relay) = relays.get(&fanout_id) {
            return relay.clone();
        }
        // Its ring holds only what was published after `head`.
        let relay = Rc::new(Relay {
            subscribers: RefCell::new(Vec::new()),
            last: Cell::new(head),
            lagging: Cell::new(false),
            task: Cell::new(None),
            metrics: metrics.clone(),
        });
        relays.insert(fanout_id, relay.clone());
        let task = actix_rt::spawn(run(fanout_id, relay.clone(), signals));
        relay.task.set(Some(task));
        relay
    });
    subscriber.join(head, relay.last.get(), relay.lagging.get());
    relay.subscribers.borrow_mut().push(subscriber);
}

/// Removes a subscriber; the relay stops with its last one.
pub fn leave(fanout_id: u64, session_id: u64) {
    RELAYS.with(|relays| {
        let mut relays = relays.borrow_mut();
        let Some(relay) = relays.get(&fanout_id) else { return };
        let empty = {
            let mut subscribers = relay.subscribers.borrow_mut();
            subscribers.retain(|s| s.session_id != session_id);
            subscribers.is_empty()
        };
        if empty {
            if let Some(task) = relay.task.take() {
                task.abort();
            }
            relays.remove(&fanout_id);
        }
    });
}

async fn run(fanout_id: u64, relay: Rc<Relay>, mut signals: SignalStream) {
    while let Some(item) = signals.next().await {
        if !relay.handle(item) {
            break;
        }
    }
    // The ring ended (its thread actor stopped) or the thread closed.
    let subscribers = std::mem::take(&mut *relay.subscribers.borrow_mut());
    for subscriber in subscribers {
        subscriber.thread_closed(StreamCode::ThreadStopped, StreamCode::ThreadStopped.message());
    }
    RELAYS.with(|relays| {
        let mut relays = relays.borrow_mut();
        if relays.get(&fanout_id).is_some_and(|r| Rc::ptr_eq(r, &relay)) {
            relays.remove(&fanout_id);
        }
    });
}

impl Relay {
    /// Hands one signal to every subscriber; `false` when the thread closed.
    fn handle(&self, item: Result<Signal, Lagged>) -> bool {
        let subscribers = self.subscribers.borrow();
        match item {
            Ok(Signal::Frame(frame)) => {
                self.last.set(frame.pos);
                self.lagging.set(false);
                let written = subscribers.iter().filter(|s| s.deliver(&frame)).count();
                if frame.kind == EventKind::MessageDelta {
                    self.metrics.chunks_out.inc_by(written as u64);
                    self.metrics.chunk_delivery_seconds.observe(frame.born.elapsed().as_secs_f64());
                }
            }
            Ok(Signal::Presence(count)) => subscribers.iter().for_each(|s| s.presence(count)),
            Ok(Signal::Notice(frame)) => subscribers.iter().for_each(|s| s.notice(&frame)),
            Ok(Signal::Tick) => subscribers.iter().for_each(|s| s.tick()),
            Ok(Signal::Closed(code)) => {
                subscribers.iter().for_each(|s| s.thread_closed(code, code.message()));
                drop(subscribers);
                self.subscribers.borrow_mut().clear();
                return false;
            }
            Ok(Signal::Resync) => subscribers.iter().for_each(|s| s.lagged()),
            Err(Lagged(missed)) => {
                tracing::debug!(missed, "relay lagged; its subscribers catch up");
                self.lagging.set(true);
                subscribers.iter().for_each(|s| s.lagged());
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use actix::{Actor, Context, Handler};
    use bytes::Bytes;
    use futures_util::StreamExt;
    use uuid::Uuid;

    use super::*;
    use crate::{
        broadcast::{local::LocalFanout, Fanout},
        delivery::{
            pipe::{pipe, PipeBody},
            subscriber::{Notice, Wire},
        },
        domain::{event::Event, frame::Frame},
    };

    fn p(seq: u64) -> StreamPos {
        StreamPos::new(1, seq)
    }

    /// Stands in for a session actor: keeps the notices it is sent.
    struct Notices(Rc<RefCell<Vec<Notice>>>);

    impl Actor for Notices {
        type Context = Context<Self>;
    }

    impl Handler<Notice> for Notices {
        type Result = ();
        fn handle(&mut self, notice: Notice, _: &mut Context<Self>) {
            self.0.borrow_mut().push(notice);
        }
    }

    fn subscriber(id: u64, capacity: usize) -> (Rc<Subscriber>, PipeBody, Rc<RefCell<Vec<Notice>>>) {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let notices = Notices(seen.clone()).start().recipient();
        let (tx, body) = pipe(capacity);
        (Rc::new(Subscriber::new(id, Uuid::nil(), Wire::Sse, tx, notices, None, None)), body, seen)
    }

    /// A broadcast frame whose SSE bytes name its sequence number.
    fn frame(seq: u64) -> Signal {
        let event = Event::Presence { thread_id: Uuid::nil(), cursor: None, subscribers: seq as usize };
        Signal::Frame(Arc::new(Frame::encode(&event, p(seq), false)))
    }

    fn seq_of(bytes: &Bytes) -> u64 {
        let text = std::str::from_utf8(bytes).unwrap();
        text.split("\"subscribers\":").nth(1).unwrap().trim_end_matches(['}', '\n']).parse().unwrap()
    }

    /// A fresh ring, and subscriber 1 (pipe of `capacity`) joined to its
    /// relay from the start, still joining until `caught_up`.
    fn ring_with_one(capacity: usize) -> (LocalFanout, Rc<Subscriber>, PipeBody, Rc<RefCell<Vec<Notice>>>) {
        let fanout = LocalFanout::new(64);
        let (sub, body, notices) = subscriber(1, capacity);
        join(fanout.id(), fanout.subscribe(), sub.clone(), p(0), &Arc::new(Metrics::new()));
        (fanout, sub, body, notices)
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[actix_rt::test]
    async fn frames_go_out_in_order_until_the_pipe_is_full_then_the_session_is_told_once() {
        let (fanout, sub, mut body, notices) = ring_with_one(2);
        assert!(sub.caught_up(p(0)), "nothing was skipped before it joined");
        (1..=5).for_each(|seq| fanout.publish(frame(seq)));
        settle().await;
        let got = [body.next().await.unwrap().unwrap(), body.next().await.unwrap().unwrap()];
        assert_eq!(got.iter().map(seq_of).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(*notices.borrow(), vec![Notice::Behind], "one notice however many frames were skipped");
        // A catch-up that ends before the last skipped frame is not enough.
        assert!(!sub.caught_up(p(4)));
        assert!(sub.caught_up(p(5)));
        fanout.publish(frame(6));
        settle().await;
        assert_eq!(seq_of(&body.next().await.unwrap().unwrap()), 6, "live again after the catch-up");
        leave(fanout.id(), 1);
    }

    #[actix_rt::test]
    async fn a_subscriber_joining_behind_the_relay_owes_a_catch_up_round() {
        let (fanout, first, _body1, _) = ring_with_one(16);
        assert!(first.caught_up(p(0)));
        // The second subscription was made at seq 1, but the relay has read
        // up to 3 by the time it joins: frames 2 and 3 were never written
        // to it, and its catch-up must cover them.
        let stale = fanout.subscribe();
        (1..=3).for_each(|seq| fanout.publish(frame(seq)));
        settle().await;
        let (second, mut body2, _) = subscriber(2, 16);
        join(fanout.id(), stale, second.clone(), p(1), &Arc::new(Metrics::new()));
        assert!(!second.caught_up(p(1)));
        assert!(second.caught_up(p(3)));
        fanout.publish(frame(4));
        settle().await;
        assert_eq!(seq_of(&body2.next().await.unwrap().unwrap()), 4);
        leave(fanout.id(), 1);
        leave(fanout.id(), 2);
        RELAYS.with(|relays| assert!(relays.borrow().is_empty(), "the relay stops with its last subscriber"));
    }

    #[actix_rt::test]
    async fn a_subscriber_behind_gets_the_latest_count_once_live_again() {
        let (fanout, sub, mut body, _) = ring_with_one(16);
        // Still behind (its replay is being written): counts are held back,
        // and only the latest is owed.
        fanout.publish(Signal::Presence(3));
        fanout.publish(Signal::Presence(4));
        settle().await;
        assert!(sub.caught_up(p(0)));
        let written = std::str::from_utf8(&body.next().await.unwrap().unwrap()).unwrap().to_owned();
        assert!(written.contains("\"subscribers\":4"), "{written}");
        fanout.publish(frame(1));
        settle().await;
        assert_eq!(seq_of(&body.next().await.unwrap().unwrap()), 1, "nothing else was owed");
        leave(fanout.id(), 1);
    }

    #[actix_rt::test]
    async fn a_closing_thread_writes_its_error_and_tells_every_session() {
        let (fanout, sub, mut body, notices) = ring_with_one(1);
        assert!(sub.caught_up(p(0)));
        fanout.publish(frame(1));
        fanout.publish(Signal::Closed(StreamCode::ThreadDeleted));
        settle().await;
        assert_eq!(seq_of(&body.next().await.unwrap().unwrap()), 1);
        let closing = body.next().await.unwrap().unwrap();
        assert!(
            std::str::from_utf8(&closing).unwrap().contains("\"code\":\"thread_deleted\""),
            "even past a full pipe"
        );
        assert_eq!(*notices.borrow(), vec![Notice::Closed]);
        RELAYS.with(|relays| assert!(relays.borrow().is_empty()));
    }
}
