//! Property tests of the inbound path: random well-formed XML of any depth, names, attributes
//! and namespaces, cut in random chunks, through the real framer, stanza parser and router.
//!
//! What must hold: nothing panics; the framer never loses its place (one frame per stanza, and
//! a sentinel stanza after the noise is read intact); a stanza within the limits parses or fails
//! alone; the pure parsers (commands, forms, PubSub requests, SenML, `<quoalise>`) never panic
//! on whatever a parsed stanza holds. The case count is fixed, so the run is bounded in CI.

mod support;

use std::sync::OnceLock;

use proptest::prelude::*;
use quoalise_component::stanzas::{command, form, pubsub, quoalise, senml};
use quoalise_component::xmpp::framing::{Frame, Framer};
use quoalise_component::xmpp::parse;
use quoalise_component::xmpp::router::Router;

const MAX_DEPTH: usize = 64;
const MAX_SIZE: usize = 64 * 1024;

/// One step of a random document, applied with a stack so that any depth is reachable
/// without recursion in the generator.
#[derive(Debug, Clone)]
enum Step {
    Open {
        name: usize,
        attrs: Vec<(usize, String)>,
    },
    Text(String),
    Close,
}

const NAMES: &[&str] = &[
    "query",
    "command",
    "x",
    "field",
    "value",
    "pubsub",
    "items",
    "subscribe",
    "senml",
    "quoalise",
    "data",
    "meta",
    "a",
    "p:b",
    "stream:x",
    "xml:y",
    "q:undeclared",
];
const NAMESPACES: &[&str] = &[
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/commands",
    "jabber:x:data",
    "http://jabber.org/protocol/pubsub",
    "urn:ietf:params:xml:ns:senml",
    "urn:quoalise:0",
    "urn:x",
    "http://www.w3.org/XML/1998/namespace",
    "",
];
const ATTRS: &[&str] = &[
    "node",
    "var",
    "type",
    "action",
    "sessionid",
    "jid",
    "n",
    "v",
    "t",
    "bn",
    "bt",
    "u",
    "xml:lang",
    "xml:foo",
    "p:attr",
    "xmlns",
    "xmlns:p",
    "xmlns:xml",
    "id",
    "max_items",
];

fn step() -> impl Strategy<Value = Step> {
    let value = prop_oneof![
        "[a-z0-9:_@./-]{0,12}",
        Just("&amp;&lt;&gt;&quot;&apos;&#65;&#x42;".to_owned()),
        Just("1.5e3".to_owned()),
        Just("-1".to_owned()),
        "[0-9]{1,25}",
    ];
    let ns_value = (0..NAMESPACES.len()).prop_map(|i| NAMESPACES[i].to_owned());
    let attr = prop_oneof![((0..ATTRS.len()), value.clone()), ((15usize..18), ns_value),];
    prop_oneof![
        5 => ((0..NAMES.len()), prop::collection::vec(attr, 0..4))
            .prop_map(|(name, attrs)| Step::Open { name, attrs }),
        2 => value.prop_map(Step::Text),
        3 => Just(Step::Close),
    ]
}

/// The element name `i`, made very long now and then.
fn name(i: usize, long: bool) -> String {
    if long && i == 0 {
        "l".repeat(9 * 1024)
    } else {
        NAMES[i].to_owned()
    }
}

