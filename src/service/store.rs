//! Job records in SQLite: every job's latest view, kept across restarts. Jobs that were queued
//! or running when the process died are marked interrupted when the store opens, and their
//! partial outputs removed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::job::{JobState, JobView};
use crate::error::{Error, Result};

fn db_error(context: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::io(format!("job records: {context}"), std::io::Error::other(e))
}

/// A job as stored: its view and where its output goes.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub view: JobView,
    pub output: PathBuf,
}

#[derive(Clone)]
pub(crate) struct Store {
    connection: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (or creates) the records at `path` and marks the jobs a previous process left
    /// unfinished as interrupted, removing their partial outputs. Returns their ids.
    pub fn open(path: &Path) -> Result<(Self, Vec<u64>)> {
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
                 );",
            )
            .map_err(db_error("creating the jobs table"))?;
        let store = Self { connection: Arc::new(Mutex::new(connection)) };
        let interrupted = store.mark_interrupted()?;
        Ok((store, interrupted))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mark_interrupted(&self) -> Result<Vec<u64>> {
        let unfinished: Vec<Record> = {
            let connection = self.lock();
            let mut query = connection
                .prepare("SELECT view, output FROM jobs WHERE state IN ('queued', 'running')")
                .map_err(db_error("reading unfinished jobs"))?;
            let rows = query.query_map([], row_record).map_err(db_error("reading unfinished jobs"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error("reading unfinished jobs"))?
        };
        let now = super::job::now();
        let mut ids = Vec::new();
        for mut record in unfinished {
            remove_partials(&record.output);
            let was = record.view.state;
            record.view.state = JobState::Interrupted;
            record.view.finished_at = Some(now);
            record.view.error = Some(match was {
                JobState::Running => "the service stopped while the job ran; its partial output was removed".into(),
                _ => "the service stopped before the job ran".into(),
            });
            self.put(&record)?;
            ids.push(record.view.id);
        }
        Ok(ids)
    }

    /// Adds a job; the view's id is assigned here.
    pub fn insert(&self, view: &mut JobView, output: &Path) -> Result<()> {
        let connection = self.lock();
        connection
            .execute(
                "INSERT INTO jobs (state, output, view) VALUES (?1, ?2, '')",
                params![view.state.as_str(), output.to_string_lossy()],
            )
            .map_err(db_error("adding a job"))?;
        view.id = connection.last_insert_rowid() as u64;
        let json = serde_json::to_string(view).map_err(|e| Error::io("job records", std::io::Error::other(e)))?;
        connection
            .execute("UPDATE jobs SET view = ?1 WHERE id = ?2", params![json, view.id])
            .map_err(db_error("adding a job"))?;
        Ok(())
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
        self.lock()
            .query_row("SELECT view, output FROM jobs WHERE id = ?1", [id], row_record)
            .optional()
            .map_err(db_error("reading a job"))
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
        rows.map(|r| r.map(|r| r.view)).collect::<rusqlite::Result<Vec<_>>>().map_err(db_error("listing jobs"))
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

/// Removes the partial files (`NAME.partial-XXXXXXXX`) an interrupted write of `output` left.
fn remove_partials(output: &Path) {
    let (Some(folder), Some(name)) = (output.parent(), output.file_name()) else { return };
    let prefix = format!("{}.partial-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(folder) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
