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

fn authorized(req: &Request, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let bearer = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str() == format!("Bearer {token}"))
        .unwrap_or(false);
    let query = req.url().split_once('?').is_some_and(|(_, q)| q.split('&').any(|kv| kv == format!("token={token}")));
    bearer || query
}

fn handle(req: Request, token: Option<&str>, shared: &Mutex<Shared>) -> std::io::Result<()> {
    let ct = |v: &str| Header::from_bytes("Content-Type", v).unwrap();
    if *req.method() != Method::Get {
        return req.respond(Response::from_string("read-only: GET only\n").with_status_code(405));
    }
    if !authorized(&req, token) {
        return req.respond(Response::from_string("missing or wrong bearer token\n").with_status_code(401));
    }
    let path = req.url().split('?').next().unwrap_or("/").to_string();
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
