//! The `messages` table. `blocks` holds the content blocks' JSON encoding
//! as text (NUL escaped, so every database can hold it).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub thread_id: Uuid,
    pub position: i64,
    pub role: String,
    #[sea_orm(column_type = "Text")]
    pub blocks: String,
    pub status: String,
    pub model: Option<String>,
    pub stop_reason: Option<String>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
    pub exact_end: bool,
    pub continuations: i32,
    pub touched_at: Option<DateTimeUtc>,
    pub handed_over: bool,
    pub restart_seam: Option<i32>,
    /// JSON: the calls of its last step while it awaits input.
    #[sea_orm(column_type = "Text")]
    pub calls: String,
    /// Every call in `calls` is answered: its next step is due.
    pub calls_ready: bool,
    /// JSON: an answer's question's own tools.
    #[sea_orm(column_type = "Text")]
    pub tools: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
