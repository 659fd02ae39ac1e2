//! Projects' signing secrets for the calls the service makes on their
//! behalf (tools at a URL): one row per secret. The newest signs; the one
//! before it signs too for a day after a rotation, so a retry sent across
//! the rotation still verifies.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ToolSecrets {
    Table,
    Id,
    ProjectId,
    Secret,
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
                    .table(ToolSecrets::Table)
                    .if_not_exists()
                    .col(uuid(ToolSecrets::Id).primary_key())
                    .col(uuid(ToolSecrets::ProjectId))
                    .col(text(ToolSecrets::Secret))
                    .col(timestamp_with_time_zone(ToolSecrets::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ToolSecrets::Table, ToolSecrets::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("tool_secrets_project")
                    .table(ToolSecrets::Table)
                    .col(ToolSecrets::ProjectId)
                    .col(ToolSecrets::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ToolSecrets::Table).to_owned()).await
    }
}
