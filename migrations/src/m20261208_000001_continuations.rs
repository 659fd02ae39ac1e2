//! Answers cut short that finish anyway:
//! - `messages.continuations`: how many times the answer was continued
//!   after a cut (the contract's Message shows it; its budget counts it).
//! - `messages.touched_at`: when the row was last written (a checkpoint
//!   of a streaming answer): after a crash, how long ago the answer was
//!   cut, so one cut longer ago than `--continue-max-age-ms` ends
//!   `interrupted` instead of being continued.
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
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Messages::Table)
                    .add_column(integer(Messages::Continuations).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Messages::Table)
                    .add_column(timestamp_with_time_zone_null(Messages::TouchedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Messages::Table)
                    .add_column(boolean(Messages::HandedOver).default(false))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(Messages::Table).drop_column(Messages::HandedOver).to_owned()).await?;
        manager.alter_table(Table::alter().table(Messages::Table).drop_column(Messages::TouchedAt).to_owned()).await?;
        manager.alter_table(Table::alter().table(Messages::Table).drop_column(Messages::Continuations).to_owned()).await
    }
}
