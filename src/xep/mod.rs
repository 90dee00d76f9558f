//! XMPP extensions we serve, one module per spec.
