//! PostgreSQL backend (shared by several component instances).
