//! framestream's job service mounted in one's own axum application: the service's router
//! nested under `/framestream` beside the application's routes, one listener, one graceful
//! shutdown.
//!
//! `cargo run --example embed_service` submits a test-pattern job to itself over HTTP,
//! follows it to the end and exits; with `-- --serve` it keeps serving (the page is at
//! `/framestream`) until Ctrl-C.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use framestream::service::{Service, ServiceConfig};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("framestream-embed-{}", std::process::id()));
    for folder in ["inputs", "outputs"] {
        std::fs::create_dir_all(dir.join(folder))?;
    }
    let service = Service::new(ServiceConfig {
        running_jobs: 1,
        ..ServiceConfig::new(dir.join("inputs"), dir.join("outputs"), dir.join("jobs.sqlite"))
    })
    .await?;

    let app = Router::new()
        .route("/", get(|| async { "the application's own page" }))
        .nest("/framestream", service.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let stopped = service.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(async move { stopped.closed().await }).await
    });
    println!("serving: http://{address}/framestream");

    if std::env::args().any(|a| a == "--serve") {
        tokio::signal::ctrl_c().await?;
    } else {
        let api = format!("http://{address}/framestream/v1");
        let client = reqwest::Client::new();
        let spec = json!({
            "source": { "pattern": { "width": 160, "height": 90, "frames": 48, "fps": "24" } },
            "stages": [{ "resize": { "scale": 2 } }],
            "output": { "path": "pattern.mp4", "crf": 20 },
        });
        let job: Value = client.post(format!("{api}/jobs")).json(&spec).send().await?.error_for_status()?.json().await?;
        let id = job["id"].as_u64().ok_or("no job id")?;
        println!("job {id} queued");
        let job = loop {
            let job: Value = client.get(format!("{api}/jobs/{id}")).send().await?.json().await?;
            match job["state"].as_str() {
                Some("queued" | "running") => tokio::time::sleep(Duration::from_millis(100)).await,
                _ => break job,
            }
        };
        println!("job {id} {}: {} frames, {} bytes to download", job["state"], job["frames_done"], {
            let output = client.get(format!("{api}/jobs/{id}/output")).send().await?;
            output.error_for_status()?.bytes().await?.len()
        });
        if job["state"] != "finished" {
            return Err(format!("the job ended {}: {}", job["state"], job["error"]).into());
        }
    }

    // Stops taking jobs, cancels what runs, ends the event streams; the server then drains.
    service.shutdown().await;
    server.await??;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
