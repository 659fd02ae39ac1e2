//! The `notification_events` table, the outbox: one row per event (an
//! answer that ended, or that waits for someone), written in the same
//! transaction as the message state it reports; `payload` is the body
//! every target is sent, and `id` its `webhook-id`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub project_id: Uuid,
    pub thread_id: Uuid,
    pub message_id: Uuid,
    pub kind: String,
    pub payload: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
