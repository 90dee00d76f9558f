//! Codec tests on the vectors captured from a real xaal-lib 0.9.2 device (docs/architecture.md
//! §5.3).

use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;
use uuid::Uuid;

use super::codec::MAX_NONCES_PER_SENDER;
use super::*;

const KEY_HEX: &str = "13af792910d83072e46f8d5f13fd5e41a8ae4e86755bf56d3ae200f2af06ec0b";

const ALIVE: &str = "85071a6b01f5321920804180584585ddd44a54c7af52be1e9c697907b9af0c5c005cfb00b01920cc54b065ff7ec41169f5bc4f211d823c7ef9e2c4b8b4e2af67e7212b31f8a79af9f935ccb6d12b0d760d021d";
const ALIVE_TS: Timestamp = Timestamp::new(1_795_290_418, 8320);

const CHANGE: &str = "85071a6b01f5341a00072522418058605eed9b52a1f1902fa7cdbcdd9c3c4884f9c1ae8ad953183b0c40a70f5f6c5c079983864b9ee6f9cb496c6e402ed65911f8dd9d27856aba2cdff417a46f5cd0bf33f96918b49f0bbf6d51435972a8bf204d0ef0bdc902f5ec7e8590eab5173fd0";
const CHANGE_TS: Timestamp = Timestamp::new(1_795_290_420, 468_258);

const DEVICE: &str = "3a4b5c6d-1111-11ef-8000-0242ac120002";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn codec() -> Codec {
    Codec::new(&Key::from_hex(KEY_HEX).unwrap())
}

fn device() -> Uuid {
    Uuid::parse_str(DEVICE).unwrap()
}

fn outer_fields(d: &[u8]) -> Vec<ciborium::value::Value> {
    match ciborium::de::from_reader(d).unwrap() {
        ciborium::value::Value::Array(f) => f,
        other => panic!("{other:?}"),
    }
}

fn open(ct: &[u8], ts: Timestamp, aad: &[u8]) -> Vec<u8> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    let key = Key::from_hex(KEY_HEX).unwrap();
    chacha20poly1305::ChaCha20Poly1305::new(key.as_bytes().into())
        .decrypt(
            chacha20poly1305::Nonce::from_slice(&ts.nonce()),
            Payload { msg: ct, aad },
        )
        .unwrap()
}

/// Index of the first byte of the ciphertext: the last item, a byte string, ends the datagram.
fn ciphertext_start(d: &[u8]) -> usize {
    let ciborium::value::Value::Bytes(ct) = &outer_fields(d)[4] else {
        panic!("no ciphertext")
    };
    d.len() - ct.len()
}

#[test]
fn passphrase_key_matches_notes() {
    assert_eq!(Key::from_passphrase("xaal").to_hex(), KEY_HEX);
}

#[test]
fn hex_key_is_checked() {
    assert_eq!(Key::from_hex(KEY_HEX).unwrap().to_hex(), KEY_HEX);
    assert_eq!(
        Key::from_hex(&KEY_HEX.to_uppercase()).unwrap().to_hex(),
        KEY_HEX
    );
    assert_eq!(Key::from_hex("abcd"), Err(KeyError::Length(4)));
    assert_eq!(
        Key::from_hex(&format!("zz{}", &KEY_HEX[2..])),
        Err(KeyError::NotHex)
    );
    assert_eq!(format!("{:?}", Key::from_hex(KEY_HEX).unwrap()), "Key(..)");
}

#[test]
fn decodes_captured_alive() {
    let mut c = codec();
    let m = c.decode(&hex(ALIVE), ALIVE_TS).unwrap();
    assert_eq!(m.version, 7);
    assert_eq!(m.timestamp, ALIVE_TS);
    assert!(m.targets.is_empty());
    assert_eq!(m.source, device());
    assert_eq!(m.dev_type, "powermeter.basic");
    assert_eq!(m.msg_type, MsgType::Notify);
    assert_eq!(m.action, "alive");
    assert_eq!(m.body.len(), 1);
    assert_eq!(m.body["timeout"], Value::Int(200));
    assert_eq!(m.body["timeout"].as_f64(), Some(200.0));
    assert_eq!(c.counters().accepted, 1);
    assert_eq!(c.counters().rejected(), 0);
}

