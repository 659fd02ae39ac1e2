//! Projects' signing secrets for the calls the service makes on their
//! behalf: a rotation adds the newest; the one before it keeps signing for
//! `OVERLAP` after, so a call retried across the rotation still verifies.
//! Older ones are deleted as a rotation makes them useless.

use chrono::{Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use uuid::Uuid;

use super::{entities::tool_secret, Store, StoreError};
use crate::domain::new_id;

/// How long the secret before a rotation goes on signing.
pub const OVERLAP: Duration = Duration::hours(24);

impl Store {
    /// Adds `secret` as the project's newest signing secret; any secret
    /// older than the one it replaces is deleted.
    pub async fn rotate_tool_secret(&self, project_id: Uuid, secret: &str) -> Result<(), StoreError> {
        let tx = self.db.begin().await?;
        let keep: Vec<Uuid> = tool_secret::Entity::find()
            .select_only()
            .column(tool_secret::Column::Id)
            .filter(tool_secret::Column::ProjectId.eq(project_id))
            .order_by_desc(tool_secret::Column::CreatedAt)
            .order_by_desc(tool_secret::Column::Id)
            .limit(1)
            .into_tuple()
            .all(&tx)
            .await?;
        tool_secret::Entity::delete_many()
            .filter(tool_secret::Column::ProjectId.eq(project_id))
            .filter(tool_secret::Column::Id.is_not_in(keep))
            .exec(&tx)
            .await?;
        tool_secret::ActiveModel {
            id: Set(new_id()),
            project_id: Set(project_id),
            secret: Set(secret.to_owned()),
            created_at: Set(Utc::now()),
        }
        .insert(&tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The secrets that sign the project's calls now, newest first: the
    /// newest, and the one before it within `OVERLAP` of the rotation.
    /// Empty when the project has none.
    pub async fn tool_secrets(&self, project_id: Uuid) -> Result<Vec<String>, StoreError> {
        let rows = tool_secret::Entity::find()
            .filter(tool_secret::Column::ProjectId.eq(project_id))
            .order_by_desc(tool_secret::Column::CreatedAt)
            .order_by_desc(tool_secret::Column::Id)
            .limit(2)
            .all(&self.db)
            .await?;
        let Some(newest) = rows.first() else { return Ok(Vec::new()) };
        let overlapping = Utc::now() - newest.created_at < OVERLAP;
        Ok(rows.iter().take(if overlapping { 2 } else { 1 }).map(|r| r.secret.clone()).collect())
    }
}
