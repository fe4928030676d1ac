//! The call tracker: SIP dialogs keyed by Call-ID, their offer/answer SDP, the media endpoints
//! each SDP announces (RTP port and RTP+1 for RTCP) and when a call ends. Pure: it takes parsed
//! messages, addresses and `now`, and returns decisions; the recorder does the IO.
//!
//! Roles come from SIP, never from packet order: the initial INVITE's From is the caller, its To
//! the callee. An SDP sent by a side is where that side wants to *receive*, so RTP sent to the
//! callee's SDP address is the caller's audio and RTP sent to the caller's SDP address is the
//! callee's. A call ends on BYE or CANCEL or a final error (after a short grace that keeps
//! retransmissions and the closing transaction in the call; 32 s after a 401/407 challenge, and a
//! new INVITE with the same Call-ID continues the call), on media timeout, or at capture end.
//! `legs.rs` links the two dialogs of a B2BUA's call; `direction.rs` classifies a call as
//! inbound/outbound/internal from its initial INVITE's addresses and the site's networks.

pub mod direction;
pub mod legs;
pub mod orphan;

/// Maps looked up per packet: a fast hash, randomly keyed (keys come from the network).
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
use std::net::{IpAddr, SocketAddr};

use crate::sip::{self, SipMessage, StartLine, sdp::RtpMap, sdp::SessionDescription};

/// Identifies a dialog inside one tracker.
pub type CallKey = u64;

/// A side of the call, by SIP role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Caller,
    Callee,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Caller => Side::Callee,
            Side::Callee => Side::Caller,
        }
    }
}

/// Who sends a media stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaDirection {
    CallerToCallee,
    CalleeToCaller,
}

impl MediaDirection {
    /// The side that sends.
    pub fn sender(self) -> Side {
        match self {
            MediaDirection::CallerToCallee => Side::Caller,
            MediaDirection::CalleeToCaller => Side::Callee,
        }
    }
    fn flip(self) -> Self {
        match self {
            MediaDirection::CallerToCallee => MediaDirection::CalleeToCaller,
            MediaDirection::CalleeToCaller => MediaDirection::CallerToCallee,
        }
    }
}

/// One party, from a From or To header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Party {
    pub uri: String,
    pub user: String,
    pub display_name: Option<String>,
    pub tag: Option<String>,
}