#[test]
fn decodes_captured_attributes_change() {
    let mut c = codec();
    // Anywhere inside the window is fine.
    let now = Timestamp::new(CHANGE_TS.sec + 120, 0);
    let m = c.decode(&hex(CHANGE), now).unwrap();
    assert_eq!(m.timestamp, CHANGE_TS);
    assert_eq!(m.source, device());
    assert_eq!(m.msg_type, MsgType::Notify);
    assert_eq!(m.action, "attributes_change");
    assert_eq!(m.body["power"], Value::Int(987));
    assert_eq!(m.body["energy"], Value::Float(42.25));
    // Ints and floats are both numbers.
    assert_eq!(m.body["power"].as_f64(), Some(987.0));
    assert_eq!(m.body["energy"].as_f64(), Some(42.25));
}

#[test]
fn window_is_plus_or_minus_120_s() {
    for (now_sec, ok) in [
        (CHANGE_TS.sec - 120, true),
        (CHANGE_TS.sec + 120, true),
        (CHANGE_TS.sec - 121, false),
        (CHANGE_TS.sec + 121, false),
        (0, false),
        (u64::MAX, false),
    ] {
        let mut c = codec();
        let r = c.decode(&hex(CHANGE), Timestamp::new(now_sec, 0));
        if ok {
            assert!(r.is_ok(), "{now_sec}: {r:?}");
        } else {
            assert_eq!(
                r,
                Err(DecodeError::OutOfWindow {
                    sec: CHANGE_TS.sec,
                    now: now_sec
                })
            );
            assert_eq!(c.counters().out_of_window, 1);
        }
    }
}

#[test]
fn replay_is_refused() {
    let mut c = codec();
    assert!(c.decode(&hex(ALIVE), ALIVE_TS).is_ok());
    let again = c.decode(&hex(ALIVE), Timestamp::new(ALIVE_TS.sec + 5, 0));
    assert_eq!(
        again,
        Err(DecodeError::Replay {
            sender: device(),
            sec: ALIVE_TS.sec,
            usec: ALIVE_TS.usec
        })
    );
    assert_eq!(c.counters().replay, 1);
    // A different timestamp from the same sender is fine.
    assert!(c.decode(&hex(CHANGE), CHANGE_TS).is_ok());
}

#[test]
fn replay_cache_is_bounded_and_stays_safe() {
    let mut ours = codec();
    let mut theirs = codec();
    let msg = Message::new(device(), "thermometer.basic", MsgType::Notify, "alive");
    let base = Timestamp::new(1_800_000_000, 0);
    let mut sent = Vec::new();
    for i in 0..(MAX_NONCES_PER_SENDER as u32 + 10) {
        let now = Timestamp::new(base.sec, i);
        let d = ours.encode(&msg, now).unwrap();
        theirs.decode(&d, now).unwrap();
        sent.push(d);
    }
    let later = Timestamp::new(base.sec + 1, 0);
    // Forgotten (oldest) and remembered (newest) ones are both refused.
    for d in [&sent[0], &sent[5], sent.last().unwrap()] {
        assert!(matches!(
            theirs.decode(d, later),
            Err(DecodeError::Replay { .. })
        ));
    }
}

#[test]
fn tampering_is_refused() {
    let mut c = codec();
    let good = hex(ALIVE);
    // Flip each ciphertext byte (including the Poly1305 tag) in turn.
    let start = ciphertext_start(&good);
    for i in start..good.len() {
        let mut d = good.clone();
        d[i] ^= 0x01;
        assert_eq!(c.decode(&d, ALIVE_TS), Err(DecodeError::BadTag), "byte {i}");
    }
    // A different timestamp changes the nonce: usec is a 2-byte uint at offset 8..10.
    let mut d = good.clone();
    assert_eq!(&d[7..10], &[0x19, 0x20, 0x80]);
    d[9] = 0x81;
    assert_eq!(c.decode(&d, ALIVE_TS), Err(DecodeError::BadTag));
    // Targets are authenticated: replace the empty array with a one-target array.
    let target = device();
    let mut targets = vec![0x81, 0x50];
    targets.extend_from_slice(target.as_bytes());
    let mut d = good[..10].to_vec();
    d.push(0x40 + targets.len() as u8);
    d.extend_from_slice(&targets);
    d.extend_from_slice(&good[12..]);
    assert_eq!(c.decode(&d, ALIVE_TS), Err(DecodeError::BadTag));
    assert_eq!(c.counters().bad_tag as usize, good.len() - start + 2);
    // A wrong key.
    let mut other = Codec::new(&Key::from_passphrase("not xaal"));
    assert_eq!(other.decode(&good, ALIVE_TS), Err(DecodeError::BadTag));
    // The original still decodes.
    assert!(c.decode(&good, ALIVE_TS).is_ok());
}

