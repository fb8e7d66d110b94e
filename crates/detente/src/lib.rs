//! The `detente` binary's library half: what tools outside the binary need
//! of it — the configuration file's format and its fuzzing entry point, and
//! the node key file (test harnesses that act as the node read it).

pub mod config;
pub mod exit;
pub mod key;

/// Entry points for fuzzing and corpus regression tests.
pub mod fuzzing {
    /// A configuration file as `detente serve --config` reads it, through
    /// to the database location it names. Never panics; answers whether
    /// the node would take it.
    pub fn config_file(data: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(data) else {
            return false;
        };
        let Ok(file) = crate::config::FileConfig::parse(text) else {
            return false;
        };
        match &file.database_url {
            None => true,
            Some(url) => store::Location::new(
                url,
                file.database_schema
                    .as_deref()
                    .unwrap_or(crate::config::DEFAULT_DATABASE_SCHEMA),
            )
            .is_ok(),
        }
    }
}
