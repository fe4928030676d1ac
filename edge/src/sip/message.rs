//! SIP message parsing (RFC 3261): start line, the headers the recorder needs (long and compact
//! forms), name-addr values with display name, URI user part and tag, CSeq, Content-Length and
//! the body. Zero-copy: everything borrows from the datagram.

/// Why bytes are not a SIP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SipError {
    #[error("not a SIP start line")]
    NotSip,
    #[error("headers are not UTF-8")]
    NotUtf8,
    #[error("no end of headers")]
    NoHeaderEnd,
    #[error("missing or empty {0} header")]
    Missing(&'static str),
    #[error("malformed {0}")]
    Malformed(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request { method: &'a str, uri: &'a str },
    Response { status: u16, reason: &'a str },
}

/// A From/To header: `"Display" <uri>;tag=x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    pub display_name: Option<&'a str>,
    pub uri: &'a str,
    /// The URI's user part without parameters (usually the number).
    pub user: Option<&'a str>,
    pub tag: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub seq: u32,
    pub method: &'a str,
}

/// A parsed SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipMessage<'a> {
    pub start: StartLine<'a>,
    pub call_id: &'a str,
    pub from: NameAddr<'a>,
    pub to: NameAddr<'a>,
    pub cseq: CSeq<'a>,
    pub content_type: Option<&'a str>,
    pub content_length: Option<usize>,
    pub body: &'a [u8],
    /// The body is shorter than Content-Length said (snaplen or a partial TCP segment).
    pub body_truncated: bool,
    /// Bytes of the input this message used (headers + body), to find the next one in a TCP
    /// segment.
    pub len: usize,
    head: &'a str,
}

impl<'a> SipMessage<'a> {
    /// Whether this is a request with this method.
    pub fn is_request(&self, method: &str) -> bool {
        matches!(self.start, StartLine::Request { method: m, .. } if m.eq_ignore_ascii_case(method))
    }

    /// The response status, if a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { status, .. } => Some(status),
            StartLine::Request { .. } => None,
        }
    }

    /// The first value of a header (long name, or its compact form).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        headers(self.head).find_map(|(n, v)| same_header(n, name).then_some(v))
    }

    /// Whether the body is SDP.
    pub fn has_sdp(&self) -> bool {
        !self.body.is_empty()
            && self.content_type.is_none_or(|ct| {
                ct.trim()
                    .get(..15)
                    .is_some_and(|p| p.eq_ignore_ascii_case("application/sdp"))
            })
    }
}

/// Whether a payload looks like the start of a SIP message (cheap check before parsing).
pub fn looks_like_sip(p: &[u8]) -> bool {
    if p.starts_with(b"SIP/2.0 ") {
        return true;
    }
    // Request line: METHOD SP uri SP SIP/2.0 CRLF, within the first 1 KiB.
    let first = p.iter().take(1024).position(|&b| b == b'\n');
    let Some(end) = first else { return false };
    let line = p.get(..end).unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.ends_with(b" SIP/2.0") && line.first().is_some_and(|c| c.is_ascii_uppercase())
}

/// Parses one SIP message from the start of `data`.
pub fn parse(data: &[u8]) -> Result<SipMessage<'_>, SipError> {
    if !looks_like_sip(data) {
        return Err(SipError::NotSip);
    }
    let (head_end, body_start) = find_header_end(data).ok_or(SipError::NoHeaderEnd)?;
    let head = std::str::from_utf8(data.get(..head_end).ok_or(SipError::NoHeaderEnd)?)
        .map_err(|_| SipError::NotUtf8)?;
    let (first, _) = head.split_once('\n').unwrap_or((head, ""));
    let first = first.trim_end_matches('\r');
    let start = parse_start(first)?;

    let mut call_id = None;
    let mut from = None;
    let mut to = None;
    let mut cseq = None;
    let mut content_type = None;
    let mut content_length = None;
    for (name, value) in headers(head) {
        if same_header(name, "call-id") {
            call_id.get_or_insert(value);
        } else if same_header(name, "from") {
            from.get_or_insert(value);
        } else if same_header(name, "to") {
            to.get_or_insert(value);
        } else if same_header(name, "cseq") {
            cseq.get_or_insert(value);
        } else if same_header(name, "content-type") {
            content_type.get_or_insert(value);
        } else if same_header(name, "content-length") {
            content_length.get_or_insert(value);
        }
    }
    let call_id = call_id
        .filter(|c| !c.is_empty())
        .ok_or(SipError::Missing("Call-ID"))?;
    let from = parse_name_addr(from.ok_or(SipError::Missing("From"))?)?;
    let to = parse_name_addr(to.ok_or(SipError::Missing("To"))?)?;
    let cseq = parse_cseq(cseq.ok_or(SipError::Missing("CSeq"))?)?;
    let content_length = match content_length {
        Some(v) => Some(
            v.trim()
                .parse::<usize>()
                .map_err(|_| SipError::Malformed("Content-Length"))?,
        ),
        None => None,
    };
    let rest = data.get(body_start..).unwrap_or(&[]);
    let (body, body_truncated) = match content_length {
        Some(n) if n <= rest.len() => (rest.get(..n).unwrap_or(&[]), false),
        Some(_) => (rest, true),
        None => (rest, false),
    };
    Ok(SipMessage {
        start,
        call_id,
        from,
        to,
        cseq,
        content_type,
        content_length,
        body,
        body_truncated,
        len: body_start + body.len(),
        head,
    })
}

