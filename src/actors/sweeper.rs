//! Sweeper (cluster mode, one per node): every half lease it writes this
//! node's heartbeat (its row in `nodes`, which `/admin/cluster` reads) and
//! looks for threads whose answer is still `streaming` while no node holds
//! their lease: their owner died. For each, it has the thread's actor on
//! this node take the answer over (`TakeOver`): the first node to take the
//! expired lease ends the answer `interrupted` with every byte its owner
//! logged, and tells every node's subscribers. A timer, not a poll on any
//! answer's path: an owner's death is noticed within a lease plus half a
//! lease.

use std::{sync::Arc, time::Duration};

use actix::prelude::*;

use super::{
    persistence::Write,
    registry::{Lookup, Registry},
    thread::TakeOver,
    Deps,
};
use crate::store::WriteOp;

pub struct Sweeper {
    deps: Arc<Deps>,
    registry: Addr<Registry>,
    every: Duration,
}

impl Sweeper {
    pub fn new(deps: Arc<Deps>, registry: Addr<Registry>, lease: Duration) -> Sweeper {
        Sweeper { deps, registry, every: lease / 2 }
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        self.deps
            .persistence
            .do_send(Write { ops: vec![WriteOp::Probe { node_id: self.deps.node_id.clone() }], ack: None });
        let (store, registry) = (self.deps.store.clone(), self.registry.clone());
        ctx.spawn(
            async move {
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
            }
            .into_actor(self),
        );
    }
}

impl Actor for Sweeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.sweep(ctx);
        ctx.run_interval(self.every, |act, ctx| act.sweep(ctx));
    }
}
