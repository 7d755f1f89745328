//! What the stores hold: bytes with a declared encoding.

use super::error::StorageError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The encoding of a stored [`Value`], kept in the `type` column next to the bytes.
///
/// The stores never look inside a value; the kind tells readers (and operators inspecting the
/// database) how to interpret it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// A serde value serialised as JSON (`"json"`).
    Json,
    /// An XML element or stanza, serialised as UTF-8 bytes (`"xml"`).
    Xml,
    /// UTF-8 text (`"text"`).
    Text,
    /// Opaque bytes (`"bytes"`).
    Bytes,
}

impl ValueKind {
    /// The name stored in the `type` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::Json => "json",
            ValueKind::Xml => "xml",
            ValueKind::Text => "text",
            ValueKind::Bytes => "bytes",
        }
    }

    /// The kind for a `type` column name, or `None` for a name this build does not know.
    pub fn from_name(name: &str) -> Option<ValueKind> {
        match name {
            "json" => Some(ValueKind::Json),
            "xml" => Some(ValueKind::Xml),
            "text" => Some(ValueKind::Text),
            "bytes" => Some(ValueKind::Bytes),
            _ => None,
        }
    }

    /// Decodes a `type` column, failing with [`StorageError::Codec`] on an unknown name.
    pub(crate) fn from_column(name: &str) -> Result<ValueKind, StorageError> {
        ValueKind::from_name(name).ok_or_else(|| StorageError::codec(format!("unknown stored value type {name:?}")))
    }
}

impl std::fmt::Display for ValueKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stored value: its encoding and its bytes.
///
/// Build one with [`Value::json`], [`Value::xml`], [`Value::text`] or [`Value::bytes`], and read
/// it back with [`Value::to_json`] or [`Value::as_str`] (or the public fields).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Value {
    /// How `data` is encoded.
    pub kind: ValueKind,
    /// The encoded bytes.
    pub data: Vec<u8>,
}

impl Value {
    /// A value of the given kind over the given bytes, unchecked.
    pub fn new(kind: ValueKind, data: impl Into<Vec<u8>>) -> Value {
        Value { kind, data: data.into() }
    }

    /// Serialises `value` as JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Value, StorageError> {
        let data = serde_json::to_vec(value).map_err(|e| StorageError::Codec(e.into()))?;
        Ok(Value::new(ValueKind::Json, data))
    }

    /// An XML element or stanza, as serialised UTF-8 bytes. The bytes are not parsed here.
    pub fn xml(bytes: impl Into<Vec<u8>>) -> Value {
        Value::new(ValueKind::Xml, bytes)
    }

    /// UTF-8 text.
    pub fn text(text: impl Into<String>) -> Value {
        Value::new(ValueKind::Text, text.into().into_bytes())
    }

    /// Opaque bytes.
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Value {
        Value::new(ValueKind::Bytes, bytes)
    }

    /// Deserialises a [`ValueKind::Json`] value.
    ///
    /// A value of another kind is a [`StorageError::Codec`] error rather than a best-effort
    /// parse, so that a store read with the wrong expectations fails visibly.
    pub fn to_json<T: DeserializeOwned>(&self) -> Result<T, StorageError> {
        if self.kind != ValueKind::Json {
            return Err(StorageError::codec(format!("expected a json value, found {}", self.kind)));
        }
        serde_json::from_slice(&self.data).map_err(|e| StorageError::Codec(e.into()))
    }

    /// The bytes as UTF-8 text, for every kind but [`ValueKind::Bytes`] (which has no text
    /// form). Fails with [`StorageError::Codec`] on bytes or invalid UTF-8.
    pub fn as_str(&self) -> Result<&str, StorageError> {
        if self.kind == ValueKind::Bytes {
            return Err(StorageError::codec("a bytes value has no text form"));
        }
        std::str::from_utf8(&self.data).map_err(|e| StorageError::Codec(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Contact {
        name: String,
        groups: Vec<String>,
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in [ValueKind::Json, ValueKind::Xml, ValueKind::Text, ValueKind::Bytes] {
            assert_eq!(ValueKind::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(ValueKind::from_name("lua"), None);
        assert!(matches!(ValueKind::from_column("lua"), Err(StorageError::Codec(_))));
    }

    #[test]
    fn json_round_trip() {
        let contact = Contact { name: "Ælfgifu".into(), groups: vec!["Friends".into()] };
        let value = Value::json(&contact).unwrap();
        assert_eq!(value.kind, ValueKind::Json);
        assert_eq!(value.to_json::<Contact>().unwrap(), contact);
    }

    #[test]
    fn to_json_rejects_other_kinds_and_bad_json() {
        assert!(matches!(Value::text("{}").to_json::<serde_json::Value>(), Err(StorageError::Codec(_))));
        assert!(matches!(
            Value::new(ValueKind::Json, b"{".to_vec()).to_json::<serde_json::Value>(),
            Err(StorageError::Codec(_))
        ));
    }

    #[test]
    fn text_forms() {
        assert_eq!(Value::text("héllo").as_str().unwrap(), "héllo");
        assert_eq!(Value::xml("<a/>").as_str().unwrap(), "<a/>");
        assert!(Value::bytes(vec![0xff]).as_str().is_err());
        assert!(Value::xml(vec![0xff, 0xfe]).as_str().is_err());
    }
}
