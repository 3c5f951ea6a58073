//! What a case needs from the target, and what a target declares it supports.
//!
//! A case's needs are the union of its `@needs-<name>` tags and what its steps plainly require
//! (a viewer playing `over RTMP` needs `rtmp`; listing sessions needs `sessions_api`), so a new
//! scenario is classified correctly even when its author forgot a tag. The inference table is
//! [`INFERRED`]; `usher cases` shows the result for every case.
//!
//! A case whose needs the target lacks is SKIP ("unsupported by the target"), never FAIL.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::StepText;

/// Delivery protocols a target may serve.
pub const PROTOCOLS: [&str; 4] = ["hls", "mpegts", "rtmp", "rtsp"];

/// Features the catalogue knows about (a target manifest may name others).
pub const FEATURES: [(&str, &str); 8] = [
    (
        "api",
        "streams are created and deleted through PUT/DELETE /streamer/api/v3/streams/NAME",
    ),
    (
        "sessions_api",
        "open sessions are listed and closed through /streamer/api/v3/sessions",
    ),
    (
        "admin_tokens",
        "admin view tokens are minted through POST /streamer/api/v3/admin_view_token",
    ),
    (
        "server_config",
        "server-wide settings (no_auto_token) change through PUT /streamer/api/v3/config",
    ),
    ("publish", "clients publish streams (on_publish)"),
    (
        "file_input",
        "streams play file:// inputs from the media folder, which holds the suite's media files \
         (the embedded server's is filled by the suite)",
    ),
    (
        "dvr",
        "streams record a DVR archive (the stream's `dvr` object) played back at NAME/index-FROM-DUR.m3u8 \
         and downloaded at NAME/archive-FROM-DUR.mp4|ts",
    ),
    (
        "history",
        "closed sessions are listed through GET /streamer/api/v3/sessions?closed=true[&user_id=U]",
    ),
];

/// Several servers sharing one session store, played on as "node A", "node B" (a cluster
/// target: `usher check --cluster`, or `[cluster] members` of a manifest). No single server
/// has it, whatever its manifest declares.
pub const CLUSTER: &str = "cluster";
/// The suite can stop a node of the cluster and restart its store (the embedded cluster).
pub const CLUSTER_CONTROL: &str = "cluster_control";

/// Features that only the management API provides: a static target lacks them unless its
/// manifest declares them (and gives an API credential).
pub const API_FEATURES: [&str; 5] = ["api", "sessions_api", "admin_tokens", "server_config", "history"];

/// Step text → need. Matched against every step of a case (background included).
pub static INFERRED: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (r"\bover HLS\b", "hls"),
        (r"\bover (?:HTTP )?MPEG-TS\b", "mpegts"),
        (r"\bover RTMP\b", "rtmp"),
        (r"\bover RTSP\b", "rtsp"),
        (r"\bpublish(es|ing)?\b", "publish"),
        (r"^the operator puts stream\b", "api"),
        // Streams made up at run time cannot be printed for a static target.
        (r"\bgenerated stream", "api"),
        (r"^the API (refuses|accepts)\b", "api"),
        (r"^the server lists\b", "sessions_api"),
        (r"\bsessions? of user .* (is|are) open$", "sessions_api"),
        (r"\bthrough the API$", "sessions_api"),
        (r"\badmin (view )?token\b", "admin_tokens"),
        (r"^the server refuses requests without a token$", "server_config"),
        (r"\bDVR archive\b", "dvr"),
        (r"\bof the archive of\b", "dvr"),
        (r"^the (?:session history|latest closed session)\b", "history"),
        (r"\bon node [A-Z]\b", CLUSTER),
        (r"^node [A-Z] stops$", CLUSTER_CONTROL),
        (r"^the session store restarts\b", CLUSTER_CONTROL),
    ]
    .into_iter()
    .map(|(re, need)| (Regex::new(re).expect("a valid regex"), need))
    .collect()
});

/// The needs of a case: `@needs-X` tags plus [`INFERRED`] from its steps.
pub fn needs_of(tags: &[String], steps: &[StepText]) -> BTreeSet<String> {
    let mut needs: BTreeSet<String> = tags
        .iter()
        .filter_map(|t| t.strip_prefix("needs-"))
        .map(|n| n.replace('-', "_"))
        .collect();
    for step in steps {
        for (re, need) in INFERRED.iter() {
            if re.is_match(&step.text) {
                needs.insert((*need).to_string());
            }
        }
    }
    needs
}

/// What a target supports. `None` in a set means "everything" (so a feature a new scenario
/// introduces is supported by a target that did not list its features), less `without`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Capabilities {
    /// Protocols served; `None`: all of [`PROTOCOLS`].
    pub protocols: Option<BTreeSet<String>>,
    /// Features; `None`: every feature.
    pub features: Option<BTreeSet<String>>,
    /// Features the target lacks whatever the sets say.
    #[serde(default)]
    pub without: BTreeSet<String>,
    /// The protocol of the steps that play `over the target's protocol` (`default_protocol` of
    /// the manifest); `None`: see [`Capabilities::default_protocol`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_protocol: Option<String>,
}

