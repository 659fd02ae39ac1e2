//! The `notification_deliveries` table: one row per event and target
//! (`target_kind` `webhook` or `push`, `target_id` its row), with its
//! state (`pending`, `delivered`, `failed`), attempts, when it is next
//! due, its attempt log (a JSON array), and the lease of the node sending
//! it now (`claimed_until`, `claim_token`). `unwatched`: its first attempt
//! waits `--notify-unwatched-delay-ms` and happens only if nobody watches
//! the thread then.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub event_id: Uuid,
    pub target_kind: String,
    pub target_id: Uuid,
    pub unwatched: bool,
    pub status: String,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub next_attempt_at: DateTimeUtc,
    pub claimed_until: Option<DateTimeUtc>,
    pub claim_token: Option<Uuid>,
    pub attempt_log: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
