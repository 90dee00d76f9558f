//! Our XML models and namespaces.