impl Capabilities {
    /// Everything (the embedded reference server).
    pub fn all() -> Capabilities {
        Capabilities::default()
    }

    pub fn supports(&self, need: &str) -> bool {
        if self.without.contains(need) {
            return false;
        }
        let set = if PROTOCOLS.contains(&need) {
            &self.protocols
        } else {
            &self.features
        };
        set.as_ref().is_none_or(|s| s.contains(need))
    }

    /// The protocol a case plays `over the target's protocol`: the declared `default_protocol`
    /// when the target serves it, else HLS when it serves HLS, else the first protocol it serves
    /// in the order of [`PROTOCOLS`] (HLS when it serves none).
    pub fn default_protocol(&self) -> &str {
        if let Some(p) = self.default_protocol.as_deref()
            && self.supports(p)
        {
            return p;
        }
        PROTOCOLS.iter().copied().find(|p| self.supports(p)).unwrap_or("hls")
    }

    /// The needs this target lacks, in order.
    pub fn missing<'a>(&self, needs: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        needs.into_iter().filter(|n| !self.supports(n)).cloned().collect()
    }

    /// Removes features (a static target has no stream management API).
    pub fn without_features(mut self, drop: &[&str]) -> Capabilities {
        self.without.extend(drop.iter().map(|f| (*f).to_string()));
        self
    }

    /// Limits the protocols to `protocols`.
    pub fn with_protocols(mut self, protocols: impl IntoIterator<Item = String>) -> Capabilities {
        self.protocols = Some(protocols.into_iter().collect());
        self
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |set: &Option<BTreeSet<String>>| match set {
            None => "all".to_string(),
            Some(s) if s.is_empty() => "none".to_string(),
            Some(s) => s.iter().cloned().collect::<Vec<_>>().join(", "),
        };
        write!(
            f,
            "protocols: {}; features: {}",
            show(&self.protocols),
            show(&self.features)
        )?;
        if !self.without.is_empty() {
            let without: Vec<&str> = self.without.iter().map(String::as_str).collect();
            write!(f, " but {}", without.join(", "))?;
        }
        // Only worth a word when the protocol-neutral cases do not play over HLS.
        let default = self.default_protocol();
        if default != "hls" {
            write!(f, "; cases play over {default} unless they name a protocol")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(text: &str) -> StepText {
        StepText {
            keyword: "When".into(),
            text: text.into(),
            line: 1,
            background: false,
        }
    }

    #[test]
    fn needs_come_from_tags_and_steps() {
        let needs = needs_of(
            &["must".into(), "needs-dvr-export".into()],
            &[
                step(r#"viewer "A" from 127.0.0.2 plays "s" over RTMP with token "t1""#),
                step(r#"viewer "A" plays "s" over HLS with the admin token"#),
                step(r#"the server lists 1 open session of stream "s""#),
                step(r#"the operator closes the session of viewer "A" through the API"#),
            ],
        );
        let needs: Vec<&str> = needs.iter().map(String::as_str).collect();
        assert_eq!(needs, ["admin_tokens", "dvr_export", "hls", "rtmp", "sessions_api"]);
    }

    #[test]
    fn capabilities_answer_for_protocols_and_features() {
        let all = Capabilities::all();
        assert!(all.supports("rtmp") && all.supports("anything"));
        let c = Capabilities::all()
            .with_protocols(["hls".to_string()])
            .without_features(&API_FEATURES);
        assert!(c.supports("hls"));
        assert!(!c.supports("rtmp"));
        assert!(!c.supports("api"));
        assert!(c.supports("publish"));
        assert!(c.supports("a_feature_added_later"), "exclusions do not narrow \"all\"");
        let needs: Vec<String> = vec!["hls".into(), "rtsp".into(), "sessions_api".into()];
        assert_eq!(c.missing(&needs), ["rtsp", "sessions_api"]);
    }

    #[test]
    fn the_default_protocol_is_declared_else_hls_else_the_first_served() {
        assert_eq!(Capabilities::all().default_protocol(), "hls");
        let rtmp_only = Capabilities::all().with_protocols(["rtmp".to_string(), "rtsp".to_string()]);
        assert_eq!(rtmp_only.default_protocol(), "rtmp");
        assert!(rtmp_only.to_string().contains("cases play over rtmp"), "{rtmp_only}");
        let declared = Capabilities {
            default_protocol: Some("rtsp".into()),
            ..rtmp_only.clone()
        };
        assert_eq!(declared.default_protocol(), "rtsp");
        let unserved = Capabilities {
            default_protocol: Some("mpegts".into()),
            ..rtmp_only
        };
        assert_eq!(
            unserved.default_protocol(),
            "rtmp",
            "a declared protocol not served is not used"
        );
        assert!(!Capabilities::all().to_string().contains("cases play over"));
    }
}
