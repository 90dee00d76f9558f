//! The `[[source]] type = "xaal"` table: which bus to join, with which key, and who owns it.
//!
//! The table is checked once, when the whole config is (`Config::validate` calls
//! [`XaalConfig::validate`]): every value is parsed and the bus key derived there, so that a bad
//! table stops the start-up with an error naming its key, like any other bad config. The result,
//! [`XaalSettings`], is what the gateway runs with; it never parses a string of the table again.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use uuid::Uuid;

use super::key::Key;
use crate::config::{parse_bare_jid, secret_from, ConfigError, HumanDuration, Secret};
use crate::source::SourceInfo;

/// Environment variable that overrides `passphrase` / `passphrase_file` / `key`.
pub(crate) const PASSPHRASE_ENV: &str = "QUOALISE_XAAL_PASSPHRASE";

/// The group and port every xAAL device uses unless configured otherwise.
pub(crate) const DEFAULT_GROUP: &str = "224.0.29.200:1236";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XaalConfig {
    pub(crate) id: String,
    /// The bus passphrase, inline (prefer `passphrase_file` or the environment).
    #[serde(default)]
    pub(crate) passphrase: Option<Secret>,
    /// The bus key itself, 64 hex digits (the `key=` of `xaal.ini`).
    #[serde(default)]
    pub(crate) key: Option<Secret>,
    /// File holding the passphrase (trailing newline ignored).
    #[serde(default)]
    pub(crate) passphrase_file: Option<PathBuf>,
    /// Multicast group and port, `ip:port`.
    #[serde(default = "default_group")]
    pub(crate) group: String,
    /// Address of the interface that joins the group; `0.0.0.0` lets the routing table choose.
    #[serde(default = "default_interface")]
    pub(crate) interface: String,
    /// Multicast TTL of our datagrams (xaal-lib uses 10).
    #[serde(default = "default_hops")]
    pub(crate) hops: u32,
    /// Bare JIDs granted every series of every usage point of this bus.
    #[serde(default)]
    pub(crate) owners: Vec<String>,
    /// Our own device address on the bus; a random one at each start when unset.
    #[serde(default)]
    pub(crate) uuid: Option<String>,
    /// Period of our own `alive` (we announce a timeout of twice this).
    #[serde(default = "default_alive_interval")]
    pub(crate) alive_interval: HumanDuration,
    /// Period of the `is_alive` request that makes every device announce itself.
    #[serde(default = "default_is_alive_interval")]
    pub(crate) is_alive_interval: HumanDuration,
    #[serde(default = "default_title")]
    pub(crate) title: String,
    #[serde(default = "default_description")]
    pub(crate) description: String,
    /// What [`XaalConfig::validate`] made of this table; `None` until then. Kept here so that
    /// the key is derived once, and travels with the table to [`XaalConfig::into_settings`].
    #[serde(skip)]
    validated: Option<XaalSettings>,
}

fn default_group() -> String {
    DEFAULT_GROUP.into()
}

fn default_interface() -> String {
    "0.0.0.0".into()
}

fn default_hops() -> u32 {
    10
}

fn default_alive_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(100))
}

fn default_is_alive_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

fn default_title() -> String {
    "xAAL home automation".into()
}

fn default_description() -> String {
    "Sensors and power meters of an xAAL home-automation bus".into()
}

/// Where the bus key comes from, before the (costly) scrypt derivation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeySource {
    Passphrase(Secret),
    Key(Key),
}

impl KeySource {
    /// The key; from a passphrase this runs scrypt (16 MiB, tens of milliseconds).
    fn derive(&self) -> Key {
        match self {
            KeySource::Passphrase(p) => Key::from_passphrase(p.expose()),
            KeySource::Key(k) => k.clone(),
        }
    }
}

/// The multicast group to join and the interface that joins it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bus {
    pub(crate) group: SocketAddrV4,
    pub(crate) interface: Ipv4Addr,
}

/// A validated table, typed: everything the gateway needs, nothing left to parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct XaalSettings {
    /// The source id.
    pub(crate) id: String,
    /// The bus key, derived (its `Debug` does not print it).
    pub(crate) key: Key,
    pub(crate) bus: Bus,
    /// Multicast TTL, 1 to 255.
    pub(crate) hops: u32,
    /// Bare JIDs, checked, as written in the table.
    pub(crate) owners: Vec<String>,
    /// Our configured device address; `None` for a random one at each start.
    pub(crate) own_uuid: Option<Uuid>,
    pub(crate) alive_interval: Duration,
    pub(crate) is_alive_interval: Duration,
}

