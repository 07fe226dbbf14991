//! The daemons' logs: one place that builds the `tracing` subscriber, for
//! `ringi-signer` and `ringi` alike.
//!
//! - [`LogFormat::Text`] (the default): one human-readable line per event;
//! - [`LogFormat::Json`]: one JSON object per line (tracing-subscriber's
//!   JSON formatter), for log shippers: `timestamp`, `level`, `target`, and
//!   `fields` holding `message` and the event's own fields (nested, so that
//!   a field never collides with those four).
//!
//! Logs go to stderr (stdout carries the `listening on` line scripts wait
//! for, and command output). ANSI colours only when stderr is a terminal:
//! a log file or a journal gets plain text. `RUST_LOG` overrides the
//! default filter.
//!
//! What is logged is the callers' business; the rule they keep is that no
//! PIN, key, share or request payload is ever a field.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A `--log-format` value that is neither `text` nor `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log format {0:?} is not one of: text, json")]
pub struct UnknownLogFormat(pub String);

impl std::str::FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(UnknownLogFormat(other.to_string())),
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("the log subscriber was set up already")]
    AlreadySet,
}

/// Sets the process's subscriber: `format` on stderr, colours only on a
/// terminal, `RUST_LOG` or else `default_filter` (e.g. "info").
pub fn init(format: LogFormat, default_filter: &str) -> Result<(), LoggingError> {
    let ansi = format == LogFormat::Text && std::io::stderr().is_terminal();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing::subscriber::set_global_default(subscriber(format, filter, ansi, std::io::stderr))
        .map_err(|_| LoggingError::AlreadySet)
}

/// The subscriber [`init`] installs, writing to `writer` (tests write to
/// a buffer).
fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    ansi: bool,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        // The JSON formatter never colours (`with_ansi` would only colour
        // inside its strings).
        LogFormat::Json => Box::new(builder.with_ansi(false).json().finish()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    fn logged(format: LogFormat, ansi: bool) -> String {
        let buffer = Buffer::default();
        let subscriber = subscriber(format, EnvFilter::new("info"), ansi, buffer.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(signer = "signer-1", count = 3, "nonces \"ready\"");
            tracing::debug!("filtered out");
        });
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn json_lines_parse_and_carry_the_event() {
        let text = logged(LogFormat::Json, true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert!(!text.contains('\u{1b}'), "{text:?}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["level"], "INFO");
        assert!(line["timestamp"].is_string(), "{line}");
        assert!(line["target"].as_str().unwrap().starts_with("ringi_net"));
        assert_eq!(line["fields"]["message"], "nonces \"ready\"");
        assert_eq!(line["fields"]["signer"], "signer-1");
        assert_eq!(line["fields"]["count"], 3);
    }

    #[test]
    fn text_is_plain_unless_on_a_terminal() {
        let plain = logged(LogFormat::Text, false);
        assert!(plain.contains("nonces \"ready\""), "{plain}");
        assert!(plain.contains("signer=\"signer-1\""), "{plain}");
        assert!(!plain.contains('\u{1b}'), "{plain:?}");
        assert!(logged(LogFormat::Text, true).contains('\u{1b}'));
    }

    #[test]
    fn formats_parse_from_flags_and_config() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert_eq!(
            "JSON".parse::<LogFormat>(),
            Err(UnknownLogFormat("JSON".into()))
        );
        #[derive(serde::Deserialize)]
        struct File {
            log_format: LogFormat,
        }
        let file: File = toml::from_str("log_format = \"json\"").unwrap();
        assert_eq!(file.log_format, LogFormat::Json);
        assert!(toml::from_str::<File>("log_format = \"xml\"").is_err());
        assert_eq!(LogFormat::default(), LogFormat::Text);
    }
}
