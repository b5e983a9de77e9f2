//! The HTTP listener's limits, at the socket: a client that sends half a request head, or half a
//! body, and stalls is disconnected within the configured timeout; connections past the bound
//! are not served (and a fresh client is answered once the idle ones time out); and a drain ends
//! by its deadline even while a client holds a half-sent request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::TestServer;
use tidegate_server::HttpLimits;

fn addr(ts: &TestServer) -> String {
    ts.url.trim_start_matches("http://").to_owned()
}

fn limits(header: u64, body: u64, max_connections: usize, drain: u64) -> HttpLimits {
    HttpLimits {
        header_read_timeout: Duration::from_secs(header),
        body_read_timeout: Duration::from_secs(body),
        max_connections,
        drain_deadline: Duration::from_secs(drain),
    }
}

/// Reads until the server closes the connection; what it sent, or `None` when it was still open
/// after `wait` (the read timed out).
fn read_until_closed(s: &mut TcpStream, wait: Duration) -> Option<String> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            // Reset by the server: closed too.
            Err(_) => return Some(String::from_utf8_lossy(&got).into_owned()),
        }
    }
}

#[test]
fn a_client_that_stalls_in_the_request_head_is_disconnected_after_the_header_timeout() {
    let ts = TestServer::start_http(limits(1, 30, 64, 10));
    let mut s = TcpStream::connect(addr(&ts)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let t = Instant::now();
    let got = read_until_closed(&mut s, Duration::from_secs(8));
    let took = t.elapsed();
    assert!(
        got.is_some(),
        "the connection was still open after {took:?}"
    );
    assert!(took < Duration::from_secs(4), "closed only after {took:?}");
    assert!(
        took > Duration::from_millis(500),
        "closed before the timeout: {took:?}"
    );
}

#[test]
fn a_client_that_stalls_in_the_request_body_gets_408_and_is_disconnected() {
    let ts = TestServer::start_http(limits(30, 1, 64, 10));
    let mut s = TcpStream::connect(addr(&ts)).unwrap();
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        ts.admin
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(b"{\"manifes").unwrap();
    let t = Instant::now();
    let got = read_until_closed(&mut s, Duration::from_secs(10));
    let took = t.elapsed();
    let got = got.unwrap_or_else(|| panic!("the connection was still open after {took:?}"));
    assert!(took < Duration::from_secs(5), "closed only after {took:?}");
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("request_timeout"), "{got}");
}

#[test]
fn connections_past_the_bound_are_not_served_and_a_fresh_client_is_answered_once_idle_ones_time_out(
) {
    const BOUND: usize = 8;
    let ts = TestServer::start_http(limits(1, 30, BOUND, 10));
    let gauge = ts
        .server
        .as_ref()
        .unwrap()
        .state
        .shared
        .metrics
        .http_connections
        .clone();
    let idle: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(addr(&ts)).unwrap())
        .collect();
    let mut most = 0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(500) {
        most = most.max(gauge.get());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        most, BOUND as i64,
        "with 64 idle clients the server serves exactly its bound"
    );
    // A fresh client waits behind the idle ones, which the header timeout closes a bound's
    // worth at a time; it is answered, and the bound holds all along.
    let mut fresh = TcpStream::connect(addr(&ts)).unwrap();
    fresh
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let got = read_until_closed(&mut fresh, Duration::from_secs(30));
        let _ = tx.send(got);
    });
    let t = Instant::now();
    let got = loop {
        most = most.max(gauge.get());
        if let Ok(got) = rx.try_recv() {
            break got;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the fresh client was not answered"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = t.elapsed();
    let got = got.unwrap_or_else(|| panic!("no answer after {took:?}"));
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(
        most <= BOUND as i64,
        "{most} connections were served at once; the bound is {BOUND}"
    );
    drop(idle);
}

#[test]
fn a_drain_ends_by_its_deadline_while_a_client_holds_a_half_sent_request() {
    let mut ts = TestServer::start_http(limits(60, 60, 64, 1));
    let mut s = TcpStream::connect(addr(&ts)).unwrap();
    s.write_all(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Le")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let server = ts.server.take().unwrap();
    let t = Instant::now();
    let done = ts
        .rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(8), server.shutdown()).await });
    let took = t.elapsed();
    assert!(done.is_ok(), "the drain did not end within 8 s");
    assert!(took < Duration::from_secs(5), "the drain took {took:?}");
    // The held connection was closed.
    assert!(
        read_until_closed(&mut s, Duration::from_secs(2)).is_some(),
        "the held connection is still open"
    );
}

/// Sends one request on `s` and reads its response head and body (by `Content-Length`).
fn exchange(s: &mut TcpStream, request: &[u8]) -> String {
    s.write_all(request).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before a whole response: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
    }
}

/// A request refused on its head, before its body was read, closes its connection and says so:
/// a client reusing it would write its next request into a connection the server dropped. A
/// request whose body was read keeps the connection open.
#[test]
fn a_request_answered_before_its_body_was_read_closes_the_connection_and_says_so() {
    let ts = TestServer::start_http(limits(30, 30, 64, 10));
    let mut s = TcpStream::connect(addr(&ts)).unwrap();
    // Read whole (a manifest that does not parse): the connection stays.
    let body = b"{\"manifest\": \"not: [yaml\"}";
    let read = exchange(
        &mut s,
        format!(
            "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            ts.admin,
            body.len(),
            String::from_utf8_lossy(body)
        )
        .as_bytes(),
    );
    assert!(read.starts_with("HTTP/1.1 400"), "{read}");
    assert!(
        !read.to_ascii_lowercase().contains("connection: close"),
        "a request read whole closed its connection: {read}"
    );
    // Refused on its head (no credentials), its body unread: the server closes the connection
    // and says so.
    let refused = exchange(
        &mut s,
        b"POST /v1/artifacts?kind=model&name=m HTTP/1.1\r\nHost: x\r\n\
          Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\nweights",
    );
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("connection: close"),
        "a request answered before its body was read kept its connection: {refused}"
    );
    assert!(
        read_until_closed(&mut s, Duration::from_secs(5)).is_some(),
        "the connection stayed open"
    );
}
