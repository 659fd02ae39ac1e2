//! Notifications (webhooks now, Web Push beside them): a project's
//! `webhooks`; the outbox of `notification_events`, one per event (its
//! Standard Webhooks body, written in the same transaction as the message
//! state it reports); and `notification_deliveries`, one per event and
//! target (`target_kind` `webhook` or `push`, `target_id`), with their
//! state, attempts and log, and the lease (`claimed_until`, `claim_token`)
//! of the node sending them now.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    Id,
    ProjectId,
    Url,
    Events,
    DeliverWhen,
    Secret,
    CreatedAt,
}

#[derive(DeriveIden)]
enum NotificationEvents {
    Table,
    Id,
    ProjectId,
    ThreadId,
    MessageId,
    Kind,
    Payload,
    CreatedAt,
}

#[derive(DeriveIden)]
enum NotificationDeliveries {
    Table,
    Id,
    EventId,
    TargetKind,
    TargetId,
    Unwatched,
    Status,
    Attempts,
    LastStatusCode,
    NextAttemptAt,
    ClaimedUntil,
    ClaimToken,
    AttemptLog,
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
                    .table(Webhooks::Table)
                    .if_not_exists()
                    .col(uuid(Webhooks::Id).primary_key())
                    .col(uuid(Webhooks::ProjectId))
                    .col(text(Webhooks::Url))
                    .col(text(Webhooks::Events))
                    .col(text(Webhooks::DeliverWhen))
                    .col(text(Webhooks::Secret))
                    .col(timestamp_with_time_zone(Webhooks::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Webhooks::Table, Webhooks::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhooks_by_project")
                    .table(Webhooks::Table)
                    .col(Webhooks::ProjectId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(NotificationEvents::Table)
                    .if_not_exists()
                    .col(uuid(NotificationEvents::Id).primary_key())
                    .col(uuid(NotificationEvents::ProjectId))
                    .col(uuid(NotificationEvents::ThreadId))
                    .col(uuid(NotificationEvents::MessageId))
                    .col(text(NotificationEvents::Kind))
                    .col(text(NotificationEvents::Payload))
                    .col(timestamp_with_time_zone(NotificationEvents::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(NotificationDeliveries::Table)
                    .if_not_exists()
                    .col(uuid(NotificationDeliveries::Id).primary_key())
                    .col(uuid(NotificationDeliveries::EventId))
                    .col(text(NotificationDeliveries::TargetKind))
                    .col(uuid(NotificationDeliveries::TargetId))
                    .col(boolean(NotificationDeliveries::Unwatched))
                    .col(text(NotificationDeliveries::Status))
                    .col(integer(NotificationDeliveries::Attempts))
                    .col(integer_null(NotificationDeliveries::LastStatusCode))
                    .col(timestamp_with_time_zone(NotificationDeliveries::NextAttemptAt))
                    .col(timestamp_with_time_zone_null(NotificationDeliveries::ClaimedUntil))
                    .col(uuid_null(NotificationDeliveries::ClaimToken))
                    .col(text(NotificationDeliveries::AttemptLog))
                    .col(timestamp_with_time_zone(NotificationDeliveries::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(NotificationDeliveries::Table, NotificationDeliveries::EventId)
                            .to(NotificationEvents::Table, NotificationEvents::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("deliveries_due")
                    .table(NotificationDeliveries::Table)
                    .col(NotificationDeliveries::Status)
                    .col(NotificationDeliveries::NextAttemptAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("deliveries_by_target")
                    .table(NotificationDeliveries::Table)
                    .col(NotificationDeliveries::TargetId)
                    .col(NotificationDeliveries::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(NotificationDeliveries::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(NotificationEvents::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Webhooks::Table).to_owned()).await
    }
}
