//! Web Push: the service's VAPID key pair (one row, generated once when no
//! `--vapid-private-key` is set, so the public key browsers subscribed with
//! stays the same across restarts and nodes), and browsers' push
//! subscriptions (a project's, optionally for one thread), removed with
//! their project or thread.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum VapidKeys {
    Table,
    Id,
    PrivateKey,
    CreatedAt,
}

#[derive(DeriveIden)]
enum PushSubscriptions {
    Table,
    Id,
    ProjectId,
    ThreadId,
    Endpoint,
    P256dh,
    Auth,
    Events,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Threads {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(VapidKeys::Table)
                    .if_not_exists()
                    .col(integer(VapidKeys::Id).primary_key())
                    .col(text(VapidKeys::PrivateKey))
                    .col(timestamp_with_time_zone(VapidKeys::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PushSubscriptions::Table)
                    .if_not_exists()
                    .col(uuid(PushSubscriptions::Id).primary_key())
                    .col(uuid(PushSubscriptions::ProjectId))
                    .col(uuid_null(PushSubscriptions::ThreadId))
                    .col(text(PushSubscriptions::Endpoint))
                    .col(text(PushSubscriptions::P256dh))
                    .col(text(PushSubscriptions::Auth))
                    .col(text(PushSubscriptions::Events))
                    .col(timestamp_with_time_zone(PushSubscriptions::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(PushSubscriptions::Table, PushSubscriptions::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(PushSubscriptions::Table, PushSubscriptions::ThreadId)
                            .to(Threads::Table, Threads::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("push_subscriptions_project_thread")
                    .table(PushSubscriptions::Table)
                    .col(PushSubscriptions::ProjectId)
                    .col(PushSubscriptions::ThreadId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(PushSubscriptions::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(VapidKeys::Table).to_owned()).await
    }
}
