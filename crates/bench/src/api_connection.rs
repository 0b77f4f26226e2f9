//! One HTTP/1.1 keep-alive connection to the server, held the way an SDK client holds one.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{HeaderMap, Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const USER_AGENT: &str = concat!("kappa-bench/", env!("CARGO_PKG_VERSION"));

/// A status, the headers and a fully read body.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Sends requests one at a time over a single TCP connection.
pub struct ApiConnection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl ApiConnection {
    /// Connect with `TCP_NODELAY`, as botocore (urllib3) does.
    pub async fn open(address: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(address)
            .await
            .with_context(|| format!("connecting to {address}"))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .context("starting an HTTP/1.1 connection")?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                eprintln!("kappa-bench: the connection to the server failed: {err}");
            }
        });
        Ok(Self {
            sender,
            host: address.to_string(),
        })
    }

    /// Send one request and read the whole response. A body is sent as `application/json`.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<ApiResponse> {
        self.send_with_headers(method, path, &[], body).await
    }

    /// [`Self::send`] with extra request headers; a body is `application/json` unless they name
    /// another `Content-Type`.
    pub async fn send_with_headers(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<ApiResponse> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, &self.host)
            .header(header::USER_AGENT, USER_AGENT);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let typed = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(header::CONTENT_TYPE.as_str()));
        if body.is_some() && !typed {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .with_context(|| format!("building {method} {path}"))?;
        self.sender
            .ready()
            .await
            .context("the server closed the keep-alive connection")?;
        let response = self
            .sender
            .send_request(request)
            .await
            .with_context(|| format!("sending {method} {path}"))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the response to {method} {path}"))?
            .to_bytes();
        Ok(ApiResponse {
            status,
            headers,
            body,
        })
    }

    /// Send one request and fail unless the server answers with `expected`.
    pub async fn expect(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        expected: StatusCode,
    ) -> Result<Bytes> {
        let response = self.send(method.clone(), path, body).await?;
        if response.status != expected {
            bail!(
                "{method} {path} answered {} instead of {expected}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
        }
        Ok(response.body)
    }
}
