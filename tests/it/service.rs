//! The job service over real HTTP on 127.0.0.1: submit, events, download, cancel, the queue,
//! path safety, and a restart after the process was killed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use framestream::service::{Service, ServiceConfig};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::common::{ffprobe_frames, partial_files, temp_dir};

/// Longest a test waits for anything.
const PATIENCE: Duration = Duration::from_secs(180);

struct Server {
    base: String,
    service: Service,
    dir: PathBuf,
    client: reqwest::Client,
}

impl Server {
    async fn start(name: &str, configure: impl FnOnce(&mut ServiceConfig)) -> Self {
        Self::start_with(name, configure, axum::Router::new()).await
    }

    /// The service's router merged with `extra` routes.
    async fn start_with(name: &str, configure: impl FnOnce(&mut ServiceConfig), extra: axum::Router) -> Self {
        let dir = temp_dir(name);
        std::fs::create_dir_all(dir.join("in")).unwrap();
        std::fs::create_dir_all(dir.join("out")).unwrap();
        let mut config = ServiceConfig::new(dir.join("in"), dir.join("out"), dir.join("jobs.sqlite"));
        configure(&mut config);
        let service = Service::new(config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stopped = service.clone();
        tokio::spawn(async move {
            let app = extra.merge(stopped.router());
            axum::serve(listener, app).with_graceful_shutdown(async move { stopped.closed().await }).await
        });
        Self { base, service, dir, client: reqwest::Client::new() }
    }

    fn outputs(&self) -> PathBuf {
        self.dir.join("out")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self.client.post(self.url(path)).json(body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Submits `spec`, expecting it accepted; returns the job id.
    async fn submit(&self, spec: &Value) -> u64 {
        let (status, body) = self.post("/v1/jobs", spec).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["state"], "queued");
        body["id"].as_u64().unwrap()
    }

    async fn events(&self, path: &str) -> Events {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Events { body: Box::pin(response.bytes_stream()), buffer: String::new() }
    }
}

/// A Server-Sent Events stream, event by event.
struct Events {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>,
    buffer: String,
}

impl Events {
    /// The next event's name and JSON data (`None` when the stream ended).
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_string();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((name, serde_json::from_str(&data).unwrap()));
            }
            let chunk = tokio::time::timeout(PATIENCE, self.body.next()).await.expect("an event in time")?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    }
}

