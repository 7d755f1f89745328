//! The one error type of the storage layer.

/// A boxed error from an encoder or decoder (serde_json, UTF-8 checks, unknown value types).
pub type CodecError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a storage operation failed.
///
/// Callers that answer a client turn every variant except [`StorageError::ItemNotFound`] into
/// `internal-server-error` and log the detail; `ItemNotFound` is the client's mistake (an RSM
/// `<after/>` or `<before/>` naming an id that is not in the archive, XEP-0313
/// `item-not-found`).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database refused or failed a statement, or could not be reached. Also covers a bad
    /// storage URL and operating-system failures while preparing it (a data directory that
    /// cannot be created, no randomness for generated keys).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema migrations could not be applied (or the database holds migrations this build
    /// does not know, or whose checksum changed).
    #[error("storage migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// An archive query referred to an item key (RSM `after`/`before`) that the archive does not
    /// hold. Carries the key.
    #[error("archive item not found: {0}")]
    ItemNotFound(String),
    /// A value could not be encoded for storage or decoded on the way out: serde failure, a
    /// value of the wrong kind for the helper used, non-UTF-8 text, or an unknown stored type.
    #[error("stored value codec error: {0}")]
    Codec(#[source] CodecError),
}

impl StorageError {
    /// A [`StorageError::Codec`] with a plain message.
    pub(crate) fn codec(message: impl Into<String>) -> StorageError {
        StorageError::Codec(message.into().into())
    }
}
