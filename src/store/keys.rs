//! Project API keys: created with their hash, looked up by hash, revoked.
//! The plaintext key never reaches this module.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::{entities::api_key, Store, StoreError};
use crate::domain::new_id;

impl Store {
    /// Stores a key's hash for a project; its id.
    pub async fn create_key(&self, project_id: Uuid, hash: String) -> Result<Uuid, StoreError> {
        let id = new_id();
        api_key::ActiveModel {
            id: Set(id),
            project_id: Set(project_id),
            hash: Set(hash),
            created_at: Set(Utc::now()),
            revoked_at: Set(None),
        }
        .insert(&self.db)
        .await?;
        Ok(id)
    }

    /// Revokes a key of that project; false when there is no such live key.
    pub async fn revoke_key(&self, project_id: Uuid, key_id: Uuid) -> Result<bool, StoreError> {
        let result = api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokedAt, sea_orm::sea_query::Expr::value(Utc::now()))
            .filter(api_key::Column::Id.eq(key_id))
            .filter(api_key::Column::ProjectId.eq(project_id))
            .filter(api_key::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// The project of a live key with this hash.
    pub async fn project_of_key(&self, hash: &str) -> Result<Option<Uuid>, StoreError> {
        let row = api_key::Entity::find()
            .filter(api_key::Column::Hash.eq(hash))
            .filter(api_key::Column::RevokedAt.is_null())
            .one(&self.db)
            .await?;
        Ok(row.map(|r| r.project_id))
    }
}