fn pattern_job(frames: u64, output: &str) -> Value {
    json!({
        "source": { "pattern": { "width": 64, "height": 36, "frames": frames, "fps": "24" } },
        "output": { "path": output, "chunk_frames": 8 },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_submitted_followed_downloaded_and_decodes() {
    let server = Server::start("service-submit", |_| {}).await;
    let mut spec = pattern_job(48, "clips/pattern.mp4");
    spec["stages"] = json!([{ "resize": { "scale": 2, "filter": "bicubic" } }]);
    spec["preview_every"] = json!(16);
    std::fs::create_dir(server.outputs().join("clips")).unwrap();
    let id = server.submit(&spec).await;

    let mut events = server.events(&format!("/v1/jobs/{id}/events")).await;
    let mut names = Vec::new();
    let mut last = Value::Null;
    while let Some((name, view)) = events.next().await {
        assert_eq!(view["id"], id);
        names.push(name);
        last = view;
    }
    assert_eq!(names.last().map(String::as_str), Some("finished"), "{last}");
    assert_eq!(last["preview_frame"], 47, "{last}");
    assert_eq!(last["frames_done"], 48);
    assert_eq!(last["progress"], 1.0);
    let stages: Vec<&str> = last["stages"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    for stage in ["pattern", "resize", "preview", "save_video"] {
        assert!(stages.contains(&stage), "{stages:?}");
    }
    assert!(last["stages"].as_array().unwrap().iter().all(|s| s["state"] == "finished"), "{last}");

    // The whole file, then a range of it.
    let whole = server.client.get(server.url(&format!("/v1/jobs/{id}/output"))).send().await.unwrap();
    assert_eq!(whole.status().as_u16(), 200);
    assert!(whole.headers()["content-disposition"].to_str().unwrap().contains("pattern.mp4"));
    let bytes = whole.bytes().await.unwrap();
    let downloaded = server.dir.join("downloaded.mp4");
    std::fs::write(&downloaded, &bytes).unwrap();
    assert_eq!(ffprobe_frames(&downloaded), ("128".into(), "72".into(), "48".into()));
    let part = server
        .client
        .get(server.url(&format!("/v1/jobs/{id}/output")))
        .header("range", "bytes=10-109")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(part.headers()["content-range"], format!("bytes 10-109/{}", bytes.len()));
    assert_eq!(part.bytes().await.unwrap(), bytes.slice(10..110));

    let preview = server.client.get(server.url(&format!("/v1/jobs/{id}/preview"))).send().await.unwrap();
    assert_eq!(preview.status().as_u16(), 200);
    assert_eq!(preview.headers()["content-type"], "image/png");
    assert!(preview.bytes().await.unwrap().starts_with(b"\x89PNG"));

    let (status, job) = server.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!((status, job["state"].as_str()), (200, Some("finished")));
    let (_, list) = server.get("/v1/jobs?state=finished").await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
    let metrics = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("framestream_jobs{state=\"finished\"} 1"), "{metrics}");
    assert!(metrics.contains("framestream_frames_total 48"), "{metrics}");
    assert!(metrics.contains("framestream_frames_per_second 0\n"), "{metrics}");
    // An ended job's events: its last view, at once.
    let mut again = server.events(&format!("/v1/jobs/{id}/events")).await;
    assert_eq!(again.next().await.unwrap().0, "finished");
    assert!(again.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_leaves_no_file() {
    let server = Server::start("service-cancel", |_| {}).await;
    let id = server.submit(&pattern_job(10_000_000, "long.mp4")).await;
    let mut events = server.events(&format!("/v1/jobs/{id}/events")).await;
    loop {
        let (_, view) = events.next().await.expect("events until progress");
        if view["frames_done"].as_u64().unwrap() > 0 {
            break;
        }
    }
    assert_eq!(partial_files(&server.outputs()).len(), 1, "the output is being written");
    let (status, view) = server.post(&format!("/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(status, 202, "{view}");
    let mut terminal = None;
    while let Some((name, _)) = events.next().await {
        terminal = Some(name);
    }
    assert_eq!(terminal.as_deref(), Some("cancelled"));
    let left: Vec<_> = std::fs::read_dir(server.outputs()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    let (status, body) = server.get(&format!("/v1/jobs/{id}/output")).await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = server.post(&format!("/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(status, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_jobs_on_two_slots_all_finish() {
    let server = Server::start("service-twenty", |config| {
        config.running_jobs = 2;
        config.queued_jobs = 18;
    })
    .await;
    let mut events = server.events("/v1/events").await;
    let submissions = (0..20).map(|i| {
        let server = &server;
        async move { server.submit(&pattern_job(12, &format!("job-{i}.mp4"))).await }
    });
    let mut ids = futures::future::join_all(submissions).await;
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);

    let mut states = std::collections::HashMap::new();
    let mut most_running = 0;
    while states.values().filter(|s: &&String| *s == "finished").count() < 20 {
        let (name, view) = events.next().await.expect("events until every job ends");
        assert_eq!(name, "job");
        states.insert(view["id"].as_u64().unwrap(), view["state"].as_str().unwrap().to_string());
        most_running = most_running.max(states.values().filter(|s| *s == "running").count());
        assert!(!matches!(view["state"].as_str(), Some("failed" | "cancelled")), "{view}");
    }
    assert!(most_running <= 2, "{most_running} jobs ran at once");
    for i in 0..20 {
        assert!(std::fs::metadata(server.outputs().join(format!("job-{i}.mp4"))).unwrap().len() > 0);
    }
    let (_, list) = server.get("/v1/jobs?limit=50").await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_start_in_the_order_they_were_accepted() {
    let server = Server::start("service-order", |config| config.running_jobs = 1).await;
    let long = server.submit(&pattern_job(10_000_000, "long.mp4")).await;
    let mut queued = Vec::new();
    for i in 0..5 {
        queued.push(server.submit(&pattern_job(8, &format!("queued-{i}.mp4"))).await);
    }
    server.post(&format!("/v1/jobs/{long}/cancel"), &Value::Null).await;
    let mut started = Vec::new();
    for id in queued {
        let view = ended(&server, id).await;
        assert_eq!(view["state"], "finished", "{view}");
        started.push((id, view["started_at"].as_f64().unwrap()));
    }
    assert!(started.windows(2).all(|w| w[0].1 <= w[1].1), "{started:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429() {
    let server = Server::start("service-queue", |config| {
        config.running_jobs = 1;
        config.queued_jobs = 1;
    })
    .await;
    let running = server.submit(&pattern_job(10_000_000, "a.mp4")).await;
    // Two jobs writing one file at once is a conflict, not a race.
    let (status, body) = server.post("/v1/jobs", &pattern_job(4, "a.mp4")).await;
    assert_eq!(status, 409, "{body}");
    let queued = server.submit(&pattern_job(10_000_000, "b.mp4")).await;
    let (status, body) = server.post("/v1/jobs", &pattern_job(4, "c.mp4")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "queue_full");
    for id in [queued, running] {
        let mut events = server.events(&format!("/v1/jobs/{id}/events")).await;
        assert_eq!(server.post(&format!("/v1/jobs/{id}/cancel"), &json!({})).await.0, 202);
        let mut last = None;
        while let Some((name, _)) = events.next().await {
            last = Some(name);
        }
        assert_eq!(last.as_deref(), Some("cancelled"));
    }
    assert_eq!(server.post("/v1/jobs", &pattern_job(4, "c.mp4")).await.0, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors() {
    let server = Server::start("service-bad", |_| {}).await;
    let outside = temp_dir("service-bad-outside");
    std::fs::write(outside.join("secret.mp4"), b"x").unwrap();
    std::os::unix::fs::symlink(outside.join("secret.mp4"), server.dir.join("in/link.mp4")).unwrap();
    std::os::unix::fs::symlink(&outside, server.outputs().join("elsewhere")).unwrap();

    let video = |path: &str| json!({ "source": { "video": { "path": path } }, "output": { "path": "x.mp4" } });
    let cases = [
        (pattern_job(4, "../escape.mp4"), "`..`"),
        (pattern_job(4, "/etc/escape.mp4"), "outside"),
        (pattern_job(4, "elsewhere/escape.mp4"), "outside"),
        (video("../../secret.mp4"), "`..`"),
        (video("link.mp4"), "outside"),
        (video(outside.join("secret.mp4").to_str().unwrap()), "outside"),
        (video("missing.mp4"), "missing.mp4"),
        (json!({ "source": { "pattern": { "width": 8, "height": 8, "frames": 1 } }, "output": { "path": "x.mp4" }, "priority": 1 }), "unknown field `priority`"),
        (json!({ "source": { "pattern": { "width": 8, "height": 8, "frames": 1 } } }), "missing field `output`"),
        (json!({ "source": { "pattern": { "width": 8, "height": 0, "frames": 1 } }, "output": { "path": "x.mp4" } }), "width and height"),
    ];
    for (spec, says) in cases {
        let (status, body) = server.post("/v1/jobs", &spec).await;
        assert_eq!(status, 400, "{spec}: {body}");
        assert_eq!(body["error"]["code"], "bad_request");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{spec}: {message}");
    }
    assert!(std::fs::read_dir(&outside).unwrap().count() == 1, "nothing written outside");

    let raw = |body: Vec<u8>| server.client.post(server.url("/v1/jobs")).header("content-type", "application/json").body(body).send();
    let malformed = raw(b"{".to_vec()).await.unwrap();
    assert_eq!(malformed.status().as_u16(), 400);
    // Just over the limit: small enough that the whole body is sent before the answer.
    let huge = raw(vec![b' '; (64 << 10) + 1]).await.unwrap();
    assert_eq!(huge.status().as_u16(), 413);
    assert_eq!(huge.json::<Value>().await.unwrap()["error"]["code"], "bad_body");
    let text = server.client.post(server.url("/v1/jobs")).body(pattern_job(4, "t.mp4").to_string()).send().await.unwrap();
    assert_eq!(text.status().as_u16(), 415);
    // Another site's page may not submit or cancel (a form post, a cross-origin fetch).
    for (header, value) in [("origin", "http://evil.example"), ("sec-fetch-site", "cross-site")] {
        let response = server.client.post(server.url("/v1/jobs")).header(header, value).json(&pattern_job(4, "t.mp4")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 403, "{header}");
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "cross_site");
    }
    let (status, body) = server.get("/v1/jobs/1/cancel").await;
    assert_eq!((status, body["error"]["code"].as_str()), (405, Some("method_not_allowed")));
    assert_eq!(server.get("/v1/jobs/18446744073709551615").await.0, 404);
    assert_eq!(server.get("/v1/jobs/12345").await.0, 404);
    assert_eq!(server.get("/v1/jobs/abc").await.0, 400);
    assert_eq!(server.get("/v1/jobs?limit=0").await.0, 400);
    assert_eq!(server.get("/v1/jobs?state=dreaming").await.0, 400);
    let (status, body) = server.get("/v2/nothing").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let existing = server.outputs().join("exists.mp4");
    std::fs::write(&existing, b"keep").unwrap();
    let (status, body) = server.post("/v1/jobs", &pattern_job(4, "exists.mp4")).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_everything_but_the_page() {
    let server = Server::start("service-token", |config| config.token = Some("s3cret".into())).await;
    let page = server.client.get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("EventSource"));
    for path in ["/v1/jobs", "/v1/models", "/metrics", "/v1/events"] {
        let response = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{path}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let wrong = server.client.get(server.url(path)).bearer_auth("s3cre").send().await.unwrap();
        assert_eq!(wrong.status().as_u16(), 401, "{path}");
    }
    let allowed = server.client.get(server.url("/v1/models")).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(allowed.status().as_u16(), 200);
    let by_query = server.client.get(server.url("/v1/jobs?access_token=s3cret")).send().await.unwrap();
    assert_eq!(by_query.status().as_u16(), 200);
    server.service.shutdown().await;
    // A token with characters a URL encodes.
    let server = Server::start("service-token-encoded", |config| config.token = Some("a+b/c=&d".into())).await;
    let by_query = server.client.get(server.url("/v1/models?access_token=a%2Bb%2Fc%3D%26d")).send().await.unwrap();
    assert_eq!(by_query.status().as_u16(), 200);
}

/// `framestream serve` as a child process, with the address it listens on.
fn serve(dir: &Path, extra: &[&str]) -> (KillOnDrop, String, Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_framestream"))
        .args(["--json", "serve", "--bind", "127.0.0.1:0", "--jobs", "1"])
        .arg("--inputs")
        .arg(dir.join("in"))
        .arg("--outputs")
        .arg(dir.join("out"))
        .arg("--database")
        .arg(dir.join("jobs.sqlite"))
        .args(extra)
        // A C library's fatal message goes to stderr, not to a terminal CI does not have.
        .env("LIBC_FATAL_STDERR_", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let serving: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: `{line}`"));
    assert_eq!(serving["event"], "serving");
    let base = format!("http://{}", serving["address"].as_str().unwrap());
    (KillOnDrop(child), base, serving)
}

/// Polls job `id` until `reached` holds for its view (`what` names it in the failure).
async fn wait_for_job(client: &reqwest::Client, base: &str, id: u64, what: &str, reached: impl Fn(&Value) -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let job: Value = client.get(format!("{base}/v1/jobs/{id}")).send().await.unwrap().json().await.unwrap();
        if reached(&job) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_progress(client: &reqwest::Client, base: &str, id: u64) {
    wait_for_job(client, base, id, "no progress", |job| job["frames_done"].as_u64().unwrap_or(0) > 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_marks_the_killed_job_interrupted() {
    let dir = temp_dir("service-restart");
    std::fs::create_dir_all(dir.join("in")).unwrap();
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let client = reqwest::Client::new();

    let (first, base, _) = serve(&dir, &[]);
    let response = client.post(format!("{base}/v1/jobs")).json(&pattern_job(10_000_000, "long.mp4")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let id = response.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    wait_for_progress(&client, &base, id).await;
    // One slot, taken: these wait.
    let response = client.post(format!("{base}/v1/jobs")).json(&pattern_job(16, "queued.mp4")).send().await.unwrap();
    let queued = response.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    // And this one's model goes before the restart.
    std::fs::copy(crate::common::fixture("upscale", "compact_x2.safetensors"), dir.join("in/x2.safetensors")).unwrap();
    let mut spec = pattern_job(16, "upscaled.mp4");
    spec["stages"] = json!([{ "upscale": { "model": "x2.safetensors" } }]);
    let response = client.post(format!("{base}/v1/jobs")).json(&spec).send().await.unwrap();
    let orphaned = response.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    drop(first); // SIGKILL: nothing runs on the way out
    std::fs::remove_file(dir.join("in/x2.safetensors")).unwrap();
    assert_eq!(partial_files(&dir.join("out")).len(), 1, "the killed job left its partial output");

    let (second, base, serving) = serve(&dir, &[]);
    assert_eq!(serving["interrupted"], json!([id]));
    assert_eq!(serving["requeued"], json!([queued]));
    assert_eq!(serving["failed"], json!([orphaned]));
    // (The queued job, started again, may have one of its own by now.)
    let killed: Vec<String> = partial_files(&dir.join("out")).into_iter().filter(|n| n.starts_with("long.mp4")).collect();
    assert!(killed.is_empty(), "removed at start-up: {killed:?}");
    let job: Value = client.get(format!("{base}/v1/jobs/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(job["state"], "interrupted", "{job}");
    let job: Value = client.get(format!("{base}/v1/jobs/{orphaned}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(job["state"], "failed", "{job}");
    assert!(job["error"].as_str().unwrap().contains("x2.safetensors"), "{job}");
    // The queued one runs in the new process.
    wait_for_job(&client, &base, queued, "not finished", |job| {
        assert!(["queued", "running", "finished"].contains(&job["state"].as_str().unwrap()), "{job}");
        job["state"] == "finished"
    })
    .await;
    assert_eq!(ffprobe_frames(&dir.join("out/queued.mp4")).2, "16");
    // On a loopback address the API answers to its own names only (no DNS rebinding).
    let rebound = client.get(format!("{base}/v1/jobs")).header("host", "attacker.example").send().await.unwrap();
    assert_eq!(rebound.status().as_u16(), 403);
    let port = base.rsplit(':').next().unwrap();
    let named = client.get(format!("{base}/v1/jobs")).header("host", format!("localhost:{port}")).send().await.unwrap();
    assert_eq!(named.status().as_u16(), 200);
    // One service per database: another one refuses to start and leaves the first's jobs.
    let another = Command::new(env!("CARGO_BIN_EXE_framestream"))
        .args(["serve", "--bind", "127.0.0.1:0", "--inputs"])
        .arg(dir.join("in"))
        .arg("--outputs")
        .arg(dir.join("out"))
        .arg("--database")
        .arg(dir.join("jobs.sqlite"))
        .output()
        .unwrap();
    assert!(!another.status.success());
    assert!(String::from_utf8_lossy(&another.stderr).contains("in use by another running service"));
    drop(second);
}

/// SIGTERM cancels the running job; the process exits only after the job's last device work
/// and its encoder thread have ended (before, under load, lavapipe's threads could still be
/// compiling when `exit` tore the driver down: SIGABRT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cancels_the_running_job_and_exits_cleanly() {
    let dir = temp_dir("service-sigterm");
    std::fs::create_dir_all(dir.join("in")).unwrap();
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let client = reqwest::Client::new();
    let (mut running, base, _) = serve(&dir, &[]);
    let response = client.post(format!("{base}/v1/jobs")).json(&pattern_job(10_000_000, "long.mp4")).send().await.unwrap();
    let id = response.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    wait_for_progress(&client, &base, id).await;
    wait_for_job(&client, &base, id, "no preview", |job| !job["preview_frame"].is_null()).await;
    let status = Command::new("kill").args(["-TERM", &running.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exited = tokio::task::spawn_blocking(move || running.0.wait().unwrap()).await.unwrap();
    assert!(exited.success(), "{exited:?}");
    let left: Vec<_> = std::fs::read_dir(dir.join("out")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "{left:?}");
    let (restarted, base, serving) = serve(&dir, &[]);
    assert_eq!(serving["interrupted"], json!([]));
    let job: Value = client.get(format!("{base}/v1/jobs/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(job["state"], "cancelled", "{job}");
    // Its last preview was kept with its record.
    let preview = client.get(format!("{base}/v1/jobs/{id}/preview")).send().await.unwrap();
    assert_eq!(preview.status().as_u16(), 200);
    assert_eq!(preview.headers()["x-frame"], job["preview_frame"].to_string().as_str());
    assert!(preview.bytes().await.unwrap().starts_with(b"\x89PNG"));
    drop(restarted);
}

/// Drives the web page in an iframe as a person would: submits a job with the form, waits for
/// 100 % and the preview image, then submits a long job and presses its cancel button.
const PAGE_DRIVER: &str = r##"<!doctype html><html><body>
<iframe id="app" src="/" style="width:1200px;height:900px"></iframe>
<script>
const report = (result) => fetch("/driver/result", { method: "POST", body: JSON.stringify(result) });
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
async function until(what, test) {
  const end = Date.now() + 150000;
  for (;;) {
    const value = test();
    if (value) return value;
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await sleep(50);
  }
}
async function run() {
  const frame = document.getElementById("app");
  await until("the page", () => frame.contentDocument && frame.contentDocument.readyState === "complete"
    && frame.contentDocument.getElementById("info"));
  const doc = frame.contentDocument;
  await until("the service's info", () => doc.getElementById("info").textContent.includes("framestream"));
  const submit = (spec) => {
    doc.getElementById("spec").value = JSON.stringify(spec);
    doc.querySelector("#submit button").click();
  };
  submit({ source: { pattern: { width: 64, height: 36, frames: 48, fps: "24" } },
           output: { path: "page.mp4", chunk_frames: 8 }, preview_every: 16 });
  const row = await until("the job's row", () => doc.querySelector("#jobs tr"));
  await until("100 %", () => row.querySelector(".percent").textContent === "100 %"
    && row.querySelector(".state").textContent === "finished");
  const image = row.querySelector("img.preview");
  await until("the preview image", () => image.complete && image.naturalWidth === 64);
  const download = row.querySelector("a.download");
  if (download.hidden) throw new Error("no download link");
  submit({ source: { pattern: { width: 64, height: 36, frames: 10000000, fps: "24" } },
           output: { path: "long.mp4", chunk_frames: 8 } });
  const long = await until("the long job running", () => {
    const newest = doc.querySelector("#jobs tr");
    return newest !== row && newest.querySelector(".state").textContent === "running" && newest;
  });
  long.querySelector("button.cancel").click();
  await until("the long job cancelled", () => long.querySelector(".state").textContent.startsWith("cancelled"));
  report({ ok: true, preview_width: image.naturalWidth, download: download.getAttribute("href"),
           cancel_hidden: long.querySelector("button.cancel").hidden });
}
run().catch((e) => report({ ok: false, error: String(e),
  page: document.getElementById("app").contentDocument.body.innerHTML }));
</script></body></html>"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_page_shows_progress_and_preview_and_cancels_in_chromium() {
    use axum::routing::{get, post};
    let (sender, mut results) = tokio::sync::mpsc::channel::<String>(1);
    let driver = axum::Router::new()
        .route("/driver", get(|| async { axum::response::Html(PAGE_DRIVER) }))
        .route(
            "/driver/result",
            post(move |body: String| {
                let sender = sender.clone();
                async move {
                    sender.send(body).await.ok();
                }
            }),
        );
    let server = Server::start_with("service-page", |_| {}, driver).await;
    let profile = server.dir.join("chromium-profile");
    let chromium = Command::new("chromium")
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(server.url("/driver"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium (Debian's `chromium` package; scripts/system-packages.sh installs it)");
    let _browser = KillOnDrop(chromium);
    let result = tokio::time::timeout(PATIENCE, results.recv()).await.expect("the page's report in time").unwrap();
    let result: Value = serde_json::from_str(&result).unwrap();
    assert_eq!(result["ok"], true, "{result:#}");
    assert_eq!(result["preview_width"], 64);
    assert_eq!(result["cancel_hidden"], true);
    assert!(result["download"].as_str().unwrap().ends_with("/output"), "{result}");
    assert!(std::fs::metadata(server.outputs().join("page.mp4")).unwrap().len() > 0);
    assert!(!server.outputs().join("long.mp4").exists());
    assert!(partial_files(&server.outputs()).is_empty());
}

/// Ends a child process with the test, however the test ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for job `id` to end and returns its last view.
async fn ended(server: &Server, id: u64) -> Value {
    let mut events = server.events(&format!("/v1/jobs/{id}/events")).await;
    let mut last = Value::Null;
    while let Some((_, view)) = events.next().await {
        last = view;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_loaded_once_for_every_job_that_names_them() {
    let server = Server::start("service-models", |_| {}).await;
    let inputs = server.dir.join("in");
    std::fs::copy(crate::common::fixture("ltx", "v2.safetensors"), inputs.join("vae.safetensors")).unwrap();
    std::fs::copy(crate::common::fixture("ltx", "v2.latent"), inputs.join("clip.latent")).unwrap();
    std::fs::copy(crate::common::fixture("upscale", "compact_x2.safetensors"), inputs.join("x2.safetensors")).unwrap();
    let latent = json!({ "latent": { "vae": "vae.safetensors", "latent": "clip.latent", "noise_scale": 0.0 } });

    let decoded = server.submit(&json!({ "source": latent, "output": { "path": "frames.safetensors", "chunk_frames": 4 } })).await;
    let upscaled = server
        .submit(&json!({ "source": latent, "stages": [{ "upscale": { "model": "x2.safetensors" } }], "output": { "path": "up.mp4" } }))
        .await;
    let pattern = server
        .submit(&json!({
            "source": { "pattern": { "width": 32, "height": 18, "frames": 6 } },
            "stages": [{ "upscale": { "model": "x2.safetensors", "precision": "f32" } }],
            "output": { "path": "pattern.mp4" },
        }))
        .await;
    for id in [decoded, upscaled, pattern] {
        let view = ended(&server, id).await;
        assert_eq!(view["state"], "finished", "{view}");
    }
    // The decode through the service is the reference decode.
    let got = crate::common::read_tensor_file(&server.outputs().join("frames.safetensors"));
    let want = framestream::model::WeightFile::open(crate::common::fixture("ltx", "v2-expected.safetensors"))
        .unwrap()
        .tensor("frames")
        .unwrap();
    assert_eq!(got.shape, want.shape);
    assert!(crate::common::max_error(&got.data, &want.data) < 1e-4);
    let (width, height, _) = ffprobe_frames(&server.outputs().join("up.mp4"));
    assert_eq!((width.as_str(), height.as_str()), ("192", "128"));

    let (_, models) = server.get("/v1/models").await;
    let mut listed: Vec<(String, String, u64)> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["kind"].as_str().unwrap().into(), m["path"].as_str().unwrap().into(), m["jobs"].as_u64().unwrap()))
        .collect();
    listed.sort();
    assert_eq!(listed, [("upscale".into(), "x2.safetensors".into(), 2), ("vae".into(), "vae.safetensors".into(), 2)]);
    // One upload of each model's weights, shared by the jobs.
    assert_eq!(server.service.device().models_held(), 2);
}

/// The models `/v1/models` lists: (path, jobs that used it, jobs using it now).
async fn listed_models(server: &Server) -> Vec<(String, u64, u64)> {
    let (_, models) = server.get("/v1/models").await;
    let models = models["models"].as_array().unwrap().iter();
    models.map(|m| (m["path"].as_str().unwrap().into(), m["jobs"].as_u64().unwrap(), m["in_use"].as_u64().unwrap())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_no_job_uses_is_unloaded_after_the_idle_time() {
    let server = Server::start("service-model-idle", |config| config.model_idle = Duration::from_millis(300)).await;
    std::fs::copy(crate::common::fixture("upscale", "compact_x2.safetensors"), server.dir.join("in/x2.safetensors")).unwrap();
    let upscale = |frames: u64, path: &str| {
        let mut spec = pattern_job(frames, path);
        spec["stages"] = json!([{ "upscale": { "model": "x2.safetensors" } }]);
        spec
    };
    // Held by a running job, it stays however long the job runs.
    let long = server.submit(&upscale(10_000_000, "long.mp4")).await;
    wait_for_progress(&server.client, &server.base, long).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(listed_models(&server).await, [("x2.safetensors".into(), 1, 1)]);
    server.post(&format!("/v1/jobs/{long}/cancel"), &Value::Null).await;
    assert_eq!(ended(&server, long).await["state"], "cancelled");
    // Let go, it is unloaded once idle.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !listed_models(&server).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "still loaded: {:?}", listed_models(&server).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And loaded again by the next job that names it.
    let again = server.submit(&upscale(4, "again.mp4")).await;
    assert_eq!(ended(&server, again).await["state"], "finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_jobs_finish_when_configured() {
    use framestream::service::{JobState, ServiceError};
    let server = Server::start("service-finish", |config| {
        config.running_jobs = 1;
        config.on_shutdown = framestream::service::OnShutdown::Finish;
    })
    .await;
    let running = server.submit(&pattern_job(10_000_000, "a.mp4")).await;
    let queued = server.submit(&pattern_job(96, "b.mp4")).await;
    let mut events = server.events(&format!("/v1/jobs/{running}/events")).await;
    while events.next().await.is_some_and(|(_, view)| view["state"] != "running") {}
    let stopping = server.service.clone();
    let shutdown = tokio::spawn(async move { stopping.shutdown().await });
    // The queued job is cancelled, the running one goes on, nothing new is taken.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server.service.job(queued).await.unwrap().state != JobState::Cancelled {
        assert!(tokio::time::Instant::now() < deadline, "the queued job was not cancelled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.service.job(running).await.unwrap().state, JobState::Running);
    let spec: framestream::service::JobSpec = serde_json::from_value(pattern_job(4, "c.mp4")).unwrap();
    assert!(matches!(server.service.submit(spec).await, Err(ServiceError::ShuttingDown)));
    assert!(!shutdown.is_finished(), "shutdown waits for the running job");
    // A second signal's cancel ends the wait.
    server.service.cancel_all();
    tokio::time::timeout(PATIENCE, shutdown).await.unwrap().unwrap();
    assert_eq!(server.service.job(running).await.unwrap().state, JobState::Cancelled);
    assert!(!server.outputs().join("b.mp4").exists());
    assert!(partial_files(&server.outputs()).is_empty());
}
