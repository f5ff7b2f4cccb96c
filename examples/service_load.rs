//! Load on the job service while jobs run: status requests and event streams served per
//! second, and how late a 10 ms tick on the same runtime fires meanwhile (the service must
//! stay responsive while its device works).
//!
//! `cargo run --release --example service_load -- [SECONDS] [CLIENTS] [SIZE]`
//! (defaults 10 s, 16 status clients, 640x360 frames; two jobs run the whole time).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use framestream::service::{Service, ServiceConfig};
use futures::StreamExt;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u64 = args.first().map_or(Ok(10), |s| s.parse())?;
    let clients: usize = args.get(1).map_or(Ok(16), |s| s.parse())?;
    let size: framestream::FrameSize = args.get(2).map_or(Ok("640x360".parse()?), |s| s.parse())?;

    let dir = std::env::temp_dir().join(format!("framestream-load-{}", std::process::id()));
    for folder in ["inputs", "outputs"] {
        std::fs::create_dir_all(dir.join(folder))?;
    }
    let service = Service::new(ServiceConfig {
        running_jobs: 2,
        ..ServiceConfig::new(dir.join("inputs"), dir.join("outputs"), dir.join("jobs.sqlite"))
    })
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}/v1", listener.local_addr()?);
    let stopped = service.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, stopped.router()).with_graceful_shutdown(async move { stopped.closed().await }).await
    });

    // Two jobs far longer than the measurement.
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..2 {
        let spec = json!({
            "source": { "pattern": { "width": size.width, "height": size.height, "frames": 10_000_000 } },
            "stages": [{ "resize": { "scale": 2 } }],
            "output": { "path": format!("load-{i}.mp4"), "preset": "ultrafast" },
            "preview_every": 24,
        });
        let job: Value = client.post(format!("{api}/jobs")).json(&spec).send().await?.error_for_status()?.json().await?;
        ids.push(job["id"].as_u64().ok_or("no id")?);
    }
    // Until both produce frames.
    for id in &ids {
        loop {
            let job: Value = client.get(format!("{api}/jobs/{id}")).send().await?.json().await?;
            if job["frames_done"].as_u64().unwrap_or(0) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let statuses = Arc::new(AtomicU64::new(0));
    let events = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (client, url) = (client.clone(), format!("{api}/jobs/{}", ids[i % 2]));
        let (stop, statuses) = (stop.clone(), statuses.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(response) = client.get(&url).send().await
                    && response.status().is_success()
                    && response.bytes().await.is_ok()
                {
                    statuses.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for id in &ids {
        let (client, url) = (client.clone(), format!("{api}/jobs/{id}/events"));
        let (stop, events) = (stop.clone(), events.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(response) = client.get(&url).send().await else { return };
            let mut body = response.bytes_stream();
            while !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(200), body.next()).await {
                    Ok(Some(Ok(chunk))) => {
                        let n = chunk.windows(6).filter(|w| w == b"event:").count();
                        events.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Ok(_) => return,
                    Err(_) => {}
                }
            }
        }));
    }
    // The probe: a 10 ms tick on the service's runtime.
    let probe = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut late = Vec::new();
            let mut next = Instant::now() + Duration::from_millis(10);
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep_until(next.into()).await;
                late.push(Instant::now().saturating_duration_since(next));
                next += Duration::from_millis(10);
            }
            late
        })
    };

    let frames_before = frames(&client, &api, &ids).await?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let frames_after = frames(&client, &api, &ids).await?;
    let mut late = probe.await?;
    for task in tasks {
        task.await?;
    }
    late.sort();
    let quantile = |q: f64| late[((late.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;

    println!("service load: {seconds} s, 2 jobs of {size} ×2 running, {clients} status clients, 2 event streams");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| status requests/s | {:.0} |", statuses.load(Ordering::Relaxed) as f64 / elapsed);
    println!("| events/s received | {:.1} |", events.load(Ordering::Relaxed) as f64 / elapsed);
    println!("| job frames/s (both) | {:.1} |", (frames_after - frames_before) as f64 / elapsed);
    println!("| 10 ms tick lateness p50 / p99 / max (ms) | {:.2} / {:.2} / {:.2} |", quantile(0.5), quantile(0.99), quantile(1.0));

    service.shutdown().await;
    server.await??;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Frames both jobs have written.
async fn frames(client: &reqwest::Client, api: &str, ids: &[u64]) -> Result<u64, Box<dyn std::error::Error>> {
    let mut total = 0;
    for id in ids {
        let job: Value = client.get(format!("{api}/jobs/{id}")).send().await?.json().await?;
        total += job["frames_done"].as_u64().unwrap_or(0);
    }
    Ok(total)
}
