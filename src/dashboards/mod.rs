//! Saved dashboards: Grafana's dashboard JSON, stored as it came, with
//! every earlier version kept (up to `dashboards.max_versions`) so that any
//! can be restored. Served by `/api/v1/dashboards` and drawn by the
//! dashboard pages (`web/static/dashboards.js`), which read the data
//! through the same query APIs Grafana would call.
//!
//! On disk, one directory per dashboard under `<data_dir>/dashboards/`,
//! one file per version (`0000000007.json`: the dashboard and who saved it,
//! when, why). A save writes a temporary file, syncs it, renames it into
//! place and syncs the directory, so a dashboard is either the old or the
//! new version after a crash, never half of one. The list is kept in
//! memory and rebuilt from the directories at start.
//!
//! Provisioning (`[dashboards]`): the dashboards shipped in
//! `config/dashboards/` (Oxeye's own metrics, RED per service from span
//! metrics, node_exporter) and every `*.json` of `provision_dir` are saved
//! at start when their file changed since it was last provisioned — an edit
//! made in the browser stays until the file changes, as with Grafana's
//! `allowUiUpdates`.

pub mod cli;
pub mod validate;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use validate::{check_uid, Limits, Summary};

/// The dashboards that ship with Oxeye (`config/dashboards/`).
pub const BUILTIN: [(&str, &str); 3] = [
    (
        "oxeye-self.json",
        include_str!("../../config/dashboards/oxeye-self.json"),
    ),
    (
        "oxeye-red.json",
        include_str!("../../config/dashboards/oxeye-red.json"),
    ),
    (
        "node-exporter.json",
        include_str!("../../config/dashboards/node-exporter.json"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("{0}")]
    Invalid(String),
    #[error("dashboard {0:?} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Full(String),
    #[error("dashboard storage: {0}")]
    Io(#[from] std::io::Error),
}

/// One saved version, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Version {
    pub version: u64,
    /// Milliseconds since the epoch.
    pub saved_at: i64,
    #[serde(default)]
    pub message: String,
    /// The provisioning file this version came from and its SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned: Option<Provisioned>,
    pub dashboard: Value,
}

/// A version without its dashboard: what the history list and provisioning
/// need, read without building the dashboard's JSON tree.
#[derive(Debug, Clone, Deserialize)]
pub struct VersionMeta {
    pub version: u64,
    pub saved_at: i64,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub provisioned: Option<Provisioned>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provisioned {
    pub file: String,
    pub sha256: String,
}

/// A dashboard in the list.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub uid: String,
    pub title: String,
    pub tags: Vec<String>,
    pub panels: usize,
    pub version: u64,
    pub updated: i64,
    /// The provisioning file, when the newest version came from one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioned: Option<String>,
}

/// Settings of the store (`[dashboards]`).
#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    pub limits: Limits,
    pub max_versions: usize,
    pub max_dashboards: usize,
}

impl Options {
    pub fn from_config(config: &crate::config::Config) -> Options {
        let d = &config.dashboards;
        Options {
            dir: config.storage.data_dir.join("dashboards"),
            limits: Limits {
                max_bytes: d.max_size.as_usize(),
                max_panels: d.max_panels,
                max_variables: d.max_variables,
            },
            max_versions: d.max_versions.max(1),
            max_dashboards: d.max_dashboards,
        }
    }
}

pub struct DashboardStore {
    options: Options,
    /// uid → the newest version's summary. Writers hold the lock for the
    /// whole save, so versions are numbered without gaps or races.
    index: Mutex<BTreeMap<String, Entry>>,
}

/// What a save produced.
#[derive(Debug, Clone, Serialize)]
pub struct Saved {
    pub uid: String,
    pub version: u64,
    pub url: String,
    pub status: &'static str,
}

