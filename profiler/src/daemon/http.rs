//! The daemon's read-only HTTP face: /metrics (Prometheus), /api/report (JSON), / (HTML page).
//!
//! It runs on its own thread and its own tokio runtime, apart from sampling: each connection is a
//! task, so a client that never finishes its request holds only its own connection, and that one is
//! closed after [`HEADER_TIMEOUT`] (the head) or [`CONNECTION_TIMEOUT`] (the whole connection).
use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, Result};
use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    sync::{oneshot, Semaphore},
};

use super::{metrics, Shared};

const PAGE: &str = include_str!("page.html");
/// A request's head must arrive whole within this time, or the connection is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// No connection lives longer than this (keep-alive included), whatever the client does.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 512;
/// The largest request head read (the smallest hyper allows is 8 KiB); a larger one gets 431.
const MAX_HEAD: usize = 64 * 1024;

pub struct Running {
    pub local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    pub fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn start(addr: SocketAddr, token: Option<String>, shared: Arc<Mutex<Shared>>) -> Result<Running> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (stop, stopped) = oneshot::channel();
    let token: Arc<Option<String>> = Arc::new(token);
    let thread = std::thread::Builder::new().name("leakprof-http".into()).spawn(move || {
        rt.block_on(async move {
            let Ok(listener) = TcpListener::from_std(listener) else { return };
            serve(listener, token, shared, stopped).await;
        })
    })?;
    Ok(Running { local_addr, stop: Some(stop), thread: Some(thread) })
}

async fn serve(listener: TcpListener, token: Arc<Option<String>>, shared: Arc<Mutex<Shared>>, mut stopped: oneshot::Receiver<()>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // out of file descriptors and the like: wait a little rather than spin
                Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
            _ = &mut stopped => return,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // a fresh socket's send buffer takes this whole; never wait on a client here
            let _ = stream.try_write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            continue;
        };
        let (token, shared) = (Arc::clone(&token), Arc::clone(&shared));
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let resp = respond(&req, (*token).as_deref(), &shared);
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            drop(slot);
        });
    }
}

/// Whether the request carries the bearer token (in the `Authorization` header only: a token in
/// the URL would end up in shell histories, proxy logs and the browser's history).
fn authorized(req: &Request<Incoming>, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let given = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
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

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn respond(req: &Request<Incoming>, token: Option<&str>, shared: &Mutex<Shared>) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "read-only: GET only\n");
    }
    let path = req.uri().path();
    // the page holds no data: it asks for the token and sends it with each request for data
    if path != "/" && !authorized(req, token) {
        return text(StatusCode::UNAUTHORIZED, PLAIN, "missing or wrong bearer token (Authorization: Bearer ...)\n");
    }
    match path {
        "/metrics" => {
            let body = {
                let sh = shared.lock().unwrap();
                metrics::render(&sh.reports, &sh.health)
            };
            text(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", body)
        }
        "/api/report" => {
            let body = {
                let sh = shared.lock().unwrap();
                serde_json::to_string(&sh.reports).unwrap_or_else(|_| "[]".into())
            };
            text(StatusCode::OK, "application/json", body)
        }
        "/" => text(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        _ => text(StatusCode::NOT_FOUND, PLAIN, "not found\n"),
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
