//! Errors of loading the settings, and the origin of a value that each error names.

use std::fmt;
use std::path::PathBuf;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// A file of the configuration directory (`config/default.toml`, `config/{METAMCP_ENV}.toml`).
    File(PathBuf),
    /// The file given with `--config`.
    ConfigFlag(PathBuf),
    /// The named environment variable.
    Env(String),
    /// The named command-line flag (`--bind`, `--set server.workers`).
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("built-in default"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::ConfigFlag(path) => write!(f, "--config {}", path.display()),
            Origin::Env(name) => write!(f, "env {name}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Why the settings could not be loaded — or that the command line asked only for help or the
/// version. [`SettingsError::exit`] prints it and ends the process.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// `--help` was given; the rendered help text.
    #[error("{0}")]
    Help(String),
    /// `--version` was given; the rendered version line.
    #[error("{0}")]
    Version(String),
    /// The command line could not be parsed; clap's rendered message (it starts with `error:`).
    #[error("{0}")]
    Usage(String),
    /// A value is malformed or out of range.
    #[error("invalid value for `{key}`: {value} (allowed: {allowed}) (from {origin})")]
    Invalid {
        /// Dotted key, for example `exporter.timeout`.
        key: String,
        /// The offending value as given (secrets masked).
        value: String,
        /// What would have been accepted.
        allowed: String,
        /// Where the value came from.
        origin: Origin,
    },
    /// A file, environment variable or `--set` names a key that does not exist.
    #[error("unknown key `{key}` (from {origin}); allowed here: {allowed}")]
    UnknownKey {
        /// Dotted key as given, for example `exporter.retry.max_intervall`.
        key: String,
        /// The keys that exist at that place.
        allowed: String,
        /// Where the key came from.
        origin: Origin,
    },
    /// A configuration file is not valid TOML.
    #[error("{origin} is not valid TOML: {message}")]
    Parse {
        /// The file.
        origin: Origin,
        /// The parser's message, with line and column.
        message: String,
    },
    /// `METAMCP_ENV` names an overlay file that does not exist.
    #[error("METAMCP_ENV={name:?} but {} does not exist (unset METAMCP_ENV or create the file)", path.display())]
    MissingEnvironmentFile {
        /// The value of `METAMCP_ENV`.
        name: String,
        /// The file it names.
        path: PathBuf,
    },
    /// A configuration file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The built-in defaults could not be turned into the key schema (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl SettingsError {
    /// Prints the error and ends the process: help and version go to stdout with exit code 0,
    /// everything else goes to stderr as `error: ...` with exit code 2.
    pub fn exit(&self) -> ! {
        match self {
            SettingsError::Help(text) | SettingsError::Version(text) => {
                print!("{text}");
                std::process::exit(0)
            }
            SettingsError::Usage(text) => {
                eprint!("{text}");
                std::process::exit(2)
            }
            other => {
                eprintln!("error: {other}");
                std::process::exit(2)
            }
        }
    }
}
