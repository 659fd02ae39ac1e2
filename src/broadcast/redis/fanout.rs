//! The fan-out seam over the node's `Bus`: a thread actor's `Fanout` that
//! logs and publishes its frames through Redis, and hands other nodes'
//! frames (relayed by its actor) to this node's readers.

use std::sync::Arc;

use actix::Recipient;
use futures_util::future::{BoxFuture, FutureExt};
use uuid::Uuid;

use super::{Bus, Outgoing, Subscribed};
use crate::{
    broadcast::{local::LocalFanout, Command, Fanout, Fanouts, Inbound, Signal, SignalStream},
    domain::frame::Frame,
};

/// Fan-out through the node's `Bus`.
pub struct RedisFanouts {
    pub bus: Arc<Bus>,
}

impl Fanouts for RedisFanouts {
    fn open(&self, thread_id: Uuid, inbox: Recipient<Inbound>) -> Box<dyn Fanout> {
        let (route, subscribed) = self.bus.attach(thread_id, inbox);
        Box::new(RedisFanout {
            bus: self.bus.clone(),
            thread: thread_id,
            local: Arc::new(LocalFanout::new(self.bus.capacity)),
            route,
            subscribed,
        })
    }
}

pub struct RedisFanout {
    bus: Arc<Bus>,
    thread: Uuid,
    local: Arc<LocalFanout>,
    route: u64,
    subscribed: Subscribed,
}

impl Drop for RedisFanout {
    fn drop(&mut self) {
        self.bus.detach(self.thread, self.route);
    }
}

impl Fanout for RedisFanout {
    fn id(&self) -> u64 {
        self.local.id()
    }

    fn publish(&self, signal: Signal) {
        match signal {
            Signal::Frame(frame) => {
                self.bus.send(Outgoing::Frame { thread: self.thread, log: None, frame, local: self.local.clone() })
            }
            other => self.local.publish(other),
        }
    }

    fn publish_logged(&self, frame: Arc<Frame>, log: uuid::Uuid) {
        self.bus.send(Outgoing::Frame { thread: self.thread, log: Some(log), frame, local: self.local.clone() });
    }

    fn relay(&self, signal: Signal) {
        self.local.publish(signal);
    }

    fn subscribe(&self) -> SignalStream {
        self.local.subscribe()
    }

    fn backlog(&self) -> usize {
        self.local.backlog()
    }

    fn share_presence(&self, count: usize) {
        self.bus.send(Outgoing::Presence { thread: self.thread, count });
    }

    fn command(&self, command: Command) {
        self.bus.send(Outgoing::Command { thread: self.thread, command });
    }

    fn settled(&self, message: Uuid) {
        self.bus.send(Outgoing::Settled { message });
    }

    fn ready(&self) -> BoxFuture<'static, Result<(), String>> {
        let (bus, subscribed) = (self.bus.clone(), self.subscribed.clone());
        async move {
            bus.reachable().await.map_err(|e| e.to_string())?;
            subscribed.await.map_err(|e| e.to_string())
        }
        .boxed()
    }

    fn linked(&self) -> bool {
        self.bus.is_healthy()
    }

    fn log(&self, message: Uuid) -> BoxFuture<'static, Result<Vec<Frame>, String>> {
        let bus = self.bus.clone();
        async move { bus.log(message).await.map_err(|e| e.to_string()) }.boxed()
    }

    fn presence(&self) -> BoxFuture<'static, Vec<(String, usize)>> {
        let (bus, thread) = (self.bus.clone(), self.thread);
        async move { bus.presence(thread).await.unwrap_or_default() }.boxed()
    }
}