impl DashboardStore {
    pub fn open(options: Options) -> Result<DashboardStore, DashboardError> {
        fs::create_dir_all(&options.dir)?;
        let mut index = BTreeMap::new();
        for entry in fs::read_dir(&options.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                // A delete or save that a crash interrupted.
                let _ = fs::remove_dir_all(entry.path());
                continue;
            }
            if check_uid(&name).is_err() || !entry.file_type()?.is_dir() {
                continue;
            }
            match latest(&entry.path())? {
                Some(version) => {
                    index.insert(name.clone(), summarize(&name, &version));
                }
                None => {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(DashboardStore {
            options,
            index: Mutex::new(index),
        })
    }

    pub fn limits(&self) -> Limits {
        self.options.limits
    }

    /// Dashboards whose title, uid or tags contain `query` (case-insensitive)
    /// and that carry every tag of `tags`, by title.
    pub fn list(&self, query: &str, tags: &[String]) -> Vec<Entry> {
        let needle = query.to_lowercase();
        let mut out: Vec<Entry> = self
            .index
            .lock()
            .values()
            .filter(|e| {
                needle.is_empty()
                    || e.title.to_lowercase().contains(&needle)
                    || e.uid.to_lowercase().contains(&needle)
                    || e.tags.iter().any(|t| t.to_lowercase().contains(&needle))
            })
            .filter(|e| tags.iter().all(|t| e.tags.contains(t)))
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            a.title
                .to_lowercase()
                .cmp(&b.title.to_lowercase())
                .then(a.uid.cmp(&b.uid))
        });
        out
    }

    pub fn entry(&self, uid: &str) -> Option<Entry> {
        self.index.lock().get(uid).cloned()
    }

    /// The newest version.
    pub fn get(&self, uid: &str) -> Result<Version, DashboardError> {
        check_uid(uid).map_err(DashboardError::Invalid)?;
        if !self.index.lock().contains_key(uid) {
            return Err(DashboardError::NotFound(uid.into()));
        }
        latest(&self.options.dir.join(uid))?.ok_or_else(|| DashboardError::NotFound(uid.into()))
    }

    /// Every kept version, newest first, without the dashboards.
    pub fn versions(&self, uid: &str) -> Result<Vec<VersionMeta>, DashboardError> {
        check_uid(uid).map_err(DashboardError::Invalid)?;
        let dir = self.options.dir.join(uid);
        if !self.index.lock().contains_key(uid) {
            return Err(DashboardError::NotFound(uid.into()));
        }
        let mut out = Vec::new();
        for n in version_numbers(&dir)?.into_iter().rev() {
            out.push(read_version(&dir, n)?);
        }
        Ok(out)
    }

    pub fn version(&self, uid: &str, version: u64) -> Result<Version, DashboardError> {
        check_uid(uid).map_err(DashboardError::Invalid)?;
        let dir = self.options.dir.join(uid);
        if !self.index.lock().contains_key(uid) || !version_path(&dir, version).exists() {
            return Err(DashboardError::NotFound(format!("{uid} version {version}")));
        }
        read_version(&dir, version)
    }

    /// Saves `body` (Grafana's dashboard JSON, or its API wrapper) as the
    /// newest version of `uid` (or of the body's own uid; a new one is made
    /// from the title when neither is given). Without `overwrite`, a body
    /// whose `version` is not the stored one is refused, as Grafana does,
    /// so that two editors do not silently undo each other.
    pub fn save(
        &self,
        uid: Option<&str>,
        body: &[u8],
        overwrite: bool,
    ) -> Result<Saved, DashboardError> {
        let accepted =
            validate::accept(body, self.options.limits).map_err(DashboardError::Invalid)?;
        let overwrite = overwrite || accepted.overwrite;
        let uid = match (uid, accepted.summary.uid.as_deref()) {
            (Some(path), Some(own)) if path != own => {
                return Err(DashboardError::Invalid(format!(
                    "$.uid: the dashboard's uid {own:?} is not the uid of the URL ({path:?})"
                )))
            }
            (Some(uid), _) | (None, Some(uid)) => {
                check_uid(uid).map_err(DashboardError::Invalid)?;
                uid.to_owned()
            }
            (None, None) => self.new_uid(&accepted.summary.title),
        };
        self.write(
            &uid,
            accepted.dashboard,
            accepted.summary.version,
            overwrite,
            accepted.message,
            None,
        )
    }

    /// Makes version `version` the newest again (a new version, so the
    /// history keeps what was there).
    pub fn restore(&self, uid: &str, version: u64) -> Result<Saved, DashboardError> {
        let old = self.version(uid, version)?;
        self.write(
            uid,
            old.dashboard,
            None,
            true,
            format!("restored version {version}"),
            None,
        )
    }

