//! Projects' webhooks: added, listed, found, removed (with their
//! deliveries). `events` is stored joined by commas.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};
use uuid::Uuid;

use super::{
    entities::{notification_delivery, webhook},
    Store, StoreError,
};
use crate::notify::{TargetKind, Webhook, When};

pub(super) fn from_row(row: webhook::Model) -> Webhook {
    Webhook {
        id: row.id,
        project_id: row.project_id,
        url: row.url,
        events: row.events.split(',').filter(|e| !e.is_empty()).map(str::to_owned).collect(),
        when: When::parse(&row.deliver_when).unwrap_or_default(),
        secret: row.secret,
        created_at: row.created_at,
    }
}

impl Store {
    pub async fn add_webhook(&self, hook: &Webhook) -> Result<(), StoreError> {
        webhook::ActiveModel {
            id: Set(hook.id),
            project_id: Set(hook.project_id),
            url: Set(hook.url.clone()),
            events: Set(hook.events.join(",")),
            deliver_when: Set(hook.when.as_str().to_owned()),
            secret: Set(hook.secret.clone()),
            created_at: Set(hook.created_at),
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }

    /// The project's webhooks, oldest first.
    pub async fn webhooks(&self, project_id: Uuid) -> Result<Vec<Webhook>, StoreError> {
        let rows = webhook::Entity::find()
            .filter(webhook::Column::ProjectId.eq(project_id))
            .order_by_asc(webhook::Column::CreatedAt)
            .order_by_asc(webhook::Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Webhook `id`, whatever its project.
    pub async fn webhook_by_id(&self, id: Uuid) -> Result<Option<Webhook>, StoreError> {
        Ok(webhook::Entity::find_by_id(id).one(&self.db).await?.map(from_row))
    }

    /// The project's webhook `id`.
    pub async fn webhook(&self, project_id: Uuid, id: Uuid) -> Result<Option<Webhook>, StoreError> {
        Ok(self.webhook_by_id(id).await?.filter(|w| w.project_id == project_id))
    }

    /// Removes the project's webhook `id` and its deliveries; `false` when
    /// there is none.
    pub async fn remove_webhook(&self, project_id: Uuid, id: Uuid) -> Result<bool, StoreError> {
        let txn = self.db.begin().await?;
        let result = webhook::Entity::delete_many()
            .filter(webhook::Column::ProjectId.eq(project_id))
            .filter(webhook::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        if result.rows_affected > 0 {
            notification_delivery::Entity::delete_many()
                .filter(notification_delivery::Column::TargetKind.eq(TargetKind::Webhook.as_str()))
                .filter(notification_delivery::Column::TargetId.eq(id))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(result.rows_affected > 0)
    }
}
