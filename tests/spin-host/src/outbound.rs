//! `allowed_outbound_hosts`: every outgoing request is checked against the
//! component's patterns before it is sent; a refused one fails in the guest
//! with `error-code::http-request-denied`, as in Spin. Plain-HTTP requests
//! then go out on a `TCP_NODELAY` connection (`send_plain`).

use std::future::Future;
use std::sync::Arc;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::manifest::HostPattern;

pub struct Policy {
    allowed: Arc<Vec<HostPattern>>,
}

impl Policy {
    pub fn new(allowed: Arc<Vec<HostPattern>>) -> Policy {
        Policy { allowed }
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture = Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

impl WasiHttpHooks for Policy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> SendFuture {
        drop(fut);
        let uri = request.uri();
        if !self.allowed.iter().any(|p| p.allows(uri)) {
            // Scheme, host and port only: the path and query stay out of logs.
            eprintln!(
                "spin-host: refused outbound request to {}://{}: not in allowed_outbound_hosts",
                uri.scheme_str().unwrap_or("?"),
                uri.authority().map_or("?", |a| a.as_str())
            );
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        Box::new(async move {
            if request.uri().scheme() == Some(&http::uri::Scheme::HTTPS) {
                let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
                return Ok((res.map(BodyExt::boxed_unsync), Box::new(io) as IoFuture));
            }
            send_plain(request, options).await
        })
    }
}

/// A plain-HTTP request on a connection with `TCP_NODELAY`, which the
/// default sender does not set: a request's head and body leave as
/// separate writes, and Nagle's algorithm would hold the body back until
/// the head is acknowledged. Only the connect timeout of `options` applies
/// (the guest sets no other); the guest's own deadlines cover the rest.
async fn send_plain(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<(http::Response<WasiBody>, IoFuture), Error> {
    let uri = request.uri();
    let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
    let authority = match authority.port() {
        Some(_) => authority.to_string(),
        None => format!("{authority}:80"),
    };
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(std::time::Duration::from_secs(600));
    let stream = match tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(&authority)).await {
        Ok(s) => s.map_err(Error::Connect)?,
        Err(_) => return Err(Error::ConnectionTimeout),
    };
    stream.set_nodelay(true).map_err(Error::Connect)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(stream))
        .await
        .map_err(Error::from)?;
    // The request line carries the path only, not a proxy's absolute form.
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    *request.uri_mut() = http::Uri::try_from(path).map_err(|_| Error::HttpRequestUriInvalid)?;
    let mut conn = Box::pin(conn);
    let send = sender.send_request(request);
    tokio::pin!(send);
    // Drive the connection until the response head is here.
    let mut conn_done = false;
    let res = loop {
        tokio::select! {
            res = &mut send => break res.map_err(Error::from)?,
            done = &mut conn, if !conn_done => {
                done.map_err(Error::from)?;
                conn_done = true;
            }
        }
    };
    let io: IoFuture = if conn_done {
        Box::new(async { Ok(()) })
    } else {
        Box::new(async move { conn.await.map_err(Error::from) })
    };
    Ok((res.map(|b| b.map_err(Error::from).boxed_unsync()), io))
}
