//! A scratch Postgres database for one run, made next to a given one
//! with `psql` and dropped afterwards.

use std::process::Command;

pub struct Scratch {
    admin: String,
    name: String,
    /// The scratch database's URL.
    pub url: String,
}

impl Scratch {
    /// A fresh database on the server of `base` (a Postgres URL).
    pub fn create(base: &str) -> anyhow::Result<Scratch> {
        let name = format!("convo_bench_{}", std::process::id());
        psql(base, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
        psql(base, &format!("CREATE DATABASE {name}"))?;
        let root = base.rsplit_once('/').map_or(base, |(r, _)| r);
        Ok(Scratch { admin: base.to_owned(), url: format!("{root}/{name}"), name })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = psql(&self.admin, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let ok = Command::new("psql").args([url, "-qc", sql]).status()?.success();
    anyhow::ensure!(ok, "psql could not run {sql:?}");
    Ok(())
}
