//! The router task: what Redis pushes (other nodes' frames, counts and
//! commands on the channels this node subscribed, and the connection's
//! loss and return) to the thread actors it concerns.

use std::sync::{atomic::Ordering, Arc};

use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::{
    envelope::{open_envelope, TAG_COMMAND, TAG_FRAME, TAG_PRESENCE},
    Bus,
};
use crate::{
    broadcast::{Command, Inbound},
    domain::frame::Frame,
};

/// The router: pushes from Redis to the actors of their thread.
pub(super) async fn route(bus: Arc<Bus>, mut rx: mpsc::UnboundedReceiver<PushInfo>) {
    let mut lost = false;
    while let Some(push) = rx.recv().await {
        match push.kind {
            PushKind::Message => {
                let [Value::BulkString(channel), Value::BulkString(payload), ..] = &push.data[..] else { continue };
                let Some(thread) = bus.thread_of(channel) else { continue };
                let Some((tag, node, body)) = open_envelope(payload) else { continue };
                if node == bus.node {
                    continue;
                }
                let inbound = match tag {
                    TAG_FRAME => match Frame::from_wire(body) {
                        Some(frame) => Inbound::Frame(Arc::new(frame)),
                        None => continue,
                    },
                    // A node that left the live set counts no more.
                    TAG_PRESENCE if !bus.is_live(node) => continue,
                    TAG_PRESENCE if body.len() == 4 => Inbound::Presence {
                        node: node.to_owned(),
                        count: u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize,
                    },
                    TAG_COMMAND => match Command::decode(body) {
                        Some(command) => Inbound::Command(command),
                        None => continue,
                    },
                    _ => continue,
                };
                bus.deliver(thread, &inbound);
            }
            PushKind::Disconnection if !lost => {
                lost = true;
                bus.resubscribing.store(true, Ordering::Relaxed);
                bus.healthy.store(false, Ordering::Relaxed);
                tracing::warn!("redis connection lost; other nodes' frames stop until it is back");
                for inbox in bus.all_inboxes() {
                    inbox.do_send(Inbound::Lost);
                }
            }
            PushKind::Subscribe if lost => {
                lost = false;
                bus.resubscribing.store(false, Ordering::Relaxed);
                bus.healthy.store(true, Ordering::Relaxed);
                tracing::info!("redis connection back");
            }
            _ => {}
        }
    }
}
