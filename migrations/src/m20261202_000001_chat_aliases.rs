//! The AI SDK's chat ids: `useChat` names a chat with an id it generates
//! itself (16 letters and digits by default), not with a thread id. The
//! first message of such a chat creates a thread in the caller's project
//! and records the id here; the same id finds that thread again. An id is
//! unique per project, and goes with its thread when the thread is deleted.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ChatAliases {
    Table,
    ProjectId,
    ChatId,
    ThreadId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Threads {
    Table,
    Id,
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
                    .table(ChatAliases::Table)
                    .if_not_exists()
                    .col(uuid(ChatAliases::ProjectId))
                    .col(text(ChatAliases::ChatId))
                    .col(uuid(ChatAliases::ThreadId))
                    .col(timestamp_with_time_zone(ChatAliases::CreatedAt))
                    .primary_key(Index::create().col(ChatAliases::ProjectId).col(ChatAliases::ChatId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ChatAliases::Table, ChatAliases::ThreadId)
                            .to(Threads::Table, Threads::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ChatAliases::Table, ChatAliases::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Deleting a thread looks its aliases up by thread.
        manager
            .create_index(
                Index::create()
                    .name("idx_chat_aliases_thread")
                    .table(ChatAliases::Table)
                    .col(ChatAliases::ThreadId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ChatAliases::Table).to_owned()).await
    }
}
