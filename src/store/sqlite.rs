//! SQLite backend (embedded, WAL).