#[test]
fn wrong_version_is_refused() {
    let mut c = codec();
    for v in [0u8, 6, 8, 0x17] {
        let mut d = hex(ALIVE);
        d[1] = v;
        assert_eq!(
            c.decode(&d, ALIVE_TS),
            Err(DecodeError::BadVersion(v as u64))
        );
    }
    assert_eq!(c.counters().bad_version, 4);
}

#[test]
fn oversized_is_refused() {
    let mut c = codec();
    let d = vec![0u8; MAX_DATAGRAM + 1];
    assert_eq!(
        c.decode(&d, ALIVE_TS),
        Err(DecodeError::TooLarge(MAX_DATAGRAM + 1))
    );
    assert_eq!(c.counters().too_large, 1);
    // And we never produce one.
    let big = Message::new(device(), "x.y", MsgType::Notify, "a")
        .with("blob", Value::Bytes(vec![0; MAX_DATAGRAM]));
    assert!(matches!(
        c.encode(&big, ALIVE_TS),
        Err(EncodeError::TooLarge(_))
    ));
    assert_eq!(c.last_sent(), None);
}

#[test]
fn malformed_input_is_refused() {
    let mut c = codec();
    let good = hex(ALIVE);
    let mut trailing = good.clone();
    trailing.push(0);
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff],
        vec![0x07],
        vec![0x84, 0x07, 0x00, 0x00, 0x40],
        vec![0x86, 0x07, 0, 0, 0x40, 0x40, 0x40],
        good[..good.len() - 1].to_vec(),
        trailing,
        // usec >= 1e6.
        hex("85071a6b01f5321a000f424041804100"),
        // Targets not an array of 16-byte strings.
        hex("85071a6b01f532192080414041a0"),
        hex("85071a6b01f5321920804281414100"),
    ];
    for d in &cases {
        assert!(
            matches!(c.decode(d, ALIVE_TS), Err(DecodeError::Malformed(_))),
            "{d:02x?}"
        );
    }
    assert_eq!(c.counters().malformed as usize, cases.len());
}

fn seal_plaintext(plain: &[u8], ts: Timestamp) -> Vec<u8> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    let key = Key::from_hex(KEY_HEX).unwrap();
    let cipher = chacha20poly1305::ChaCha20Poly1305::new(key.as_bytes().into());
    let ct = cipher
        .encrypt(
            chacha20poly1305::Nonce::from_slice(&ts.nonce()),
            Payload {
                msg: plain,
                aad: &[0x80],
            },
        )
        .unwrap();
    let v = ciborium::value::Value::Array(vec![
        7u64.into(),
        ts.sec.into(),
        ts.usec.into(),
        ciborium::value::Value::Bytes(vec![0x80]),
        ciborium::value::Value::Bytes(ct),
    ]);
    let mut out = Vec::new();
    ciborium::ser::into_writer(&v, &mut out).unwrap();
    out
}

#[test]
fn malformed_payload_is_refused() {
    let src = "50".to_owned() + &DEVICE.replace('-', "");
    let cases = [
        "".to_owned(),
        "80".to_owned(),
        format!("83{src}6178 00"),
        format!("84{src}617800"),                   // action missing
        format!("84{src}6178036161"),               // msg_type 3
        "844100617800 6161".to_owned(),             // short source
        format!("85{src}61780061610a"),             // body not a map
        format!("85{src}6178006161a1016161"),       // non-text key
        format!("85{src}6178006161a16161d82541ff"), // tag 37 on 1 byte
        format!("85{src}6178006161a16161d82001"),   // tag 32 on an int
        format!("84{src}6178006161ff"),             // trailing byte
    ];
    let mut c = codec();
    for (i, p) in cases.iter().enumerate() {
        let ts = Timestamp::new(ALIVE_TS.sec, i as u32);
        let d = seal_plaintext(&hex(&p.replace(' ', "")), ts);
        assert!(
            matches!(c.decode(&d, ts), Err(DecodeError::MalformedPayload(_))),
            "case {i}: {p}"
        );
    }
    // And a well-formed one in the same shape decodes.
    let ts = Timestamp::new(ALIVE_TS.sec, 999);
    let d = seal_plaintext(&hex(&format!("84{src}6178016161")), ts);
    let m = c.decode(&d, ts).unwrap();
    assert_eq!((m.msg_type, m.action.as_str()), (MsgType::Request, "a"));
}

