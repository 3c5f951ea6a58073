//! `usher check --target-image IMAGE[:TAG]`: the server under test runs as a local Docker image,
//! started and removed with testcontainers. Nothing is pulled: the image must be present
//! (`server/docker/build.sh` builds the reference server's, `usher-server:dev`).
//!
//! # The image contract
//!
//! An image the suite can start: its default command runs the server with the Flussonic-style
//! configuration at [`CONFIG_PATH`], and the server prints one line `usher: ready http=ADDR
//! [rtmp=ADDR] [rtsp=ADDR]` on stdout once it listens (readiness is read from the log, never
//! waited out with a sleep). The suite writes that configuration itself — listening addresses
//! and a management API credential it generates — and copies it into the container before it
//! starts.
//!
//! # Networking: the host's
//!
//! The container shares the host's network namespace (`--network host`), and the server listens
//! on 127.0.0.1 only. So:
//!
//! * the server sees the suite's viewers at their real loopback addresses (127.0.0.2,
//!   127.0.0.3, …), which the client-IP cases need (session keys by `ip`, per-address limits,
//!   configurator rules): the verdicts are those of the embedded run;
//! * the suite's auth backend on 127.0.0.1 is reachable as it is: no gateway address, no
//!   published port, no `host.docker.internal`;
//! * nothing listens beyond this machine: loopback only.
//!
//! A bridge network would see every viewer as the bridge's gateway (the docker proxy), so the
//! cases that depend on the client's address would need a capability to skip them, and the
//! backend would have to listen on the bridge's gateway address.
//!
//! # Media files
//!
//! The embedded server gets the media files its cases play (`file://`) from the suite, in its
//! media folder. A container gets them the same way: [`prepare_media`] makes them (in-process, as
//! for the embedded server) and they are copied into [`MEDIA_DIR`], its `media_root`, before it
//! starts; [`capabilities_with_media`] then declares `file_input` with everything else. So the
//! container runs every case the embedded server runs.
//!
//! # Faults
//!
//! [`ServerContainer::pause`], [`ServerContainer::unpause`] and [`ServerContainer::restart`]
//! (`docker pause`, `docker unpause`, `docker restart`) drive what only a container makes easy:
//! a server frozen mid-session, a server that comes back with an empty memory.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use futures::StreamExt;
use testcontainers::bollard::query_parameters::{ListContainersOptions, LogsOptions, RestartContainerOptions};
use testcontainers::core::client::docker_client_instance;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, CopyDataSource, GenericImage, ImageExt};
use tokio::io::AsyncBufReadExt;
use url::Url;

use super::{Address, ApiCredential};
use crate::catalogue::needs::{FEATURES, PROTOCOLS};
use crate::catalogue::{Capabilities, Catalogue};
use crate::steps::media::{Size, make_media_file};

/// The reference server's image, as `server/docker/build.sh` tags it.
pub const DEFAULT_IMAGE: &str = "usher-server:dev";
/// Where the image's default command reads its configuration.
pub const CONFIG_PATH: &str = "/etc/usher/usher.conf";
/// How to build the reference server's image.
pub const BUILD_HINT: &str = "server/docker/build.sh";
/// The container's media folder (`media_root`), where the suite's media files go.
pub const MEDIA_DIR: &str = "/var/lib/usher/media";
/// The start of the readiness line.
pub const READY_PREFIX: &str = "usher: ready";
/// Lines of the container's log kept for a report.
const LOG_TAIL: usize = 400;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("no Docker daemon is reachable ({0}); start one, or point DOCKER_HOST at it")]
    NoDaemon(String),
    #[error(
        "the image `{0}` is not present locally, and nothing is pulled: build it (for the reference server: `{BUILD_HINT}`, which tags {DEFAULT_IMAGE})"
    )]
    MissingImage(String),
    #[error("docker: {0}")]
    Docker(String),
    #[error("the container of `{image}` ended before it printed `{READY_PREFIX} …`; its log:\n{log}")]
    Exited { image: String, log: String },
    #[error("the container of `{image}` did not print `{READY_PREFIX} …` within {secs} s; its log:\n{log}")]
    NotReady { image: String, secs: u64, log: String },
    #[error("the readiness line `{0}` names no http=ADDR")]
    ReadyLine(String),
}