    pub fn delete(&self, uid: &str) -> Result<Entry, DashboardError> {
        check_uid(uid).map_err(DashboardError::Invalid)?;
        let mut index = self.index.lock();
        let entry = index
            .remove(uid)
            .ok_or_else(|| DashboardError::NotFound(uid.into()))?;
        // Renamed out of sight first: a crash mid-delete leaves a dot
        // directory that the next start removes, never half a dashboard.
        let dir = self.options.dir.join(uid);
        let trash = self
            .options
            .dir
            .join(format!(".deleted-{uid}-{}", crate::now_ms()));
        if let Err(err) = fs::rename(&dir, &trash) {
            index.insert(uid.to_owned(), entry);
            return Err(err.into());
        }
        sync_dir(&self.options.dir)?;
        let _ = fs::remove_dir_all(&trash);
        Ok(entry)
    }

    /// Saves a provisioned dashboard unless this file content was
    /// provisioned before (so browser edits survive restarts until the
    /// file changes). Returns whether a version was written.
    pub fn provision(&self, file: &str, body: &[u8]) -> Result<bool, DashboardError> {
        let accepted = validate::accept(body, self.options.limits)
            .map_err(|e| DashboardError::Invalid(format!("{file}: {e}")))?;
        let sha256 = crate::model::span::hex(&Sha256::digest(body));
        let uid = match accepted.summary.uid.as_deref() {
            Some(uid) => uid.to_owned(),
            None => {
                // Stable across restarts: derived from the file name.
                let stem = Path::new(file)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                slug_uid(&stem, &sha_short(file))
            }
        };
        if self.index.lock().contains_key(&uid) {
            let dir = self.options.dir.join(&uid);
            for n in version_numbers(&dir)? {
                let v: VersionMeta = read_version(&dir, n)?;
                if v.provisioned.as_ref().is_some_and(|p| p.sha256 == sha256) {
                    return Ok(false);
                }
            }
        }
        self.write(
            &uid,
            accepted.dashboard,
            None,
            true,
            format!("provisioned from {file}"),
            Some(Provisioned {
                file: file.to_owned(),
                sha256,
            }),
        )?;
        Ok(true)
    }

    fn new_uid(&self, title: &str) -> String {
        // Unique per call, so that two saves of one title racing between
        // this check and their writes still get different uids.
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let index = self.index.lock();
        let mut salt = format!(
            "{}-{}",
            crate::now_ms(),
            CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        loop {
            let uid = slug_uid(title, &sha_short(&format!("{title}{salt}")));
            if !index.contains_key(&uid) {
                return uid;
            }
            salt.push('+');
        }
    }

    fn write(
        &self,
        uid: &str,
        mut dashboard: Value,
        expected: Option<u64>,
        overwrite: bool,
        message: String,
        provisioned: Option<Provisioned>,
    ) -> Result<Saved, DashboardError> {
        let mut index = self.index.lock();
        let current = index.get(uid).map(|e| e.version);
        match (current, expected) {
            (None, _) if index.len() >= self.options.max_dashboards => {
                return Err(DashboardError::Full(format!(
                    "{} dashboards are stored, the limit of dashboards.max_dashboards",
                    index.len()
                )))
            }
            (Some(have), Some(sent)) if !overwrite && have != sent => {
                return Err(DashboardError::Conflict(format!(
                    "version-mismatch: the dashboard {uid:?} was changed by someone else \
                     (stored version {have}, this one is based on version {sent}); \
                     reload it, or save with overwrite"
                )))
            }
            _ => {}
        }
        let version = current.unwrap_or(0) + 1;
        if let Value::Object(map) = &mut dashboard {
            map.insert("uid".into(), Value::String(uid.to_owned()));
            map.insert("version".into(), Value::from(version));
            // Grafana's numeric id is its database's; it means nothing here.
            map.insert("id".into(), Value::Null);
        }
        let record = Version {
            version,
            saved_at: crate::now_ms(),
            message,
            provisioned,
            dashboard,
        };
        let dir = self.options.dir.join(uid);
        let created = !dir.exists();
        fs::create_dir_all(&dir)?;
        let bytes =
            serde_json::to_vec(&record).map_err(|e| std::io::Error::other(e.to_string()))?;
        let tmp = dir.join(format!(".{version:010}.json.tmp"));
        {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, version_path(&dir, version))?;
        sync_dir(&dir)?;
        if created {
            sync_dir(&self.options.dir)?;
        }
        // Older versions beyond the limit go.
        let numbers = version_numbers(&dir)?;
        if numbers.len() > self.options.max_versions {
            for n in &numbers[..numbers.len() - self.options.max_versions] {
                let _ = fs::remove_file(version_path(&dir, *n));
            }
        }
        let entry = summarize(uid, &record);
        index.insert(uid.to_owned(), entry);
        Ok(Saved {
            uid: uid.to_owned(),
            version,
            url: format!("/ui/d/{uid}"),
            status: "success",
        })
    }
}

/// Saves the built-in dashboards (when `builtin`) and every `*.json` of
/// `dir`; a file that does not pass is logged and skipped (the server still
/// starts). Returns how many were saved.
pub fn provision_all(store: &DashboardStore, builtin: bool, dir: Option<&Path>) -> usize {
    let mut saved = 0;
    if builtin {
        for (name, body) in BUILTIN {
            match store.provision(&format!("builtin:{name}"), body.as_bytes()) {
                Ok(true) => saved += 1,
                Ok(false) => {}
                Err(err) => tracing::error!("built-in dashboard {name}: {err}"),
            }
        }
    }
    if let Some(dir) = dir {
        let files = match fs::read_dir(dir) {
            Ok(entries) => {
                let mut files: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "json"))
                    .collect();
                files.sort();
                files
            }
            Err(err) => {
                tracing::error!(
                    "dashboards.provision_dir {}: {err}; no dashboards provisioned from it",
                    dir.display()
                );
                Vec::new()
            }
        };
        for path in files {
            let shown = path.display().to_string();
            let body = match fs::read(&path) {
                Ok(body) => body,
                Err(err) => {
                    tracing::error!("dashboard {shown}: {err}");
                    continue;
                }
            };
            match store.provision(&shown, &body) {
                Ok(true) => saved += 1,
                Ok(false) => {}
                Err(err) => tracing::error!("dashboard not provisioned: {err}"),
            }
        }
    }
    saved
}