#[test]
fn round_trip_with_tags_and_targets() {
    let mut ours = codec();
    let mut theirs = codec();
    let target = Uuid::from_bytes([0x11; 16]);
    let mut nested = std::collections::BTreeMap::new();
    nested.insert("x".to_owned(), Value::Float(-1.5));
    let msg = Message::new(
        device(),
        "powermeter.basic",
        MsgType::Reply,
        "get_description",
    )
    .to(vec![target, Uuid::nil()])
    .with("vendor_id", "Quoalise")
    .with("url", Value::Url("http://example.org/x".into()))
    .with("group_id", Value::Uuid(target))
    .with("devices", Value::Array(vec![Value::Uuid(target)]))
    .with("power", 1234i64)
    .with("energy", 0.125)
    .with("big", Value::Int(-(1i128 << 64)))
    .with("on", true)
    .with("none", Value::Null)
    .with("raw", Value::Bytes(vec![1, 2, 3]))
    .with("date", Value::Tagged(1, Box::new(Value::Int(0))))
    .with("nested", Value::Map(nested));
    let now = Timestamp::new(1_800_000_000, 5);
    let d = ours.encode(&msg, now).unwrap();
    let got = theirs.decode(&d, now).unwrap();
    assert_eq!(got.timestamp, now);
    assert_eq!(
        Message {
            timestamp: msg.timestamp,
            ..got
        },
        msg
    );
    // On the wire: targets as an array of 16-byte strings (the associated data), UUIDs in the
    // body under tag 37 (d8 25 50 ..), URLs under tag 32 (d8 20 ..), ints as ints.
    let f = outer_fields(&d);
    let (ciborium::value::Value::Bytes(targets), ciborium::value::Value::Bytes(ct)) =
        (&f[3], &f[4])
    else {
        panic!("{f:?}")
    };
    let mut want = vec![0x82, 0x50];
    want.extend_from_slice(target.as_bytes());
    want.push(0x50);
    want.extend_from_slice(&[0; 16]);
    assert_eq!(targets, &want);
    let plain = open(ct, now, targets);
    let contains = |needle: &[u8]| plain.windows(needle.len()).any(|w| w == needle);
    let mut tagged_uuid = vec![0xd8, 0x25, 0x50];
    tagged_uuid.extend_from_slice(target.as_bytes());
    assert!(contains(&tagged_uuid));
    assert!(contains(b"\xd8\x20\x74http://example.org/x"));
    assert!(contains(b"\x65power\x19\x04\xd2"));
    assert_eq!(Value::Int(1i128 << 64).as_i64(), None);
    assert_eq!(Value::Float(3.0).as_i64(), Some(3));
    // An empty body is omitted and comes back empty.
    let bare = Message::new(device(), "any.any", MsgType::Request, "is_alive");
    let d = ours.encode(&bare, now).unwrap();
    assert_eq!(theirs.decode(&d, now).unwrap().body.len(), 0);
    // Out-of-range ints are refused on encode.
    let huge = bare.clone().with("n", Value::Int(1i128 << 70));
    assert_eq!(ours.encode(&huge, now), Err(EncodeError::IntOutOfRange));
}

