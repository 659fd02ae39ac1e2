//! Calls the service runs itself (tools at a URL, MCP tools): the thread
//! actor that may write the thread (alone, or holding its lease in
//! cluster mode) starts each call of the awaiting answer that waits for
//! the service, once the answer's state is stored (`CallState::Runs`), and
//! answers the call with what came back, through the same path as a
//! result a client posts (`store_answers`): stored, `tool.resolved` to
//! every tab, and the next step once nothing waits.
//!
//! At least once: a call stops with its actor (a stop, a crash, a lost
//! lease); its stored state still says the service runs it, so the actor
//! that next loads the answer (after a restart), or the node the sweeper
//! chooses (cluster mode: no live lease), runs it again, with the same
//! `webhook-id`. In cluster mode the lease is held, and renewed, while any
//! call runs; no node starts a call without it.

use super::*;
use crate::{
    domain::{
        tools::Run,
        turn::{self, Outcome},
    },
    tool_calls::{Target, ToolCall},
};

/// A call the service runs now, for `/admin/threads/{tid}`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RunningCall {
    pub tool_call_id: String,
    pub name: String,
    /// When it started here (RFC 3339).
    pub since: chrono::DateTime<Utc>,
}

/// A call this actor runs.
pub(super) struct Running {
    pub handle: SpawnHandle,
    pub name: String,
    pub since: chrono::DateTime<Utc>,
}

impl ThreadActor {
    /// Starts each call of the awaiting answer that waits for the service
    /// and does not run here yet. Only where this actor may write the
    /// thread: alone, or under its lease.
    pub(super) fn start_runs(&mut self, ctx: &mut Context<Self>) {
        if self.lease_ttl().is_some() && self.fence().is_none() {
            return;
        }
        let Ok((thread, conversation)) = self.found() else { return };
        let Some(answer) = conversation.awaiting() else { return };
        let tools = crate::domain::tools::merged(&thread.tools, &answer.tools);
        let calls: Vec<ToolCall> = turn::to_run(&answer.calls)
            .filter(|call| !self.runs.contains_key(&call.id))
            .map(|call| {
                let target = match tools.iter().find(|t| t.name == call.name).map(|t| (&t.run, t)) {
                    Some((Run::Url(url), _)) => Target::Url(url.clone()),
                    Some((Run::Mcp { server, tool }, def)) => {
                        Target::Mcp { server: server.clone(), tool: tool.clone().unwrap_or_else(|| def.name.clone()) }
                    }
                    // (A tool whose definition changed since: its call
                    // fails, said to the model.)
                    _ => Target::Gone,
                };
                ToolCall {
                    project_id: thread.project_id,
                    thread_id: thread.id,
                    message_id: answer.id,
                    tool_call_id: call.id.clone(),
                    name: call.name.clone(),
                    input: call.input.clone(),
                    target,
                }
            })
            .collect();
        for call in calls {
            tracing::info!(thread_id = %self.thread_id, message_id = %call.message_id, tool_call_id = %call.tool_call_id,
                tool = %call.name, "the service runs a tool call");
            let caller = self.deps.tool_caller.clone();
            let (id, message_id, name) = (call.tool_call_id.clone(), call.message_id, call.name.clone());
            let key = id.clone();
            let running = async move { caller.call(&call).await };
            let handle = ctx.spawn(running.into_actor(self).map(move |output, act, ctx| {
                act.runs.remove(&id);
                act.ran(message_id, id, output, ctx);
                act.touch(ctx);
            }));
            self.runs.insert(key, Running { handle, name, since: Utc::now() });
        }
        // (A running call keeps the actor from its idle stop.)
        self.touch(ctx);
    }

    /// Stops every call running here (the answer was cancelled, or the
    /// lease lost: another node runs them again).
    pub(super) fn stop_runs(&mut self, ctx: &mut Context<Self>) {
        for (_, run) in self.runs.drain() {
            ctx.cancel_future(run.handle);
        }
    }

    /// The calls running here now.
    pub(super) fn running_calls(&self) -> Vec<RunningCall> {
        let mut calls: Vec<RunningCall> = self
            .runs
            .iter()
            .map(|(id, run)| RunningCall { tool_call_id: id.clone(), name: run.name.clone(), since: run.since })
            .collect();
        calls.sort_by_key(|c| c.since);
        calls
    }

    /// The call `id` of the answer `message_id` came back with `output`:
    /// it answers the call, as a posted result would.
    fn ran(
        &mut self,
        message_id: Uuid,
        id: String,
        output: Result<serde_json::Value, String>,
        ctx: &mut Context<Self>,
    ) {
        let Some(answer) = self.conversation().and_then(Conversation::awaiting).filter(|m| m.id == message_id) else {
            tracing::info!(thread_id = %self.thread_id, %message_id, tool_call_id = %id,
                "a tool call came back after its answer moved on; its result is dropped");
            return;
        };
        let message = answer.clone();
        let mut calls = message.calls.clone();
        match turn::ran(&mut calls, &id, &output) {
            Outcome::Resolved => {}
            outcome => {
                tracing::info!(thread_id = %self.thread_id, %message_id, tool_call_id = %id, ?outcome,
                    "a tool call came back already answered");
                return;
            }
        }
        let report = Resolution { message_id, resolved: vec![id.clone()], unchanged: Vec::new() };
        let stored = self.store_answers(message, calls, report, ctx).map(move |result, act, ctx| {
            if let Err(e) = result {
                // Not stored: it still says the service runs it, so it runs
                // again (after the lease lapses, or at the next start).
                tracing::warn!(thread_id = %act.thread_id, %message_id, tool_call_id = %id, error.message = %e,
                    "a tool call's result could not be stored");
            }
            if act.lease_ttl().is_some() && act.generation.is_none() && act.runs.is_empty() {
                act.let_go(ctx);
            }
        });
        match self.lease_ttl() {
            // One node: the answer applied at once (the next step may
            // already stream); its write commits meanwhile.
            None => {
                ctx.spawn(stored);
            }
            // Cluster mode writes first: one result at a time, so the next
            // one reads the calls this one left.
            Some(_) => {
                ctx.wait(stored);
            }
        }
    }
}
