//! `allowed_outbound_hosts`: every outgoing request is checked against the
//! component's patterns before it is sent; a refused one fails in the guest
//! with `error-code::http-request-denied`, as in Spin.

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
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((res.map(BodyExt::boxed_unsync), Box::new(io) as IoFuture))
        })
    }
}
