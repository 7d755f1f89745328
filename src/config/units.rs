//! Typed configuration values: durations (`"30s"`, `"5m"`, `"365d"`) and byte sizes
//! (`"256KiB"`, `"10MiB"`), parsed once at startup so that no module reads raw strings.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A duration written with a unit suffix: `ms`, `s`, `m`, `h`, `d` or `w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub Duration);

/// A size in bytes written as a plain integer or with a unit: `B`, `KiB`, `MiB`, `GiB`, `KB`, `MB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ConfigDuration {
    /// Parses `"<number><unit>"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("duration {text:?} needs a unit (ms, s, m, h, d, w)"))?;
        let (number, unit) = text.split_at(split);
        let n: u64 = number.parse().map_err(|_| format!("duration {text:?} does not start with a number"))?;
        let millis_per_unit: u64 = match unit.trim() {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            other => return Err(format!("unknown duration unit {other:?} in {text:?}")),
        };
        n.checked_mul(millis_per_unit)
            .map(|ms| ConfigDuration(Duration::from_millis(ms)))
            .ok_or_else(|| format!("duration {text:?} is too large"))
    }

    /// The value as a standard duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl ByteSize {
    /// Parses `"<number>[unit]"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let n: u64 = number.parse().map_err(|_| format!("size {text:?} does not start with a number"))?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => return Err(format!("unknown size unit {other:?} in {text:?}")),
        };
        n.checked_mul(factor).map(ByteSize).ok_or_else(|| format!("size {text:?} is too large"))
    }

    /// The size as `usize`, saturating on 32-bit targets.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ConfigDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ms = self.0.as_millis();
        let text = match ms {
            0 => "0s".to_owned(),
            ms if ms % 604_800_000 == 0 => format!("{}w", ms / 604_800_000),
            ms if ms % 86_400_000 == 0 => format!("{}d", ms / 86_400_000),
            ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
            ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
            ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
            ms => format!("{ms}ms"),
        };
        s.serialize_str(&text)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        let cases = [
            ("250ms", 250),
            ("30s", 30_000),
            ("5m", 300_000),
            ("2h", 7_200_000),
            ("365d", 31_536_000_000),
            ("1w", 604_800_000),
        ];
        for (text, ms) in cases {
            assert_eq!(ConfigDuration::parse(text).unwrap().0.as_millis(), ms, "{text}");
        }
        for bad in ["", "10", "s", "10y", "-1s"] {
            assert!(ConfigDuration::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_parse_with_units() {
        let cases = [("256KiB", 262_144), ("10MiB", 10_485_760), ("1000", 1000), ("2KB", 2000)];
        for (text, bytes) in cases {
            assert_eq!(ByteSize::parse(text).unwrap().0, bytes, "{text}");
        }
        for bad in ["", "KiB", "10XB"] {
            assert!(ByteSize::parse(bad).is_err(), "{bad}");
        }
    }
}
