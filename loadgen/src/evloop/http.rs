//! HTTP/1.1 on the wire, without I/O: the request bytes, and a response
//! parser fed whatever slices the socket gave (a status line and headers,
//! then a body framed by `Content-Length`, chunked transfer encoding, or the
//! end of the connection).
//!
//! Invariants: the parser never looks past the end of the response it is
//! reading (bytes after it are reported as left over, so the connection is
//! not reused); every malformed input is an [`Malformed`] error, never a
//! panic; a head is at most [`MAX_HEAD`] bytes.

use crate::workload::{Api, Workload};

/// Largest response head (status line and headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;

/// A response that is not HTTP/1.x as this parser reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// The request bytes of every body of `w` (request `n` sends entry
/// `n mod len`): request line with the URL's path, `Host`, `User-Agent`,
/// `Content-Type: application/json` for the OpenAI kinds, `Content-Length`
/// (left out for a bodiless GET or HEAD), the extra headers, keep-alive.
/// `None` when the URL is not `http://AUTHORITY/PATH`.
pub fn requests(w: &Workload) -> Option<Vec<Vec<u8>>> {
    let (authority, path) = split_url(&w.url)?;
    let has = |name: &str| w.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut head = format!("{} {path} HTTP/1.1\r\n", w.method);
    if !has("host") {
        head.push_str(&format!("Host: {authority}\r\n"));
    }
    if !has("user-agent") {
        head.push_str("User-Agent: aif-loadgen\r\n");
    }
    if w.api != Api::Http && !has("content-type") {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in &w.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has("connection") {
        head.push_str("Connection: keep-alive\r\n");
    }
    let bodiless = matches!(w.method.as_str(), "GET" | "HEAD");
    let empty: [Vec<u8>; 1] = [Vec::new()];
    let bodies: &[Vec<u8>] = if w.bodies.is_empty() {
        &empty
    } else {
        &w.bodies
    };
    Some(
        bodies
            .iter()
            .map(|b| {
                let mut r = head.clone().into_bytes();
                if !(b.is_empty() && bodiless) {
                    r.extend_from_slice(format!("Content-Length: {}\r\n", b.len()).as_bytes());
                }
                r.extend_from_slice(b"\r\n");
                r.extend_from_slice(b);
                r
            })
            .collect(),
    )
}

/// `http://AUTHORITY/PATH?Q` → (`AUTHORITY`, `/PATH?Q`).
pub fn split_url(url: &str) -> Option<(&str, &str)> {
    let scheme = url.get(..7)?;
    if !scheme.eq_ignore_ascii_case("http://") {
        return None;
    }
    let rest = url.get(7..)?;
    let cut = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(cut);
    if authority.is_empty() {
        return None;
    }
    Some((authority, if path.is_empty() { "/" } else { path }))
}

/// What a chunked body's decoder expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ck {
    /// Hex digits of a chunk size (`ext`: past a `;` extension or blank).
    Size { n: u64, digits: u8, ext: bool },
    /// The LF after a size line's CR.
    SizeLf { n: u64 },
    /// Chunk data still to come.
    Data(u64),
    /// The CR (or LF) after chunk data.
    DataCr,
    /// The LF after chunk data's CR.
    DataLf,
    /// Trailer lines after the last chunk; `len` bytes into the current one.
    Trailer { len: usize },
    /// The terminating empty line was read.
    Done,
}

/// A chunked transfer-encoding decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunked {
    state: Ck,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: Ck::Size {
                n: 0,
                digits: 0,
                ext: false,
            },
        }
    }
}

impl Chunked {
    /// True once the last chunk and the trailer were read.
    pub fn done(&self) -> bool {
        self.state == Ck::Done
    }

