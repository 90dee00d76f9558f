//! The XEP-0114 link and the stanza router.
