//! AMF0 encode and decode alone (`src/proto/amf0/`), one message body per iteration: a typical
//! RTMP `connect` command (with the Enhanced RTMP `fourCcList`), an `onMetaData` data message
//! (an ECMA array of 15 properties, as encoders send it), and the server's `connect` `_result`
//! and `NetStream.Play.Start` `onStatus` replies. Run: `cargo bench --bench amf0`.
//!
//! Included: walking the prebuilt `Value` tree and writing it into a fresh `BytesMut` (as
//! `Conn::send_command` does, growth reallocations and all); for decode, parsing the body and
//! allocating the decoded `Value` tree (every string and property vector). Not included:
//! building the `Value` tree to encode, RTMP chunking, the session's handling of the command.
//! The relay never decodes `onMetaData` on its hot path (metadata is relayed as bytes, recognised
//! by its prefix); its decode row is what a parse of publisher metadata costs.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringcast::proto::amf0::{self, Command, Limits, Value};

fn strings(items: &[&str]) -> Value {
    Value::StrictArray(items.iter().map(|s| Value::string(*s)).collect())
}

/// What OBS sends (plus the E-RTMP codec list a current encoder adds).
fn connect_command() -> Command {
    Command {
        name: "connect".into(),
        transaction_id: 1.0,
        command_object: Value::object([
            ("app", Value::string("live")),
            ("type", Value::string("nonprivate")),
            ("flashVer", Value::string("FMLE/3.0 (compatible; FMSc/1.0)")),
            ("swfUrl", Value::string("rtmp://127.0.0.1:1935/live")),
            ("tcUrl", Value::string("rtmp://127.0.0.1:1935/live")),
            ("fpad", Value::Boolean(false)),
            ("capabilities", Value::Number(239.0)),
            ("audioCodecs", Value::Number(3575.0)),
            ("videoCodecs", Value::Number(252.0)),
            ("videoFunction", Value::Number(1.0)),
            ("objectEncoding", Value::Number(0.0)),
            ("fourCcList", strings(&["av01", "vp09", "hvc1", "avc1"])),
        ]),
        args: Vec::new(),
    }
}

/// `@setDataFrame` already unwrapped: `onMetaData` and its ECMA array, as FLV stores it.
fn on_metadata() -> Vec<Value> {
    let props: Vec<(String, Value)> = [
        ("duration", Value::Number(0.0)),
        ("fileSize", Value::Number(0.0)),
        ("width", Value::Number(1920.0)),
        ("height", Value::Number(1080.0)),
        ("videocodecid", Value::Number(7.0)),
        ("videodatarate", Value::Number(2500.0)),
        ("framerate", Value::Number(30.0)),
        ("audiocodecid", Value::Number(10.0)),
        ("audiodatarate", Value::Number(128.0)),
        ("audiosamplerate", Value::Number(48000.0)),
        ("audiosamplesize", Value::Number(16.0)),
        ("audiochannels", Value::Number(2.0)),
        ("stereo", Value::Boolean(true)),
        ("2.1", Value::Boolean(false)),
        (
            "encoder",
            Value::string("obs-output module (libobs version 30.2.3)"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    vec![Value::string("onMetaData"), Value::EcmaArray(props)]
}

/// The server's answer to `connect` (`src/proto/rtmp/session/server.rs`), echoing the codec list.
fn connect_result() -> Command {
    Command {
        name: "_result".into(),
        transaction_id: 1.0,
        command_object: Value::object([
            ("fmsVer", Value::string("FMS/3,0,1,123")),
            ("capabilities", Value::Number(31.0)),
            ("fourCcList", strings(&["av01", "vp09", "hvc1", "avc1"])),
        ]),
        args: vec![Value::object([
            ("level", Value::string("status")),
            ("code", Value::string("NetConnection.Connect.Success")),
            ("description", Value::string("Connection succeeded.")),
            ("objectEncoding", Value::Number(0.0)),
        ])],
    }
}

/// The `onStatus` every player receives when it starts playing.
fn play_start_status() -> Command {
    Command {
        name: "onStatus".into(),
        transaction_id: 0.0,
        command_object: Value::Null,
        args: vec![Value::object([
            ("level", Value::string("status")),
            ("code", Value::string("NetStream.Play.Start")),
            ("description", Value::string("Started playing live/bench.")),
        ])],
    }
}

fn commands() -> [(&'static str, Command); 3] {
    [
        ("connect", connect_command()),
        ("connect_result", connect_result()),
        ("on_status_play_start", play_start_status()),
    ]
}

fn encoded(cmd: &Command) -> BytesMut {
    let mut out = BytesMut::new();
    cmd.encode(&mut out);
    out
}

fn encoded_values(values: &[Value]) -> BytesMut {
    let mut out = BytesMut::new();
    for v in values {
        amf0::encode(v, &mut out);
    }
    out
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("amf0_encode");
    for (name, cmd) in commands() {
        group.throughput(Throughput::Bytes(encoded(&cmd).len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut out = BytesMut::new();
                black_box(&cmd).encode(&mut out);
                out
            })
        });
    }
    let metadata = on_metadata();
    group.throughput(Throughput::Bytes(encoded_values(&metadata).len() as u64));
    group.bench_function("on_metadata_15", |b| {
        b.iter(|| {
            let mut out = BytesMut::new();
            for v in black_box(&metadata) {
                amf0::encode(v, &mut out);
            }
            out
        })
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("amf0_decode");
    for (name, cmd) in commands() {
        let wire = encoded(&cmd);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        assert_eq!(
            Command::decode(&wire, &limits),
            Ok(cmd),
            "{name} round trip"
        );
        group.bench_function(name, |b| {
            b.iter(|| Command::decode(black_box(&wire), &limits))
        });
    }
    let metadata = on_metadata();
    let wire = encoded_values(&metadata);
    group.throughput(Throughput::Bytes(wire.len() as u64));
    assert_eq!(
        amf0::decode_all(&wire, &limits),
        Ok(metadata),
        "metadata round trip"
    );
    group.bench_function("on_metadata_15", |b| {
        b.iter(|| amf0::decode_all(black_box(&wire), &limits))
    });
    group.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
