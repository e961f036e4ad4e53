//! The PostgreSQL manager (placeholder, being written).