fn summarize(uid: &str, version: &Version) -> Entry {
    // Stored versions passed the limits of their day; list them even if
    // the limits shrank since.
    let loose = Limits {
        max_bytes: usize::MAX,
        max_panels: usize::MAX,
        max_variables: usize::MAX,
    };
    let summary = validate::check(&version.dashboard, loose).unwrap_or_default();
    Entry {
        uid: uid.to_owned(),
        title: summary.title,
        tags: summary.tags,
        panels: summary.panels,
        version: version.version,
        updated: version.saved_at,
        provisioned: version.provisioned.as_ref().map(|p| p.file.clone()),
    }
}

/// A uid made of the title's letters and a short hash, within 40 characters.
fn slug_uid(title: &str, hash: &str) -> String {
    let mut slug = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 30 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        hash.to_owned()
    } else {
        format!("{slug}-{hash}")
    }
}

fn sha_short(text: &str) -> String {
    crate::model::span::hex(&Sha256::digest(text.as_bytes())[..4])
}

fn version_path(dir: &Path, version: u64) -> PathBuf {
    dir.join(format!("{version:010}.json"))
}

fn version_numbers(dir: &Path) -> Result<Vec<u64>, DashboardError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_suffix(".json")
            .filter(|s| !s.starts_with('.'))
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn read_version<T: serde::de::DeserializeOwned>(
    dir: &Path,
    version: u64,
) -> Result<T, DashboardError> {
    let bytes = fs::read(version_path(dir, version))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        DashboardError::Io(std::io::Error::other(format!(
            "{}: {e}",
            version_path(dir, version).display()
        )))
    })
}

