//! Projects, threads and messages. A message's content blocks are one JSON
//! column: a block is an append-only text, rewritten whole by each
//! checkpoint, and never queried inside.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Threads {
    Table,
    Id,
    ProjectId,
    Title,
    System,
    Model,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    ThreadId,
    Position,
    Role,
    Blocks,
    Status,
    Model,
    StopReason,
    InputTokens,
    OutputTokens,
    ErrorCode,
    ErrorMessage,
    CreatedAt,
    CompletedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Projects::Table)
                    .if_not_exists()
                    .col(uuid(Projects::Id).primary_key())
                    .col(text(Projects::Name))
                    .col(timestamp_with_time_zone(Projects::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Threads::Table)
                    .if_not_exists()
                    .col(uuid(Threads::Id).primary_key())
                    .col(uuid(Threads::ProjectId))
                    .col(text_null(Threads::Title))
                    .col(text_null(Threads::System))
                    .col(text_null(Threads::Model))
                    .col(timestamp_with_time_zone(Threads::CreatedAt))
                    .col(timestamp_with_time_zone(Threads::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Threads::Table, Threads::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_threads_project_id")
                    .table(Threads::Table)
                    .col(Threads::ProjectId)
                    .col(Threads::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .if_not_exists()
                    .col(uuid(Messages::Id).primary_key())
                    .col(uuid(Messages::ThreadId))
                    .col(big_integer(Messages::Position))
                    .col(text(Messages::Role))
                    .col(json(Messages::Blocks))
                    .col(text(Messages::Status))
                    .col(text_null(Messages::Model))
                    .col(text_null(Messages::StopReason))
                    .col(big_integer(Messages::InputTokens).default(0))
                    .col(big_integer(Messages::OutputTokens).default(0))
                    .col(text_null(Messages::ErrorCode))
                    .col(text_null(Messages::ErrorMessage))
                    .col(timestamp_with_time_zone(Messages::CreatedAt))
                    .col(timestamp_with_time_zone_null(Messages::CompletedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Messages::Table, Messages::ThreadId)
                            .to(Threads::Table, Threads::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_thread_position")
                    .table(Messages::Table)
                    .col(Messages::ThreadId)
                    .col(Messages::Position)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_status")
                    .table(Messages::Table)
                    .col(Messages::Status)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Messages::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Threads::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Projects::Table).to_owned()).await
    }
}
