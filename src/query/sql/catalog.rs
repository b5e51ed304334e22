//! The versioned SQL catalogue Oxeye ships (`migrations/NNNN_name.sql`):
//! views over the tables, applied in order at start and recorded in
//! `<data_dir>/sql/catalog.json`, so each migration runs once. A data
//! directory from an older Oxeye gets the migrations it lacks; a fresh one
//! gets them all; both end with the same views.
//!
//! A migration holds `CREATE [OR REPLACE] VIEW` and `DROP VIEW [IF
//! EXISTS]` statements only: the catalogue is views; the data stays in
//! the stores.

use std::collections::BTreeMap;
use std::path::Path;

use datafusion::sql::sqlparser::ast::{ObjectType, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use serde::{Deserialize, Serialize};

/// One shipped migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order (each file of `migrations/`; a test checks
/// the list against the directory).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_signals.sql",
        sql: include_str!("../../../migrations/0001_signals.sql"),
    },
    Migration {
        version: 2,
        name: "0002_logs.sql",
        sql: include_str!("../../../migrations/0002_logs.sql"),
    },
];

const FILE: &str = "catalog.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Applied {
    pub version: u32,
    pub name: String,
    /// xxh3 of the migration's text when it was applied.
    pub checksum: String,
}

/// The catalogue: which migrations ran, and the views they left.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Catalog {
    pub applied: Vec<Applied>,
    /// View name → its query, in SQL.
    pub views: BTreeMap<String, String>,
}

fn checksum(sql: &str) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(sql.as_bytes()))
}

impl Catalog {
    /// Load the catalogue of `dir`, apply the migrations it has not seen,
    /// and save it.
    pub fn migrate(dir: &Path) -> Result<Catalog, String> {
        Self::migrate_with(dir, MIGRATIONS)
    }

    pub fn migrate_with(dir: &Path, migrations: &[Migration]) -> Result<Catalog, String> {
        let path = dir.join(FILE);
        let mut catalog: Catalog = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not a SQL catalogue: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Catalog::default(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let mut changed = false;
        for m in migrations {
            if let Some(done) = catalog.applied.iter().find(|a| a.version == m.version) {
                if done.checksum != checksum(m.sql) {
                    tracing::warn!(
                        migration = m.name,
                        "SQL migration changed after it was applied; not applied again"
                    );
                }
                continue;
            }
            catalog.apply(m)?;
            changed = true;
            tracing::info!(migration = m.name, "applied SQL migration");
        }
        if changed {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let bytes = serde_json::to_vec_pretty(&catalog).map_err(|e| e.to_string())?;
            crate::storage::write_atomically(&path, &bytes)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(catalog)
    }

    fn apply(&mut self, m: &Migration) -> Result<(), String> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, m.sql)
            .map_err(|e| format!("migration {}: {e}", m.name))?;
        for statement in statements {
            match statement {
                Statement::CreateView(view) => {
                    let name = view.name.to_string();
                    if self.views.contains_key(&name) && !view.or_replace {
                        return Err(format!(
                            "migration {}: view {name} exists (use CREATE OR REPLACE VIEW)",
                            m.name
                        ));
                    }
                    self.views.insert(name, view.query.to_string());
                }
                Statement::Drop {
                    object_type: ObjectType::View,
                    names,
                    if_exists,
                    ..
                } => {
                    for name in names {
                        let name = name.to_string();
                        if self.views.remove(&name).is_none() && !if_exists {
                            return Err(format!("migration {}: no view {name} to drop", m.name));
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "migration {}: only CREATE VIEW and DROP VIEW belong in a migration, not {other}",
                        m.name
                    ))
                }
            }
        }
        self.applied.push(Applied {
            version: m.version,
            name: m.name.to_owned(),
            checksum: checksum(m.sql),
        });
        Ok(())
    }
}
