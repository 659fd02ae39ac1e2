//! A question's own tools (`messages.tools`, JSON text, on its answer):
//! offered for that turn alone, with the thread's, through every step of
//! the answer (after a restart too).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Messages {
    Table,
    Tools,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let column = text(Messages::Tools).default("[]").to_owned();
        manager.alter_table(Table::alter().table(Messages::Table).add_column(column).to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(Messages::Table).drop_column(Messages::Tools).to_owned()).await
    }
}
