//! Sweeper (cluster mode, one per node): every half lease it writes this
//! node's heartbeat (its row in `nodes`, which `/admin/cluster` reads),
//! reads which nodes are alive, and looks for threads whose answer is
//! still `streaming` while no node holds their lease: their owner died,
//! or stopped for a deploy and handed the answer over.
//!
//! - For each such thread, it has the thread's actor on this node take the
//!   answer over (`TakeOver`): the first node to take the expired lease
//!   continues the answer with every byte its owner logged
//!   (`thread/continuing.rs`), or past its budget ends it `interrupted`,
//!   and tells every node's subscribers.
//! - An answer awaiting input whose calls were all answered, with no live
//!   lease (its node stopped before the next step began), goes on: one
//!   node's actor takes the lease and runs the step (`ContinueAnswer`).
//!   An awaiting answer is never ended: it waits as long as it must.
//! - A node whose heartbeat stops (killed, cut off) leaves the live set
//!   within `LIVE_WITHIN`: its subscriber counts stop counting on this
//!   node (the bus ignores them, every thread actor here forgets them and
//!   tells its tabs); one that comes back counts again.
//!
//! A timer, not a poll on any answer's path: an owner's death is noticed
//! within a lease plus half a lease.

use std::{collections::HashSet, sync::Arc, time::Duration};

use actix::prelude::*;

use super::{
    persistence::Write,
    registry::{Lookup, NodesChanged, Peek, Registry},
    thread::{ContinueAnswer, TakeOver},
    Deps,
};
use crate::{broadcast::redis::Bus, store::WriteOp};

/// A node is alive while its heartbeat is younger than this many leases
/// (it writes one every half lease): `/admin/cluster` and the subscriber
/// counts agree on who is alive.
pub const LIVE_WITHIN: u32 = 2;

pub struct Sweeper {
    deps: Arc<Deps>,
    registry: Addr<Registry>,
    bus: Arc<Bus>,
    lease: Duration,
    /// The live nodes at the last sweep (`None` before the first).
    live: Option<HashSet<String>>,
    /// A sweep is on its way (sweeps never overlap).
    sweeping: bool,
}

impl Sweeper {
    pub fn new(deps: Arc<Deps>, registry: Addr<Registry>, lease: Duration, bus: Arc<Bus>) -> Sweeper {
        Sweeper { deps, registry, bus, lease, live: None, sweeping: false }
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        // A node that shuts down takes over nothing more.
        if self.deps.shutdown.is_draining() || std::mem::replace(&mut self.sweeping, true) {
            return;
        }
        self.deps
            .persistence
            .do_send(Write { ops: vec![WriteOp::Probe { node_id: self.deps.node_id.clone() }], ack: None });
        let (store, registry) = (self.deps.store.clone(), self.registry.clone());
        let within = (self.lease * LIVE_WITHIN).as_millis() as u64;
        let me = self.deps.node_id.clone();
        ctx.spawn(
            async move {
                let live = store.live_nodes(within).await;
                let nodes = live.as_ref().map(Vec::as_slice).unwrap_or_default();
                match store.orphaned_threads().await {
                    Ok(threads) => {
                        for (thread_id, gone) in threads {
                            // One node starts an actor for it (chosen by the
                            // thread's id among the live nodes but the one
                            // whose lease expired); a node that has one
                            // already takes over too.
                            let others: Vec<String> =
                                nodes.iter().filter(|n| Some(*n) != gone.as_ref()).cloned().collect();
                            let actor = match chosen(&others, thread_id).is_none_or(|n| n == me) {
                                true => registry.send(Lookup { thread_id }).await,
                                false => registry.send(Peek { thread_id }).await,
                            };
                            if let Ok(Some(actor)) = actor {
                                actor.do_send(TakeOver);
                            }
                        }
                    }
                    Err(e) => tracing::debug!(error.message = %e, "sweep: the database does not answer"),
                }
                // Answers whose calls were all answered, left by a node that
                // stopped before their next step: one node goes on with each.
                match store.unowned_due_answers().await {
                    Ok(threads) => {
                        for thread_id in threads {
                            if chosen(nodes, thread_id).is_none_or(|n| n == me) {
                                if let Ok(Some(actor)) = registry.send(Lookup { thread_id }).await {
                                    actor.do_send(ContinueAnswer);
                                }
                            }
                        }
                    }
                    Err(e) => tracing::debug!(error.message = %e, "sweep: the database does not answer"),
                }
                live
            }
            .into_actor(self)
            .map(|live, act, _| {
                act.sweeping = false;
                match live {
                    Ok(live) => act.nodes_alive(live.into_iter().collect()),
                    Err(e) => tracing::debug!(error.message = %e, "sweep: the live nodes are unknown"),
                }
            }),
        );
    }

    /// Who is alive now: the bus counts only their subscribers, and the
    /// thread actors hear who left or came back.
    fn nodes_alive(&mut self, mut live: HashSet<String>) {
        // This node is alive while it sweeps, whatever its last heartbeat.
        live.insert(self.deps.node_id.clone());
        if let Some(before) = &self.live {
            let gone: Vec<String> = before.difference(&live).cloned().collect();
            let back: Vec<String> = live.difference(before).cloned().collect();
            for node in &gone {
                tracing::warn!(node, "a node's heartbeat stopped; its subscribers no longer count");
            }
            if !gone.is_empty() || !back.is_empty() {
                self.registry.do_send(NodesChanged { gone, back });
            }
        }
        self.bus.set_live_nodes(live.clone());
        self.live = Some(live);
    }
}

/// The live node that takes over `thread_id`'s answer first (the nodes in
/// the same order on every node, so all agree); `None` if none is known.
fn chosen(nodes: &[String], thread_id: uuid::Uuid) -> Option<&str> {
    let h = thread_id.as_u128();
    let h = (h ^ (h >> 64)) as u64;
    (!nodes.is_empty()).then(|| nodes[(h % nodes.len() as u64) as usize].as_str())
}

impl Actor for Sweeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.sweep(ctx);
        ctx.run_interval(self.lease / 2, |act, ctx| act.sweep(ctx));
    }
}
