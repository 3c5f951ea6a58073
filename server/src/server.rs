//! Server bootstrap. (Being written.)
use std::net::SocketAddr;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
}

pub struct Server {
    pub config: Config,
}

pub struct RunningServer {
    pub http_addr: SocketAddr,
}
