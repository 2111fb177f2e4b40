//! The load generator's HTTP/1.1 client: one keep-alive connection driven by hand.

use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// One keep-alive HTTP/1.1 connection, driven by hand: a request is one write, a response one or two reads
/// parsed in place. The generator shares the machine with the server it measures, so its CPU per request is
/// taken from the server: hyper's client (a connection task, a channel hop and header maps per request) cost
/// about 25 µs of CPU per request here, which at 35,000 requests/s is most of a core.
pub(crate) struct Wire {
    stream: TcpStream,
    addr: SocketAddr,
    /// Sent with every POST (the admin API's credential).
    pub(crate) bearer: Option<String>,
    request: Vec<u8>,
    response: Vec<u8>,
}

impl Wire {
    pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, addr, bearer: None, request: Vec::with_capacity(1024), response: Vec::with_capacity(4096) })
    }

    pub(crate) async fn post(&mut self, path: &str, content_type: &str, body: &str) -> anyhow::Result<(u16, &[u8])> {
        self.request.clear();
        write!(self.request, "POST {path} HTTP/1.1\r\nhost: {}\r\n", self.addr)?;
        if let Some(token) = &self.bearer {
            write!(self.request, "authorization: Bearer {token}\r\n")?;
        }
        write!(self.request, "content-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}", body.len())?;
        self.exchange().await
    }

    pub(crate) async fn get(&mut self, path: &str, bearer: Option<&str>) -> anyhow::Result<(u16, &[u8])> {
        self.request.clear();
        write!(self.request, "GET {path} HTTP/1.1\r\nhost: {}\r\n", self.addr)?;
        if let Some(token) = bearer {
            write!(self.request, "authorization: Bearer {token}\r\n")?;
        }
        self.request.extend_from_slice(b"\r\n");
        self.exchange().await
    }

    /// A request with `extra` header lines (each `name: value\r\n`) and, for a POST, a form body; its status and
    /// the values of the answer's `location` and `set-cookie` headers. For setting a scenario up (a login through
    /// the login page, codes from the authorization endpoint), never on the measured path.
    pub(crate) async fn request_with(
        &mut self,
        method: &str,
        path: &str,
        extra: &str,
        form: Option<&str>,
    ) -> anyhow::Result<(u16, Vec<(String, String)>)> {
        self.request.clear();
        write!(self.request, "{method} {path} HTTP/1.1\r\nhost: {}\r\n{extra}", self.addr)?;
        match form {
            Some(body) => write!(
                self.request,
                "content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )?,
            None => self.request.extend_from_slice(b"\r\n"),
        }
        let (status, _) = self.exchange().await?;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut head = httparse::Response::new(&mut headers);
        head.parse(&self.response)?;
        let kept = head
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("location") || h.name.eq_ignore_ascii_case("set-cookie"))
            .map(|h| Ok((h.name.to_ascii_lowercase(), std::str::from_utf8(h.value)?.to_owned())))
            .collect::<anyhow::Result<_>>()?;
        Ok((status, kept))
    }

    /// The server's address, as the `host` header names it.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The body of the last answer.
    pub(crate) fn last_body(&self) -> anyhow::Result<&[u8]> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut head = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head_len) = head.parse(&self.response)? else { bail!("no answer yet") };
        Ok(self.response.get(head_len..).unwrap_or_default())
    }

    /// Sends the prepared request and reads one response: its status and body (by `content-length`; the server
    /// never chunks these small responses, and a chunked one is refused rather than misread).
    async fn exchange(&mut self) -> anyhow::Result<(u16, &[u8])> {
        self.stream.write_all(&self.request).await?;
        self.response.clear();
        loop {
            if self.stream.read_buf(&mut self.response).await? == 0 {
                bail!("the server closed the connection");
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut head = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(head_len) = head.parse(&self.response)? else { continue };
            let status = head.code.context("no status")?;
            let mut body_len = 0;
            for header in head.headers.iter() {
                if header.name.eq_ignore_ascii_case("content-length") {
                    body_len = std::str::from_utf8(header.value)?.parse::<usize>()?;
                } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                    bail!("unexpected chunked response");
                }
            }
            let end = head_len + body_len;
            if self.response.len() >= end {
                return Ok((status, self.response.get(head_len..end).unwrap_or_default()));
            }
        }
    }
}
