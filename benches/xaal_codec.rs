//! xAAL benchmark, in-process part: decode throughput of the stack-7 codec (datagrams/s), for
//! genuine `attributes_change` datagrams (CBOR, ChaCha20-Poly1305, replay cache) and for
//! datagrams sealed with another key (refused at the tag check), plus encode throughput.
//!
//! Run with `cargo bench --bench xaal_codec` (release). The latency from an `attributes_change`
//! on a real bus to the PubSub notification is measured by `scripts/bench_xaal.py`;
//! `scripts/bench.sh` runs both. Each figure is the median of a few repetitions after a warm-up.

use std::hint::black_box;
use std::time::{Duration, Instant};

use quoalise_component::source::xaal::{Codec, Key, Message, MsgType, Timestamp};
use uuid::Uuid;

/// Devices on the simulated bus, and datagrams each sends.
const SENDERS: u128 = 100;
const PER_SENDER: usize = 1_000;
const REPEAT: usize = 5;

/// A powermeter `attributes_change` like the one captured from a real xaal-lib device
/// (docs/architecture.md §5.3), from `sender`.
fn change(sender: u128, i: usize) -> Message {
    Message::new(
        Uuid::from_u128(0x3a4b5c6d_1111_11ef_8000_0242ac120000 + sender),
        "powermeter.basic",
        MsgType::Notify,
        "attributes_change",
    )
    .with("power", 900 + (i % 200) as i64)
    .with("energy", 42.25 + i as f64 / 1000.0)
}

/// Datagrams from every sender, interleaved as on a bus, sealed at `now` and after.
fn datagrams(key: &Key, now: Timestamp) -> Vec<Vec<u8>> {
    let mut codec = Codec::new(key);
    (0..PER_SENDER)
        .flat_map(|i| (0..SENDERS).map(move |s| (s, i)))
        .map(|(s, i)| codec.encode(&change(s, i), now).expect("encodes"))
        .collect()
}

fn median(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    (
        samples[0],
        samples[samples.len() / 2],
        samples[samples.len() - 1],
    )
}

/// Times `run` (which handles `count` datagrams) REPEAT times after one warm-up.
fn measure(label: &str, count: usize, mut run: impl FnMut() -> usize) {
    let expected = run();
    let samples: Vec<Duration> = (0..REPEAT)
        .map(|_| {
            let started = Instant::now();
            let handled = black_box(run());
            let took = started.elapsed();
            assert_eq!(handled, expected, "{label}: not the same outcome every run");
            took
        })
        .collect();
    let (min, med, max) = median(samples);
    let rate = |d: Duration| count as f64 / d.as_secs_f64();
    println!(
        "{label:<46} {:>12.0} datagrams/s  (median of {REPEAT}; min {:.0}, max {:.0}; {count} datagrams, {} accepted)",
        rate(med),
        rate(max),
        rate(min),
        expected,
    );
}

fn main() {
    let key = Key::from_passphrase("xaal");
    let other = Key::from_passphrase("not the bus key");
    let now = Timestamp::now();
    let genuine = datagrams(&key, now);
    let forged = datagrams(&other, now);
    let count = genuine.len();
    let bytes: usize = genuine.iter().map(Vec::len).sum();
    println!(
        "xAAL stack-7 codec: {count} attributes_change datagrams from {SENDERS} senders, {} bytes each on average",
        bytes / count
    );

    measure(
        "decode, genuine (fresh replay cache each run)",
        count,
        || {
            let mut codec = Codec::new(&key);
            genuine
                .iter()
                .filter(|d| codec.decode(d, now).is_ok())
                .count()
        },
    );
    measure("decode, sealed with another key (refused)", count, || {
        let mut codec = Codec::new(&key);
        forged
            .iter()
            .filter(|d| codec.decode(d, now).is_ok())
            .count()
    });
    measure("decode, replays of already-seen datagrams", count, {
        let mut codec = Codec::new(&key);
        for d in &genuine {
            codec.decode(d, now).expect("first sight is accepted");
        }
        move || {
            genuine
                .iter()
                .filter(|d| codec.decode(d, now).is_ok())
                .count()
        }
    });
    measure("encode", count, || {
        let mut codec = Codec::new(&key);
        (0..PER_SENDER)
            .flat_map(|i| (0..SENDERS).map(move |s| (s, i)))
            .filter(|(s, i)| codec.encode(&change(*s, *i), now).is_ok())
            .count()
    });
}
