//! `wasmpod image pull` and `push` against a registry that answers with hostile content: a
//! blob or manifest that does not match its digest, a declared size far beyond sane (in the
//! descriptor or in Content-Length, with a body that does not end), a redirect loop. Each is
//! refused with an error that says what was wrong, and nothing is left in the output's
//! directory.
//!
//! The registry is a few lines of HTTP/1.1 over a `TcpListener`: each test says, per request
//! path, what to answer, since the point is answers no real registry gives.

#![allow(clippy::unwrap_used)] // a failed setup step should just fail the test

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{have, tiny_image, wasmpod};
use sha2::{Digest, Sha256};
use wasmpod_image::Image;

/// What the fake registry sends for one request.
enum Answer {
    /// Status line, extra headers, body (Content-Length is the body's unless a header sets it).
    Full(&'static str, Vec<String>, Vec<u8>),
    /// 200 with the given Content-Length (if any), then zeros until the client goes away or
    /// `MAX_STREAM` bytes are sent.
    Endless(Option<u64>),
}

/// The most an endless body sends, so that a client which reads it all ends the test (with
/// the old behaviour: memory grows by this much) instead of running for good.
const MAX_STREAM: u64 = 256 << 20;

/// Serves `answer(method, path)` on a free port; returns the address and the count of body
/// bytes the endless answers got out.
fn serve(
    answer: impl Fn(&str, &str) -> Answer + Send + Sync + 'static,
) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let sent = Arc::new(AtomicU64::new(0));
    let (answer, counter) = (Arc::new(answer), sent.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (answer, counter) = (answer.clone(), counter.clone());
            std::thread::spawn(move || respond(stream, &*answer, &counter));
        }
    });
    (addr, sent)
}

