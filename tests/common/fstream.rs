//! fstream helpers shared by the tests that broadcast or watch over fstream: the `ringcast
//! fstream` client and an FLV broadcast piped into it from ffmpeg.

use std::path::Path;
use std::process::{Command, Stdio};

use super::fixtures::Fixture;
use super::process::ChildGuard;
use super::server::Server;

/// `ringcast fstream ADDR PAYLOAD` against `server`'s fstream listener.
pub fn client(server: &Server, payload: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringcast"));
    cmd.arg("fstream").arg(server.fstream_addr()).arg(payload);
    cmd
}

/// `ffmpeg -re -i FIXTURE -c copy -f flv - | ringcast fstream ADDR PAYLOAD`: the source and the
/// broadcasting client, both killed on drop.
pub fn broadcast_flv(
    server: &Server,
    fixture: Fixture,
    payload: &str,
    dir: &Path,
    name: &str,
) -> (ChildGuard, ChildGuard) {
    let mut cmd = Command::new(fixture.ffmpeg());
    cmd.args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
        .arg(fixture.path())
        .args(["-map", "0", "-c", "copy", "-f", "flv", "-"]);
    let mut source = ChildGuard::spawn_with(
        &format!("{name}-ffmpeg"),
        &mut cmd,
        Stdio::null(),
        Stdio::piped(),
        dir.join(format!("{name}-ffmpeg.stderr")),
    );
    let client = ChildGuard::spawn_with(
        &format!("{name}-client"),
        &mut client(server, payload),
        Stdio::from(source.take_stdout()),
        Stdio::null(),
        dir.join(format!("{name}-client.stderr")),
    );
    (source, client)
}
