//! Sweeper (cluster mode, one per node): every half lease it writes this
//! node's heartbeat (its row in `nodes`, which `/admin/cluster` reads),
//! reads which nodes are alive, and looks for threads whose answer is
//! still `streaming` while no node holds their lease: their owner died.
//!
//! - For each such thread, it has the thread's actor on this node take the
//!   answer over (`TakeOver`): the first node to take the expired lease
//!   ends the answer `interrupted` with every byte its owner logged, and
//!   tells every node's subscribers.
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
    registry::{Lookup, NodesChanged, Registry},
    thread::TakeOver,
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
}

impl Sweeper {
    pub fn new(deps: Arc<Deps>, registry: Addr<Registry>, lease: Duration, bus: Arc<Bus>) -> Sweeper {
        Sweeper { deps, registry, bus, lease, live: None }
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        self.deps
            .persistence
            .do_send(Write { ops: vec![WriteOp::Probe { node_id: self.deps.node_id.clone() }], ack: None });
        let (store, registry) = (self.deps.store.clone(), self.registry.clone());
        let within = (self.lease * LIVE_WITHIN).as_millis() as u64;
        ctx.spawn(
            async move {
                let live = store.live_nodes(within).await;
                match store.orphaned_threads().await {
                    Ok(threads) => {
                        for thread_id in threads {
                            if let Ok(Some(actor)) = registry.send(Lookup { thread_id }).await {
                                actor.do_send(TakeOver);
                            }
                        }
                    }
                    Err(e) => tracing::debug!(error.message = %e, "sweep: the database does not answer"),
                }
                live
            }
            .into_actor(self)
            .map(|live, act, _| match live {
                Ok(live) => act.nodes_alive(live.into_iter().collect()),
                Err(e) => tracing::debug!(error.message = %e, "sweep: the live nodes are unknown"),
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

impl Actor for Sweeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.sweep(ctx);
        ctx.run_interval(self.lease / 2, |act, ctx| act.sweep(ctx));
    }
}
