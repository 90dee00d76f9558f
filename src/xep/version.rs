//! XEP-0092: Software Version.

use minidom::Element;
use xmpp_parsers::version::VersionResult;

pub(crate) const NAME: &str = env!("CARGO_PKG_NAME");
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Our version; the OS is left out on purpose (it helps attackers more than users).
pub(crate) fn result() -> Element {
    VersionResult {
        name: NAME.into(),
        version: VERSION.into(),
        os: None,
    }
    .into()
}