/// Serialises a stanza around `steps`; returns its text and its depth.
fn stanza(kind: usize, steps: &[Step], long: bool) -> (String, usize) {
    let (head, tail) = match kind {
        0 => ("<iq type='get' id='s' from='bob@localhost/r' to='quoalise.localhost'>", "</iq>"),
        1 => ("<iq type='set' id='s' from='alice@localhost/phone' to='99999000000001@quoalise.localhost'>", "</iq>"),
        2 => ("<message from='bob@localhost/r' to='quoalise.localhost'>", "</message>"),
        3 => ("<message type='error' id='q1' from='bob@localhost/r' to='quoalise.localhost'>", "</message>"),
        _ => ("<presence from='bob@localhost/r' to='quoalise.localhost'>", "</presence>"),
    };
    let mut out = String::from(head);
    let mut stack: Vec<String> = Vec::new();
    let mut depth = 1;
    for step in steps {
        match step {
            Step::Open { name: n, attrs } => {
                let n = name(*n, long);
                out.push('<');
                out.push_str(&n);
                for (a, v) in attrs {
                    out.push_str(&format!(" {}='{}'", ATTRS[*a], v));
                }
                out.push('>');
                stack.push(n);
                depth = depth.max(stack.len() + 1);
            }
            Step::Text(t) => out.push_str(t),
            Step::Close => {
                if let Some(n) = stack.pop() {
                    out.push_str(&format!("</{n}>"));
                }
            }
        }
    }
    while let Some(n) = stack.pop() {
        out.push_str(&format!("</{n}>"));
    }
    out.push_str(tail);
    (out, depth)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fn router() -> &'static Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER.get_or_init(|| {
        runtime()
            .block_on(support::router::demo_router(2, &["*"], 512 * 1024))
            .0
    })
}

/// Runs every pure parser on every element of the tree: none may panic.
fn parse_everything(el: &minidom::Element) {
    let mut todo = vec![el];
    while let Some(e) = todo.pop() {
        let _ = command::Command::try_from(e);
        let _ = form::Submitted::parse(e);
        let _ = pubsub::Request::try_from(e);
        let _ = senml::Pack::try_from(e);
        let _ = quoalise::parse_quoalise(e);
        todo.extend(e.children());
    }
}

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='p' from='quoalise.localhost'>";

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_stanzas_never_panic_nor_desynchronise(
        docs in prop::collection::vec(
            (0usize..5, prop::collection::vec(step(), 0..400), any::<bool>()),
            1..6,
        ),
        chunk in 1usize..4096,
    ) {
        let mut stream = HEADER.to_vec();
        let mut depths = Vec::new();
        for (kind, steps, long) in &docs {
            let (text, depth) = stanza(*kind, steps, *long);
            stream.extend_from_slice(text.as_bytes());
            depths.push((depth, text.len()));
        }
        stream.extend_from_slice(b"<iq type='get' id='sentinel' from='carol@localhost/r' to='quoalise.localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
        let mut framer = Framer::new(MAX_DEPTH, MAX_SIZE);
        let mut frames = Vec::new();
        for part in stream.chunks(chunk) {
            framer.push(part, &mut frames).unwrap();
        }
        prop_assert!(matches!(frames.first(), Some(Frame::Header(_))));
        prop_assert_eq!(frames.len(), docs.len() + 2);
        for (frame, (depth, size)) in frames[1..].iter().zip(&depths) {
            match frame {
                Frame::Stanza(bytes) => {
                    prop_assert!(*depth <= MAX_DEPTH && *size <= MAX_SIZE);
                    if let Ok(el) = parse::stanza(bytes) {
                        parse_everything(&el);
                        let replies = runtime().block_on(router().handle(el));
                        prop_assert!(replies.len() <= 2);
                    }
                }
                Frame::Refused { .. } => prop_assert!(*depth > MAX_DEPTH || *size > MAX_SIZE),
                other => prop_assert!(false, "unexpected frame {:?}", other),
            }
        }
        match frames.last() {
            Some(Frame::Stanza(bytes)) => {
                let el = parse::stanza(bytes).unwrap();
                prop_assert_eq!(el.attr("id"), Some("sentinel"));
            }
            other => prop_assert!(false, "sentinel lost: {:?}", other),
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let mut framer = Framer::new(8, 1024);
        let mut frames = Vec::new();
        let _ = framer.push(HEADER, &mut frames);
        let _ = framer.push(&bytes, &mut frames);
        let _ = parse::stanza(&bytes);
        if let Some(tag) = parse::opening_tag(&bytes) {
            let _ = parse::addressing(tag);
        }
    }
}
