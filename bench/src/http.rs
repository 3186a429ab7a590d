//! A tiny blocking HTTP/1.1 client with keep-alive: enough to poll reports
//! and scrape /metrics without a client library (and without its costs
//! showing up in the figures).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

/// One answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
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
        // A kept-alive connection the server has closed fails once: retry
        // on a fresh one.
        match self.try_get(path, accept) {
            Ok(r) => Ok(r),
            Err(_) => {
                self.connection = None;
                self.try_get(path, accept)
            }
        }
    }

    fn try_get(&mut self, path: &str, accept: Option<&str>) -> anyhow::Result<Response> {
        if self.connection.is_none() {
            let stream = TcpStream::connect(("127.0.0.1", self.port))
                .with_context(|| format!("connecting to 127.0.0.1:{}", self.port))?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(Duration::from_secs(30)))?;
            self.connection = Some(BufReader::new(stream));
        }
        let connection = self.connection.as_mut().expect("connected above");
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        if let Some(accept) = accept {
            head.push_str(&format!("Accept: {accept}\r\n"));
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
        let mut length = None;
        let mut chunked = false;
        let mut close = false;
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
                let value = value.trim();
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse::<usize>().ok(),
                    "transfer-encoding" => chunked = value.contains("chunked"),
                    "connection" => close = value.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        let body = if chunked {
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
        Ok(Response { status, body })
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

/// Sums every sample of a metric family in a Prometheus/OpenMetrics text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ') | Some(b'{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
