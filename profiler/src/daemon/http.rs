//! The daemon's read-only HTTP face: /metrics (Prometheus), /api/report (JSON), / (HTML page).
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    thread::JoinHandle,
};

use anyhow::{anyhow, Result};
use tiny_http::{Header, Method, Request, Response, Server};

use super::{metrics, Shared};

const PAGE: &str = include_str!("page.html");

pub struct Running {
    pub local_addr: SocketAddr,
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    pub fn stop(mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn start(addr: SocketAddr, token: Option<String>, shared: Arc<Mutex<Shared>>) -> Result<Running> {
    let server = Arc::new(Server::http(addr).map_err(|e| anyhow!("cannot listen on {addr}: {e}"))?);
    let local_addr = server.server_addr().to_ip().ok_or_else(|| anyhow!("not an IP listener"))?;
    let s = Arc::clone(&server);
    let thread = std::thread::spawn(move || {
        for req in s.incoming_requests() {
            let _ = handle(req, token.as_deref(), &shared);
        }
    });
    Ok(Running { local_addr, server, thread: Some(thread) })
}

/// Whether the request carries the bearer token (in the `Authorization` header only: a token in
/// the URL would end up in shell histories, proxy logs and the browser's history).
fn authorized(req: &Request, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let given = req.headers().iter().find(|h| h.field.equiv("Authorization")).map(|h| h.value.as_str());
    given.and_then(|v| v.strip_prefix("Bearer ")).is_some_and(|g| ct_eq(g.as_bytes(), token.as_bytes()))
}

/// Compares in time that depends on the lengths only, not on where the first difference is.
fn ct_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, &e) in expected.iter().enumerate() {
        diff |= e ^ given.get(i).copied().unwrap_or(!e);
    }
    std::hint::black_box(diff) == 0
}

fn handle(req: Request, token: Option<&str>, shared: &Mutex<Shared>) -> std::io::Result<()> {
    let ct = |v: &str| Header::from_bytes("Content-Type", v).unwrap();
    if *req.method() != Method::Get {
        return req.respond(Response::from_string("read-only: GET only\n").with_status_code(405));
    }
    let path = req.url().split('?').next().unwrap_or("/").to_string();
    // the page holds no data: it asks for the token and sends it with each request for data
    if path != "/" && !authorized(&req, token) {
        return req.respond(Response::from_string("missing or wrong bearer token (Authorization: Bearer ...)\n").with_status_code(401));
    }
    match path.as_str() {
        "/metrics" => {
            let body = {
                let sh = shared.lock().unwrap();
                metrics::render(&sh.reports, &sh.health)
            };
            req.respond(Response::from_string(body).with_header(ct("text/plain; version=0.0.4; charset=utf-8")))
        }
        "/api/report" => {
            let body = {
                let sh = shared.lock().unwrap();
                serde_json::to_string(&sh.reports).unwrap_or_else(|_| "[]".into())
            };
            req.respond(Response::from_string(body).with_header(ct("application/json")))
        }
        "/" => req.respond(Response::from_string(PAGE).with_header(ct("text/html; charset=utf-8"))),
        _ => req.respond(Response::from_string("not found\n").with_status_code(404)),
    }
}

#[cfg(test)]
mod tests {
    use super::ct_eq;

    #[test]
    fn token_comparison() {
        assert!(ct_eq(b"s3cret", b"s3cret"));
        assert!(!ct_eq(b"s3cres", b"s3cret"));
        assert!(!ct_eq(b"s3cre", b"s3cret"));
        assert!(!ct_eq(b"s3crett", b"s3cret"));
        assert!(!ct_eq(b"", b"s3cret"));
        assert!(ct_eq(b"", b""));
    }
}
