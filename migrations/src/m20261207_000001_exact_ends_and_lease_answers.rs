//! Two facts the cluster needs:
//! - `messages.exact_end`: an `interrupted` message whose stored text is
//!   exactly what its readers were sent (a graceful stop, or a take-over
//!   that read the owner's whole log), so a cursor at its end resumes with
//!   nothing repeated. Rows written before (and what a crash's start-up
//!   sweep interrupts) keep `false`: their end may have lost text.
//! - `thread_leases.answer_id`: the answer a lease was taken for, so a node
//!   that finds the lease held can tell a new question's answer (the thread
//!   is busy) from one it has seen end (its owner lets the lease go at
//!   once).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Messages {
    Table,
    ExactEnd,
}

#[derive(DeriveIden)]
enum ThreadLeases {
    Table,
    AnswerId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(Messages::Table).add_column(boolean(Messages::ExactEnd).default(false)).to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter().table(ThreadLeases::Table).add_column(uuid_null(ThreadLeases::AnswerId)).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(ThreadLeases::Table).drop_column(ThreadLeases::AnswerId).to_owned())
            .await?;
        manager.alter_table(Table::alter().table(Messages::Table).drop_column(Messages::ExactEnd).to_owned()).await
    }
}