impl Party {
    fn from_name_addr(n: &sip::NameAddr<'_>) -> Self {
        Party {
            uri: n.uri.to_string(),
            user: n.user.unwrap_or_default().to_string(),
            display_name: n.display_name.map(str::to_string),
            tag: n.tag.map(str::to_string),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// INVITE seen, no provisional response with a tag yet.
    Trying,
    /// A provisional response (180/183) seen.
    Ringing,
    /// A 2xx to the INVITE seen.
    Answered,
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEnd {
    Bye,
    Cancel,
    /// A final error response to the INVITE.
    Rejected,
    /// No packet of the call for the configured time.
    Timeout,
    CaptureEnd,
    /// Cut at the maximum call duration: the call goes on in its next part (recorder).
    MaxDuration,
}

/// One SIP dialog (a call).
#[derive(Debug, Clone)]
pub struct Dialog {
    pub key: CallKey,
    pub call_id: String,
    pub caller: Party,
    pub callee: Party,
    pub start_ns: i64,
    pub answer_ns: Option<i64>,
    /// Time of the call's last packet (SIP or media).
    pub last_ns: i64,
    pub last_sip_ns: i64,
    pub state: CallState,
    /// Final status of the initial INVITE.
    pub sip_status: Option<u16>,
    /// Set when the call is closing (BYE/CANCEL/error seen) or has ended.
    pub end_reason: Option<CallEnd>,
    pub closing_since: Option<i64>,
    /// The INVITE was answered 401/407: a new INVITE with credentials may follow.
    challenged: bool,
    /// The latest SDP each side sent.
    pub caller_sdp: Option<SessionDescription>,
    pub callee_sdp: Option<SessionDescription>,
    routes: Vec<SocketAddr>,
    /// Inbound/outbound/internal, from the initial INVITE's addresses and the site's networks.
    pub direction: direction::CallDirection,
}

impl Dialog {
    /// The dialog-like record of an orphan stream (RTP no SIP announced): the first sender is
    /// the "caller", its destination the "callee", both named by address; answered at start.
    pub fn orphan(key: CallKey, src: SocketAddr, dst: SocketAddr, start_ns: i64) -> Self {
        let party = |a: SocketAddr| Party {
            uri: a.to_string(),
            ..Party::default()
        };
        Dialog {
            key,
            call_id: String::new(),
            caller: party(src),
            callee: party(dst),
            start_ns,
            answer_ns: Some(start_ns),
            last_ns: start_ns,
            last_sip_ns: start_ns,
            state: CallState::Answered,
            sip_status: None,
            end_reason: None,
            closing_since: None,
            challenged: false,
            caller_sdp: None,
            callee_sdp: None,
            routes: Vec::new(),
            direction: direction::CallDirection::Unknown,
        }
    }

    /// The SDP a side sent last.
    pub fn sdp(&self, side: Side) -> Option<&SessionDescription> {
        match side {
            Side::Caller => self.caller_sdp.as_ref(),
            Side::Callee => self.callee_sdp.as_ref(),
        }
    }

    /// The codec of a payload type on a media line: the receiver's SDP defines it, then the
    /// sender's, then the static table.
    pub fn rtpmap(&self, dir: MediaDirection, media_index: usize, pt: u8) -> Option<RtpMap> {
        let receiver = dir.sender().other();
        [receiver, receiver.other()]
            .into_iter()
            .filter_map(|s| self.sdp(s)?.media.get(media_index))
            .find_map(|m| m.rtpmaps.iter().find(|r| r.payload_type == pt).cloned())
            .or_else(|| sip::sdp::static_rtpmap(pt))
    }

    /// The `a=fmtp` parameters of a payload type on a media line, looked up like [`Self::rtpmap`].
    pub fn fmtp(&self, dir: MediaDirection, media_index: usize, pt: u8) -> Option<&str> {
        let receiver = dir.sender().other();
        [receiver, receiver.other()]
            .into_iter()
            .filter_map(|s| self.sdp(s)?.media.get(media_index))
            .find_map(|m| m.fmtps.iter().find(|(p, _)| *p == pt))
            .map(|(_, f)| f.as_str())
    }

    /// The media type (`audio`, `video`) of a media line.
    pub fn media_kind(&self, media_index: usize) -> Option<&str> {
        [Side::Callee, Side::Caller]
            .into_iter()
            .filter_map(|s| self.sdp(s)?.media.get(media_index))
            .map(|m| m.media.as_str())
            .next()
    }

    /// The side whose From tag this message carries (requests) or answers (responses).
    fn sender_side(&self, msg: &SipMessage<'_>) -> Side {
        let from_is_caller = match (&self.caller.tag, msg.from.tag) {
            (Some(ct), Some(ft)) => ct == ft,
            _ => true,
        };
        let from_side = if from_is_caller {
            Side::Caller
        } else {
            Side::Callee
        };
        match msg.start {
            StartLine::Request { .. } => from_side,
            StartLine::Response { .. } => from_side.other(),
        }
    }
}

/// Whether an SDP `m=` transport is secure RTP (RFC 3711 / 5124 / 5764: `.../SAVP`, `.../SAVPF`).
pub fn is_srtp_proto(proto: &str) -> bool {
    let p = proto.as_bytes();
    [&b"/SAVP"[..], b"/SAVPF"]
        .iter()
        .any(|t| p.len() >= t.len() && p[p.len() - t.len()..].eq_ignore_ascii_case(t))
}

/// How long a call challenged with 401/407 waits for the INVITE with credentials (64*T1).
pub const AUTH_GRACE_NS: i64 = 32_000_000_000;

/// Where a media packet belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaRoute {
    pub key: CallKey,
    pub direction: MediaDirection,
    pub rtcp: bool,
    /// Index of the `m=` line in the SDP.
    pub media_index: usize,
    /// The SDP that announced this address last negotiated T.38 (`udptl`), not RTP.
    pub udptl: bool,
    /// The SDP that announced this address negotiated SRTP (`RTP/SAVP`, `RTP/SAVPF`,
    /// `UDP/TLS/RTP/SAVP(F)`): the payloads are encrypted.
    pub srtp: bool,
}

/// What the tracker made of a SIP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipVerdict {
    /// An INVITE that started a new call.
    NewCall(CallKey),
    /// A message of a known call.
    Call(CallKey),
    /// Not part of any call (REGISTER, OPTIONS, stray responses, ...).
    NotCall,
    /// A new call was refused because `max_calls` are active.
    TooManyCalls,
}

/// Timing and limits of the tracker.
#[derive(Debug, Clone, Copy)]
pub struct TrackerOptions {
    /// An answered call with no packet for this long ends.
    pub media_timeout_ns: i64,
    /// An unanswered call with no packet for this long ends.
    pub setup_timeout_ns: i64,
    /// After BYE/CANCEL/final error, the call ends once no SIP was seen for this long.
    pub closing_grace_ns: i64,
    pub max_calls: usize,
}

impl Default for TrackerOptions {
    fn default() -> Self {
        TrackerOptions {
            media_timeout_ns: 60_000_000_000,
            setup_timeout_ns: 180_000_000_000,
            closing_grace_ns: 2_000_000_000,
            max_calls: 200_000,
        }
    }
}

/// Tracks every active call.
#[derive(Debug, Default)]
pub struct CallTracker {
    opts: TrackerOptions,
    dialogs: HashMap<CallKey, Dialog>,
    by_call_id: HashMap<String, CallKey>,
    routes: HashMap<SocketAddr, MediaRoute>,
    next_key: CallKey,
    /// Calls ended by `on_sip`, returned by the next `expire`/`take_ended`.
    ended: Vec<Dialog>,
    /// SDP bodies that did not parse.
    pub sdp_errors: u64,
    /// The site's networks, which give each new call its direction.
    networks: direction::SiteNetworks,
}

impl CallTracker {
    pub fn new(opts: TrackerOptions) -> Self {
        CallTracker {
            opts,
            ..Default::default()
        }
    }

