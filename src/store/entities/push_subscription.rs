//! The `push_subscriptions` table: a browser's Web Push subscription in a
//! project, for one thread (`thread_id`) or all of them; `events` is a
//! JSON array of event names; `p256dh` and `auth` are base64url as the
//! browser gave them.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "push_subscriptions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub project_id: Uuid,
    pub thread_id: Option<Uuid>,
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
    pub events: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
