//! Retries against a deliberately flaky registry: a minimal HTTP server
//! that serves one image but drops the first manifest request, answers the
//! second with 503 and the first config request with 429.

#![allow(clippy::unwrap_used)] // a failed setup step should just fail the test

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use common::{tiny_image, wasmpod};
use wasmpod_image::Image;

/// Serves `image` as `app:1`; `faults[path]` lists what to do on the
/// first requests to `path` ("drop", or a status code), then it behaves.
fn serve(image: Image, faults: HashMap<String, Vec<&'static str>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let faults = Arc::new(Mutex::new(faults));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            handle(stream, &image, &faults);
        }
    });
    addr
}

fn handle(mut stream: TcpStream, image: &Image, faults: &Mutex<HashMap<String, Vec<&str>>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
    }
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let fault = faults
        .lock()
        .unwrap()
        .get_mut(path)
        .and_then(|list| (!list.is_empty()).then(|| list.remove(0)));
    let (status, content_type, body): (&str, &str, Vec<u8>) = match fault {
        Some("drop") => return, // connection closed without an answer
        Some(code) => (code, "text/plain", b"try later".to_vec()),
        None if path == "/v2/" => ("200 OK", "application/json", b"{}".to_vec()),
        None if path == "/v2/app/manifests/1" => (
            "200 OK",
            image.manifest.media_type.as_str(),
            image.manifest.bytes.clone(),
        ),
        None => match image
            .blobs()
            .find(|b| path == format!("/v2/app/blobs/{}", b.digest))
        {
            Some(blob) => ("200 OK", "application/octet-stream", blob.bytes.clone()),
            None => (
                "404 Not Found",
                "application/json",
                br#"{"errors":[]}"#.to_vec(),
            ),
        },
    };
    let digest = if path.contains("/manifests/") {
        format!("Docker-Content-Digest: {}\r\n", image.manifest.digest)
    } else {
        String::new()
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {digest}Connection: close\r\n\r\n",
        body.len(),
    );
    let _ = stream.write_all(head.as_bytes());
    if method != "HEAD" {
        let _ = stream.write_all(&body);
    }
}

/// A dropped connection, a 503 and a 429 are each retried with a warning,
/// and the pull still produces the image.
#[test]
fn transient_failures_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let image = tiny_image(dir.path());
    let config_path = format!("/v2/app/blobs/{}", image.config.digest);
    let faults = HashMap::from([
        (
            "/v2/app/manifests/1".to_owned(),
            vec!["drop", "503 Service Unavailable"],
        ),
        (config_path, vec!["429 Too Many Requests"]),
    ]);
    let addr = serve(image.clone(), faults);
    let reference = format!("{addr}/app:1");
    let run = wasmpod(
        dir.path(),
        &["image", "pull", &reference, "-o", "out.tar", "--insecure"],
        "",
        &[],
    )
    .expect_ok();
    assert_eq!(
        run.stderr.matches("warning: retry").count(),
        3,
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains(&image.manifest.digest),
        "{}",
        run.stdout
    );
}

/// When the failures outlast --retries, the error says it gave up.
#[test]
fn retries_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let image = tiny_image(dir.path());
    let faults = HashMap::from([(
        "/v2/app/manifests/1".to_owned(),
        vec!["502 Bad Gateway", "502 Bad Gateway", "502 Bad Gateway"],
    )]);
    let addr = serve(image, faults);
    let reference = format!("{addr}/app:1");
    let run = wasmpod(
        dir.path(),
        &[
            "image",
            "pull",
            &reference,
            "-o",
            "out.tar",
            "--insecure",
            "--retries",
            "1",
        ],
        "",
        &[],
    );
    assert!(!run.ok);
    assert!(
        run.stderr.contains("gave up after 1 retries"),
        "{}",
        run.stderr
    );
    assert!(!dir.path().join("out.tar").exists());
}
