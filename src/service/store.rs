//! Job records in SQLite: every job's latest view, kept across restarts. Jobs that were
//! running when the process died are marked interrupted when the store opens, and their
//! partial outputs removed; queued ones are handed back to be queued again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::job::{JobState, JobView};
use crate::atomic_file::remove_partials;
use crate::error::{Error, Result};

fn db_error(context: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::io(format!("job records: {context}"), std::io::Error::other(e))
}

/// Ended jobs whose last preview is kept.
const KEPT_PREVIEWS: usize = 500;

/// A job as stored: its view and where its output goes.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub view: JobView,
    pub output: PathBuf,
}

#[derive(Clone)]
pub(crate) struct Store {
    connection: Arc<Mutex<Connection>>,
    /// Held while the store is open: one service per database.
    _lock: Arc<std::fs::File>,
}

/// Locks `PATH.lock` beside the database, so a second service on the same records fails
/// before it touches the first one's jobs.
fn lock_database(path: &Path) -> Result<std::fs::File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(format!("job records: opening {}", lock_path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::config(format!(
            "the job records {} are in use by another running service",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(format!("job records: locking {}", lock_path.display()), e)),
    }
}

impl Store {
    /// Opens (or creates) the records at `path` and marks the jobs a previous process left
    /// running as interrupted, removing their partial outputs. Returns their ids, and the
    /// records of the jobs it left queued (oldest first).
    pub fn open(path: &Path) -> Result<(Self, Vec<u64>, Vec<Record>)> {
        let lock = lock_database(path)?;
        let connection = Connection::open(path).map_err(db_error("opening the database"))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA busy_timeout = 5000;
                 CREATE TABLE IF NOT EXISTS jobs (
                     id INTEGER PRIMARY KEY AUTOINCREMENT,
                     state TEXT NOT NULL,
                     output TEXT NOT NULL,
                     view TEXT NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS previews (
                     id INTEGER PRIMARY KEY REFERENCES jobs (id),
                     frame INTEGER NOT NULL,
                     png BLOB NOT NULL
                 );",
            )
            .map_err(db_error("creating the tables"))?;
        let store = Self { connection: Arc::new(Mutex::new(connection)), _lock: Arc::new(lock) };
        let interrupted = store.mark_interrupted()?;
        let queued = store.records_in(JobState::Queued)?;
        Ok((store, interrupted, queued))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        crate::sync::lock(&self.connection)
    }

    fn mark_interrupted(&self) -> Result<Vec<u64>> {
        let unfinished = self.records_in(JobState::Running)?;
        let now = super::job::now();
        let mut ids = Vec::new();
        for mut record in unfinished {
            remove_partials(&record.output);
            record.view.state = JobState::Interrupted;
            record.view.finished_at = Some(now);
            record.view.error = Some("the service stopped while the job ran; its partial output was removed".into());
            self.put(&record)?;
            ids.push(record.view.id);
        }
        Ok(ids)
    }

    /// The records of the jobs in `state`, oldest first.
    fn records_in(&self, state: JobState) -> Result<Vec<Record>> {
        let connection = self.lock();
        let mut query = connection
            .prepare("SELECT view, output FROM jobs WHERE state = ?1 ORDER BY id")
            .map_err(db_error("reading jobs by state"))?;
        let rows = query.query_map([state.as_str()], row_record).map_err(db_error("reading jobs by state"))?;
        Ok(readable(rows))
    }

    /// Adds a job; the view's id is assigned here.
    pub fn insert(&self, view: &mut JobView, output: &Path) -> Result<()> {
        let mut connection = self.lock();
        // The id comes from the insert; one transaction, so no row is ever left without its view.
        let transaction = connection.transaction().map_err(db_error("adding a job"))?;
        transaction
            .execute(
                "INSERT INTO jobs (state, output, view) VALUES (?1, ?2, '')",
                params![view.state.as_str(), output.to_string_lossy()],
            )
            .map_err(db_error("adding a job"))?;
        view.id = transaction.last_insert_rowid() as u64;
        let json = serde_json::to_string(view).map_err(|e| Error::io("job records", std::io::Error::other(e)))?;
        transaction
            .execute("UPDATE jobs SET view = ?1 WHERE id = ?2", params![json, view.id])
            .map_err(db_error("adding a job"))?;
        transaction.commit().map_err(db_error("adding a job"))
    }

    /// Replaces a job's record.
    pub fn put(&self, record: &Record) -> Result<()> {
        let json = serde_json::to_string(&record.view).map_err(|e| Error::io("job records", std::io::Error::other(e)))?;
        self.lock()
            .execute(
                "UPDATE jobs SET state = ?1, output = ?2, view = ?3 WHERE id = ?4",
                params![record.view.state.as_str(), record.output.to_string_lossy(), json, record.view.id],
            )
            .map_err(db_error("updating a job"))?;
        Ok(())
    }

    pub fn get(&self, id: u64) -> Result<Option<Record>> {
        let Ok(id) = i64::try_from(id) else { return Ok(None) };
        self.lock()
            .query_row("SELECT view, output FROM jobs WHERE id = ?1", [id], row_record)
            .optional()
            .map_err(db_error("reading a job"))
    }

    /// Keeps an ended job's last preview (PNG) for after a restart, and the latest
    /// [`KEPT_PREVIEWS`] jobs' only.
    pub fn put_preview(&self, id: u64, frame: u64, png: &[u8]) -> Result<()> {
        let connection = self.lock();
        connection
            .execute(
                "INSERT OR REPLACE INTO previews (id, frame, png) VALUES (?1, ?2, ?3)",
                params![id as i64, frame as i64, png],
            )
            .map_err(db_error("keeping a preview"))?;
        connection
            .execute(
                "DELETE FROM previews WHERE id NOT IN (SELECT id FROM previews ORDER BY id DESC LIMIT ?1)",
                [KEPT_PREVIEWS as i64],
            )
            .map_err(db_error("keeping a preview"))?;
        Ok(())
    }

    /// A job's kept preview: its frame and PNG.
    pub fn preview(&self, id: u64) -> Result<Option<(u64, Vec<u8>)>> {
        let Ok(id) = i64::try_from(id) else { return Ok(None) };
        self.lock()
            .query_row("SELECT frame, png FROM previews WHERE id = ?1", [id], |row| {
                Ok((row.get::<_, i64>(0)? as u64, row.get::<_, Vec<u8>>(1)?))
            })
            .optional()
            .map_err(db_error("reading a preview"))
    }

    /// The latest `limit` jobs, newest first, of `state` if given.
    pub fn list(&self, limit: usize, state: Option<JobState>) -> Result<Vec<JobView>> {
        let connection = self.lock();
        let mut query = connection
            .prepare("SELECT view, output FROM jobs WHERE ?1 IS NULL OR state = ?1 ORDER BY id DESC LIMIT ?2")
            .map_err(db_error("listing jobs"))?;
        let rows = query
            .query_map(params![state.map(JobState::as_str), limit as i64], row_record)
            .map_err(db_error("listing jobs"))?;
        Ok(readable(rows).into_iter().map(|r| r.view).collect())
    }

    /// How many jobs are in each state.
    pub fn counts(&self) -> Result<Vec<(String, u64)>> {
        let connection = self.lock();
        let mut query =
            connection.prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state").map_err(db_error("counting jobs"))?;
        let rows = query
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64)))
            .map_err(db_error("counting jobs"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error("counting jobs"))
    }
}

fn row_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    let json: String = row.get(0)?;
    let output: String = row.get(1)?;
    let view = serde_json::from_str(&json)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(Record { view, output: PathBuf::from(output) })
}

/// The rows that parse; a damaged one is logged and skipped rather than failing every listing.
fn readable(rows: impl Iterator<Item = rusqlite::Result<Record>>) -> Vec<Record> {
    rows.filter_map(|row| row.map_err(|e| tracing::warn!("job records: skipping a damaged row: {e}")).ok()).collect()
}