    /// Sets the site's networks: calls started from now on get their direction from them.
    pub fn set_networks(&mut self, networks: direction::SiteNetworks) {
        self.networks = networks;
    }

    /// Active calls.
    pub fn active(&self) -> usize {
        self.dialogs.len()
    }

    pub fn dialog(&self, key: CallKey) -> Option<&Dialog> {
        self.dialogs.get(&key)
    }

    /// Accounts a SIP message seen at `now_ns` whose packet's addresses are unknown (a call it
    /// starts has direction `Unknown`).
    pub fn on_sip(&mut self, now_ns: i64, msg: &SipMessage<'_>) -> SipVerdict {
        self.on_sip_from(now_ns, None, msg)
    }

    /// Accounts a SIP message seen at `now_ns`, carried from `hop.0` to `hop.1` (the packet's
    /// source and destination IP: an INVITE starting a call gives it its direction).
    pub fn on_sip_from(
        &mut self,
        now_ns: i64,
        hop: Option<(IpAddr, IpAddr)>,
        msg: &SipMessage<'_>,
    ) -> SipVerdict {
        // An INVITE for a dialog that BYE or CANCEL already closed starts a new call (a
        // Call-ID reused later, or the same capture read twice): the old call ends now.
        if msg.is_request("INVITE")
            && let Some(&k) = self.by_call_id.get(msg.call_id)
            && self
                .dialogs
                .get(&k)
                .is_some_and(|d| matches!(d.end_reason, Some(CallEnd::Bye | CallEnd::Cancel)))
            && let Some(d) = self.remove(k, CallEnd::Timeout)
        {
            self.ended.push(d);
        }
        let (key, new) = match self.by_call_id.get(msg.call_id) {
            Some(&k) => (k, false),
            None if msg.is_request("INVITE") => {
                if self.dialogs.len() >= self.opts.max_calls {
                    return SipVerdict::TooManyCalls;
                }
                let key = self.next_key;
                self.next_key += 1;
                self.dialogs.insert(
                    key,
                    Dialog {
                        key,
                        call_id: msg.call_id.to_string(),
                        caller: Party::from_name_addr(&msg.from),
                        callee: Party::from_name_addr(&msg.to),
                        start_ns: now_ns,
                        answer_ns: None,
                        last_ns: now_ns,
                        last_sip_ns: now_ns,
                        state: CallState::Trying,
                        sip_status: None,
                        end_reason: None,
                        closing_since: None,
                        challenged: false,
                        caller_sdp: None,
                        callee_sdp: None,
                        routes: Vec::new(),
                        direction: hop.map_or(direction::CallDirection::Unknown, |(s, d)| {
                            self.networks.classify(s, d)
                        }),
                    },
                );
                self.by_call_id.insert(msg.call_id.to_string(), key);
                (key, true)
            }
            None => return SipVerdict::NotCall,
        };
        let Some(d) = self.dialogs.get_mut(&key) else {
            return SipVerdict::NotCall;
        };
        d.last_ns = d.last_ns.max(now_ns);
        d.last_sip_ns = now_ns;
        match msg.start {
            StartLine::Request { method, .. } => {
                if method.eq_ignore_ascii_case("INVITE")
                    && d.answer_ns.is_none()
                    && d.end_reason == Some(CallEnd::Rejected)
                {
                    // A new attempt after a rejection (typically with credentials after 401/407):
                    // the same call goes on.
                    d.closing_since = None;
                    d.end_reason = None;
                    d.challenged = false;
                    d.sip_status = None;
                } else if method.eq_ignore_ascii_case("BYE") && d.closing_since.is_none() {
                    d.closing_since = Some(now_ns);
                    d.end_reason = Some(CallEnd::Bye);
                } else if method.eq_ignore_ascii_case("CANCEL")
                    && d.answer_ns.is_none()
                    && d.closing_since.is_none()
                {
                    d.closing_since = Some(now_ns);
                    d.end_reason = Some(CallEnd::Cancel);
                }
            }
            StartLine::Response { status, .. } => {
                if msg.cseq.method.eq_ignore_ascii_case("INVITE") && d.answer_ns.is_none() {
                    if d.callee.tag.is_none()
                        && let Some(t) = msg.to.tag
                    {
                        d.callee.tag = Some(t.to_string());
                    }
                    match status {
                        100..=199 => {
                            if status > 100 {
                                d.state = CallState::Ringing;
                            }
                        }
                        200..=299 => {
                            // A forked INVITE: the branch that answers is the callee, whatever
                            // tag an earlier provisional response of another branch had.
                            if let Some(t) = msg.to.tag {
                                d.callee.tag = Some(t.to_string());
                            }
                            d.answer_ns = Some(now_ns);
                            d.state = CallState::Answered;
                            d.sip_status = Some(status);
                        }
                        _ => {
                            d.sip_status = Some(status);
                            d.challenged = matches!(status, 401 | 407);
                            if d.closing_since.is_none() {
                                d.closing_since = Some(now_ns);
                                d.end_reason = Some(CallEnd::Rejected);
                            }
                        }
                    }
                }
            }
        }
        if msg.has_sdp() {
            match sip::sdp::parse(msg.body) {
                Ok(sd) => {
                    let side = d.sender_side(msg);
                    self.set_sdp(key, side, sd);
                }
                Err(_) => self.sdp_errors += 1,
            }
        }
        if new {
            SipVerdict::NewCall(key)
        } else {
            SipVerdict::Call(key)
        }
    }