fn docker_err(e: impl fmt::Display) -> ContainerError {
    ContainerError::Docker(e.to_string())
}

/// Whether a Docker daemon answers: `Err` says why not (the tests skip on it, with the reason).
pub async fn daemon() -> Result<(), ContainerError> {
    let docker = docker_client_instance()
        .await
        .map_err(|e| ContainerError::NoDaemon(e.to_string()))?;
    docker
        .ping()
        .await
        .map(drop)
        .map_err(|e| ContainerError::NoDaemon(e.to_string()))
}

/// The label every target container of the suite carries.
pub const LABEL: &str = "org.usher.conformance";

/// The suite's target containers that still exist (running or not), by name: none once every
/// run has ended.
pub async fn leftover_containers() -> Result<Vec<String>, ContainerError> {
    let docker = docker_client_instance()
        .await
        .map_err(|e| ContainerError::NoDaemon(e.to_string()))?;
    let options = ListContainersOptions {
        all: true,
        filters: Some(std::collections::HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL}=target")],
        )])),
        ..Default::default()
    };
    let list = docker.list_containers(Some(options)).await.map_err(docker_err)?;
    Ok(list
        .into_iter()
        .flat_map(|c| c.names.unwrap_or_default())
        .map(|n| n.trim_start_matches('/').to_string())
        .collect())
}

/// Whether `image` (`NAME[:TAG]`) is present locally.
pub async fn image_present(image: &str) -> Result<bool, ContainerError> {
    let docker = docker_client_instance()
        .await
        .map_err(|e| ContainerError::NoDaemon(e.to_string()))?;
    match docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(testcontainers::bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
        Err(e) => Err(ContainerError::NoDaemon(e.to_string())),
    }
}

/// Makes sure the reference server's image [`DEFAULT_IMAGE`] is present: when it is missing,
/// builds it with the workspace's script ([`BUILD_HINT`], under `workspace`), which takes
/// minutes the first time (a static release build). For tests, so that the test command works
/// on a fresh machine with a Docker daemon; `usher check --target-image` never builds.
/// `Ok(true)` when it was built now; the error holds the script's output.
pub async fn ensure_reference_image(workspace: &std::path::Path) -> Result<bool, String> {
    // One build at a time within a process (tests of one binary run in parallel).
    static BUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = BUILDING.lock().await;
    if image_present(DEFAULT_IMAGE).await.map_err(|e| e.to_string())? {
        return Ok(false);
    }
    let script = workspace.join(BUILD_HINT);
    tracing::info!(script = %script.display(), image = DEFAULT_IMAGE, "building the reference server's image");
    let output = tokio::process::Command::new(&script)
        .arg(DEFAULT_IMAGE)
        .current_dir(workspace)
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}):\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    match image_present(DEFAULT_IMAGE).await {
        Ok(true) => Ok(true),
        Ok(false) => Err(format!(
            "{} succeeded but {DEFAULT_IMAGE} is still missing",
            script.display()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// `Given the media file "NAME" of WxH is in the target's media folder`
static MEDIA_STEP: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r#"^the media file "([^"/]+)" of (\d+)x(\d+) is in the target's media folder$"#)
        .expect("a valid regex")
});

/// The media files the catalogue's cases expect in the target's media folder, by name.
pub fn media_files(catalogue: &Catalogue) -> BTreeMap<String, Size> {
    let mut files = BTreeMap::new();
    for step in catalogue.cases.iter().flat_map(|c| c.steps.iter()) {
        if let Some(m) = MEDIA_STEP.captures(&step.text)
            && let (Ok(w), Ok(h)) = (m[2].parse(), m[3].parse())
            && !m[1].contains("..")
        {
            files.insert(m[1].to_string(), (w, h));
        }
    }
    files
}

/// Makes the media files the catalogue's cases play in a new folder of this host (in-process,
/// as for the embedded server's media folder), for [`ContainerOptions::media`]. The caller removes
/// the folder once the container has started.
pub async fn prepare_media(catalogue: &Catalogue) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("usher-image-media-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (name, size) in media_files(catalogue) {
        if let Err(e) = make_media_file(&dir.join(&name), size, 4).await {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    }
    Ok(dir)
}

/// What a container with the suite's media files supports: every protocol and every feature
/// the catalogue knows or its cases need, `file_input` included.
pub fn capabilities_with_media(catalogue: &Catalogue) -> Capabilities {
    let mut features: BTreeSet<String> = FEATURES.iter().map(|(f, _)| (*f).to_string()).collect();
    features.extend(
        catalogue
            .cases
            .iter()
            .flat_map(|c| c.needs.iter())
            .filter(|n| !PROTOCOLS.contains(&n.as_str()))
            .cloned(),
    );
    Capabilities {
        protocols: None,
        features: Some(features),
        ..Capabilities::default()
    }
}

/// `NAME[:TAG]` split at the tag's colon (a registry's `host:port/` is part of the name).
pub fn split_image(image: &str) -> (&str, &str) {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], &image[slash + i + 1..]),
        None => (image, "latest"),
    }
}

