//! XEP-0050: Ad-Hoc Commands — the `<command/>` element (xmpp-parsers 0.23 has no model for it).

use std::fmt;

use minidom::rxml::xml_ncname;
use minidom::Element;

use crate::stanzas::ns;

/// What the requester asks for (`action` attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Execute,
    Cancel,
    Prev,
    Next,
    Complete,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Execute => "execute",
            Action::Cancel => "cancel",
            Action::Prev => "prev",
            Action::Next => "next",
            Action::Complete => "complete",
        }
    }

    fn parse(text: &str) -> Option<Action> {
        Some(match text {
            "execute" => Action::Execute,
            "cancel" => Action::Cancel,
            "prev" => Action::Prev,
            "next" => Action::Next,
            "complete" => Action::Complete,
            _ => return None,
        })
    }
}

/// Where the command stands (`status` attribute of responses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Executing,
    Completed,
    Canceled,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Executing => "executing",
            Status::Completed => "completed",
            Status::Canceled => "canceled",
        }
    }

    fn parse(text: &str) -> Option<Status> {
        Some(match text {
            "executing" => Status::Executing,
            "completed" => Status::Completed,
            "canceled" => Status::Canceled,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoteType {
    Info,
    Warn,
    Error,
}

impl NoteType {
    fn as_str(self) -> &'static str {
        match self {
            NoteType::Info => "info",
            NoteType::Warn => "warn",
            NoteType::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Note {
    pub(crate) type_: NoteType,
    pub(crate) text: String,
}

/// The actions offered with an `executing` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Actions {
    /// The default action (`execute` attribute).
    pub(crate) default: Option<Action>,
    /// `prev`, `next`, `complete` children.
    pub(crate) allowed: Vec<Action>,
}

/// A `<command xmlns='http://jabber.org/protocol/commands'/>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub(crate) node: String,
    pub(crate) sessionid: Option<String>,
    pub(crate) action: Option<Action>,
    pub(crate) status: Option<Status>,
    pub(crate) actions: Option<Actions>,
    pub(crate) notes: Vec<Note>,
    /// Forms and other payloads (`jabber:x:data`, `urn:quoalise:0`), in order.
    pub(crate) payloads: Vec<Element>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    NotACommand,
    MissingNode,
    BadAction(String),
    BadStatus(String),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::NotACommand => write!(f, "expected <command xmlns='{}'>", ns::COMMANDS),
            CommandError::MissingNode => f.write_str("command: the node attribute is missing"),
            CommandError::BadAction(a) => write!(f, "command: unknown action {a:?}"),
            CommandError::BadStatus(s) => write!(f, "command: unknown status {s:?}"),
        }
    }
}

impl std::error::Error for CommandError {}

impl Command {
    /// A response to `node` with the given status.
    pub(crate) fn response(node: &str, sessionid: &str, status: Status) -> Command {
        Command {
            node: node.to_owned(),
            sessionid: Some(sessionid.to_owned()),
            action: None,
            status: Some(status),
            actions: None,
            notes: Vec::new(),
            payloads: Vec::new(),
        }
    }

    /// The submitted form, if any (`<x xmlns='jabber:x:data'/>`).
    pub(crate) fn form(&self) -> Option<&Element> {
        self.payloads.iter().find(|p| p.is("x", ns::DATA_FORMS))
    }
}

impl TryFrom<&Element> for Command {
    type Error = CommandError;

    fn try_from(el: &Element) -> Result<Command, CommandError> {
        if !el.is("command", ns::COMMANDS) {
            return Err(CommandError::NotACommand);
        }
        let node = el
            .attr("node")
            .filter(|n| !n.is_empty())
            .ok_or(CommandError::MissingNode)?
            .to_owned();
        let action = el
            .attr("action")
            .map(|a| Action::parse(a).ok_or_else(|| CommandError::BadAction(a.to_owned())))
            .transpose()?;
        let status = el
            .attr("status")
            .map(|s| Status::parse(s).ok_or_else(|| CommandError::BadStatus(s.to_owned())))
            .transpose()?;
        let actions = match el.get_child("actions", ns::COMMANDS) {
            None => None,
            Some(a) => Some(Actions {
                default: a
                    .attr("execute")
                    .map(|x| Action::parse(x).ok_or_else(|| CommandError::BadAction(x.to_owned())))
                    .transpose()?,
                allowed: a
                    .children()
                    .map(|c| {
                        Action::parse(c.name())
                            .ok_or_else(|| CommandError::BadAction(c.name().to_owned()))
                    })
                    .collect::<Result<_, _>>()?,
            }),
        };
        let notes = el
            .children()
            .filter(|c| c.is("note", ns::COMMANDS))
            .map(|n| Note {
                type_: match n.attr("type") {
                    Some("warn") => NoteType::Warn,
                    Some("error") => NoteType::Error,
                    _ => NoteType::Info,
                },
                text: n.text(),
            })
            .collect();
        let payloads = el
            .children()
            .filter(|c| !c.has_ns(ns::COMMANDS))
            .cloned()
            .collect();
        Ok(Command {
            node,
            sessionid: el.attr("sessionid").map(str::to_owned),
            action,
            status,
            actions,
            notes,
            payloads,
        })
    }
}

/// Consumes the command so that payloads (possibly half a megabyte of SenML) move instead of
/// being deep-copied.
impl From<Command> for Element {
    fn from(c: Command) -> Element {
        let mut b = Element::builder("command", ns::COMMANDS)
            .attr(xml_ncname!("node").to_ncname(), &c.node);
        if let Some(s) = &c.sessionid {
            b = b.attr(xml_ncname!("sessionid").to_ncname(), s);
        }
        if let Some(a) = c.action {
            b = b.attr(xml_ncname!("action").to_ncname(), a.as_str());
        }
        if let Some(s) = c.status {
            b = b.attr(xml_ncname!("status").to_ncname(), s.as_str());
        }
        if let Some(actions) = &c.actions {
            let mut a = Element::builder("actions", ns::COMMANDS);
            if let Some(d) = actions.default {
                a = a.attr(xml_ncname!("execute").to_ncname(), d.as_str());
            }
            for allowed in &actions.allowed {
                a = a.append(Element::builder(allowed.as_str(), ns::COMMANDS));
            }
            b = b.append(a);
        }
        for note in &c.notes {
            b = b.append(
                Element::builder("note", ns::COMMANDS)
                    .attr(xml_ncname!("type").to_ncname(), note.type_.as_str())
                    .append(note.text.as_str()),
            );
        }
        b.append_all(c.payloads).build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Result<Command, CommandError> {
        Command::try_from(&xml.parse::<Element>().unwrap())
    }

    #[test]
    fn parses_a_submission() {
        let c = parse(
            "<command xmlns='http://jabber.org/protocol/commands' node='get_history' action='execute' sessionid='s1'>\
             <x xmlns='jabber:x:data' type='submit'/></command>",
        )
        .unwrap();
        assert_eq!(c.node, "get_history");
        assert_eq!(c.action, Some(Action::Execute));
        assert_eq!(c.sessionid.as_deref(), Some("s1"));
        assert!(c.form().is_some());
        assert!(c.status.is_none());
    }

    #[test]
    fn serialises_a_response_and_reads_it_back() {
        let mut c = Command::response("history", "abc", Status::Executing);
        c.actions = Some(Actions {
            default: Some(Action::Next),
            allowed: vec![Action::Next, Action::Complete],
        });
        c.notes.push(Note {
            type_: NoteType::Info,
            text: "page 1 of 3".into(),
        });
        let el = Element::from(c.clone());
        let expected: Element = "<command xmlns='http://jabber.org/protocol/commands' node='history' sessionid='abc' status='executing'>\
             <actions execute='next'><next/><complete/></actions><note type='info'>page 1 of 3</note></command>"
            .parse()
            .unwrap();
        assert_eq!(el, expected);
        assert_eq!(Command::try_from(&el).unwrap(), c);
    }

    #[test]
    fn rejects_invalid_input() {
        assert_eq!(
            parse("<command xmlns='http://jabber.org/protocol/commands'/>"),
            Err(CommandError::MissingNode)
        );
        assert_eq!(
            parse(
                "<command xmlns='http://jabber.org/protocol/commands' node='x' action='explode'/>"
            ),
            Err(CommandError::BadAction("explode".into()))
        );
        assert_eq!(
            parse("<command xmlns='http://jabber.org/protocol/commands' node='x' status='done'/>"),
            Err(CommandError::BadStatus("done".into()))
        );
        assert_eq!(
            parse("<command xmlns='urn:other' node='x'/>"),
            Err(CommandError::NotACommand)
        );
    }
}