fn latest(dir: &Path) -> Result<Option<Version>, DashboardError> {
    // The newest readable version (a torn file cannot exist, but a
    // hand-edited one can).
    for n in version_numbers(dir)?.into_iter().rev() {
        match read_version(dir, n) {
            Ok(v) => return Ok(Some(v)),
            Err(err) => tracing::error!("skipping an unreadable dashboard version: {err}"),
        }
    }
    Ok(None)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, max_versions: usize) -> DashboardStore {
        DashboardStore::open(Options {
            dir: dir.to_owned(),
            limits: Limits {
                max_bytes: 1 << 20,
                max_panels: 100,
                max_variables: 10,
            },
            max_versions,
            max_dashboards: 3,
        })
        .unwrap()
    }

    #[test]
    fn versions_restore_conflicts_and_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path(), 3);
        let saved = s
            .save(None, br#"{"title": "Web / Latency", "panels": []}"#, false)
            .unwrap();
        assert!(saved.uid.starts_with("web-latency-"), "{}", saved.uid);
        assert_eq!(saved.version, 1);
        let uid = saved.uid.clone();
        for i in 2..=5u64 {
            let body = format!(r#"{{"title": "Web {i}", "version": {}}}"#, i - 1);
            assert_eq!(
                s.save(Some(&uid), body.as_bytes(), false).unwrap().version,
                i
            );
        }
        // Stale: based on version 2 while 5 is stored.
        let stale = s.save(Some(&uid), br#"{"title": "x", "version": 2}"#, false);
        assert!(matches!(stale, Err(DashboardError::Conflict(_))));
        assert!(s
            .save(Some(&uid), br#"{"title": "x", "version": 2}"#, true)
            .is_ok());
        // Only the last three are kept.
        let versions: Vec<u64> = s
            .versions(&uid)
            .unwrap()
            .iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(versions, vec![6, 5, 4]);
        let restored = s.restore(&uid, 4).unwrap();
        assert_eq!(restored.version, 7);
        assert_eq!(s.get(&uid).unwrap().dashboard["title"], "Web 4");
        assert_eq!(s.get(&uid).unwrap().dashboard["version"], 7);
        assert_eq!(s.get(&uid).unwrap().message, "restored version 4");
        drop(s);
        let s = store(tmp.path(), 3);
        assert_eq!(s.list("web", &[])[0].version, 7);
        assert_eq!(s.entry(&uid).unwrap().title, "Web 4");
        s.delete(&uid).unwrap();
        assert!(matches!(s.get(&uid), Err(DashboardError::NotFound(_))));
        assert!(s.list("", &[]).is_empty());
        drop(s);
        assert!(store(tmp.path(), 3).list("", &[]).is_empty());
    }

    #[test]
    fn uid_rules_and_limits() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path(), 3);
        let err = s
            .save(Some("a"), br#"{"title": "t", "uid": "b"}"#, false)
            .unwrap_err();
        assert!(err.to_string().contains("not the uid of the URL"));
        assert!(matches!(
            s.save(Some("../x"), br#"{"title": "t"}"#, false),
            Err(DashboardError::Invalid(_))
        ));
        for uid in ["a", "b", "c"] {
            s.save(Some(uid), br#"{"title": "t", "tags": ["x"]}"#, false)
                .unwrap();
        }
        assert!(matches!(
            s.save(Some("d"), br#"{"title": "t"}"#, false),
            Err(DashboardError::Full(_))
        ));
        assert_eq!(s.list("", &["x".into()]).len(), 3);
        assert!(s.list("", &["y".into()]).is_empty());
    }

    #[test]
    fn provisioning_keeps_browser_edits_until_the_file_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path(), 10);
        let v1 = br#"{"title": "Prov", "uid": "prov"}"#;
        assert!(s.provision("p.json", v1).unwrap());
        assert!(!s.provision("p.json", v1).unwrap());
        s.save(Some("prov"), br#"{"title": "Edited"}"#, true)
            .unwrap();
        assert!(!s.provision("p.json", v1).unwrap());
        assert_eq!(s.get("prov").unwrap().dashboard["title"], "Edited");
        assert!(s
            .provision("p.json", br#"{"title": "Prov 2", "uid": "prov"}"#)
            .unwrap());
        assert_eq!(s.get("prov").unwrap().dashboard["title"], "Prov 2");
        assert_eq!(
            s.entry("prov").unwrap().provisioned.as_deref(),
            Some("p.json")
        );
    }

    #[test]
    fn builtin_dashboards_pass_validation() {
        let tmp = tempfile::tempdir().unwrap();
        let s = DashboardStore::open(Options {
            dir: tmp.path().to_owned(),
            limits: Limits {
                max_bytes: 4 << 20,
                max_panels: 1000,
                max_variables: 100,
            },
            max_versions: 5,
            max_dashboards: 10,
        })
        .unwrap();
        assert_eq!(provision_all(&s, true, None), 3);
        assert_eq!(provision_all(&s, true, None), 0);
        assert_eq!(s.list("", &[]).len(), 3);
    }
}
