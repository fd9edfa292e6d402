//! Database migrations, one file per step, applied in order by `collab migrate` and on
//! `serve` start. Each step is written once for both SQLite and PostgreSQL through
//! sea-query's schema builder. Never edit a released step: add a new one.

use sea_orm_migration::prelude::*;

mod m20261123_000001_initial;
mod m20261123_000002_rooms;
mod m20261123_000003_projects;
mod m20261123_000004_documents;
mod m20261123_000005_channels;
mod m20261124_000006_snapshot_parts;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_initial::Migration),
            Box::new(m20261123_000002_rooms::Migration),
            Box::new(m20261123_000003_projects::Migration),
            Box::new(m20261123_000004_documents::Migration),
            Box::new(m20261123_000005_channels::Migration),
            Box::new(m20261124_000006_snapshot_parts::Migration),
        ]
    }
}
