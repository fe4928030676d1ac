//! SIP (RFC 3261) and SDP (RFC 4566) text of one basic call: INVITE with an SDP offer, 100 Trying,
//! 180 Ringing, 200 OK with the answer, ACK, BYE and its 200 OK — with the headers a real user
//! agent sends (Via branch, tags, CSeq, Contact, Max-Forwards, User-Agent, Content-Length).

use std::fmt::Write as _;

use crate::options::Codec;
use crate::truth::{PartyTruth, Side};

/// The messages of a call, in the order they are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SipMessage {
    Invite,
    Trying,
    Ringing,
    InviteOk,
    Ack,
    Bye,
    ByeOk,
}

/// Everything the messages of one dialog share.
#[derive(Debug, Clone)]
pub(crate) struct Dialog {
    pub call_id: String,
    pub codec: Codec,
    pub invite_cseq: u32,
    /// CSeq of the BYE (in the hanging-up party's own CSeq space).
    pub bye_cseq: u32,
    pub invite_branch: String,
    pub ack_branch: String,
    pub bye_branch: String,
    pub caller_session: u64,
    pub callee_session: u64,
    pub hangup_by: Side,
}

const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, NOTIFY, REFER";
const TELEPHONE_EVENT_PT: u8 = 101;

fn name_addr(p: &PartyTruth) -> String {
    format!("\"{}\" <sip:{}@{}>", p.display_name, p.number, p.ip)
}

fn contact(p: &PartyTruth) -> String {
    format!("<sip:{}@{}:{}>", p.number, p.ip, p.sip_port)
}

fn sdp(p: &PartyTruth, session: u64, pts: &[u8], codec_first: Codec) -> String {
    let mut s = String::with_capacity(320);
    let m_pts: Vec<String> = pts.iter().map(u8::to_string).collect();
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "v=0\r\no=- {session} {session} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {pts}\r\n",
        ip = p.ip,
        port = p.rtp_port,
        pts = m_pts.join(" "),
    );
    for pt in pts {
        let line = match *pt {
            0 => "a=rtpmap:0 PCMU/8000\r\n".to_string(),
            8 => "a=rtpmap:8 PCMA/8000\r\n".to_string(),
            TELEPHONE_EVENT_PT => {
                format!(
                    "a=rtpmap:{TELEPHONE_EVENT_PT} telephone-event/8000\r\na=fmtp:{TELEPHONE_EVENT_PT} 0-15\r\n"
                )
            }
            other => format!("a=rtpmap:{other} {}/8000\r\n", codec_first.name()),
        };
        s.push_str(&line);
    }
    s.push_str("a=ptime:20\r\na=sendrecv\r\n");
    s
}

impl Dialog {
    fn offer(&self, caller: &PartyTruth) -> String {
        let (first, second) = match self.codec {
            Codec::Pcmu => (0, 8),
            Codec::Pcma => (8, 0),
        };
        sdp(
            caller,
            self.caller_session,
            &[first, second, TELEPHONE_EVENT_PT],
            self.codec,
        )
    }

    fn answer(&self, callee: &PartyTruth) -> String {
        sdp(
            callee,
            self.callee_session,
            &[self.codec.payload_type(), TELEPHONE_EVENT_PT],
            self.codec,
        )
    }

