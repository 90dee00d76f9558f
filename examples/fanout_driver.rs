//! The fan-out benchmark driver (docs/architecture.md §9): the component, driven from stdin, for `scripts/bench_fanout.py`.
//!
//! Runs the real component (`app::serve_with_events`, the same wiring as `quoalise-component
//! run`) from a configuration file, keeping a sender on the source-event channel. Commands, one
//! per line on stdin:
//!
//! - `go <M> <usage point> <series> <first time>`: sends M live batches of one reading each
//!   (times `first time`, `first time + 1`, …) as fast as the channel takes them, then prints
//!   `sent <M> <unix time of the first send> <unix time of the last send>`;
//! - `quit` (or end of input): graceful shutdown, then exit.
//!
//! The log goes to stderr (the `[log] level` of the configuration, or `RUST_LOG`). Build with
//! `cargo build --release --example fanout_driver`; `scripts/bench.sh` runs the benchmark.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use quoalise_component::model::{Batch, Reading};
use quoalise_component::settings::{self, Config};
use quoalise_component::source::SourceEvent;
use std::io::BufRead;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!(
            "usage: fanout_driver <component.toml>  (then commands on stdin, see the source)"
        );
        return ExitCode::from(2);
    };
    let settings = match Config::load(&path)
        .and_then(|c| c.validate(std::env::var(settings::SECRET_ENV).ok()))
    {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&settings.config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();

    // The same runtime as `quoalise-component run` (one worker per core).
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(drive(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fanout_driver: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn drive(settings: settings::Settings) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let (events, events_rx) = mpsc::channel(quoalise_component::app::SOURCE_EVENTS);
    let component = tokio::spawn(quoalise_component::app::serve_with_events(
        settings,
        shutdown.clone(),
        events.clone(),
        events_rx,
    ));

    // stdin is read by a plain thread (the crate builds tokio without `io-std`).
    let (lines_tx, mut lines) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["go", count, usage_point, series, first_time] => {
                let count: usize = count.parse()?;
                let first_time: i64 = first_time.parse()?;
                let started = unix_now();
                for n in 0..count {
                    let batch = Batch {
                        usage_point: (*usage_point).to_owned(),
                        series: (*series).to_owned(),
                        readings: vec![Reading {
                            time: first_time + n as i64,
                            value: 1000.0 + n as f64,
                        }],
                    };
                    events
                        .send(SourceEvent::Live(batch))
                        .await
                        .map_err(|_| anyhow::anyhow!("the publisher stopped"))?;
                }
                println!("sent {count} {started:.6} {:.6}", unix_now());
            }
            ["quit"] => break,
            [] => {}
            _ => anyhow::bail!("unknown command {line:?}"),
        }
        if component.is_finished() {
            break;
        }
    }
    shutdown.cancel();
    drop(events);
    component.await??;
    Ok(())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}
