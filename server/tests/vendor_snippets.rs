//! Config snippets of the shapes the vendor's public documentation shows (retyped as test
//! data, names and addresses changed), issue 18 item 5: each one either reads to the meaning
//! an operator who wrote it for the vendor's server expects, or fails with an error that names
//! the unsupported directive (or option) and the line it is on.

use std::time::Duration;

use usher_server::config::{AuthTarget, Config, parse_config};

/// What a snippet must do.
enum Expect {
    /// Parses; the function checks the meaning.
    Reads(fn(&Config)),
    /// Fails at `line` with a message containing `names`.
    Fails { line: usize, names: &'static str },
}

struct Snippet {
    /// Where the shape comes from (the vendor's documentation topic).
    topic: &'static str,
    text: &'static str,
    expect: Expect,
}

fn play_target(config: &Config, stream: &str) -> AuthTarget {
    let s = config
        .streams
        .iter()
        .find(|s| s.name == stream)
        .expect("the stream is there");
    s.on_play.as_ref().expect("an on_play").target.clone()
}

fn snippets() -> Vec<Snippet> {
    use Expect::{Fails, Reads};
    vec![
        Snippet {
            topic: "ports and protocols",
            text: "http 80;\nrtmp 1935;\nrtsp 554;\n",
            expect: Reads(|c| {
                assert_eq!(c.http.map(|a| a.port()), Some(80));
                assert_eq!(c.rtmp.map(|a| a.port()), Some(1935));
                assert_eq!(c.rtsp.map(|a| a.port()), Some(554));
            }),
        },
        Snippet {
            topic: "ports and protocols: an address and a port",
            text: "http 127.0.0.1:8080;\n",
            expect: Reads(|c| assert_eq!(c.http, Some("127.0.0.1:8080".parse().unwrap()))),
        },
        Snippet {
            topic: "ports and protocols: HTTPS",
            text: "http 80;\nhttps 443;\n",
            expect: Fails {
                line: 2,
                names: "'https'",
            },
        },
        Snippet {
            topic: "management API credential",
            text: "edit_auth admin s3cret;\n",
            expect: Reads(|c| {
                let cred = c.edit_auth.as_ref().expect("edit_auth");
                assert_eq!((cred.login.as_str(), cred.password.as_str()), ("admin", "s3cret"));
            }),
        },
        Snippet {
            topic: "authorization: on_play with an HTTP backend",
            text: "stream example {\n  input udp://239.0.0.1:1234;\n  on_play http://mw.example/auth;\n}\n",
            expect: Reads(|c| {
                assert_eq!(
                    play_target(c, "example"),
                    AuthTarget::Http("http://mw.example/auth".into())
                );
                assert_eq!(c.streams[0].inputs, ["udp://239.0.0.1:1234"]);
            }),
        },
        Snippet {
            topic: "authorization: a Lua script backend",
            text: "stream example {\n  input fake://fake;\n  on_play /etc/flussonic/auth.lua;\n}\n",
            expect: Reads(|c| {
                assert_eq!(
                    play_target(c, "example"),
                    AuthTarget::Script("/etc/flussonic/auth.lua".into())
                );
            }),
        },
        Snippet {
            topic: "authorization: the older auth directive",
            text: "stream example {\n  input fake://fake;\n  auth http://mw.example/auth;\n}\n",
            expect: Reads(|c| {
                assert_eq!(
                    play_target(c, "example"),
                    AuthTarget::Http("http://mw.example/auth".into())
                );
            }),
        },
        Snippet {
            topic: "authorization: auth and on_play together",
            text: "stream example {\n  input fake://fake;\n  on_play http://a/auth;\n  auth http://b/auth;\n}\n",
            expect: Fails {
                line: 4,
                names: "'auth'",
            },
        },
        Snippet {
            topic: "session keys: a new session per token",
            text: "stream tv {\n  input fake://fake;\n  on_play http://mw/auth session_keys=name,token,proto,ip;\n}\n",
            expect: Reads(|c| {
                let spec = c.streams[0].on_play.as_ref().unwrap();
                assert_eq!(spec.session_keys.to_items(), ["name", "token", "proto", "ip"]);
            }),
        },
        Snippet {
            topic: "domain lock",
            text: "stream tv {\n  input fake://fake;\n  on_play http://mw/auth domains=mycompany.com,partner.com;\n}\n",
            expect: Reads(|c| {
                let spec = c.streams[0].on_play.as_ref().unwrap();
                assert_eq!(spec.domains, ["mycompany.com", "partner.com"]);
                assert!(spec.extra.is_empty());
            }),
        },
        Snippet {
            topic: "anti-theft: max sessions with soft limitation",
            text: "stream tv {\n  input fake://fake;\n  on_play http://mw/auth max_sessions=5 soft_limitation=true;\n}\n",
            expect: Reads(|c| {
                let spec = c.streams[0].on_play.as_ref().unwrap();
                assert_eq!(spec.max_sessions, Some(5));
                assert!(spec.soft_limitation);
            }),
        },
        Snippet {
            topic: "anti-theft: the longer soft-limitation delay",
            text: "soft_limitation_delay 90;\nstream tv {\n  input fake://fake;\n  on_play http://mw/auth soft_limitation=true;\n}\n",
            expect: Reads(|c| assert_eq!(c.soft_limitation_delay, Duration::from_secs(90))),
        },
        Snippet {
            topic: "geo restrictions on the auth spec",
            text: "stream tv {\n  input fake://fake;\n  on_play http://mw/auth allowed_countries=US,CA disallowed_countries=CN;\n}\n",
            expect: Reads(|c| {
                let spec = c.streams[0].on_play.as_ref().unwrap();
                assert_eq!(spec.allowed_countries, ["US", "CA"]);
                assert_eq!(spec.disallowed_countries, ["CN"]);
                assert!(spec.extra.is_empty(), "the gates are not extras: {:?}", spec.extra);
            }),
        },
        Snippet {
            topic: "a backend URL with its own query",
            text: "stream tv {\n  input fake://fake;\n  on_play http://mw/auth?site=42;\n}\n",
            expect: Reads(|c| {
                assert_eq!(play_target(c, "tv"), AuthTarget::Http("http://mw/auth?site=42".into()));
            }),
        },
        Snippet {
            topic: "authorization configurator",
            text: "auth_backend office {\n  allow ip 127.0.0.1;\n  allow token vip;\n  backend http://mw/auth;\n  allow default;\n}\nstream tv {\n  input fake://fake;\n  on_play auth://office;\n}\n",
            expect: Reads(|c| {
                assert_eq!(play_target(c, "tv"), AuthTarget::Configurator("office".into()));
                let block = &c.auth_backends[0];
                assert_eq!(block.allow_tokens, ["vip"]);
                assert!(block.allow_default);
            }),
        },
        Snippet {
            topic: "publishing with a password",
            text: "stream studio {\n  input publish://;\n  password s3cret;\n}\n",
            expect: Reads(|c| assert_eq!(c.streams[0].password.as_deref(), Some("s3cret"))),
        },
        Snippet {
            topic: "publishing authorization in a template",
            text: "template live {\n  prefix live;\n  input publish://;\n  on_publish http://mw/publish;\n}\n",
            expect: Reads(|c| {
                let t = &c.templates[0];
                assert_eq!(t.prefixes, ["live"]);
                assert_eq!(
                    t.stream.on_publish.as_ref().unwrap().target,
                    AuthTarget::Http("http://mw/publish".into())
                );
            }),
        },
        Snippet {
            topic: "VOD location with authorization",
            text: "vod vod {\n  storage /movies;\n  on_play http://mw/vod;\n}\n",
            expect: Reads(|c| {
                assert_eq!(c.vods[0].storage, "/movies");
                assert!(c.vods[0].on_play.is_some());
            }),
        },
        Snippet {
            topic: "DVR: depth in days and a size limit",
            text: "stream cam {\n  input fake://fake;\n  dvr /storage 2d 10G;\n}\n",
            expect: Reads(|c| {
                let dvr = c.streams[0].dvr.as_ref().unwrap();
                assert_eq!(dvr.root, "/storage");
                assert_eq!(dvr.depth, Duration::from_secs(2 * 86_400));
                assert_eq!(dvr.storage_limit, Some(10 << 30));
                assert_eq!(dvr.disk_usage_limit, None);
            }),
        },
        Snippet {
            topic: "DVR: depth and a disk usage percentage",
            text: "stream cam {\n  input fake://fake;\n  dvr /storage 3d 95%;\n}\n",
            expect: Reads(|c| {
                let dvr = c.streams[0].dvr.as_ref().unwrap();
                assert_eq!(dvr.depth, Duration::from_secs(3 * 86_400));
                assert_eq!(dvr.disk_usage_limit, Some(95));
            }),
        },
        Snippet {
            topic: "DVR: depth in hours",
            text: "stream cam {\n  input fake://fake;\n  dvr /storage 12h;\n}\n",
            expect: Reads(|c| {
                assert_eq!(c.streams[0].dvr.as_ref().unwrap().depth, Duration::from_secs(12 * 3600));
            }),
        },
        Snippet {
            topic: "DVR: copy to another storage",
            text: "stream cam {\n  input fake://fake;\n  dvr /storage copy=/opt/movies;\n}\n",
            expect: Fails {
                line: 3,
                names: "'copy'",
            },
        },
        Snippet {
            topic: "DVR in a cloud storage",
            text: "stream chan1 {\n  input fake://fake;\n  dvr s3://key:secret@minio.local:9001/test 10G;\n}\n",
            expect: Fails {
                line: 3,
                names: "s3://",
            },
        },
        Snippet {
            topic: "an old config naming the input url",
            text: "stream ort {\n  url udp://239.0.0.1:1234;\n}\n",
            expect: Fails {
                line: 2,
                names: "'url'",
            },
        },
        Snippet {
            topic: "transcoding",
            text: "stream tv {\n  input fake://fake;\n  transcoder vb=1000k ab=64k;\n}\n",
            expect: Fails {
                line: 3,
                names: "'transcoder'",
            },
        },
        Snippet {
            topic: "cluster key",
            text: "http 80;\ncluster_key s3cr3t;\n",
            expect: Fails {
                line: 2,
                names: "'cluster_key'",
            },
        },
    ]
}

#[test]
fn vendor_config_snippets_read_the_same_or_name_what_is_unsupported() {
    let all = snippets();
    assert!(all.len() >= 20, "issue 18 asks for 20 or more snippets");
    for Snippet { topic, text, expect } in all {
        let result = parse_config(text, "vendor.conf");
        match (expect, result) {
            (Expect::Reads(check), Ok(config)) => check(&config),
            (Expect::Reads(_), Err(e)) => panic!("{topic}: expected to parse, got {e}"),
            (Expect::Fails { .. }, Ok(_)) => panic!("{topic}: expected an error, it parsed"),
            (Expect::Fails { line, names }, Err(e)) => {
                assert_eq!(e.line, line, "{topic}: {e}");
                assert!(e.message.contains(names), "{topic}: the error should name {names}: {e}");
            }
        }
    }
}

/// What reads the same must also print back to the same configuration (the printer is how
/// the management API shows a configuration in the file's syntax).
#[test]
fn vendor_snippets_that_parse_print_back_to_themselves() {
    for Snippet { topic, text, .. } in snippets() {
        let Ok(config) = parse_config(text, "vendor.conf") else {
            continue;
        };
        let printed = config.to_string();
        let again = parse_config(&printed, "printed.conf").unwrap_or_else(|e| panic!("{topic}: {e}\n{printed}"));
        assert_eq!(again, config, "{topic}:\n{printed}");
    }
}