    /// Decodes from `input`, handing each piece of data to `data`; returns
    /// how many bytes it consumed (less than `input.len()` only when done).
    ///
    /// # Errors
    /// [`Malformed`] for a bad size line or a missing CRLF after data.
    pub fn feed(&mut self, input: &[u8], data: &mut impl FnMut(&[u8])) -> Result<usize, Malformed> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                Ck::Done => return Ok(i),
                Ck::Data(left) => {
                    let take = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    data(&input[i..i + take]);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        Ck::DataCr
                    } else {
                        Ck::Data(left)
                    };
                    continue;
                }
                Ck::Size { n, digits, ext } => match b {
                    b'\r' => Ck::SizeLf {
                        n: sized(n, digits)?,
                    },
                    b'\n' => after_size(sized(n, digits)?),
                    _ if ext => Ck::Size { n, digits, ext },
                    b';' | b' ' | b'\t' => Ck::Size {
                        n,
                        digits,
                        ext: true,
                    },
                    _ => {
                        let d = u64::from(
                            (b as char)
                                .to_digit(16)
                                .ok_or(Malformed("chunk size is not hex"))?,
                        );
                        if digits >= 15 {
                            return Err(Malformed("chunk size too large"));
                        }
                        Ck::Size {
                            n: n * 16 + d,
                            digits: digits + 1,
                            ext,
                        }
                    }
                },
                Ck::SizeLf { n } => match b {
                    b'\n' => after_size(n),
                    _ => return Err(Malformed("CR without LF after a chunk size")),
                },
                Ck::DataCr => match b {
                    b'\r' => Ck::DataLf,
                    b'\n' => Ck::Size {
                        n: 0,
                        digits: 0,
                        ext: false,
                    },
                    _ => return Err(Malformed("no CRLF after chunk data")),
                },
                Ck::DataLf => match b {
                    b'\n' => Ck::Size {
                        n: 0,
                        digits: 0,
                        ext: false,
                    },
                    _ => return Err(Malformed("no LF after chunk data")),
                },
                Ck::Trailer { len } => match b {
                    b'\n' if len == 0 => Ck::Done,
                    b'\n' => Ck::Trailer { len: 0 },
                    b'\r' => Ck::Trailer { len },
                    _ => Ck::Trailer { len: len + 1 },
                },
            };
            i += 1;
        }
        Ok(i)
    }
}

fn sized(n: u64, digits: u8) -> Result<u64, Malformed> {
    if digits == 0 {
        Err(Malformed("empty chunk size"))
    } else {
        Ok(n)
    }
}

fn after_size(n: u64) -> Ck {
    if n == 0 {
        Ck::Trailer { len: 0 }
    } else {
        Ck::Data(n)
    }
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    /// `Content-Length`: this many bytes left.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunked),
    /// Neither: the body ends with the connection.
    UntilClose,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Head,
    Body(Body),
    Done,
}

/// What [`Response::feed`] reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The response needs more bytes.
    More,
    /// The response is complete; `left` bytes of the input were not part of it.
    Complete {
        /// Bytes after the response's end.
        left: usize,
    },
}

/// One response being read: its status, whether the connection stays open,
/// and its body handed on in pieces.
#[derive(Debug, Clone)]
pub struct Response {
    state: State,
    head: Vec<u8>,
    status: Option<u16>,
    keep_alive: bool,
    /// The request was HEAD: no body whatever the headers say.
    head_request: bool,
}

impl Response {
    /// A parser for the answer to a request (`head_request`: a HEAD).
    pub fn new(head_request: bool) -> Response {
        Response {
            state: State::Head,
            head: Vec::new(),
            status: None,
            keep_alive: false,
            head_request,
        }
    }

    /// The status, once the head was read (the final one after any 1xx).
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// True once the head was read.
    pub fn has_head(&self) -> bool {
        !matches!(self.state, State::Head)
    }

