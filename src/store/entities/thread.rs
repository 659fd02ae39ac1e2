//! The `threads` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "threads")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub project_id: Uuid,
    pub title: Option<String>,
    pub system: Option<String>,
    pub model: Option<String>,
    /// JSON: the thread's tool definitions.
    #[sea_orm(column_type = "Text")]
    pub tools: String,
    /// JSON: its tool choice, if set.
    #[sea_orm(column_type = "Text", nullable)]
    pub tool_choice: Option<String>,
    /// JSON: the names of its MCP servers.
    #[sea_orm(column_type = "Text")]
    pub mcp_servers: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
