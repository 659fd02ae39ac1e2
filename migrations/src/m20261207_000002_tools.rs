//! Answers in several steps: a thread's tools (`tools`, `tool_choice`,
//! `mcp_servers`, each as JSON text), and an answer's calls while it
//! awaits input (`messages.calls`, JSON text: every call of its last step
//! with what it waits for or how it was answered), with `calls_ready`
//! set once every call is answered (the next step is due: a node that
//! finds it so with no lease held starts it).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Threads {
    Table,
    Tools,
    ToolChoice,
    McpServers,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Calls,
    CallsReady,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one at a time.
        let threads = [
            text(Threads::Tools).default("[]").to_owned(),
            text_null(Threads::ToolChoice),
            text(Threads::McpServers).default("[]").to_owned(),
        ];
        for column in threads {
            manager.alter_table(Table::alter().table(Threads::Table).add_column(column).to_owned()).await?;
        }
        let messages =
            [text(Messages::Calls).default("[]").to_owned(), boolean(Messages::CallsReady).default(false).to_owned()];
        for column in messages {
            manager.alter_table(Table::alter().table(Messages::Table).add_column(column).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Messages::Calls, Messages::CallsReady] {
            manager.alter_table(Table::alter().table(Messages::Table).drop_column(column).to_owned()).await?;
        }
        for column in [Threads::Tools, Threads::ToolChoice, Threads::McpServers] {
            manager.alter_table(Table::alter().table(Threads::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
