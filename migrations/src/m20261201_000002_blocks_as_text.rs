//! `messages.blocks` becomes `text` on Postgres. The column holds the
//! blocks' JSON encoding, which the service never queries into; as `json`
//! it was bound as `jsonb`, which refuses `\u0000`, so a model's NUL
//! character made a message's state unstorable. In `text` the encoding
//! (with NUL escaped) is kept byte for byte. SQLite's column already has
//! text affinity: nothing to change there.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("ALTER TABLE messages ALTER COLUMN blocks TYPE text USING blocks::text")
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("ALTER TABLE messages ALTER COLUMN blocks TYPE json USING blocks::json")
                .await?;
        }
        Ok(())
    }
}