fn respond(mut stream: TcpStream, answer: &dyn Fn(&str, &str) -> Answer, sent: &AtomicU64) {
    let mut lines = BufReader::new(stream.try_clone().unwrap()).lines();
    let request = lines.next().and_then(Result::ok).unwrap_or_default();
    // Headers up to the blank line; request bodies (push uploads) are not needed here.
    for line in lines.by_ref() {
        if line.map_or(true, |l| l.is_empty()) {
            break;
        }
    }
    let mut words = request.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    match answer(method, path) {
        Answer::Full(status, headers, body) => {
            let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
            if !headers.iter().any(|h| h.starts_with("Content-Length")) {
                head += &format!("Content-Length: {}\r\n", body.len());
            }
            for header in headers {
                head += &format!("{header}\r\n");
            }
            let _ = stream.write_all(format!("{head}\r\n").as_bytes());
            if method != "HEAD" {
                let _ = stream.write_all(&body);
            }
        }
        Answer::Endless(length) => {
            let length = length.map_or(String::new(), |n| format!("Content-Length: {n}\r\n"));
            let head = format!("HTTP/1.1 200 OK\r\nConnection: close\r\n{length}\r\n");
            let _ = stream.write_all(head.as_bytes());
            let chunk = vec![0u8; 64 << 10];
            while sent.load(Ordering::Relaxed) < MAX_STREAM && stream.write_all(&chunk).is_ok() {
                sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// The manifest as served, with its digest header.
fn manifest(bytes: &[u8]) -> Answer {
    Answer::Full(
        "200 OK",
        vec![
            "Content-Type: application/vnd.oci.image.manifest.v1+json".into(),
            format!("Docker-Content-Digest: {}", digest(bytes)),
        ],
        bytes.to_vec(),
    )
}

/// The image's blobs and `manifest` (its own unless a test changed it) under `app`; `None`
/// for any other path.
fn honest(image: &Image, manifest_bytes: &[u8], path: &str) -> Option<Answer> {
    if path == "/v2/" {
        return Some(Answer::Full("200 OK", vec![], b"{}".to_vec()));
    }
    if path.starts_with("/v2/app/manifests/") {
        return Some(manifest(manifest_bytes));
    }
    image
        .blobs()
        .find(|b| path == format!("/v2/app/blobs/{}", b.digest))
        .map(|b| Answer::Full("200 OK", vec![], b.bytes.clone()))
}

/// Serves `image` honestly but for its first layer, which gets `layer()`.
fn serve_layer(image: &Image, layer: fn(&[u8]) -> Answer) -> (String, Arc<AtomicU64>) {
    let image = image.clone();
    let path_of_layer = format!("/v2/app/blobs/{}", image.layers[0].digest);
    serve(move |_, path| {
        if path == path_of_layer {
            return layer(&image.layers[0].bytes);
        }
        honest(&image, &image.manifest.bytes, path).unwrap_or_else(not_found)
    })
}

fn not_found() -> Answer {
    Answer::Full("404 Not Found", vec![], br#"{"errors":[]}"#.to_vec())
}

/// Pulls `reference` into `dir/out.tar` with one retry; returns stderr after checking that
/// the pull failed and that `dir` holds nothing new (no output, no temporary file).
fn failed_pull(dir: &Path, reference: &str) -> String {
    let names = || -> BTreeSet<_> {
        let entries = std::fs::read_dir(dir).unwrap().flatten();
        entries.map(|e| e.file_name()).collect()
    };
    let before = names();
    let args = ["image", "pull", reference, "-o", "out.tar", "--insecure"];
    let run = wasmpod(dir, &[&args[..], &["--retries", "1"]].concat(), "", &[]);
    assert!(!run.ok, "pull of {reference} succeeded: {}", run.stdout);
    assert_eq!(
        before,
        names(),
        "the failed pull left files: {}",
        run.stderr
    );
    run.stderr
}

/// [`failed_pull`], and checks that the endless body behind it was not read: far less got
/// out than it would send.
fn failed_pull_unread(dir: &Path, reference: &str, sent: &AtomicU64) -> String {
    let stderr = failed_pull(dir, reference);
    let got_out = sent.load(Ordering::Relaxed);
    assert!(
        got_out < MAX_STREAM / 4,
        "{got_out} bytes were read: {stderr}"
    );
    stderr
}

/// A layer whose bytes do not hash to its digest, and a manifest whose digest header (or the
/// digest asked for) does not match its bytes, are refused by digest.
#[test]
fn digest_mismatches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let image = tiny_image(dir.path());
    let (addr, _) = serve_layer(&image, |bytes| {
        let mut bytes = bytes.to_vec();
        bytes[10] ^= 0xff;
        Answer::Full("200 OK", vec![], bytes)
    });
    let stderr = failed_pull(dir.path(), &format!("{addr}/app:1"));
    assert!(stderr.contains(&image.layers[0].digest), "{stderr}");
    assert!(stderr.contains("digest"), "{stderr}");

    let other = format!("sha256:{}", "0".repeat(64));
    let (addr, _) = serve({
        let image = image.clone();
        let other = other.clone();
        move |_, path| {
            if path.starts_with("/v2/app/manifests/") {
                return Answer::Full(
                    "200 OK",
                    vec![format!("Docker-Content-Digest: {other}")],
                    image.manifest.bytes.clone(),
                );
            }
            honest(&image, &image.manifest.bytes, path).unwrap_or_else(not_found)
        }
    });
    let stderr = failed_pull(dir.path(), &format!("{addr}/app:1"));
    assert!(
        stderr.contains(&other) && stderr.contains("digest"),
        "{stderr}"
    );
    // Asked for by digest, another manifest is no answer.
    let stderr = failed_pull(dir.path(), &format!("{addr}/app@{other}"));
    assert!(
        stderr.contains(&other) && stderr.contains("digest"),
        "{stderr}"
    );
}

/// A descriptor that declares an absurd size is refused before anything is fetched, and a
/// blob whose Content-Length is far above its descriptor's size is refused at the headers:
/// the endless body behind it is not read (far less than it sends arrives).
#[test]
fn absurd_declared_sizes_are_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let image = tiny_image(dir.path());
    let mut doc: serde_json::Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
    doc["layers"][0]["size"] = serde_json::json!(1u64 << 60);
    let huge = serde_json::to_vec(&doc).unwrap();
    let (addr, sent) = serve({
        let image = image.clone();
        move |_, path| {
            if path.contains("/blobs/") && path.ends_with(&image.layers[0].digest) {
                return Answer::Endless(None);
            }
            honest(&image, &huge, path).unwrap_or_else(not_found)
        }
    });
    let stderr = failed_pull(dir.path(), &format!("{addr}/app:1"));
    let says = format!("{} declares {} bytes", image.layers[0].digest, 1u64 << 60);
    assert!(stderr.contains(&says), "{stderr}");
    assert_eq!(sent.load(Ordering::Relaxed), 0, "the huge blob was fetched");

    let (addr, sent) = serve_layer(&image, |_| Answer::Endless(Some(1 << 40)));
    let stderr = failed_pull_unread(dir.path(), &format!("{addr}/app:1"), &sent);
    assert!(stderr.contains("Content-Length 1099511627776"), "{stderr}");
}

/// A body longer than its descriptor says (no Content-Length, so only counting shows it), and
/// a manifest that does not end, are cut off at their bound and refused.
#[test]
fn bodies_beyond_their_bound_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let image = tiny_image(dir.path());
    let (addr, sent) = serve_layer(&image, |_| Answer::Endless(None));
    let stderr = failed_pull_unread(dir.path(), &format!("{addr}/app:1"), &sent);
    let says = format!(
        "{} sent more than the {} bytes",
        image.layers[0].digest,
        image.layers[0].bytes.len()
    );
    assert!(stderr.contains(&says), "{stderr}");

    let (addr, sent) = serve(move |_, path| match path {
        "/v2/" => Answer::Full("200 OK", vec![], b"{}".to_vec()),
        _ if path.contains("/manifests/") => Answer::Endless(None),
        _ => not_found(),
    });
    let stderr = failed_pull_unread(dir.path(), &format!("{addr}/app:1"), &sent);
    assert!(
        stderr.contains("manifest") && stderr.contains("more than"),
        "{stderr}"
    );
}

/// A redirect loop on a blob or the manifest ends with an error that says so, on pull and on
/// push.
#[test]
fn redirect_loops_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let image = tiny_image(dir.path());
    let config = image.config.digest.clone();
    let (addr, _) = serve({
        let image = image.clone();
        move |_, path| {
            let loops = path == format!("/v2/app/blobs/{config}")
                || path.starts_with("/v2/app/blobs/uploads");
            if loops || path.starts_with("/v2/loop/manifests/") {
                return Answer::Full(
                    "307 Temporary Redirect",
                    vec![format!("Location: {path}")],
                    vec![],
                );
            }
            if path.starts_with("/v2/app/blobs/") && !path.contains("uploads") {
                return not_found();
            }
            honest(&image, &image.manifest.bytes, path).unwrap_or_else(not_found)
        }
    });
    for reference in [format!("{addr}/app:1"), format!("{addr}/loop:1")] {
        let stderr = failed_pull(dir.path(), &reference);
        assert!(stderr.contains("redirect"), "{reference}: {stderr}");
    }

    let tar = dir.path().join("image.tar");
    wasmpod_image::output::write(&image, wasmpod_image::Format::OciArchive, &tar, 0).unwrap();
    let run = wasmpod(
        dir.path(),
        &[
            "image",
            "push",
            &format!("{addr}/app:1"),
            "--from",
            "image.tar",
            "--insecure",
            "--retries",
            "0",
        ],
        "",
        &[],
    );
    assert!(!run.ok);
    assert!(run.stderr.contains("redirect"), "{}", run.stderr);
}

/// A "gzip bomb": a layer of a few hundred KiB that decompresses to `BOMB` bytes, pulled as a
/// docker-archive (whose layers are uncompressed tars). The pull succeeds and its peak memory
/// stays far below the decompressed size: the layer is decompressed as a stream, twice (for
/// its digest and size, then into the archive), never held whole.
#[test]
fn a_gzip_bomb_layer_is_decompressed_as_a_stream() {
    const BOMB: u64 = 384 << 20;
    if !have(
        "time",
        "GNU time measures the pull's peak memory: apt-get install time",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tiny = tiny_image(dir.path());
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::best(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_size(BOMB);
    header.set_mode(0o644);
    let zeros = std::io::Read::take(std::io::repeat(0), BOMB);
    tar.append_data(&mut header, "zeros", zeros).unwrap();
    let layer = tar.into_inner().unwrap().finish().unwrap();
    let layer = wasmpod_image::image::Blob::new(wasmpod_image::image::MEDIA_LAYER_GZIP, layer);
    let bomb = Image::assemble(
        tiny.config.clone(),
        vec![(layer, None)],
        &Default::default(),
    );
    let bomb = bomb.unwrap();
    let (addr, _) = serve({
        let bomb = bomb.clone();
        move |_, path| honest(&bomb, &bomb.manifest.bytes, path).unwrap_or_else(not_found)
    });
    let reference = format!("{addr}/app:1");
    let run = std::process::Command::new("time")
        .args(["-f", "maxrss-kib=%M", env!("CARGO_BIN_EXE_wasmpod")])
        .args(["image", "pull", &reference, "-o", "out.tar", "--insecure"])
        .args(["--format", "docker-archive"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let written = std::fs::metadata(dir.path().join("out.tar")).unwrap().len();
    assert!(written > BOMB, "the archive holds {written} bytes");
    let peak_kib: u64 = stderr
        .rsplit("maxrss-kib=")
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no maxrss in {stderr}"));
    assert!(peak_kib * 1024 < BOMB / 2, "peak {peak_kib} KiB: {stderr}");
}
