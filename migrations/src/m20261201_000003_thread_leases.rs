//! One row per thread that a node has owned in cluster mode: who owns it,
//! its fencing token (`epoch`, which only grows) and until when. The
//! database is the source of truth for ownership: a node takes a lease
//! only when it has expired (its epoch grows by one), renews it by owner and
//! epoch, and every write of an owner is checked against it in the same
//! transaction (see `store::leases`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ThreadLeases {
    Table,
    ThreadId,
    Owner,
    Epoch,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ThreadLeases::Table)
                    .if_not_exists()
                    .col(uuid(ThreadLeases::ThreadId).primary_key())
                    .col(text(ThreadLeases::Owner))
                    .col(big_integer(ThreadLeases::Epoch))
                    .col(timestamp_with_time_zone(ThreadLeases::ExpiresAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ThreadLeases::Table).to_owned()).await
    }
}
