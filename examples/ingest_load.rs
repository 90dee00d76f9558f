//! The HTTP ingest benchmark's load generator, for `scripts/bench_ingest.py`: `clients`
//! concurrent keep-alive HTTP/1.1 connections, one per device, each posting SenML JSON packs of
//! `records` readings to `POST /ingest/{source}/{device}` as fast as the answers come, for
//! `seconds`. A request's latency runs from its first byte written to its answer read, and a
//! `204` means stored and published, so it is the latency to stored-and-published.
//!
//! Usage: `ingest_load <base url http://host:port> <source> <device prefix> <token prefix>
//! <clients> <records> <seconds>`; device `i` is `<device prefix><i>` with token
//! `<token prefix><i>`, posting series `production/power/active/instant`. Prints one line of
//! `key=value` figures. Plain HTTP over a TCP socket, written by hand: the client must cost far
//! less than the server it measures.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SERIES: &str = "production/power/active/instant";

struct Args {
    host: String,
    source: String,
    device_prefix: String,
    token_prefix: String,
    clients: usize,
    records: usize,
    seconds: u64,
}

fn args() -> Option<Args> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [base, source, device_prefix, token_prefix, clients, records, seconds] = a.as_slice()
    else {
        return None;
    };
    Some(Args {
        host: base
            .strip_prefix("http://")?
            .trim_end_matches('/')
            .to_owned(),
        source: source.clone(),
        device_prefix: device_prefix.clone(),
        token_prefix: token_prefix.clone(),
        clients: clients.parse().ok()?,
        records: records.parse().ok()?,
        seconds: seconds.parse().ok()?,
    })
}

/// What one client saw.
#[derive(Default)]
struct Outcome {
    latencies: Vec<Duration>,
    statuses: BTreeMap<u16, u64>,
    records: u64,
    reconnects: u64,
}

fn main() -> ExitCode {
    let Some(args) = args() else {
        eprintln!("usage: ingest_load <http://host:port> <source> <device prefix> <token prefix> <clients> <records> <seconds>");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for i in 0..args.clients {
        let host = args.host.clone();
        let path = format!("/ingest/{}/{}{i}", args.source, args.device_prefix);
        let token = format!("{}{i}", args.token_prefix);
        let records = args.records;
        // Readings one second apart from 20 days ago: every pack is new (none is a retry).
        let first_time = now - 20 * 86_400;
        tasks.push(tokio::spawn(client(
            host, path, token, records, first_time, deadline,
        )));
    }
    let mut all = Outcome::default();
    for task in tasks {
        match task.await {
            Ok(Ok(o)) => {
                all.latencies.extend(o.latencies);
                for (s, n) in o.statuses {
                    *all.statuses.entry(s).or_default() += n;
                }
                all.records += o.records;
                all.reconnects += o.reconnects;
            }
            Ok(Err(e)) => {
                eprintln!("client failed: {e}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("client panicked: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.latencies.sort();
    let pct = |p: f64| -> f64 {
        if all.latencies.is_empty() {
            return 0.0;
        }
        let i =
            ((all.latencies.len() as f64 * p).ceil() as usize).clamp(1, all.latencies.len()) - 1;
        all.latencies[i].as_secs_f64() * 1000.0
    };
    let requests = all.latencies.len();
    let statuses: Vec<String> = all
        .statuses
        .iter()
        .map(|(s, n)| format!("{s}:{n}"))
        .collect();
    println!(
        "requests={requests} records={} seconds={elapsed:.2} requests_per_s={:.0} records_per_s={:.0} \
         p50_ms={:.2} p99_ms={:.2} max_ms={:.2} statuses={} reconnects={}",
        all.records,
        requests as f64 / elapsed,
        all.records as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        pct(1.0),
        statuses.join(","),
        all.reconnects,
    );
    ExitCode::SUCCESS
}

/// One keep-alive connection posting packs until `deadline`.
async fn client(
    host: String,
    path: String,
    token: String,
    records: usize,
    first_time: i64,
    deadline: Instant,
) -> std::io::Result<Outcome> {
    let mut out = Outcome::default();
    let mut tcp = TcpStream::connect(&host).await?;
    tcp.set_nodelay(true)?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut time = first_time;
    while Instant::now() < deadline {
        let mut body = String::with_capacity(records * 48 + 128);
        body.push_str(&format!(
            "[{{\"bn\":\"\",\"bt\":{time},\"bu\":\"W\",\"n\":\"{SERIES}\",\"v\":{}}}",
            time % 5000
        ));
        for i in 1..records {
            body.push_str(&format!(
                ",{{\"n\":\"{SERIES}\",\"t\":{i},\"v\":{}.5}}",
                (time + i as i64) % 5000
            ));
        }
        body.push(']');
        time += records as i64;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/senml+json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let sent = Instant::now();
        if tcp.write_all(request.as_bytes()).await.is_err() {
            // The server closed the kept-alive connection (its connection timeout): again.
            tcp = TcpStream::connect(&host).await?;
            tcp.set_nodelay(true)?;
            out.reconnects += 1;
            time -= records as i64;
            continue;
        }
        match read_answer(&mut tcp, &mut buf).await? {
            Some(status) => {
                out.latencies.push(sent.elapsed());
                *out.statuses.entry(status).or_default() += 1;
                if status == 204 {
                    out.records += records as u64;
                }
            }
            None => {
                tcp = TcpStream::connect(&host).await?;
                tcp.set_nodelay(true)?;
                out.reconnects += 1;
                time -= records as i64;
            }
        }
    }
    Ok(out)
}

/// Reads one answer (headers, and the body its Content-Length announces); its status, or
/// `None` when the server closed the connection first.
async fn read_answer(tcp: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<Option<u16>> {
    let mut have = 0;
    loop {
        if have == buf.len() {
            return Err(std::io::Error::other("answer headers too large"));
        }
        let n = tcp.read(&mut buf[have..]).await?;
        if n == 0 {
            return Ok(None);
        }
        have += n;
        let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body_have = have - (end + 4);
        while body_have < length {
            let n = tcp.read(buf).await?;
            if n == 0 {
                return Ok(None);
            }
            body_have += n;
        }
        return Ok(Some(status));
    }
}