    fn set_sdp(&mut self, key: CallKey, side: Side, sd: SessionDescription) {
        // Media sent *to* this side's addresses comes from the other side.
        let direction = match side {
            Side::Caller => MediaDirection::CalleeToCaller,
            Side::Callee => MediaDirection::CallerToCallee,
        };
        let mut added = Vec::new();
        for (i, m) in sd.media.iter().enumerate() {
            let Some(ip) = m.connection else { continue };
            if m.port == 0 || ip.is_unspecified() {
                continue;
            }
            for (port, rtcp) in [(m.port, false), (m.port.wrapping_add(1), true)] {
                let addr = SocketAddr::new(ip, port);
                // The newest call announcing an address owns it.
                if let Some(old) = self.routes.insert(
                    addr,
                    MediaRoute {
                        key,
                        direction,
                        rtcp,
                        media_index: i,
                        udptl: m.proto.eq_ignore_ascii_case("udptl"),
                        srtp: is_srtp_proto(&m.proto),
                    },
                ) && old.key != key
                    && let Some(od) = self.dialogs.get_mut(&old.key)
                {
                    od.routes.retain(|a| *a != addr);
                }
                added.push(addr);
            }
        }
        if let Some(d) = self.dialogs.get_mut(&key) {
            for a in added {
                if !d.routes.contains(&a) {
                    d.routes.push(a);
                }
            }
            match side {
                Side::Caller => d.caller_sdp = Some(sd),
                Side::Callee => d.callee_sdp = Some(sd),
            }
        }
    }