impl XaalConfig {
    pub(crate) fn info(&self) -> SourceInfo {
        SourceInfo {
            id: self.id.clone(),
            kind: "xaal".into(),
            title: self.title.clone(),
            description: self.description.clone(),
        }
    }

    /// Checks the table and derives the bus key (scrypt from a passphrase: tens of milliseconds,
    /// once), keeping the result for [`XaalConfig::into_settings`]. `key` is the table's path in
    /// the config (`source[0]`); every error names the offending key under it. The
    /// [`PASSPHRASE_ENV`] environment variable is read here.
    pub(crate) fn validate(&mut self, key: &str) -> Result<(), ConfigError> {
        self.validated = Some(self.settings(key, std::env::var(PASSPHRASE_ENV).ok())?);
        Ok(())
    }

    /// What the gateway runs with: the result of [`XaalConfig::validate`], or, for a table that
    /// was never validated, the same checks now (with the same errors).
    pub(crate) fn into_settings(self, key: &str) -> Result<XaalSettings, ConfigError> {
        match self.validated {
            Some(settings) => Ok(settings),
            None => self.settings(key, std::env::var(PASSPHRASE_ENV).ok()),
        }
    }

    /// Every check of the table, and the key derivation; `env` is the value of
    /// [`PASSPHRASE_ENV`], passed in so tests need not touch the process environment.
    fn settings(&self, key: &str, env: Option<String>) -> Result<XaalSettings, ConfigError> {
        let key_source = self.key_source(key, env)?;
        let bus = self.bus(key)?;
        for (i, owner) in self.owners.iter().enumerate() {
            parse_bare_jid(owner, &format!("{key}.owners[{i}]"))?;
        }
        if !(1..=255).contains(&self.hops) {
            return Err(ConfigError::invalid(
                format!("{key}.hops"),
                "must be between 1 and 255",
            ));
        }
        let own_uuid = self.own_uuid(key)?;
        for (name, d) in [
            ("alive_interval", self.alive_interval.0),
            ("is_alive_interval", self.is_alive_interval.0),
        ] {
            if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
                return Err(ConfigError::invalid(
                    format!("{key}.{name}"),
                    "must be between 1s and 24h",
                ));
            }
        }
        Ok(XaalSettings {
            id: self.id.clone(),
            // Last, so that a bad value later in the table costs no scrypt run.
            key: key_source.derive(),
            bus,
            hops: self.hops,
            owners: self.owners.clone(),
            own_uuid,
            alive_interval: self.alive_interval.0,
            is_alive_interval: self.is_alive_interval.0,
        })
    }

    /// The key's origin: the environment variable wins; otherwise exactly one of `passphrase`,
    /// `passphrase_file` and `key` must be set.
    fn key_source(&self, key: &str, env: Option<String>) -> Result<KeySource, ConfigError> {
        let passphrase = secret_from(
            (self.passphrase.as_ref(), &format!("{key}.passphrase")),
            (
                self.passphrase_file.as_deref(),
                &format!("{key}.passphrase_file"),
            ),
            env.clone(),
        )?;
        let from_env = env.is_some_and(|v| !v.is_empty());
        match (passphrase, &self.key) {
            (Some(p), _) if from_env => Ok(KeySource::Passphrase(p)),
            (Some(_), Some(_)) => Err(ConfigError::invalid(
                format!("{key}.key"),
                "set either a passphrase (passphrase, passphrase_file) or key, not both",
            )),
            (Some(p), None) => Ok(KeySource::Passphrase(p)),
            (None, Some(hex)) => Key::from_hex(hex.expose())
                .map(KeySource::Key)
                .map_err(|e| ConfigError::invalid(format!("{key}.key"), e.to_string())),
            (None, None) => Err(ConfigError::invalid(
                format!("{key}.passphrase"),
                format!(
                    "missing: set passphrase, passphrase_file, key or the {PASSPHRASE_ENV} \
                     environment variable"
                ),
            )),
        }
    }

    /// The group and interface, checked.
    fn bus(&self, key: &str) -> Result<Bus, ConfigError> {
        let group: SocketAddrV4 = self
            .group
            .parse()
            .ok()
            .filter(|g: &SocketAddrV4| g.ip().is_multicast() && g.port() != 0)
            .ok_or_else(|| {
                ConfigError::invalid(
                    format!("{key}.group"),
                    "must be an IPv4 multicast ip:port, e.g. 224.0.29.200:1236",
                )
            })?;
        let interface: Ipv4Addr = self.interface.parse().map_err(|_| {
            ConfigError::invalid(
                format!("{key}.interface"),
                "must be the IPv4 address of an interface, or 0.0.0.0",
            )
        })?;
        Ok(Bus { group, interface })
    }

    /// Our configured device address, if any.
    fn own_uuid(&self, key: &str) -> Result<Option<Uuid>, ConfigError> {
        self.uuid
            .as_deref()
            .map(|u| {
                Uuid::parse_str(u)
                    .ok()
                    .filter(|u| !u.is_nil())
                    .ok_or_else(|| {
                        ConfigError::invalid(format!("{key}.uuid"), "must be a non-nil UUID")
                    })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> XaalConfig {
        toml::from_str(&format!("id = \"xaal\"\n{extra}")).unwrap()
    }

    fn err(c: &XaalConfig, env: Option<&str>) -> String {
        c.key_source("source[1]", env.map(str::to_owned))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults() {
        let c = parse("passphrase = \"xaal\"");
        assert_eq!(
            c.bus("s").unwrap(),
            Bus {
                group: "224.0.29.200:1236".parse().unwrap(),
                interface: Ipv4Addr::UNSPECIFIED
            }
        );
        assert_eq!(c.hops, 10);
        assert_eq!(c.alive_interval.0, Duration::from_secs(100));
        assert!(c.owners.is_empty());
        let mut c = c;
        c.validate("source[0]").unwrap();
        assert_eq!(c.info().kind, "xaal");
    }

    #[test]
    fn exactly_one_key_source() {
        let hex = "13af792910d83072e46f8d5f13fd5e41a8ae4e86755bf56d3ae200f2af06ec0b";
        let c = parse(&format!("key = \"{hex}\""));
        let KeySource::Key(k) = c.key_source("s", None).unwrap() else {
            panic!("not a key");
        };
        assert_eq!(k.to_hex(), hex);

        let both = parse(&format!("key = \"{hex}\"\npassphrase = \"xaal\""));
        assert!(err(&both, None).starts_with("source[1].key"));
        // The environment wins over everything in the file.
        assert_eq!(
            both.key_source("s", Some("env".into())).unwrap(),
            KeySource::Passphrase(Secret::new("env"))
        );

        let none = parse("");
        assert!(err(&none, None).starts_with("source[1].passphrase: missing"));
        let twice = parse("passphrase = \"a\"\npassphrase_file = \"/nonexistent\"");
        assert!(err(&twice, None).starts_with("source[1].passphrase"));
        let bad = parse("key = \"12\"");
        assert!(err(&bad, None).starts_with("source[1].key"));
        let missing_file = parse("passphrase_file = \"/nonexistent/x\"");
        assert!(err(&missing_file, None).starts_with("source[1].passphrase_file"));
    }

    #[test]
    fn passphrase_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        std::fs::write(&path, "xaal\n").unwrap();
        let c = parse(&format!(
            "passphrase_file = {:?}",
            path.display().to_string()
        ));
        assert_eq!(
            c.key_source("s", None).unwrap(),
            KeySource::Passphrase(Secret::new("xaal"))
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("group = \"10.0.0.1:1236\"", "source[2].group"),
            ("group = \"224.0.29.200\"", "source[2].group"),
            ("interface = \"eth0\"", "source[2].interface"),
            (
                "owners = [\"ok@example.org\", \"@@\"]",
                "source[2].owners[1]",
            ),
            ("hops = 0", "source[2].hops"),
            ("uuid = \"nope\"", "source[2].uuid"),
            ("alive_interval = \"0s\"", "source[2].alive_interval"),
        ];
        for (line, key) in cases {
            let mut c = parse(&format!("passphrase = \"p\"\n{line}"));
            let e = c.validate("source[2]").unwrap_err().to_string();
            assert!(e.starts_with(key), "{line}: {e}");
        }
        assert!(toml::from_str::<XaalConfig>("id = \"x\"\npassword = \"p\"").is_err());
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = parse("passphrase = \"very-secret\"");
        assert!(!format!("{c:?}").contains("very-secret"));
    }

    /// The component's own path: the whole file parsed, then validated.
    fn validate_file(table: &str) -> Result<crate::settings::Settings, ConfigError> {
        let text = format!(
            "[xmpp]\ndomain = \"quoalise.localhost\"\nserver = \"127.0.0.1:5347\"\n\
             secret = \"s\"\n\n[[source]]\ntype = \"demo\"\nid = \"demo\"\n\n\
             [[source]]\ntype = \"xaal\"\nid = \"home\"\n{table}"
        );
        crate::settings::Config::parse(&text)
            .unwrap()
            .validate(None)
    }

    fn validated(settings: crate::settings::Settings) -> XaalSettings {
        let Some(crate::source::SourceConfig::Xaal(c)) = settings.config.sources.get(1).cloned()
        else {
            panic!("no xaal table");
        };
        assert!(c.validated.is_some(), "validated at load");
        c.into_settings("unused").unwrap()
    }

    /// A bad table stops the whole config, naming the key, like any other bad value.
    #[test]
    fn a_bad_table_fails_the_config_naming_its_key() {
        let cases = [
            (
                "passphrase = \"p\"\ngroup = \"224.0.29.200:0\"",
                "source[1].group",
            ),
            (
                "passphrase = \"p\"\ninterface = \"lo\"",
                "source[1].interface",
            ),
            (
                "passphrase = \"p\"\nuuid = \"00000000-0000-0000-0000-000000000000\"",
                "source[1].uuid",
            ),
            (
                "passphrase = \"p\"\nuuid = \"not-a-uuid\"",
                "source[1].uuid",
            ),
            (
                "passphrase = \"p\"\nis_alive_interval = \"2d\"",
                "source[1].is_alive_interval",
            ),
            ("", "source[1].passphrase: missing"),
            ("key = \"0123\"", "source[1].key"),
            (
                "passphrase_file = \"/nonexistent/xaal\"",
                "source[1].passphrase_file",
            ),
        ];
        for (table, key) in cases {
            let e = validate_file(table).unwrap_err().to_string();
            assert!(e.starts_with(key), "{table}: {e}");
        }
    }

    /// A good table yields everything typed, with the key xaal-lib derives from the passphrase
    /// (what the gateway derived itself at start before).
    #[test]
    fn a_good_table_yields_typed_settings_and_the_derived_key() {
        let s = validated(
            validate_file(
                "passphrase = \"xaal\"\ngroup = \"224.0.29.201:1237\"\n\
                 interface = \"127.0.0.1\"\nhops = 3\nowners = [\"alice@example.org\"]\n\
                 uuid = \"6a3cbd1e-2b4f-4c61-9d3a-0c5b1f7e8a90\"\nalive_interval = \"5s\"",
            )
            .unwrap(),
        );
        assert_eq!(s.key, KeySource::Passphrase(Secret::new("xaal")).derive());
        assert_eq!(
            s.key.to_hex(),
            "13af792910d83072e46f8d5f13fd5e41a8ae4e86755bf56d3ae200f2af06ec0b"
        );
        assert_eq!(
            s,
            XaalSettings {
                id: "home".into(),
                key: s.key.clone(),
                bus: Bus {
                    group: "224.0.29.201:1237".parse().unwrap(),
                    interface: Ipv4Addr::LOCALHOST,
                },
                hops: 3,
                owners: vec!["alice@example.org".into()],
                own_uuid: Some(Uuid::from_u128(0x6a3cbd1e_2b4f_4c61_9d3a_0c5b1f7e8a90)),
                alive_interval: Duration::from_secs(5),
                is_alive_interval: Duration::from_secs(300),
            }
        );

        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let s = validated(validate_file(&format!("key = \"{hex}\"")).unwrap());
        assert_eq!(s.key.to_hex(), hex);
        assert_eq!(s.own_uuid, None);
        assert_eq!(s.bus.group, DEFAULT_GROUP.parse().unwrap());
    }

    /// A table started without the config's validation gets the same checks at start.
    #[test]
    fn an_unvalidated_table_is_checked_at_start() {
        let e = parse("passphrase = \"p\"\nhops = 256")
            .into_settings("source[3]")
            .unwrap_err();
        assert!(e.to_string().starts_with("source[3].hops"), "{e}");
        let s = parse("passphrase = \"xaal\"").into_settings("s").unwrap();
        assert_eq!(s.key, Key::from_passphrase("xaal"));
    }
}
