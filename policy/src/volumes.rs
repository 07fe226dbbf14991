//! The daily-volume figures that percentage caps refer to: a small TOML file
//! operators update (key id = volume, in the key's smallest unit). It is not
//! part of the policy, so updating it needs no re-pinning; coordinator and
//! signers each read their own copy at every check.
//!
//! ```toml
//! hot-1 = 2500000000
//! ```

use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VolumeError {
    #[error("cannot read daily volume file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("daily volume file {path} is invalid: {reason}")]
    Parse { path: String, reason: String },
}

/// Parses `key_id = volume` lines.
pub fn parse(text: &str) -> Result<BTreeMap<String, u128>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    table
        .into_iter()
        .map(|(k, v)| match v {
            toml::Value::Integer(n) if n >= 0 => Ok((k, n as u128)),
            toml::Value::String(s) => s
                .parse::<u128>()
                .map(|n| (k.clone(), n))
                .map_err(|_| format!("{k}: {s:?} is not a non-negative integer")),
            other => Err(format!("{k}: {other} is not a non-negative integer")),
        })
        .collect()
}

/// The figure for `key_id` from the file at `path`, if the file lists it.
pub fn daily_volume(path: Option<&Path>, key_id: &str) -> Result<Option<u128>, VolumeError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| VolumeError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let volumes = parse(&text).map_err(|reason| VolumeError::Parse {
        path: path.display().to_string(),
        reason,
    })?;
    Ok(volumes.get(key_id).copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_integers_and_big_strings() {
        let v =
            parse("hot-1 = 2500\ncold = \"340282366920938463463374607431768211455\"\n").unwrap();
        assert_eq!(v["hot-1"], 2500);
        assert_eq!(v["cold"], u128::MAX);
        assert!(parse("hot-1 = -1").is_err());
        assert!(parse("hot-1 = \"x\"").is_err());
        assert!(parse("hot-1 = 1.5").is_err());
    }
}