/// The listening addresses a readiness line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub http: SocketAddr,
    pub rtmp: Option<SocketAddr>,
    pub rtsp: Option<SocketAddr>,
}

impl Ready {
    /// `usher: ready http=ADDR [rtmp=ADDR] [rtsp=ADDR]`
    pub fn parse(line: &str) -> Option<Ready> {
        let rest = line.trim().strip_prefix(READY_PREFIX)?;
        let field = |key: &str| {
            rest.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                .and_then(|a| a.parse::<SocketAddr>().ok())
        };
        Some(Ready {
            http: field("http")?,
            rtmp: field("rtmp"),
            rtsp: field("rtsp"),
        })
    }

    pub fn http_url(&self) -> Url {
        Url::parse(&format!("http://{}/", self.http)).expect("a socket address makes a URL")
    }
}

/// How to start the target's container.
#[derive(Debug, Clone)]
pub struct ContainerOptions {
    /// `NAME[:TAG]`, present locally.
    pub image: String,
    /// The management API credential written into the configuration.
    pub credential: ApiCredential,
    /// Ports of 127.0.0.1 for HTTP, RTMP and RTSP; 0 picks a free one at each start (a restart
    /// may then move it: give fixed ports to keep the addresses across restarts).
    pub ports: [u16; 3],
    /// More configuration, appended as it is (stream blocks, settings).
    pub extra_config: String,
    /// A folder of this host whose files are copied into [`MEDIA_DIR`] before the start (the
    /// configuration then names it as `media_root`).
    pub media: Option<PathBuf>,
    /// `RUST_LOG` of the server (its log goes to the container's stderr).
    pub log_filter: String,
    /// How long the server may take to print its readiness line.
    pub startup_timeout: Duration,
}

impl ContainerOptions {
    /// Any free ports and a fresh random credential.
    pub fn new(image: impl Into<String>) -> ContainerOptions {
        ContainerOptions {
            image: image.into(),
            credential: ApiCredential {
                login: "usher-check".to_string(),
                password: uuid::Uuid::new_v4().simple().to_string(),
            },
            ports: [0; 3],
            extra_config: String::new(),
            media: None,
            log_filter: "info".to_string(),
            startup_timeout: Duration::from_secs(60),
        }
    }

    /// The configuration the container gets at [`CONFIG_PATH`].
    pub fn config_text(&self) -> String {
        let [http, rtmp, rtsp] = self.ports;
        let media = match &self.media {
            Some(_) => format!("media_root {MEDIA_DIR};\n"),
            None => String::new(),
        };
        format!(
            "# Written by the conformance suite for this container only.\n\
             http 127.0.0.1:{http};\nrtmp 127.0.0.1:{rtmp};\nrtsp 127.0.0.1:{rtsp};\n\
             edit_auth {} {};\n{media}{}",
            self.credential.login, self.credential.password, self.extra_config
        )
    }
}

/// A running container of the server under test; removed by [`remove`](Self::remove), or
/// when dropped.
pub struct ServerContainer {
    container: ContainerAsync<GenericImage>,
    options: ContainerOptions,
    ready: Ready,
    /// Readiness lines seen so far: one per start.
    starts: usize,
}

