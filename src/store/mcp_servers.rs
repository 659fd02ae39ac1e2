//! Projects' MCP servers: added (once per name), listed, found by name,
//! removed. Their headers are kept as a JSON object.

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::{entities::mcp_server, Store, StoreError};
use crate::domain::mcp::McpServer;

fn from_row(row: mcp_server::Model) -> McpServer {
    McpServer {
        name: row.name,
        url: row.url,
        headers: serde_json::from_str(&row.headers).unwrap_or_default(),
        created_at: row.created_at,
    }
}

impl Store {
    /// Adds `server` to the project; `false` when one of that name exists.
    pub async fn add_mcp_server(&self, project_id: Uuid, server: &McpServer) -> Result<bool, StoreError> {
        if self.mcp_server(project_id, &server.name).await?.is_some() {
            return Ok(false);
        }
        let row = mcp_server::ActiveModel {
            project_id: Set(project_id),
            name: Set(server.name.clone()),
            url: Set(server.url.clone()),
            headers: Set(serde_json::to_string(&server.headers).expect("a map of strings serializes")),
            created_at: Set(server.created_at),
        };
        match row.insert(&self.db).await {
            Ok(_) => Ok(true),
            // (Added meanwhile by another request.)
            Err(_) if self.mcp_server(project_id, &server.name).await?.is_some() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The project's servers, by name.
    pub async fn mcp_servers(&self, project_id: Uuid) -> Result<Vec<McpServer>, StoreError> {
        let rows = mcp_server::Entity::find()
            .filter(mcp_server::Column::ProjectId.eq(project_id))
            .order_by_asc(mcp_server::Column::Name)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// The project's server `name`.
    pub async fn mcp_server(&self, project_id: Uuid, name: &str) -> Result<Option<McpServer>, StoreError> {
        let row = mcp_server::Entity::find_by_id((project_id, name.to_owned())).one(&self.db).await?;
        Ok(row.map(from_row))
    }

    /// Removes the project's server `name`; `false` when there is none.
    pub async fn remove_mcp_server(&self, project_id: Uuid, name: &str) -> Result<bool, StoreError> {
        let result = mcp_server::Entity::delete_many()
            .filter(mcp_server::Column::ProjectId.eq(project_id))
            .filter(mcp_server::Column::Name.eq(name))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected > 0)
    }
}
