//! Notification templates: a publication's stanzas serialised once, with holes where each
//! subscriber's `to` and the stanza `id` go, so that delivering to one more subscriber costs the
//! bytes of its address and nothing else (no tree, no parse, no copy of the payload).
//!
//! A template is stored with its publication, as text (see [`Template::encode`]): the hole
//! offsets on a first line, the stanza text after it. Several stanzas may follow each other in
//! one template (the chunks of a generation-2 push), each opened by a [`Hole::Start`]; the
//! `k`-th [`Hole::Id`] is the id of the `k`-th stanza.

use std::fmt::Write as _;

/// What goes into a hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hole {
    /// The subscriber's address, escaped for an attribute value.
    To,
    /// The stanza id (one per stanza of the template).
    Id,
    /// Where a stanza starts (nothing is written there): one at the start of each stanza.
    Start,
}

/// Stanzas with holes: `text` is every byte but the holes', `holes` the byte offsets in `text`
/// where each hole's value goes, in increasing order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    text: String,
    holes: Vec<(usize, Hole)>,
}

/// Why a stored template was refused (a corrupted row, never input from the network).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid notification template: {0}")]
pub struct TemplateError(&'static str);

impl Template {
    /// Appends text (already escaped where it needs to be).
    pub(crate) fn text(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a hole.
    pub(crate) fn hole(&mut self, hole: Hole) -> &mut Self {
        self.holes.push((self.text.len(), hole));
        self
    }

    /// How many stanzas (id holes) it holds.
    pub fn stanzas(&self) -> usize {
        self.holes.iter().filter(|(_, h)| *h == Hole::Id).count()
    }

    /// Its length filled with a `to` of `to_len` bytes and ids of `id_len` bytes.
    pub fn filled_len(&self, to_len: usize, id_len: usize) -> usize {
        self.holes.iter().fold(self.text.len(), |n, (_, h)| {
            n + match h {
                Hole::To => to_len,
                Hole::Id => id_len,
                Hole::Start => 0,
            }
        })
    }

    /// Appends the stanzas to `out`, `to` (escaped already) in every `to` hole and
    /// `id(out, k)` writing the id of the `k`-th stanza.
    pub fn write_into(&self, out: &mut Vec<u8>, to: &str, mut id: impl FnMut(&mut Vec<u8>, usize)) {
        let mut from = 0;
        let mut stanza = 0;
        for &(at, hole) in &self.holes {
            out.extend_from_slice(&self.text.as_bytes()[from..at]);
            match hole {
                Hole::To => out.extend_from_slice(to.as_bytes()),
                Hole::Id => {
                    id(out, stanza);
                    stanza += 1;
                }
                Hole::Start => {}
            }
            from = at;
        }
        out.extend_from_slice(&self.text.as_bytes()[from..]);
    }

    /// The `k`-th stanza alone, as text (a retry of that one), `to` escaped already; `None` if
    /// the template has no such stanza.
    pub fn stanza(&self, k: usize, to: &str, id: &str) -> Option<String> {
        let starts: Vec<usize> = self
            .holes
            .iter()
            .enumerate()
            .filter(|(_, (_, h))| *h == Hole::Start)
            .map(|(i, _)| i)
            .collect();
        let first = *starts.get(k)?;
        let last = starts.get(k + 1).copied().unwrap_or(self.holes.len());
        let begin = self.holes[first].0;
        let end = self.holes.get(last).map_or(self.text.len(), |(at, _)| *at);
        let one = Template {
            text: self.text[begin..end].to_owned(),
            holes: self.holes[first..last]
                .iter()
                .map(|&(at, hole)| (at - begin, hole))
                .collect(),
        };
        Some(one.fill(to, |_| id.to_owned()))
    }

    /// The stanzas as text (a retry, a test), with `id(k)` as the `k`-th id.
    pub fn fill(&self, to: &str, id: impl Fn(usize) -> String) -> String {
        let mut out = Vec::with_capacity(self.filled_len(to.len(), 16));
        self.write_into(&mut out, to, |out, k| {
            out.extend_from_slice(id(k).as_bytes())
        });
        // Only valid UTF-8 went in: the template text is split on char boundaries.
        String::from_utf8(out).unwrap_or_default()
    }

    /// The stored form: `t12 i40 …` (hole kind and offset), a newline, then the text.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 8 * self.holes.len() + 1);
        for (i, (at, hole)) in self.holes.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push(match hole {
                Hole::To => 't',
                Hole::Id => 'i',
                Hole::Start => 's',
            });
            let _ = write!(out, "{at}");
        }
        out.push('\n');
        out.push_str(&self.text);
        out
    }

    /// Reads the stored form back; offsets must increase, and fall inside the text on char
    /// boundaries.
    pub fn decode(stored: &str) -> Result<Template, TemplateError> {
        let (header, text) = stored
            .split_once('\n')
            .ok_or(TemplateError("no header line"))?;
        let mut holes = Vec::new();
        let mut last = 0;
        for field in header.split(' ').filter(|f| !f.is_empty()) {
            let hole = match field.as_bytes().first() {
                Some(b't') => Hole::To,
                Some(b'i') => Hole::Id,
                Some(b's') => Hole::Start,
                _ => return Err(TemplateError("unknown hole kind")),
            };
            let at: usize = field[1..]
                .parse()
                .map_err(|_| TemplateError("bad hole offset"))?;
            if at < last || !text.is_char_boundary(at) {
                return Err(TemplateError("hole offset out of order or out of the text"));
            }
            last = at;
            holes.push((at, hole));
        }
        Ok(Template {
            text: text.to_owned(),
            holes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Template {
        let mut t = Template::default();
        t.hole(Hole::Start)
            .text("<message to='")
            .hole(Hole::To)
            .text("' id='")
            .hole(Hole::Id)
            .text("'>é</message>")
            .hole(Hole::Start)
            .text("<message to='")
            .hole(Hole::To)
            .text("' id='")
            .hole(Hole::Id)
            .text("'/>");
        t
    }

    #[test]
    fn holes_are_filled_in_order() {
        let t = sample();
        assert_eq!(t.stanzas(), 2);
        let text = t.fill("a@b", |k| format!("p1.2.{k}"));
        assert_eq!(
            text,
            "<message to='a@b' id='p1.2.0'>é</message><message to='a@b' id='p1.2.1'/>"
        );
        assert_eq!(text.len(), t.filled_len(3, 6));
        assert_eq!(
            t.stanza(0, "c@d", "x").as_deref(),
            Some("<message to='c@d' id='x'>é</message>")
        );
        assert_eq!(
            t.stanza(1, "c@d", "y").as_deref(),
            Some("<message to='c@d' id='y'/>")
        );
        assert_eq!(t.stanza(2, "c@d", "z"), None);
    }

    #[test]
    fn the_stored_form_reads_back() {
        let t = sample();
        assert_eq!(Template::decode(&t.encode()).unwrap(), t);
        let empty = Template::default();
        assert_eq!(Template::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn corrupted_stored_forms_are_refused() {
        for bad in [
            "",
            "q1\nabc",
            "no newline",
            "x3\nabc",
            "t\nabc",
            "t9\nabc",
            "t2 t1\nabc",
            "t1\né",
            "t-1\nabc",
        ] {
            assert!(Template::decode(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Any template reads back from its stored form, and any string either decodes or is
        /// refused, never panics.
        #[test]
        fn stored_forms_round_trip(parts in proptest::collection::vec(("[a-z'<é\n ]{0,6}", 0u8..4), 0..10)) {
            let mut t = Template::default();
            for (text, hole) in &parts {
                t.text(text);
                match hole {
                    0 => { t.hole(Hole::To); }
                    1 => { t.hole(Hole::Id); }
                    2 => { t.hole(Hole::Start); }
                    _ => {}
                }
            }
            proptest::prop_assert_eq!(Template::decode(&t.encode()).unwrap(), t);
        }

        #[test]
        fn any_string_decodes_or_is_refused(s in "[ti0-9 \né]{0,20}") {
            let _ = Template::decode(&s);
        }
    }
}