#[test]
fn our_timestamps_never_repeat() {
    let mut ours = codec();
    let mut theirs = codec();
    let msg = Message::new(device(), "powermeter.basic", MsgType::Notify, "alive");
    let now = Timestamp::new(1_800_000_000, 999_998);
    let mut seen = Vec::new();
    for _ in 0..5 {
        let d = ours.encode(&msg, now).unwrap();
        seen.push(theirs.decode(&d, now).unwrap().timestamp);
    }
    // Clock going backwards still moves forward.
    let d = ours.encode(&msg, Timestamp::new(now.sec - 10, 0)).unwrap();
    seen.push(theirs.decode(&d, now).unwrap().timestamp);
    assert_eq!(
        seen,
        vec![
            Timestamp::new(now.sec, 999_998),
            Timestamp::new(now.sec, 999_999),
            Timestamp::new(now.sec + 1, 0),
            Timestamp::new(now.sec + 1, 1),
            Timestamp::new(now.sec + 1, 2),
            Timestamp::new(now.sec + 1, 3),
        ]
    );
    assert_eq!(ours.last_sent(), Some(Timestamp::new(now.sec + 1, 3)));
    // A later clock is used as is.
    let later = Timestamp::new(now.sec + 60, 42);
    let d = ours.encode(&msg, later).unwrap();
    assert_eq!(theirs.decode(&d, later).unwrap().timestamp, later);
}

#[test]
fn rejections_are_logged_once_per_sender_per_minute() {
    let mut log = RejectLog::new();
    let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    let err = DecodeError::BadTag;
    let t = |s| Timestamp::new(s, 0);
    assert!(log.record(a, &err, t(1000)));
    assert!(!log.record(a, &err, t(1001)));
    assert!(!log.record(a, &DecodeError::BadVersion(6), t(1059)));
    assert!(log.record(b, &err, t(1010)));
    assert!(log.record(a, &err, t(1060)));
    assert!(!log.record(a, &err, t(1100)));
    // The table of senders is bounded.
    let mut log = RejectLog::new();
    for i in 0..RejectLog::MAX_SENDERS as u32 {
        assert!(log.record(IpAddr::V4(Ipv4Addr::from(i)), &err, t(0)));
    }
    assert!(!log.record(a, &err, t(10)));
    assert_eq!(log.unlogged, 1);
    assert!(log.record(a, &err, t(60)));

    // Through the codec: every rejection is counted, whether logged or not.
    let mut c = codec();
    for _ in 0..3 {
        let _ = c.decode_from(&[0xff], a, ALIVE_TS);
    }
    assert_eq!(c.counters().malformed, 3);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut c = codec();
        let _ = c.decode(&bytes, ALIVE_TS);
        prop_assert_eq!(c.counters().accepted + c.counters().rejected(), 1);
    }

    #[test]
    fn mutated_vectors_never_panic(
        which in any::<bool>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let (mut d, ts) = if which { (hex(ALIVE), ALIVE_TS) } else { (hex(CHANGE), CHANGE_TS) };
        for (i, b) in edits {
            let i = i.index(d.len());
            d[i] = b;
        }
        d.truncate(cut.index(d.len() + 1));
        let mut c = codec();
        let _ = c.decode(&d, ts);
    }

    #[test]
    fn sealed_random_plaintexts_never_panic(plain in proptest::collection::vec(any::<u8>(), 0..200)) {
        let d = seal_plaintext(&plain, ALIVE_TS);
        let mut c = codec();
        let _ = c.decode(&d, ALIVE_TS);
    }
}

#[test]
fn deep_nesting_is_refused_without_overflow() {
    let mut c = codec();
    for head in [0x81u8, 0xc1, 0xa1, 0x9f] {
        let mut d = vec![head; MAX_DATAGRAM - 1];
        d.push(0x00);
        assert!(matches!(
            c.decode(&d, ALIVE_TS),
            Err(DecodeError::Malformed(_))
        ));
        // The same inside an authenticated payload.
        let ts = Timestamp::new(ALIVE_TS.sec, head.into());
        let sealed = seal_plaintext(&d[..60_000], ts);
        assert!(matches!(
            c.decode(&sealed, ts),
            Err(DecodeError::MalformedPayload(_))
        ));
    }
    // Huge declared lengths with no data behind them.
    for d in [
        hex("9b7fffffffffffffff"),
        hex("5b7fffffffffffffff"),
        hex("bb7fffffffffffffff"),
    ] {
        assert!(matches!(
            c.decode(&d, ALIVE_TS),
            Err(DecodeError::Malformed(_))
        ));
    }
}