    /// The call a UDP datagram between these addresses belongs to, matched first on the
    /// destination (an SDP address is where its owner receives), then on the source
    /// (symmetric RTP: the owner also sends from it).
    pub fn route_media(&self, src: SocketAddr, dst: SocketAddr) -> Option<MediaRoute> {
        if let Some(r) = self.routes.get(&dst) {
            return Some(*r);
        }
        self.routes.get(&src).map(|r| MediaRoute {
            direction: r.direction.flip(),
            ..*r
        })
    }

    /// [`Self::route_media`], with where the route's entry is in memory and its size (a
    /// prefetch hint: the entry's key is just before the route).
    pub fn route_media_at(
        &self,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Option<(MediaRoute, usize, usize)> {
        let entry = std::mem::size_of::<(SocketAddr, MediaRoute)>();
        let before = std::mem::size_of::<SocketAddr>();
        if let Some(r) = self.routes.get(&dst) {
            return Some((
                *r,
                (r as *const MediaRoute as usize).saturating_sub(before),
                entry,
            ));
        }
        self.routes.get(&src).map(|r| {
            let at = (r as *const MediaRoute as usize).saturating_sub(before);
            let route = MediaRoute {
                direction: r.direction.flip(),
                ..*r
            };
            (route, at, entry)
        })
    }

    /// Notes a media packet of a call and returns the call's dialog (one lookup for both).
    pub fn touch_dialog(&mut self, key: CallKey, now_ns: i64) -> Option<&Dialog> {
        let d = self.dialogs.get_mut(&key)?;
        d.last_ns = d.last_ns.max(now_ns);
        Some(d)
    }

    /// Notes a media packet of a call.
    pub fn touch(&mut self, key: CallKey, now_ns: i64) {
        if let Some(d) = self.dialogs.get_mut(&key) {
            d.last_ns = d.last_ns.max(now_ns);
        }
    }

    /// Ends and removes the calls that are over at `now_ns`.
    pub fn expire(&mut self, now_ns: i64) -> Vec<Dialog> {
        let opts = self.opts;
        let over: Vec<CallKey> = self
            .dialogs
            .values()
            .filter(|d| {
                if d.closing_since.is_some() {
                    let grace = if d.challenged {
                        opts.closing_grace_ns.max(AUTH_GRACE_NS)
                    } else {
                        opts.closing_grace_ns
                    };
                    now_ns - d.last_sip_ns >= grace
                } else {
                    let limit = if d.answer_ns.is_some() {
                        opts.media_timeout_ns
                    } else {
                        opts.setup_timeout_ns
                    };
                    now_ns - d.last_ns >= limit
                }
            })
            .map(|d| d.key)
            .collect();
        let mut out: Vec<Dialog> = std::mem::take(&mut self.ended);
        out.extend(
            over.into_iter()
                .filter_map(|k| self.remove(k, CallEnd::Timeout)),
        );
        out.sort_by_key(|d| (d.start_ns, d.key));
        out
    }

    /// Calls that `on_sip` ended (a closed dialog's Call-ID reused by a new INVITE).
    pub fn take_ended(&mut self) -> Vec<Dialog> {
        std::mem::take(&mut self.ended)
    }

    /// Ends every call (end of capture).
    pub fn end_all(&mut self) -> Vec<Dialog> {
        let keys: Vec<CallKey> = self.dialogs.keys().copied().collect();
        let mut out: Vec<Dialog> = std::mem::take(&mut self.ended);
        out.extend(
            keys.into_iter()
                .filter_map(|k| self.remove(k, CallEnd::CaptureEnd)),
        );
        out.sort_by_key(|d| (d.start_ns, d.key));
        out
    }

    fn remove(&mut self, key: CallKey, default_reason: CallEnd) -> Option<Dialog> {
        let mut d = self.dialogs.remove(&key)?;
        if d.closing_since.is_none() {
            d.end_reason = Some(default_reason);
        }
        for a in &d.routes {
            if self.routes.get(a).is_some_and(|r| r.key == key) {
                self.routes.remove(a);
            }
        }
        if self.by_call_id.get(&d.call_id) == Some(&key) {
            self.by_call_id.remove(&d.call_id);
        }
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@b SIP/2.0\r\nFrom: \"Alice\" <sip:alice@a>;tag=A\r\n\
        To: <sip:bob@b>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n\
        Content-Length: 55\r\n\r\nv=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\nt=0 0\r\n";
    const OK: &[u8] = b"SIP/2.0 200 OK\r\nFrom: \"Alice\" <sip:alice@a>;tag=A\r\n\
        To: <sip:bob@b>;tag=B\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n\
        Content-Length: 55\r\n\r\nv=0\r\nc=IN IP4 10.0.0.2\r\nm=audio 6000 RTP/AVP 0\r\nt=0 0\r\n";
    const BYE_FROM_CALLEE: &[u8] = b"BYE sip:alice@a SIP/2.0\r\nFrom: <sip:bob@b>;tag=B\r\n\
        To: \"Alice\" <sip:alice@a>;tag=A\r\nCall-ID: c1\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n";

    fn msg(b: &[u8]) -> SipMessage<'_> {
        sip::parse(b).expect("test message parses")
    }

    #[test]
    fn roles_come_from_sip_not_packet_order() {
        let mut t = CallTracker::new(TrackerOptions::default());
        let SipVerdict::NewCall(k) = t.on_sip(0, &msg(INVITE)) else {
            panic!("INVITE must start a call")
        };
        assert_eq!(t.on_sip(10, &msg(OK)), SipVerdict::Call(k));
        let a: SocketAddr = "10.0.0.1:4000".parse().expect("addr");
        let b: SocketAddr = "10.0.0.2:6000".parse().expect("addr");
        let x: SocketAddr = "192.0.2.9:7777".parse().expect("addr");
        // To the callee's address: the caller speaks.
        let r = t.route_media(a, b).expect("routed");
        assert_eq!(r.direction, MediaDirection::CallerToCallee);
        // To the caller's address, from anywhere: the callee speaks.
        assert_eq!(
            t.route_media(x, a).map(|r| r.direction),
            Some(MediaDirection::CalleeToCaller)
        );
        // From the callee's address to an unknown one (NAT): still the callee.
        assert_eq!(
            t.route_media(b, x).map(|r| r.direction),
            Some(MediaDirection::CalleeToCaller)
        );
        let rtcp: SocketAddr = "10.0.0.2:6001".parse().expect("addr");
        assert!(t.route_media(a, rtcp).is_some_and(|r| r.rtcp));
        // A BYE from the callee ends the call after the grace period.
        assert_eq!(
            t.on_sip(1_000_000_000, &msg(BYE_FROM_CALLEE)),
            SipVerdict::Call(k)
        );
        assert!(t.expire(1_500_000_000).is_empty());
        let ended = t.expire(4_000_000_000);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].end_reason, Some(CallEnd::Bye));
        assert_eq!(ended[0].caller.display_name.as_deref(), Some("Alice"));
        assert_eq!(ended[0].callee.tag.as_deref(), Some("B"));
        assert!(t.route_media(a, b).is_none());
    }