    /// The text of `msg` and which side sends it.
    pub(crate) fn render(
        &self,
        msg: SipMessage,
        caller: &PartyTruth,
        callee: &PartyTruth,
    ) -> (Side, String) {
        let from_caller = format!("{};tag={}", name_addr(caller), caller.tag);
        let to_callee_tagged = format!("{};tag={}", name_addr(callee), callee.tag);
        let invite_via = format!(
            "SIP/2.0/UDP {}:{};branch=z9hG4bK{};rport",
            caller.ip, caller.sip_port, self.invite_branch
        );
        let invite_cseq = format!("{} INVITE", self.invite_cseq);
        let bye_cseq = format!("{} BYE", self.bye_cseq);
        let (bye_from, bye_to) = match self.hangup_by {
            Side::Caller => (caller, callee),
            Side::Callee => (callee, caller),
        };
        let bye_via = format!(
            "SIP/2.0/UDP {}:{};branch=z9hG4bK{};rport",
            bye_from.ip, bye_from.sip_port, self.bye_branch
        );
        let bye_from_hdr = format!("{};tag={}", name_addr(bye_from), bye_from.tag);
        let bye_to_hdr = format!("{};tag={}", name_addr(bye_to), bye_to.tag);

        let mut headers: Vec<(&str, String)> = Vec::with_capacity(12);
        let mut body = String::new();
        let (side, start_line) = match msg {
            SipMessage::Invite => {
                body = self.offer(caller);
                headers.push(("Via", invite_via));
                headers.push(("Max-Forwards", "70".into()));
                headers.push(("From", from_caller));
                headers.push(("To", name_addr(callee)));
                headers.push(("Call-ID", self.call_id.clone()));
                headers.push(("CSeq", invite_cseq));
                headers.push(("Contact", contact(caller)));
                headers.push(("Allow", ALLOW.into()));
                headers.push(("Supported", "replaces, timer".into()));
                headers.push(("User-Agent", caller.user_agent.clone()));
                headers.push(("Content-Type", "application/sdp".into()));
                (
                    Side::Caller,
                    format!(
                        "INVITE sip:{}@{}:{} SIP/2.0",
                        callee.number, callee.ip, callee.sip_port
                    ),
                )
            }
            SipMessage::Trying | SipMessage::Ringing | SipMessage::InviteOk => {
                headers.push(("Via", format!("{invite_via};received={}", caller.ip)));
                headers.push(("From", from_caller));
                let to = if msg == SipMessage::Trying {
                    name_addr(callee)
                } else {
                    to_callee_tagged
                };
                headers.push(("To", to));
                headers.push(("Call-ID", self.call_id.clone()));
                headers.push(("CSeq", invite_cseq));
                if msg != SipMessage::Trying {
                    headers.push(("Contact", contact(callee)));
                    headers.push(("Server", callee.user_agent.clone()));
                }
                if msg == SipMessage::InviteOk {
                    headers.push(("Allow", ALLOW.into()));
                    headers.push(("Content-Type", "application/sdp".into()));
                    body = self.answer(callee);
                }
                let status = match msg {
                    SipMessage::Trying => "100 Trying",
                    SipMessage::Ringing => "180 Ringing",
                    _ => "200 OK",
                };
                (Side::Callee, format!("SIP/2.0 {status}"))
            }
            SipMessage::Ack => {
                headers.push((
                    "Via",
                    format!(
                        "SIP/2.0/UDP {}:{};branch=z9hG4bK{};rport",
                        caller.ip, caller.sip_port, self.ack_branch
                    ),
                ));
                headers.push(("Max-Forwards", "70".into()));
                headers.push(("From", from_caller));
                headers.push(("To", to_callee_tagged));
                headers.push(("Call-ID", self.call_id.clone()));
                headers.push(("CSeq", format!("{} ACK", self.invite_cseq)));
                headers.push(("Contact", contact(caller)));
                headers.push(("User-Agent", caller.user_agent.clone()));
                (
                    Side::Caller,
                    format!(
                        "ACK sip:{}@{}:{} SIP/2.0",
                        callee.number, callee.ip, callee.sip_port
                    ),
                )
            }
            SipMessage::Bye => {
                headers.push(("Via", bye_via));
                headers.push(("Max-Forwards", "70".into()));
                headers.push(("From", bye_from_hdr));
                headers.push(("To", bye_to_hdr));
                headers.push(("Call-ID", self.call_id.clone()));
                headers.push(("CSeq", bye_cseq));
                headers.push(("User-Agent", bye_from.user_agent.clone()));
                (
                    self.hangup_by,
                    format!(
                        "BYE sip:{}@{}:{} SIP/2.0",
                        bye_to.number, bye_to.ip, bye_to.sip_port
                    ),
                )
            }
            SipMessage::ByeOk => {
                headers.push(("Via", format!("{bye_via};received={}", bye_from.ip)));
                headers.push(("From", bye_from_hdr));
                headers.push(("To", bye_to_hdr));
                headers.push(("Call-ID", self.call_id.clone()));
                headers.push(("CSeq", bye_cseq));
                headers.push(("Server", bye_to.user_agent.clone()));
                let side = match self.hangup_by {
                    Side::Caller => Side::Callee,
                    Side::Callee => Side::Caller,
                };
                (side, "SIP/2.0 200 OK".to_string())
            }
        };
        headers.push(("Content-Length", body.len().to_string()));

        let mut text = String::with_capacity(600 + body.len());
        text.push_str(&start_line);
        text.push_str("\r\n");
        for (name, value) in headers {
            text.push_str(name);
            text.push_str(": ");
            text.push_str(&value);
            text.push_str("\r\n");
        }
        text.push_str("\r\n");
        text.push_str(&body);
        (side, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn party(n: &str, ip: [u8; 4], tag: &str) -> PartyTruth {
        PartyTruth {
            number: n.into(),
            display_name: "Anna Schmidt".into(),
            ip: Ipv4Addr::from(ip),
            sip_port: 5060,
            rtp_port: 16384,
            tag: tag.into(),
            user_agent: "UA/1".into(),
        }
    }

    #[test]
    fn content_length_matches_body_and_dialog_headers_are_consistent() {
        let a = party("+49301000000", [10, 1, 0, 1], "aaa");
        let b = party("+49401000000", [10, 2, 0, 1], "bbb");
        let d = Dialog {
            call_id: "abc@10.1.0.1".into(),
            codec: Codec::Pcma,
            invite_cseq: 10,
            bye_cseq: 3,
            invite_branch: "1".into(),
            ack_branch: "2".into(),
            bye_branch: "3".into(),
            caller_session: 5,
            callee_session: 6,
            hangup_by: Side::Callee,
        };
        for m in [
            SipMessage::Invite,
            SipMessage::Trying,
            SipMessage::Ringing,
            SipMessage::InviteOk,
            SipMessage::Ack,
            SipMessage::Bye,
            SipMessage::ByeOk,
        ] {
            let (_, text) = d.render(m, &a, &b);
            let (head, body) = text
                .split_once("\r\n\r\n")
                .unwrap_or_else(|| panic!("{text}"));
            let cl = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap_or_else(|| panic!("{text}"));
            assert_eq!(cl.parse::<usize>().ok(), Some(body.len()), "{m:?}");
            assert!(head.contains("Call-ID: abc@10.1.0.1"));
        }
        let (side, bye) = d.render(SipMessage::Bye, &a, &b);
        assert_eq!(side, Side::Callee);
        assert!(bye.starts_with("BYE sip:+49301000000@10.1.0.1:5060 SIP/2.0\r\n"));
        assert!(bye.contains("CSeq: 3 BYE"));
        let (_, invite) = d.render(SipMessage::Invite, &a, &b);
        assert!(invite.contains("m=audio 16384 RTP/AVP 8 0 101\r\n"));
    }
}
