//! Projects' MCP servers: a name (unique in its project), the server's
//! Streamable HTTP URL, and the headers sent with every request to it (an
//! Authorization, say), stored to be sent and never shown again.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum McpServers {
    Table,
    ProjectId,
    Name,
    Url,
    Headers,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(McpServers::Table)
                    .if_not_exists()
                    .col(uuid(McpServers::ProjectId))
                    .col(text(McpServers::Name))
                    .col(text(McpServers::Url))
                    .col(text(McpServers::Headers))
                    .col(timestamp_with_time_zone(McpServers::CreatedAt))
                    .primary_key(Index::create().col(McpServers::ProjectId).col(McpServers::Name))
                    .foreign_key(
                        ForeignKey::create()
                            .from(McpServers::Table, McpServers::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(McpServers::Table).to_owned()).await
    }
}
