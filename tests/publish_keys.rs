//! Proves publish-key restriction and key hygiene over real RTMP: with `[[rtmp.apps]]` listing
//! the keys of `live`, a wrong key is refused with `NetStream.Publish.Unauthorized` and closed,
//! the right key gets `NetStream.Publish.Start`, an unlisted app is refused under
//! `default_policy = "deny"`, and no key ever appears in the server's log (it shows `ab****`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::rtmp_raw::{self, RawRtmp};
use common::server::Server;

const KEY: &str = "s3cret-publish-key";

fn publish_status(server: &Server, app: &str, key: &str) -> (RawRtmp, String) {
    let mut client = RawRtmp::connected(server.port, app);
    let msid = client.create_stream();
    client.publish(msid, key);
    let status = client.expect_status(Duration::from_secs(10));
    (client, status)
}

#[test]
fn only_configured_keys_publish_and_keys_never_reach_the_log() {
    let config = format!(
        "[rtmp]\ndefault_policy = \"deny\"\n\n[[rtmp.apps]]\nname = \"live\"\npublish_keys = [\"{KEY}\", \"another-key\"]\n"
    );
    let mut server = Server::start_with(1, Some(&config));

    let (mut wrong, status) = publish_status(&server, "live", "not-the-key");
    assert_eq!(status, "NetStream.Publish.Unauthorized");
    rtmp_raw::assert_closed_by_server(&mut wrong.stream, Duration::from_secs(5), "wrong key");

    let (_unlisted, status) = publish_status(&server, "other", KEY);
    assert_eq!(
        status, "NetStream.Publish.Unauthorized",
        "unlisted app under deny"
    );

    let (_right, status) = publish_status(&server, "live", KEY);
    assert_eq!(status, "NetStream.Publish.Start");

    server.assert_alive();
    let log = server.stderr();
    assert!(log.contains("live/s3****"), "redacted name logged:\n{log}");
    for secret in [KEY, "not-the-key", "another-key"] {
        assert!(
            !log.contains(secret),
            "{secret} leaked into the log:\n{log}"
        );
    }
}
