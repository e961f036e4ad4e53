//! What the machine running the tests offers, and the macros that skip a test (loudly)
//! when something it drives is missing, except in CI where a missing tool is a failure.

use std::path::Path;

/// Whether PostgreSQL 15, which the end-to-end tests run, is installed.
pub fn pg_available() -> bool {
    Path::new("/usr/lib/postgresql/15/bin/postgres").exists()
}

/// Whether this run is CI's (`CI` set, as `.ci/run` and most CI systems set it): there a
/// missing tool is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Skips (loudly) when PostgreSQL 15 is not installed; CI installs it.
#[macro_export]
macro_rules! require_pg {
    () => {
        if !$crate::env::pg_available() {
            eprintln!("SKIPPED: PostgreSQL 15 is not installed (apt-get install postgresql-15)");
            return;
        }
    };
}

/// Skips (loudly) when a tool a test drives is missing, except in CI, where
/// `scripts/test.sh` installs it and its absence is a failure.
#[macro_export]
macro_rules! require_tool {
    ($found:expr, $what:expr) => {
        if !$found {
            if $crate::env::in_ci() {
                panic!("{} is missing in CI (scripts/test.sh installs it)", $what);
            }
            eprintln!("SKIPPED: {} is missing (scripts/test.sh installs it)", $what);
            return;
        }
    };
}
