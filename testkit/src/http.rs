//! A tiny blocking HTTP/1.1 client: enough to ask for reports and scrape
//! `/metrics` without a client library (and without its costs showing up
//! in the benchmarks' figures).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

/// An HTTP response, as a client sees it.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection (`Connection: close`); `None` when
/// nothing listens or the answer is not HTTP.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Option<Response> {
    let mut with_close = headers.to_vec();
    with_close.push(("Connection", "close"));
    Client::new(port).request(method, path, &with_close).ok()
}

/// `GET` on a fresh connection; `None` when nothing listens.
pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<Response> {
    request(port, "GET", path, headers)
}

/// A kept-alive connection to 127.0.0.1:`port`, reopened when the server
/// closes it.
pub struct Client {
    port: u16,
    connection: Option<BufReader<TcpStream>>,
}

impl Client {
    pub fn new(port: u16) -> Self {
        Self {
            port,
            connection: None,
        }
    }

    /// GET `path`, with an `Accept` header when given.
    pub fn get(&mut self, path: &str, accept: Option<&str>) -> anyhow::Result<Response> {
        match accept {
            Some(accept) => self.request("GET", path, &[("Accept", accept)]),
            None => self.request("GET", path, &[]),
        }
    }

    /// Any request. A kept-alive connection the server has closed fails
    /// once: it is retried on a fresh one.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Response> {
        match self.try_request(method, path, headers) {
            Ok(r) => Ok(r),
            Err(_) => {
                self.connection = None;
                self.try_request(method, path, headers)
            }
        }
    }

    fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Response> {
        if self.connection.is_none() {
            let stream = TcpStream::connect(("127.0.0.1", self.port))
                .with_context(|| format!("connecting to 127.0.0.1:{}", self.port))?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(Duration::from_secs(30)))?;
            self.connection = Some(BufReader::new(stream));
        }
        let connection = self.connection.as_mut().expect("connected above");
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        connection.get_mut().write_all(head.as_bytes())?;

        let mut line = String::new();
        if connection.read_line(&mut line)? == 0 {
            bail!("the server closed the connection");
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad status line {line:?}"))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if connection.read_line(&mut line)? == 0 {
                bail!("the server closed the connection in the headers");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let length = header("content-length").and_then(|v| v.parse::<usize>().ok());
        let mut close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let body = if method == "HEAD" || status == 304 || status == 204 {
            Vec::new()
        } else if chunked {
            read_chunked(connection)?
        } else if let Some(length) = length {
            let mut body = vec![0; length];
            connection.read_exact(&mut body)?;
            body
        } else {
            let mut body = Vec::new();
            connection.read_to_end(&mut body)?;
            close = true;
            body
        };
        if close {
            self.connection = None;
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

fn read_chunked(connection: &mut BufReader<TcpStream>) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        connection.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
            .with_context(|| format!("bad chunk size {line:?}"))?;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                line.clear();
                if connection.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        connection.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        connection.read_exact(&mut crlf)?;
    }
}