    /// Whether the connection may carry another request after this response
    /// (HTTP/1.1 without `Connection: close`, or 1.0 with keep-alive, and a
    /// delimited body).
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Reads `input`, handing body bytes to `body` with the status.
    ///
    /// # Errors
    /// [`Malformed`] for a head or chunk framing this parser cannot read.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        body: &mut impl FnMut(u16, &[u8]),
    ) -> Result<Parsed, Malformed> {
        loop {
            let status = self.status.unwrap_or(0);
            match &mut self.state {
                State::Done => return Ok(Parsed::Complete { left: input.len() }),
                State::Head => {
                    if input.is_empty() {
                        return Ok(Parsed::More);
                    }
                    let from = self.head.len().saturating_sub(3);
                    let room = MAX_HEAD.saturating_sub(self.head.len());
                    let take = input.len().min(room.max(1));
                    self.head.extend_from_slice(&input[..take]);
                    let Some(end) = head_end(&self.head, from) else {
                        if self.head.len() >= MAX_HEAD {
                            return Err(Malformed("response head too large"));
                        }
                        input = &input[take..];
                        continue;
                    };
                    // The head ends inside what was just appended.
                    let used = end - (self.head.len() - take);
                    self.head.truncate(end);
                    input = &input[used..];
                    self.parse_head()?;
                }
                State::Body(Body::Length(left)) => {
                    let take = input
                        .len()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    if take > 0 {
                        body(status, &input[..take]);
                    }
                    *left -= take as u64;
                    input = &input[take..];
                    if *left == 0 {
                        self.state = State::Done;
                    } else {
                        return Ok(Parsed::More);
                    }
                }
                State::Body(Body::Chunked(c)) => {
                    let used = c.feed(input, &mut |d| body(status, d))?;
                    input = &input[used..];
                    if c.done() {
                        self.state = State::Done;
                    } else {
                        return Ok(Parsed::More);
                    }
                }
                State::Body(Body::UntilClose) => {
                    if !input.is_empty() {
                        body(status, input);
                    }
                    return Ok(Parsed::More);
                }
            }
        }
    }

    /// The connection closed: completes a body that ends with it.
    ///
    /// # Errors
    /// [`Malformed`] when the response was cut short.
    pub fn eof(&mut self) -> Result<(), Malformed> {
        match self.state {
            State::Done => Ok(()),
            State::Body(Body::UntilClose) => {
                self.state = State::Done;
                Ok(())
            }
            State::Head => Err(Malformed("connection closed before the response head")),
            State::Body(_) => Err(Malformed("connection closed inside the body")),
        }
    }

    fn parse_head(&mut self) -> Result<(), Malformed> {
        let text = std::str::from_utf8(&self.head).map_err(|_| Malformed("head is not UTF-8"))?;
        let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let http10 = match version {
            "HTTP/1.1" => false,
            "HTTP/1.0" => true,
            _ => return Err(Malformed("not an HTTP/1.x status line")),
        };
        let status: u16 = parts
            .next()
            .filter(|c| c.len() == 3)
            .and_then(|c| c.parse().ok())
            .ok_or(Malformed("bad status code"))?;
        let mut length = None;
        let mut chunked = false;
        let mut close = http10;
        for line in lines.filter(|l| !l.is_empty()) {
            let (k, v) = line
                .split_once(':')
                .ok_or(Malformed("header line without `:`"))?;
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("content-length") {
                let n: u64 = v.parse().map_err(|_| Malformed("bad Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(Malformed("conflicting Content-Length"));
                }
                length = Some(n);
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v
                    .rsplit(',')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
            } else if k.eq_ignore_ascii_case("connection") {
                for t in v.split(',').map(str::trim) {
                    if t.eq_ignore_ascii_case("close") {
                        close = true;
                    } else if t.eq_ignore_ascii_case("keep-alive") && http10 {
                        close = false;
                    }
                }
            }
        }
        self.head.clear();
        if (100..200).contains(&status) && status != 101 {
            // An interim answer (100 Continue): the real one follows.
            self.state = State::Head;
            return Ok(());
        }
        self.status = Some(status);
        self.keep_alive = !close;
        self.state = if self.head_request || status == 204 || status == 304 || status == 101 {
            State::Done
        } else if chunked {
            State::Body(Body::Chunked(Chunked::default()))
        } else if let Some(n) = length {
            if n == 0 {
                State::Done
            } else {
                State::Body(Body::Length(n))
            }
        } else {
            self.keep_alive = false;
            State::Body(Body::UntilClose)
        };
        if status == 101 {
            self.keep_alive = false;
        }
        Ok(())
    }
}

