//! One row per service process that has written to this database: its
//! node id and when it last proved the database takes its writes. The
//! persistence actor's write probe (while the database refuses writes)
//! upserts this row, so the probe exercises the same write path as a
//! batch; several nodes on one database each have their own row.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Nodes {
    Table,
    Id,
    StartedAt,
    HeartbeatAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Nodes::Table)
                    .if_not_exists()
                    .col(text(Nodes::Id).primary_key())
                    .col(timestamp_with_time_zone(Nodes::StartedAt))
                    .col(timestamp_with_time_zone(Nodes::HeartbeatAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Nodes::Table).to_owned()).await
    }
}
