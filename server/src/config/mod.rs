//! The Flussonic-style configuration: the file parser, the model, the JSON shapes of the
//! management API, and the runtime `config` override layer.

mod json;
mod lex;
mod model;
mod overlay;
mod parse;
mod print;
mod templates;

pub use json::{ApiBodyError, json_type, stream_from_api_json, stream_to_api_json};
pub use model::*;
pub use overlay::{OverrideError, ParsedOverride, StreamOverride};
pub use parse::{ConfigError, parse_config};