fn parse_start(line: &str) -> Result<StartLine<'_>, SipError> {
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let status: u16 = code
            .parse()
            .ok()
            .filter(|s| (100..700).contains(s))
            .ok_or(SipError::Malformed("status line"))?;
        return Ok(StartLine::Response { status, reason });
    }
    let mut parts = line.splitn(3, ' ');
    let method = parts.next().unwrap_or("");
    let uri = parts.next().unwrap_or("");
    let version = parts.next().unwrap_or("");
    if method.is_empty()
        || uri.is_empty()
        || version != "SIP/2.0"
        || !method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(SipError::Malformed("request line"));
    }
    Ok(StartLine::Request { method, uri })
}

/// End of the header block (index of the blank line) and start of the body.
fn find_header_end(data: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\n' {
            match data.get(i + 1) {
                Some(b'\n') => return Some((i, i + 2)),
                Some(b'\r') if data.get(i + 2) == Some(&b'\n') => return Some((i, i + 3)),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// Iterates header (name, value) pairs after the start line; folded lines join their header.
fn headers(head: &str) -> impl Iterator<Item = (&str, &str)> {
    let body = head.split_once('\n').map_or("", |(_, r)| r);
    let mut rest = body;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() {
                return None;
            }
            // The header ends at a newline not followed by a space or tab (folding).
            let bytes = rest.as_bytes();
            let mut end = rest.len();
            let mut i = 0;
            while let Some(p) = bytes
                .get(i..)
                .and_then(|s| s.iter().position(|&b| b == b'\n'))
            {
                let nl = i + p;
                if !matches!(bytes.get(nl + 1), Some(b' ' | b'\t')) {
                    end = nl;
                    break;
                }
                i = nl + 1;
            }
            let line = rest.get(..end).unwrap_or("");
            rest = rest.get(end + 1..).unwrap_or("");
            if let Some((n, v)) = line.split_once(':') {
                return Some((n.trim(), v.trim()));
            }
        }
    })
}

/// Compares a header name with a long name, accepting its compact form.
fn same_header(name: &str, long: &str) -> bool {
    if name.eq_ignore_ascii_case(long) {
        return true;
    }
    let compact = match long.to_ascii_lowercase().as_str() {
        "call-id" => "i",
        "from" => "f",
        "to" => "t",
        "content-length" => "l",
        "content-type" => "c",
        "contact" => "m",
        "via" => "v",
        "subject" => "s",
        "supported" => "k",
        "content-encoding" => "e",
        _ => return false,
    };
    name.eq_ignore_ascii_case(compact)
}

fn parse_cseq(v: &str) -> Result<CSeq<'_>, SipError> {
    let mut it = v.split_whitespace();
    let seq = it
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(SipError::Malformed("CSeq"))?;
    let method = it.next().ok_or(SipError::Malformed("CSeq"))?;
    Ok(CSeq { seq, method })
}

/// Parses `"Display" <uri>;params`, `Display <uri>;params` or `uri;params`.
pub fn parse_name_addr(v: &str) -> Result<NameAddr<'_>, SipError> {
    let v = v.trim();
    let (display_name, uri, params) = if let Some(lt) = find_unquoted(v, b'<') {
        let display = v.get(..lt).unwrap_or("").trim();
        let after = v.get(lt + 1..).unwrap_or("");
        let gt = after.find('>').ok_or(SipError::Malformed("name-addr"))?;
        let uri = after.get(..gt).unwrap_or("");
        let params = after.get(gt + 1..).unwrap_or("");
        let display = display.trim_matches('"').trim();
        ((!display.is_empty()).then_some(display), uri.trim(), params)
    } else {
        // addr-spec: parameters after the URI belong to the header.
        let (uri, params) = match v.find(';') {
            Some(i) => (v.get(..i).unwrap_or(""), v.get(i..).unwrap_or("")),
            None => (v, ""),
        };
        (None, uri.trim(), params)
    };
    if uri.is_empty() {
        return Err(SipError::Malformed("name-addr"));
    }
    let tag = params.split(';').find_map(|p| {
        let (k, val) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("tag").then_some(val.trim())
    });
    Ok(NameAddr {
        display_name,
        uri,
        user: uri_user(uri),
        tag,
    })
}

/// The user part of a `sip:`, `sips:` or `tel:` URI, without user parameters.
pub fn uri_user(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once(':')?;
    if scheme.eq_ignore_ascii_case("tel") {
        let n = rest.split(';').next().unwrap_or("");
        return (!n.is_empty()).then_some(n);
    }
    let at = rest.find('@')?;
    let user = rest.get(..at)?;
    let user = user.split(';').next().unwrap_or("");
    let user = user.split(':').next().unwrap_or(""); // user:password
    (!user.is_empty()).then_some(user)
}

fn find_unquoted(s: &str, c: u8) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if !quoted && b == c {
            return Some(i);
        }
    }
    None
}