    #[test]
    fn unanswered_call_times_out_and_stray_messages_are_not_calls() {
        let mut t = CallTracker::new(TrackerOptions::default());
        assert_eq!(t.on_sip(0, &msg(OK)), SipVerdict::NotCall);
        assert!(matches!(t.on_sip(0, &msg(INVITE)), SipVerdict::NewCall(_)));
        assert!(t.expire(100_000_000_000).is_empty());
        let ended = t.expire(181_000_000_000);
        assert_eq!(ended[0].end_reason, Some(CallEnd::Timeout));
    }

    #[test]
    fn reused_call_id_after_bye_starts_a_new_call() {
        let mut t = CallTracker::new(TrackerOptions::default());
        let SipVerdict::NewCall(k1) = t.on_sip(0, &msg(INVITE)) else {
            panic!("first INVITE starts a call")
        };
        t.on_sip(10, &msg(OK));
        t.on_sip(20, &msg(BYE_FROM_CALLEE));
        let SipVerdict::NewCall(k2) = t.on_sip(30, &msg(INVITE)) else {
            panic!("an INVITE after BYE starts a new call")
        };
        assert_ne!(k1, k2);
        let ended = t.take_ended();
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].key, k1);
        assert_eq!(ended[0].end_reason, Some(CallEnd::Bye));
        assert_eq!(t.active(), 1);
    }

    /// A SIP message from parts: the start line, From/To with tags, CSeq and an optional SDP
    /// whose audio line is `c=IN IP4 {ip}` `m=audio {port} {proto} 0` and a direction attribute.
    fn build(
        start: &str,
        from: &str,
        to: &str,
        cseq: &str,
        sdp: Option<(&str, u16, &str, &str)>,
    ) -> Vec<u8> {
        let body = sdp
            .map(|(ip, port, proto, dir)| {
                format!("v=0\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} {proto} 0\r\na={dir}\r\n")
            })
            .unwrap_or_default();
        let ct = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{start}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: f1\r\nCSeq: {cseq}\r\n{ct}\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn forked_early_media_reinvite_hold_and_srtp() {
        let a = "<sip:alice@a>;tag=A";
        let mut t = CallTracker::new(TrackerOptions::default());
        let inv = build(
            "INVITE sip:bob@b SIP/2.0",
            a,
            "<sip:bob@b>",
            "1 INVITE",
            Some(("10.0.0.1", 4000, "RTP/AVP", "sendrecv")),
        );
        let SipVerdict::NewCall(k) = t.on_sip(0, &msg(&inv)) else {
            panic!("INVITE starts a call")
        };
        // Two branches ring; the first sends early media (183 with SDP).
        let early = build(
            "SIP/2.0 183 Session Progress",
            a,
            "<sip:bob@b>;tag=F1",
            "1 INVITE",
            Some(("10.0.0.7", 7000, "RTP/AVP", "sendrecv")),
        );
        let ring2 = build(
            "SIP/2.0 180 Ringing",
            a,
            "<sip:bob@b>;tag=F2",
            "1 INVITE",
            None,
        );
        t.on_sip(10, &msg(&early));
        t.on_sip(20, &msg(&ring2));
        let caller: SocketAddr = "10.0.0.1:4000".parse().expect("addr");
        let fork1: SocketAddr = "10.0.0.7:7000".parse().expect("addr");
        assert_eq!(
            t.route_media(fork1, caller).map(|r| (r.key, r.direction)),
            Some((k, MediaDirection::CalleeToCaller)),
            "early media is the callee's"
        );
        assert_eq!(
            t.dialog(k).and_then(|d| d.callee.tag.clone()).as_deref(),
            Some("F1")
        );
        // The second branch answers: it is the callee from now on.
        let ok = build(
            "SIP/2.0 200 OK",
            a,
            "<sip:bob@b>;tag=F2",
            "1 INVITE",
            Some(("10.0.0.2", 6000, "RTP/AVP", "sendrecv")),
        );
        t.on_sip(30, &msg(&ok));
        let d = t.dialog(k).expect("active");
        assert_eq!(d.callee.tag.as_deref(), Some("F2"));
        assert_eq!((d.state, d.sip_status), (CallState::Answered, Some(200)));
        // The callee holds the call and moves its media (re-INVITE from the callee: roles stay).
        let hold = build(
            "INVITE sip:alice@a SIP/2.0",
            "<sip:bob@b>;tag=F2",
            a,
            "1 INVITE",
            Some(("10.0.0.9", 9000, "RTP/AVP", "sendonly")),
        );
        assert_eq!(t.on_sip(40, &msg(&hold)), SipVerdict::Call(k));
        let moved: SocketAddr = "10.0.0.9:9000".parse().expect("addr");
        assert_eq!(
            t.route_media(caller, moved).map(|r| (r.key, r.direction)),
            Some((k, MediaDirection::CallerToCallee)),
            "media to the callee's new address is the caller's"
        );
        let d = t.dialog(k).expect("active");
        let held = d
            .callee_sdp
            .as_ref()
            .and_then(|s| s.media.first())
            .map(|m| m.direction);
        assert_eq!(held, Some(sip::sdp::Direction::SendOnly));
        assert_eq!(d.end_reason, None, "a re-INVITE does not end the call");
        // The caller resumes with SRTP (UPDATE with SDP): its new address is encrypted media.
        let update = build(
            "UPDATE sip:bob@b SIP/2.0",
            a,
            "<sip:bob@b>;tag=F2",
            "2 UPDATE",
            Some(("10.0.0.1", 4100, "RTP/SAVP", "sendrecv")),
        );
        t.on_sip(50, &msg(&update));
        let srtp: SocketAddr = "10.0.0.1:4100".parse().expect("addr");
        assert!(
            t.route_media(moved, srtp)
                .is_some_and(|r| r.srtp && r.key == k)
        );
        assert!(t.route_media(caller, moved).is_some_and(|r| !r.srtp));
        assert!(is_srtp_proto("UDP/TLS/RTP/SAVPF") && !is_srtp_proto("RTP/AVP"));
    }

    #[test]
    fn a_new_call_takes_its_direction_from_the_invites_addresses() {
        let mut t = CallTracker::new(TrackerOptions::default());
        t.set_networks(
            direction::SiteNetworks::parse(&["10.0.0.0/24".to_owned()], &[]).expect("networks"),
        );
        let (local, remote): (IpAddr, IpAddr) = (
            "10.0.0.1".parse().expect("ip"),
            "198.51.100.7".parse().expect("ip"),
        );
        let SipVerdict::NewCall(k) = t.on_sip_from(0, Some((remote, local)), &msg(INVITE)) else {
            panic!("INVITE starts a call")
        };
        // The answer (local -> remote) does not change it.
        t.on_sip_from(10, Some((local, remote)), &msg(OK));
        let d = t.dialog(k).expect("active");
        assert_eq!(d.direction, direction::CallDirection::Inbound);
        let mut u = CallTracker::new(TrackerOptions::default());
        let SipVerdict::NewCall(k) = u.on_sip(0, &msg(INVITE)) else {
            panic!("INVITE starts a call")
        };
        assert_eq!(
            u.dialog(k).map(|d| d.direction),
            Some(direction::CallDirection::Unknown)
        );
    }

    #[test]
    fn invite_after_auth_challenge_continues_the_call() {
        const CHALLENGE: &[u8] = b"SIP/2.0 407 Proxy Authentication Required\r\n\
            From: \"Alice\" <sip:alice@a>;tag=A\r\nTo: <sip:bob@b>;tag=P\r\nCall-ID: c1\r\n\
            CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let mut t = CallTracker::new(TrackerOptions::default());
        let SipVerdict::NewCall(k) = t.on_sip(0, &msg(INVITE)) else {
            panic!("INVITE starts a call")
        };
        t.on_sip(10, &msg(CHALLENGE));
        assert!(t.expire(5_000_000_000).is_empty(), "waits for credentials");
        assert_eq!(t.on_sip(6_000_000_000, &msg(INVITE)), SipVerdict::Call(k));
        t.on_sip(6_100_000_000, &msg(OK));
        let d = t.dialog(k).expect("active");
        assert_eq!(d.sip_status, Some(200));
        assert_eq!(d.end_reason, None);
    }
}
