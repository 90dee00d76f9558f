//! What a web client may cost: connections beyond the cap are closed at once, a client that
//! does not finish its headers (or idles on a kept-alive connection) is closed after the header
//! timeout, and a body larger than `max_body` is refused before it is read.

use std::time::Duration;

use quoalise_component::store;
use quoalise_component::web::listener::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

mod support;

async fn start(limits: Limits) -> (std::net::SocketAddr, CancellationToken) {
    let store = store::open("sqlite::memory:").await.unwrap();
    support::web::serve(store, limits).await
}

/// Sends `request` and reads the answer's status line, or `None` if the server closed first.
async fn status(addr: std::net::SocketAddr, request: &str) -> Option<String> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let n = timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.lines()
        .next()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
}

/// Waits until the server closes `tcp`; returns how long that took.
async fn closed_after(tcp: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match timeout(limit, tcp.read(&mut buf)).await {
            Err(_) => panic!("still open after {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
        }
    }
}

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let (addr, _stop) = start(Limits {
        max_connections: 4,
        header_timeout: Duration::from_secs(30),
        connection_timeout: Duration::from_secs(60),
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fifth = TcpStream::connect(addr).await.unwrap();
    let took = closed_after(&mut fifth, Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    // A slot freed is a slot served.
    drop(idle.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = status(addr, HEALTHZ).await;
    assert!(answer.is_some_and(|l| l.starts_with("HTTP/1.1 ")), "served");
}

#[tokio::test]
async fn slow_headers_and_idle_keep_alive_are_closed_after_the_header_timeout() {
    let (addr, _stop) = start(Limits {
        max_connections: 64,
        header_timeout: Duration::from_secs(1),
        connection_timeout: Duration::from_secs(60),
    })
    .await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let took = closed_after(&mut slow, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "{took:?}");

    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(HEALTHZ.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 "));
    let took = closed_after(&mut kept, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn a_connection_does_not_outlive_its_timeout() {
    let (addr, _stop) = start(Limits {
        max_connections: 64,
        header_timeout: Duration::from_secs(1),
        connection_timeout: Duration::from_secs(2),
    })
    .await;
    // A body announced and sent one byte a while: the headers came in time, the body never ends.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    let dribble = async {
        for _ in 0..20 {
            if tcp.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let _ = timeout(Duration::from_secs(6), dribble).await;
    let took = closed_after(&mut tcp, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn large_bodies_are_refused_before_being_read() {
    let (addr, _stop) = start(Limits {
        max_connections: 64,
        header_timeout: Duration::from_secs(5),
        connection_timeout: Duration::from_secs(60),
    })
    .await;
    let answer = status(
        addr,
        "POST /authorize HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n",
    )
    .await;
    assert_eq!(
        answer.as_deref(),
        Some("HTTP/1.1 413 Payload Too Large"),
        "{answer:?}"
    );
    let small = status(addr, HEALTHZ).await;
    assert!(small.is_some_and(|l| l.starts_with("HTTP/1.1 ")));
}