/// End of a head (after `\r\n\r\n` or `\n\n`) in `buf`, searching from `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` split at every pair of cut points (three pieces); every
    /// split must give the same status, body and keep-alive; returns them.
    fn every_split(input: &[u8], head_request: bool) -> (Option<u16>, Vec<u8>, (), bool) {
        let mut want = None;
        for a in 0..=input.len() {
            for b in a..=input.len() {
                let mut r = Response::new(head_request);
                let mut body = Vec::new();
                let mut got = None;
                for piece in [&input[..a], &input[a..b], &input[b..]] {
                    let p = r
                        .feed(piece, &mut |_, d| body.extend_from_slice(d))
                        .unwrap_or_else(|e| panic!("split {a}/{b}: {e:?}"));
                    if let Parsed::Complete { left } = p {
                        assert_eq!(left, 0, "split {a}/{b}");
                        got = Some(left);
                        break;
                    }
                }
                let result = (r.status(), body, got.is_some(), r.keep_alive());
                match &want {
                    None => want = Some(result),
                    Some(w) => assert_eq!(w, &result, "split {a}/{b}"),
                }
            }
        }
        let (status, body, complete, keep) = want.unwrap_or_default();
        assert!(complete, "never complete");
        (status, body, (), keep)
    }

    #[test]
    fn chunked_bodies_decode_at_every_split() {
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n5\r\nhello\r\n1;ext=1\r\n \r\na\r\n0123456789\r\n0\r\nX-Trailer: y\r\n\r\n";
        let (status, body, _, keep) = every_split(input, false);
        assert_eq!(status, Some(200));
        assert_eq!(body, b"hello 0123456789");
        assert!(keep);
    }

    #[test]
    fn chunked_decoder_alone_handles_bare_lf_and_uppercase_hex() {
        let mut c = Chunked::default();
        let mut out = Vec::new();
        let input = b"A\nabcdefghij\n0\n\nrest";
        let used = c.feed(input, &mut |d| out.extend_from_slice(d)).unwrap();
        assert!(c.done());
        assert_eq!(out, b"abcdefghij");
        assert_eq!(&input[used..], b"rest");
        for bad in [&b"zz\r\n"[..], b"\r\n", b"5\r\nhelloX", b"5\rx"] {
            let mut c = Chunked::default();
            assert!(c.feed(bad, &mut |_| {}).is_err(), "{bad:?}");
        }
        let mut c = Chunked::default();
        assert!(c.feed(b"ffffffffffffffffff\r\n", &mut |_| {}).is_err());
    }

    #[test]
    fn content_length_bodies_and_leftovers() {
        let input = b"HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\nnope";
        let (status, body, _, keep) = every_split(input, false);
        assert_eq!(
            (status, body.as_slice(), keep),
            (Some(404), &b"nope"[..], true)
        );
        let mut r = Response::new(false);
        let p = r
            .feed(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
                &mut |_, _| {},
            )
            .unwrap();
        assert_eq!(p, Parsed::Complete { left: 5 });
    }

    #[test]
    fn interim_answers_are_skipped_and_close_is_honoured() {
        let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx";
        let (status, body, _, keep) = every_split(input, false);
        assert_eq!(
            (status, body.as_slice(), keep),
            (Some(200), &b"x"[..], false)
        );
        let input = b"HTTP/1.0 200 OK\nConnection: keep-alive\nContent-Length: 0\n\n";
        let (status, body, _, keep) = every_split(input, false);
        assert_eq!((status, body.len(), keep), (Some(200), 0, true));
        // HEAD: no body even with a length.
        let (_, body, _, _) = every_split(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true);
        assert!(body.is_empty());
    }

    #[test]
    fn a_body_until_close_ends_with_the_connection() {
        let mut r = Response::new(false);
        let mut body = Vec::new();
        let p = r
            .feed(b"HTTP/1.1 200 OK\r\n\r\nabc", &mut |_, d| {
                body.extend_from_slice(d)
            })
            .unwrap();
        assert_eq!(p, Parsed::More);
        assert!(r.eof().is_ok());
        assert_eq!(body, b"abc");
        assert!(!r.keep_alive());
        let mut r = Response::new(false);
        r.feed(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
            &mut |_, _| {},
        )
        .unwrap();
        assert!(r.eof().is_err());
    }

    #[test]
    fn malformed_heads_are_errors() {
        for bad in [
            &b"SMTP 220 hi\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        ] {
            let mut r = Response::new(false);
            assert!(r.feed(bad, &mut |_, _| {}).is_err(), "{bad:?}");
        }
        let mut r = Response::new(false);
        let big = vec![b'a'; MAX_HEAD + 10];
        assert!(r.feed(&big, &mut |_, _| {}).is_err());
    }

    #[test]
    fn requests_carry_path_host_type_length_and_headers() {
        let w = Workload {
            api: Api::Completions,
            method: "POST".into(),
            url: "http://127.0.0.1:8000/v1/completions".into(),
            headers: vec![("Authorization".into(), "Bearer x".into())],
            bodies: vec![b"{}".to_vec()],
            addrs: Vec::new(),
            timeout: std::time::Duration::from_secs(1),
            tokenizer: None,
            input_tokens: Vec::new(),
        };
        let r = requests(&w).unwrap();
        let text = String::from_utf8(r[0].clone()).unwrap();
        assert!(
            text.starts_with("POST /v1/completions HTTP/1.1\r\n"),
            "{text}"
        );
        for needle in [
            "Host: 127.0.0.1:8000\r\n",
            "Content-Type: application/json\r\n",
            "Content-Length: 2\r\n",
            "Authorization: Bearer x\r\n",
            "Connection: keep-alive\r\n",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        assert!(text.ends_with("\r\n\r\n{}"), "{text}");
        let get = Workload {
            api: Api::Http,
            method: "GET".into(),
            url: "http://h/".into(),
            bodies: vec![Vec::new()],
            ..w
        };
        let text = String::from_utf8(requests(&get).unwrap()[0].clone()).unwrap();
        assert!(
            !text.contains("Content-Length") && !text.contains("Content-Type"),
            "{text}"
        );
        assert_eq!(split_url("http://a:1"), Some(("a:1", "/")));
        assert_eq!(split_url("http://a:1/x?y"), Some(("a:1", "/x?y")));
        assert_eq!(split_url("https://a/"), None);
    }
}