impl fmt::Debug for ServerContainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerContainer")
            .field("id", &self.container.id())
            .field("image", &self.options.image)
            .field("ready", &self.ready)
            .finish()
    }
}

impl ServerContainer {
    /// Starts the image with the host's network and the suite's configuration, and returns
    /// once its readiness line is in the log. A container that fails is removed, its log in
    /// the error.
    pub async fn start(options: ContainerOptions) -> Result<ServerContainer, ContainerError> {
        daemon().await?;
        if !image_present(&options.image).await? {
            return Err(ContainerError::MissingImage(options.image.clone()));
        }
        let (name, tag) = split_image(&options.image);
        let mut request = GenericImage::new(name, tag)
            .with_network("host")
            .with_container_name(format!(
                "usher-target-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ))
            .with_label(LABEL, "target")
            .with_env_var("RUST_LOG", options.log_filter.clone())
            .with_copy_to(CONFIG_PATH, CopyDataSource::Data(options.config_text().into_bytes()))
            .with_startup_timeout(options.startup_timeout);
        if let Some(media) = &options.media {
            request = request.with_copy_to(MEDIA_DIR, media.as_path());
        }
        let container = request.start().await.map_err(docker_err)?;
        let mut started = ServerContainer {
            container,
            options,
            ready: Ready {
                http: SocketAddr::from(([127, 0, 0, 1], 0)),
                rtmp: None,
                rtsp: None,
            },
            starts: 0,
        };
        match started.await_ready().await {
            Ok(()) => Ok(started),
            Err(e) => {
                started.remove().await;
                Err(e)
            }
        }
    }

    /// Waits for the next readiness line (one per start) in the container's stdout.
    async fn await_ready(&mut self) -> Result<(), ContainerError> {
        let want = self.starts + 1;
        let limit = self.options.startup_timeout;
        let mut lines = self.container.stdout(true).lines();
        let found = tokio::time::timeout(limit, async {
            let mut seen = 0;
            // The stream replays the log from the start, then follows it; it ends when the
            // container stops.
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with(READY_PREFIX) {
                    seen += 1;
                    if seen == want {
                        return Some(line);
                    }
                }
            }
            None
        })
        .await;
        let image = self.options.image.clone();
        match found {
            Ok(Some(line)) => {
                self.ready = Ready::parse(&line).ok_or(ContainerError::ReadyLine(line))?;
                self.starts = want;
                tracing::info!(id = %self.container.id(), ready = ?self.ready, "target container ready");
                Ok(())
            }
            Ok(None) => Err(ContainerError::Exited {
                image,
                log: self.logs().await,
            }),
            Err(_) => Err(ContainerError::NotReady {
                image,
                secs: limit.as_secs(),
                log: self.logs().await,
            }),
        }
    }

    pub fn id(&self) -> &str {
        self.container.id()
    }

    pub fn image(&self) -> &str {
        &self.options.image
    }

    /// The addresses of the last readiness line.
    pub fn ready(&self) -> Ready {
        self.ready
    }

    pub fn credential(&self) -> &ApiCredential {
        &self.options.credential
    }

    /// The target as `usher check` reaches a running server: HTTP, RTMP, RTSP and the API
    /// credential.
    pub fn address(&self) -> Address {
        Address {
            http: self.ready.http_url(),
            rtmp: self.ready.rtmp.map(|a| a.to_string()),
            rtsp: self.ready.rtsp.map(|a| a.to_string()),
            credential: Some(self.options.credential.clone()),
        }
    }

    /// `docker pause`: every process of the container frozen (the cgroup freezer); its sockets
    /// stay open and the kernel keeps accepting connections.
    pub async fn pause(&self) -> Result<(), ContainerError> {
        self.container.pause().await.map_err(docker_err)
    }

    /// `docker unpause`.
    pub async fn unpause(&self) -> Result<(), ContainerError> {
        self.container.unpause().await.map_err(docker_err)
    }

    /// `docker restart` (SIGTERM, at most `grace` to stop, then SIGKILL; then start), and
    /// waits for the new readiness line. The configuration stays; the server's memory does not.
    pub async fn restart(&mut self, grace: Duration) -> Result<Ready, ContainerError> {
        let docker = docker_client_instance().await.map_err(docker_err)?;
        let options = RestartContainerOptions {
            t: Some(grace.as_secs().try_into().unwrap_or(i32::MAX)),
            ..Default::default()
        };
        docker
            .restart_container(self.container.id(), Some(options))
            .await
            .map_err(docker_err)?;
        self.await_ready().await?;
        Ok(self.ready)
    }

    /// The last lines of the container's log, stdout and stderr interleaved as written.
    pub async fn logs(&self) -> String {
        let docker = match docker_client_instance().await {
            Ok(d) => d,
            Err(e) => return format!("(the log could not be read: {e})"),
        };
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: LOG_TAIL.to_string(),
            ..Default::default()
        };
        let mut stream = docker.logs(self.container.id(), Some(options));
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(out) => text.push_str(&String::from_utf8_lossy(&out.into_bytes())),
                Err(e) => {
                    text.push_str(&format!("(the log ends here: {e})\n"));
                    break;
                }
            }
        }
        text
    }

    /// Stops and removes the container (`docker rm --force`).
    pub async fn remove(self) {
        let id = self.container.id().to_string();
        if let Err(e) = self.container.rm().await {
            tracing::warn!(%id, "cannot remove the target container: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_split_at_the_tag() {
        assert_eq!(split_image("usher-server:dev"), ("usher-server", "dev"));
        assert_eq!(split_image("usher-server"), ("usher-server", "latest"));
        assert_eq!(split_image("localhost:5000/a/b:1.2"), ("localhost:5000/a/b", "1.2"));
        assert_eq!(split_image("localhost:5000/a/b"), ("localhost:5000/a/b", "latest"));
    }

    #[test]
    fn readiness_lines_parse() {
        let r = Ready::parse("usher: ready http=127.0.0.1:8080 rtmp=127.0.0.1:1935 rtsp=127.0.0.1:8554").unwrap();
        assert_eq!(r.http, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(r.rtmp, Some("127.0.0.1:1935".parse().unwrap()));
        assert_eq!(r.rtsp, Some("127.0.0.1:8554".parse().unwrap()));
        assert_eq!(r.http_url().as_str(), "http://127.0.0.1:8080/");
        let r = Ready::parse("usher: ready http=127.0.0.1:1").unwrap();
        assert_eq!((r.rtmp, r.rtsp), (None, None));
        assert_eq!(Ready::parse("usher: starting"), None);
        assert_eq!(Ready::parse("usher: ready rtmp=127.0.0.1:1"), None);
    }

    #[test]
    fn the_configuration_listens_on_loopback_with_the_credential() {
        let mut o = ContainerOptions::new(DEFAULT_IMAGE);
        o.ports = [8080, 0, 0];
        o.extra_config = "http_session_idle 30;\n".into();
        let text = o.config_text();
        assert!(text.contains("http 127.0.0.1:8080;"), "{text}");
        assert!(text.contains("rtsp 127.0.0.1:0;"), "{text}");
        assert!(
            text.contains(&format!("edit_auth usher-check {};", o.credential.password)),
            "{text}"
        );
        assert!(text.ends_with("http_session_idle 30;\n"));
        assert!(!text.contains("media_root"), "{text}");
        usher_server::config::parse_config(&text, "container.conf").expect("the reference server loads it");
        o.media = Some(PathBuf::from("/tmp/x"));
        let text = o.config_text();
        assert!(text.contains(&format!("media_root {MEDIA_DIR};")), "{text}");
        usher_server::config::parse_config(&text, "container.conf").expect("the reference server loads it");
    }

    #[test]
    fn the_catalogue_names_its_media_files_and_a_container_with_them_runs_every_case() {
        let catalogue = Catalogue::load(&crate::default_features_dir()).expect("the catalogue loads");
        let files = media_files(&catalogue);
        assert_eq!(files.get("conformance-clip.mp4"), Some(&(160, 120)), "{files:?}");
        let caps = capabilities_with_media(&catalogue);
        for case in &catalogue.cases {
            assert!(caps.missing(&case.needs).is_empty(), "{}: {:?}", case.key, case.needs);
        }
    }
}
