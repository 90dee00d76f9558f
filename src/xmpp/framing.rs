//! Splits the server's byte stream into stanzas, with depth and size guards, before any tree
//! is built.
//!
//! Why not let an XML library read the stream: a tree parser recurses (a 600-deep stanza
//! overflowed the stack), and a stream reader that meets a token it dislikes ends the stream,
//! dropping the link for every user. This scanner only follows the XML structure (tags, quoted
//! attribute values, CDATA, comments), never recurses and never stores more than one stanza:
//! a top-level element deeper than `max_depth` or longer than `max_size` bytes is skipped to
//! its end tag and reported as refused, with its opening tag when that tag was small enough to
//! answer. Whether a stanza is valid XML is decided afterwards, for that stanza alone
//! ([`super::parse`]), so a bad stanza costs only an error reply.
//!
//! Depth counts the stanza's own element as 1 (`<iq><query/></iq>` is 2 deep).

/// What the scanner found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The opening tag of the server's `<stream:stream>`, as sent.
    Header(Vec<u8>),
    /// One whole top-level element within the limits, as sent.
    Stanza(Vec<u8>),
    /// A top-level element over a limit: skipped whole.
    Refused {
        /// Its opening tag (`<iq … >`), unless that alone was over the size limit.
        head: Option<Vec<u8>>,
        reason: Refusal,
    },
    /// `</stream:stream>`: the server is closing the stream.
    Footer,
}

/// Why a stanza was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooDeep,
    TooLarge,
}

impl Refusal {
    /// For logs and error texts.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Refusal::TooDeep => "nested deeper than the component accepts",
            Refusal::TooLarge => "larger than the component accepts",
        }
    }
}

/// The stream itself is not XML any more (the server would never send this): the link ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server sent something that is not an XML stream: {0}")]
pub struct FramingError(&'static str);

/// Where the scanner is within the markup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Character data (or nothing) between tags.
    Text,
    /// Just read `<`.
    Open,
    /// Inside a start tag, outside quotes; `slash` when the last non-blank byte was `/`.
    StartTag { slash: bool },
    /// Inside a quoted attribute value of a start tag.
    Quoted(u8),
    /// Inside an end tag.
    EndTag,
    /// Read `<!`, then `matched` bytes of `[CDATA[` or `--`.
    Bang { matched: u8, cdata: bool },
    /// Inside `<![CDATA[`…; `ends` counts the `]` just read (up to 2).
    CData { ends: u8 },
    /// Inside `<!--`…; `ends` counts the `-` just read (up to 2).
    Comment { ends: u8 },
    /// Inside `<?…` (the XML declaration); `question` when the last byte was `?`.
    Pi { question: bool },
    /// Inside `<!DOCTYPE…` or another declaration: skipped to its `>`.
    Declaration,
}

/// The byte-level stanza splitter. Feed it what the socket gives, in any chunks.
#[derive(Debug)]
pub struct Framer {
    max_depth: usize,
    max_size: usize,
    state: State,
    /// Open elements, the stream's own included (stanzas start at level 1).
    level: usize,
    /// The current top-level element (or stream header) so far, while it is kept.
    buf: Vec<u8>,
    /// Bytes of the current top-level element seen, kept or not.
    size: usize,
    /// Length of its opening tag, once that tag is closed.
    head_len: Option<usize>,
    /// Set when the current element went over a limit: the rest is only scanned.
    refused: Option<Refusal>,
    /// Whether the stream header was seen.
    in_stream: bool,
}

impl Framer {
    pub fn new(max_depth: usize, max_size: usize) -> Self {
        Framer {
            max_depth,
            max_size,
            state: State::Text,
            level: 0,
            buf: Vec::new(),
            size: 0,
            head_len: None,
            refused: None,
            in_stream: false,
        }
    }

