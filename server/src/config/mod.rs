//! The Flussonic-style configuration: the file parser, the model, the JSON shapes of the
//! management API, and the runtime `config` override layer.

mod model;
mod parse;
mod json;
mod overlay;

pub use model::*;
pub use parse::{parse_config, ConfigError};
pub use json::{stream_from_api_json, stream_to_api_json, ApiBodyError};
pub use overlay::{OverrideError, StreamOverride};
