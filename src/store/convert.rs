//! Mapping between sea-orm rows and domain types. Enum columns are stored
//! as their serde names (`"user"`, `"streaming"`, ...); a value the code
//! does not know is an error, not a panic.

use sea_orm::ActiveValue::Set;
use serde::{de::DeserializeOwned, Serialize};

use super::{
    entities::{message, project, thread},
    StoreError,
};
use crate::domain::{Block, Message, MessageError, Project, Thread, Usage};

fn to_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

fn from_name<T: DeserializeOwned>(column: &str, name: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|_| StoreError::Corrupt(format!("unknown {column} {name:?}")))
}

pub fn project(m: project::Model) -> Project {
    Project { id: m.id, name: m.name, created_at: m.created_at }
}

pub fn thread(m: thread::Model) -> Result<Thread, StoreError> {
    fn json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T, StoreError> {
        serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("thread {column}: {e}")))
    }
    Ok(Thread {
        id: m.id,
        project_id: m.project_id,
        title: m.title,
        system: m.system,
        model: m.model,
        tools: json("tools", &m.tools)?,
        tool_choice: m.tool_choice.as_deref().map(|t| json("tool_choice", t)).transpose()?,
        mcp_servers: json("mcp_servers", &m.mcp_servers)?,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

/// Every column of a thread row.
pub fn thread_row(t: &Thread) -> thread::ActiveModel {
    thread::ActiveModel {
        id: Set(t.id),
        project_id: Set(t.project_id),
        title: Set(t.title.clone()),
        system: Set(t.system.clone()),
        model: Set(t.model.clone()),
        tools: Set(json_text(&t.tools)),
        tool_choice: Set(t.tool_choice.as_ref().map(json_text)),
        mcp_servers: Set(json_text(&t.mcp_servers)),
        created_at: Set(t.created_at),
        updated_at: Set(t.updated_at),
    }
}

pub fn message(m: message::Model) -> Result<Message, StoreError> {
    let blocks: Vec<Block> =
        serde_json::from_str(&m.blocks).map_err(|e| StoreError::Corrupt(format!("message blocks: {e}")))?;
    let error = match (m.error_code, m.error_message) {
        (Some(code), message) => {
            Some(MessageError { code: from_name("error_code", &code)?, message: message.unwrap_or_default() })
        }
        _ => None,
    };
    Ok(Message {
        id: m.id,
        thread_id: m.thread_id,
        position: m.position,
        role: from_name("role", &m.role)?,
        blocks,
        status: from_name("status", &m.status)?,
        model: m.model,
        stop_reason: m.stop_reason,
        usage: Usage { input_tokens: m.input_tokens.max(0) as u64, output_tokens: m.output_tokens.max(0) as u64 },
        error,
        created_at: m.created_at,
        completed_at: m.completed_at,
        calls: serde_json::from_str(&m.calls).map_err(|e| StoreError::Corrupt(format!("message calls: {e}")))?,
        tools: serde_json::from_str(&m.tools).map_err(|e| StoreError::Corrupt(format!("message tools: {e}")))?,
        exact_end: m.exact_end,
        continuations: m.continuations.max(0) as u32,
        touched_at: m.touched_at,
        handed_over: m.handed_over,
        restart_seam: m.restart_seam.and_then(|n| usize::try_from(n).ok()),
    })
}

/// JSON text of a value the store keeps as text.
fn json_text<T: Serialize>(value: &T) -> String {
    // unwrap: these values are plain data (strings, numbers, JSON).
    serde_json::to_string(value).unwrap()
}

/// A text column's value as every database can hold it: Postgres refuses
/// NUL in `text`, and a model or an upstream error message may send one.
/// (Client input with NUL is refused at the door; block texts travel as
/// JSON, where NUL is escaped.)
fn storable(text: &Option<String>) -> Option<String> {
    text.as_ref().map(|t| t.replace('\0', "\u{FFFD}"))
}

/// Every column of a message row.
pub fn message_row(m: &Message) -> message::ActiveModel {
    message::ActiveModel {
        id: Set(m.id),
        thread_id: Set(m.thread_id),
        position: Set(m.position),
        role: Set(to_name(&m.role)),
        // unwrap: blocks hold only strings and numbers.
        blocks: Set(serde_json::to_string(&m.blocks).unwrap()),
        status: Set(to_name(&m.status)),
        model: Set(storable(&m.model)),
        stop_reason: Set(storable(&m.stop_reason)),
        input_tokens: Set(m.usage.input_tokens as i64),
        output_tokens: Set(m.usage.output_tokens as i64),
        error_code: Set(m.error.as_ref().map(|e| e.code.as_str().to_owned())),
        error_message: Set(storable(&m.error.as_ref().map(|e| e.message.clone()))),
        created_at: Set(m.created_at),
        completed_at: Set(m.completed_at),
        exact_end: Set(m.exact_end),
        continuations: Set(m.continuations.min(i32::MAX as u32) as i32),
        // The time of this write: how long ago a streaming answer was cut.
        touched_at: Set(Some(chrono::Utc::now())),
        handed_over: Set(m.handed_over),
        restart_seam: Set(m.restart_seam.map(|n| n.min(i32::MAX as usize) as i32)),
        // unwrap: calls hold only strings, booleans and JSON values.
        calls: Set(serde_json::to_string(&m.calls).unwrap()),
        calls_ready: Set(m.is_awaiting() && crate::domain::turn::service_due(&m.calls)),
        // unwrap: tool definitions are JSON already.
        tools: Set(serde_json::to_string(&m.tools).unwrap()),
    }
}