    /// Scans `input`, appending every complete frame to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<Frame>) -> Result<(), FramingError> {
        for &b in input {
            self.step(b, out)?;
        }
        Ok(())
    }

    fn keep(&mut self, b: u8) {
        self.size += 1;
        if self.refused.is_some() {
            return;
        }
        if self.size > self.max_size {
            self.refuse(Refusal::TooLarge);
            return;
        }
        self.buf.push(b);
    }

    fn refuse(&mut self, reason: Refusal) {
        if self.refused.is_none() {
            self.refused = Some(reason);
            // Keep the opening tag if it is complete: it says whom to answer.
            match self.head_len {
                Some(len) => self.buf.truncate(len),
                None => self.buf = Vec::new(),
            }
            self.buf.shrink_to(self.head_len.unwrap_or(0));
        }
    }

    fn step(&mut self, b: u8, out: &mut Vec<Frame>) -> Result<(), FramingError> {
        // Between stanzas (level 1, in text) only a `<` starts something worth keeping; the
        // white space the server sends as keepalive is not part of any stanza.
        if self.state == State::Text && self.level <= 1 {
            if b == b'<' {
                self.state = State::Open;
                self.size = 0;
                self.head_len = None;
                self.refused = None;
                self.buf.clear();
                self.keep(b);
            }
            return Ok(());
        }
        self.keep(b);
        match self.state {
            State::Text => {
                if b == b'<' {
                    self.state = State::Open;
                }
            }
            State::Open => {
                self.state = match b {
                    b'/' => State::EndTag,
                    b'!' => State::Bang {
                        matched: 0,
                        cdata: false,
                    },
                    b'?' => State::Pi { question: false },
                    b'>' | b'<' => return Err(FramingError("empty tag")),
                    _ => State::StartTag { slash: false },
                };
            }
            State::StartTag { slash } => match b {
                b'"' | b'\'' => self.state = State::Quoted(b),
                b'>' => self.start_tag_closed(slash, out),
                b'/' => self.state = State::StartTag { slash: true },
                b' ' | b'\t' | b'\r' | b'\n' => {}
                b'<' => return Err(FramingError("'<' inside a tag")),
                _ => self.state = State::StartTag { slash: false },
            },
            State::Quoted(quote) => {
                if b == quote {
                    self.state = State::StartTag { slash: false };
                } else if b == b'<' {
                    return Err(FramingError("'<' inside an attribute value"));
                }
            }
            State::EndTag => {
                if b == b'>' {
                    self.end_tag_closed(out)?;
                }
            }
            State::Bang { matched, cdata } => {
                const CDATA: &[u8] = b"[CDATA[";
                self.state = match (matched, cdata, b) {
                    (0, _, b'[') => State::Bang {
                        matched: 1,
                        cdata: true,
                    },
                    (0, _, b'-') => State::Bang {
                        matched: 1,
                        cdata: false,
                    },
                    (1, false, b'-') => State::Comment { ends: 0 },
                    (m, true, _) if CDATA.get(m as usize) == Some(&b) => {
                        if m as usize + 1 == CDATA.len() {
                            State::CData { ends: 0 }
                        } else {
                            State::Bang {
                                matched: m + 1,
                                cdata: true,
                            }
                        }
                    }
                    (_, _, b'>') => {
                        self.markup_skipped();
                        State::Text
                    }
                    _ => State::Declaration,
                };
            }
            State::CData { ends } => {
                self.state = match (ends, b) {
                    (2, b'>') => {
                        self.markup_skipped();
                        State::Text
                    }
                    (e, b']') => State::CData {
                        ends: (e + 1).min(2),
                    },
                    _ => State::CData { ends: 0 },
                };
            }
            State::Comment { ends } => {
                self.state = match (ends, b) {
                    (2, b'>') => {
                        self.markup_skipped();
                        State::Text
                    }
                    (e, b'-') => State::Comment {
                        ends: (e + 1).min(2),
                    },
                    _ => State::Comment { ends: 0 },
                };
            }
            State::Pi { question } => {
                if question && b == b'>' {
                    self.markup_skipped();
                    self.state = State::Text;
                } else {
                    self.state = State::Pi {
                        question: b == b'?',
                    };
                }
            }
            State::Declaration => {
                if b == b'>' {
                    self.markup_skipped();
                    self.state = State::Text;
                }
            }
        }
        Ok(())
    }

    /// A comment, CDATA section, declaration or processing instruction ended. Outside any
    /// stanza (the XML declaration before the stream header), it is forgotten.
    fn markup_skipped(&mut self) {
        if self.level <= 1 {
            self.reset();
        }
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.size = 0;
        self.head_len = None;
        self.refused = None;
    }

    fn start_tag_closed(&mut self, self_closing: bool, out: &mut Vec<Frame>) {
        self.state = State::Text;
        if !self.in_stream {
            // The stream header: it opens level 1 and is reported at once.
            self.in_stream = true;
            self.level = 1;
            out.push(Frame::Header(std::mem::take(&mut self.buf)));
            self.reset();
            return;
        }
        if self.level == 1 && self.refused.is_none() {
            self.head_len = Some(self.size);
        }
        // The element just opened is as deep as the elements open around it, itself included.
        if self.level > self.max_depth {
            self.refuse(Refusal::TooDeep);
        }
        if self_closing {
            if self.level == 1 {
                self.finish(out);
            }
            return;
        }
        self.level += 1;
    }

    fn end_tag_closed(&mut self, out: &mut Vec<Frame>) -> Result<(), FramingError> {
        self.state = State::Text;
        match self.level {
            0 => Err(FramingError("end tag before the stream header")),
            1 => {
                self.level = 0;
                self.reset();
                out.push(Frame::Footer);
                Ok(())
            }
            _ => {
                self.level -= 1;
                if self.level == 1 {
                    self.finish(out);
                }
                Ok(())
            }
        }
    }

    /// The current top-level element ended: report it, kept or refused.
    fn finish(&mut self, out: &mut Vec<Frame>) {
        let frame = match self.refused {
            None => Frame::Stanza(std::mem::take(&mut self.buf)),
            Some(reason) => Frame::Refused {
                head: self.head_len.map(|_| std::mem::take(&mut self.buf)),
                reason,
            },
        };
        out.push(frame);
        self.reset();
    }

    /// Bytes held for the element being read (bounded by `max_size`, as the tests check).
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='quoalise.localhost'>";

    fn frames(framer: &mut Framer, input: &str) -> Vec<Frame> {
        let mut out = Vec::new();
        framer.push(input.as_bytes(), &mut out).unwrap();
        out
    }

    fn opened(max_depth: usize, max_size: usize) -> Framer {
        let mut framer = Framer::new(max_depth, max_size);
        let out = frames(&mut framer, HEADER);
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0], Frame::Header(h) if h.starts_with(b"<stream:stream")));
        framer
    }

    fn stanza(s: &str) -> Frame {
        Frame::Stanza(s.as_bytes().to_vec())
    }

    #[test]
    fn splits_stanzas_whatever_the_chunks() {
        let input = format!(
            "{HEADER}<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq> \n<message a='x>y' b=\"/>\"><body>a &gt; b</body></message><presence/></stream:stream>"
        );
        let expected = vec![
            Frame::Header(HEADER.as_bytes()[21..].to_vec()),
            stanza("<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>"),
            stanza("<message a='x>y' b=\"/>\"><body>a &gt; b</body></message>"),
            stanza("<presence/>"),
            Frame::Footer,
        ];
        for chunk in [1, 2, 3, 7, 64, input.len()] {
            let mut framer = Framer::new(64, 1 << 20);
            let mut out = Vec::new();
            for part in input.as_bytes().chunks(chunk) {
                framer.push(part, &mut out).unwrap();
            }
            assert_eq!(out, expected, "chunks of {chunk}");
        }
    }

    #[test]
    fn cdata_and_comments_do_not_confuse_depth() {
        let mut framer = opened(64, 1 << 20);
        let s =
            "<message><body><![CDATA[</message> <x> ]] ]]]></body><!-- </message> --></message>";
        assert_eq!(frames(&mut framer, s), vec![stanza(s)]);
    }

    #[test]
    fn too_deep_is_skipped_whole_with_its_head() {
        let mut framer = opened(4, 1 << 20);
        let deep = format!(
            "<iq type='get' id='d1' to='x'>{}{}</iq><iq id='next'/>",
            "<a>".repeat(30_000),
            "</a>".repeat(30_000)
        );
        let out = frames(&mut framer, &deep);
        assert_eq!(
            out,
            vec![
                Frame::Refused {
                    head: Some(b"<iq type='get' id='d1' to='x'>".to_vec()),
                    reason: Refusal::TooDeep
                },
                stanza("<iq id='next'/>"),
            ]
        );
        assert!(framer.buffered() == 0);
    }

    #[test]
    fn depth_limit_is_inclusive() {
        let mut framer = opened(3, 1 << 20);
        let ok = "<iq><a><b/></a></iq>"; // 3 deep
        assert_eq!(frames(&mut framer, ok), vec![stanza(ok)]);
        let deep = "<iq><a><b><c/></b></a></iq>"; // 4 deep
        assert!(matches!(
            frames(&mut framer, deep).as_slice(),
            [Frame::Refused {
                reason: Refusal::TooDeep,
                ..
            }]
        ));
    }

    #[test]
    fn too_large_keeps_no_more_than_the_limit() {
        let mut framer = opened(64, 1024);
        let big = format!("<iq id='b'><x>{}</x></iq>", "y".repeat(10_000));
        let mut out = Vec::new();
        for part in big.as_bytes().chunks(100) {
            framer.push(part, &mut out).unwrap();
            assert!(framer.buffered() <= 1024);
        }
        assert_eq!(
            out,
            vec![Frame::Refused {
                head: Some(b"<iq id='b'>".to_vec()),
                reason: Refusal::TooLarge
            }]
        );
        // A head that alone is over the limit cannot be answered.
        let huge_head = format!("<iq id='h' a='{}'/><presence/>", "z".repeat(2000));
        assert_eq!(
            frames(&mut framer, &huge_head),
            vec![
                Frame::Refused {
                    head: None,
                    reason: Refusal::TooLarge
                },
                stanza("<presence/>")
            ]
        );
    }

    #[test]
    fn stream_end_and_errors() {
        let mut framer = opened(64, 1 << 20);
        assert_eq!(
            frames(
                &mut framer,
                "<stream:error><conflict/></stream:error></stream:stream>"
            ),
            vec![
                stanza("<stream:error><conflict/></stream:error>"),
                Frame::Footer
            ]
        );
        let mut out = Vec::new();
        let mut fresh = Framer::new(64, 1024);
        assert!(fresh.push(b"</a>", &mut out).is_err());
        let mut framer = opened(64, 1024);
        assert!(framer.push(b"<iq a='<'/>", &mut out).is_err());
    }

    #[test]
    fn whitespace_keepalives_between_stanzas_are_ignored() {
        let mut framer = opened(64, 1024);
        assert_eq!(frames(&mut framer, " \n \t "), vec![]);
        assert_eq!(frames(&mut framer, " <a/> "), vec![stanza("<a/>")]);
    }
}
