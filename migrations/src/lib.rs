//! Database migrations (sea-orm-migration), applied at start-up by
//! `store::Store::connect`. Portable: the same migrations run on SQLite and
//! on Postgres.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_tables;
mod m20261125_000002_api_keys;
mod m20261201_000001_nodes;
mod m20261201_000002_blocks_as_text;
mod m20261201_000003_thread_leases;
mod m20261202_000001_chat_aliases;
mod m20261207_000001_exact_ends_and_lease_answers;
mod m20261207_000002_tools;
mod m20261207_000003_turn_tools;
mod m20261207_000004_tool_secrets;
mod m20261207_000005_mcp_servers;
mod m20261207_000006_notifications;
mod m20261207_000007_push;
mod m20261208_000001_continuations;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_tables::Migration),
            Box::new(m20261125_000002_api_keys::Migration),
            Box::new(m20261201_000001_nodes::Migration),
            Box::new(m20261201_000002_blocks_as_text::Migration),
            Box::new(m20261201_000003_thread_leases::Migration),
            Box::new(m20261202_000001_chat_aliases::Migration),
            Box::new(m20261207_000001_exact_ends_and_lease_answers::Migration),
            Box::new(m20261207_000002_tools::Migration),
            Box::new(m20261207_000003_turn_tools::Migration),
            Box::new(m20261207_000004_tool_secrets::Migration),
            Box::new(m20261207_000005_mcp_servers::Migration),
            Box::new(m20261207_000006_notifications::Migration),
            Box::new(m20261207_000007_push::Migration),
            Box::new(m20261208_000001_continuations::Migration),
        ]
    }
}
