//! Answers cut short that finish anyway:
//! - `messages.continuations`: how many times the answer was continued
//!   after a cut (the contract's Message shows it; its budget counts it).
//! - `messages.touched_at`: when the row was last written (a checkpoint
//!   of a streaming answer): after a crash, how long ago the answer was
//!   cut, so one cut longer ago than `--continue-max-age-ms` ends
//!   `interrupted` instead of being continued.
//! - `messages.restart_seam`: an answer continued after a crash (or a
//!   take-over without its owner's log): the number of blocks it had as
//!   stored then. A reader may have seen more than was stored, so a cursor
//!   at or past that block is never taken at its word (`cursor_ahead`).
//! - `messages.handed_over`: cluster mode, a node stopping for a deploy
//!   left this answer streaming for another node to continue (rather than
//!   dying with it): the node that takes it over says `handoff`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Messages {
    Table,
    Continuations,
    TouchedAt,
    HandedOver,
    RestartSeam,
}

/// One column more on `messages` (SQLite alters one column per statement).
async fn add(manager: &SchemaManager<'_>, column: ColumnDef) -> Result<(), DbErr> {
    manager.alter_table(Table::alter().table(Messages::Table).add_column(column).to_owned()).await
}

async fn drop(manager: &SchemaManager<'_>, column: Messages) -> Result<(), DbErr> {
    manager.alter_table(Table::alter().table(Messages::Table).drop_column(column).to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add(manager, integer(Messages::Continuations).default(0).to_owned()).await?;
        add(manager, timestamp_with_time_zone_null(Messages::TouchedAt)).await?;
        add(manager, boolean(Messages::HandedOver).default(false).to_owned()).await?;
        add(manager, integer_null(Messages::RestartSeam)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Messages::RestartSeam, Messages::HandedOver, Messages::TouchedAt, Messages::Continuations] {
            drop(manager, column).await?;
        }
        Ok(())
    }
}
