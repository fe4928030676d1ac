//! SIP and SDP parsing, pure and zero-copy where it can be: [`message`] parses SIP messages
//! (any port: SIP is recognised by content), [`sdp`] parses session descriptions, [`stream`]
//! reassembles SIP over TCP into messages.

pub mod message;
pub mod sdp;
pub mod stream;

pub use message::{CSeq, NameAddr, SipError, SipMessage, StartLine, looks_like_sip, parse};
pub use sdp::{Direction, MediaDescription, RtpMap, SdpError, SessionDescription};

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    // Real messages, extracted with tshark from captures in ../shared/captures.
    const NB6_INVITE: &[u8] = include_bytes!("../../tests/data/nb6_invite.sip");
    const SIPP_200: &[u8] = include_bytes!("../../tests/data/sipp_200_ok.sip");
    const IPV6_INVITE: &[u8] = include_bytes!("../../tests/data/ipv6_invite.sip");

    #[test]
    fn parses_real_invite_with_display_name_and_sdp() {
        let m = parse(NB6_INVITE).expect("parses");
        assert!(m.is_request("INVITE"));
        assert_eq!(
            m.start,
            StartLine::Request {
                method: "INVITE",
                uri: "sip:147@ims.mnc010.mcc208.3gppnetwork.org;user=phone"
            }
        );
        assert_eq!(m.call_id, "1135D8701739D86@10.251.23.139");
        assert_eq!(m.from.display_name, Some("0360653674"));
        assert_eq!(m.from.user, Some("+33360653674"));
        assert_eq!(m.from.tag, Some("66891B8"));
        assert_eq!(m.to.user, Some("147"));
        assert_eq!(m.to.tag, None);
        assert_eq!(
            m.cseq,
            CSeq {
                seq: 1,
                method: "INVITE"
            }
        );
        assert_eq!(m.content_length, Some(277));
        assert_eq!(m.body.len(), 277);
        assert!(!m.body_truncated);
        assert!(m.has_sdp());
        assert_eq!(m.header("user-agent"), Some("neufbox6 - r13507"));
        let sd = sdp::parse(m.body).expect("sdp");
        assert_eq!(sd.media.len(), 1);
        let a = &sd.media[0];
        assert_eq!(a.media, "audio");
        assert_eq!(a.port, 35560);
        assert_eq!(a.payload_types, vec![8, 0, 18, 101]);
        assert_eq!(
            a.connection,
            Some("10.251.23.139".parse::<IpAddr>().expect("ip"))
        );
        assert_eq!(a.ptime, Some(20));
        assert_eq!(a.direction, Direction::SendRecv);
        assert_eq!(
            a.rtpmap(101).map(|r| r.encoding),
            Some("telephone-event".into())
        );
        assert_eq!(a.rtpmap(8).map(|r| r.clock_rate), Some(8000));
    }

    #[test]
    fn parses_real_response_with_to_tag() {
        let m = parse(SIPP_200).expect("parses");
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.call_id, "1-26428@127.0.0.1");
        assert_eq!(m.from.display_name, Some("sipp"));
        assert_eq!(m.from.user, Some("sipp"));
        assert_eq!(m.to.tag, Some("26426SIPpTag011"));
        assert_eq!(m.to.uri, "sip:1000@127.0.0.1:5070");
        let sd = sdp::parse(m.body).expect("sdp");
        assert_eq!(sd.media[0].port, 30000);
        assert_eq!(sd.media[0].payload_types, vec![8, 101]);
    }

    #[test]
    fn parses_ipv6_sdp() {
        let m = parse(IPV6_INVITE).expect("parses");
        assert_eq!(m.from.user, Some("9876"));
        assert_eq!(m.from.tag, Some("a3bhg"));
        let sd = sdp::parse(m.body).expect("sdp");
        assert_eq!(
            sd.media[0].connection,
            Some("fe80::21a:a0ff:fe07:32e0".parse::<IpAddr>().expect("ip"))
        );
        assert_eq!(
            sd.media[0].rtpmap(0).map(|r| r.encoding),
            Some("pcmu".into())
        );
    }

    #[test]
    fn compact_headers_and_addr_spec() {
        let msg = b"BYE sip:bob@b.example SIP/2.0\r\n\
            v: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n\
            f: sip:alice@a.example;tag=abc\r\n\
            t: \"Bob \\\"B\\\" <x>\" <sip:bob@b.example>;tag=xyz\r\n\
            i: call-1@a\r\n\
            CSeq: 2 BYE\r\n\
            l: 0\r\n\r\n";
        let m = parse(msg).expect("parses");
        assert_eq!(m.call_id, "call-1@a");
        assert_eq!(m.from.uri, "sip:alice@a.example");
        assert_eq!(m.from.tag, Some("abc"));
        assert_eq!(m.to.tag, Some("xyz"));
        assert_eq!(m.to.user, Some("bob"));
        assert_eq!(m.cseq.method, "BYE");
        assert_eq!(m.content_length, Some(0));
        assert!(m.body.is_empty());
    }

    #[test]
    fn sdp_directions_and_session_connection() {
        let body = b"v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
            a=recvonly\r\nm=audio 4000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\na=inactive\r\n\
            m=audio 5000 RTP/AVP 8\r\nc=IN IP4 10.0.0.2\r\na=sendonly\r\n";
        let sd = sdp::parse(body).expect("sdp");
        assert_eq!(sd.media[0].direction, Direction::RecvOnly);
        assert_eq!(
            sd.media[0].connection,
            Some("10.0.0.1".parse().expect("ip"))
        );
        assert_eq!(sd.media[1].port, 0);
        assert_eq!(sd.media[1].direction, Direction::Inactive);
        assert_eq!(
            sd.media[2].connection,
            Some("10.0.0.2".parse().expect("ip"))
        );
        assert_eq!(sd.media[2].direction, Direction::SendOnly);
    }

    #[test]
    fn sdp_fmtp_parameters_per_payload_type() {
        let body = b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 4000 RTP/AVP 96 97\r\n\
            a=rtpmap:96 H264/90000\r\n\
            a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0LAFraA,aM48gA==\r\n\
            a=fmtp:x broken\r\n";
        let sd = sdp::parse(body).expect("sdp");
        assert_eq!(
            sd.media[0].fmtps,
            vec![(
                96,
                "packetization-mode=1;sprop-parameter-sets=Z0LAFraA,aM48gA==".to_string()
            )]
        );
    }

    #[test]
    fn rejects_non_sip_and_never_panics_on_prefixes() {
        assert_eq!(parse(b"hello"), Err(SipError::NotSip));
        assert!(parse(b"INVITE sip:a SIP/2.0\r\nCall-ID: x\r\n\r\n").is_err());
        for n in 0..NB6_INVITE.len() {
            let _ = parse(&NB6_INVITE[..n]);
            let _ = sdp::parse(&NB6_INVITE[n..]);
        }
    }
}
