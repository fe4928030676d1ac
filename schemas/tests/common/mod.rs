//! Sample messages shared by the schema tests: at least one of every message type and every
//! enum variant, with options both set and unset, so that a test iterating over them covers the
//! whole wire contract.

#![allow(dead_code)]

use tapfleet_schemas::{
    Ack, AckBody, CacheConfig, CallDirection, CaptureConfig, DesiredConfig, DtmfEvent, EdgeConfig,
    EndReason, EnrollGrant, EnrollRequest, EnrollResponse, EnrollResult, Event, EventBody,
    FileEntry, Job, JobAction, JobReply, Manifest, Message, Party, RecordingCounts, RecordingKind,
    ReplyBody, ReportedState, Retention, Sha256, StoragePolicy, StreamDirection, StreamInfo,
    Telemetry, TimeWindow, TransferChunk, TransferOffer, encode,
};

pub const RID: &str = "20240229T123456Z-deadbeef00010203";

pub fn sha(seed: u8) -> Sha256 {
    let mut b = [0u8; 32];
    for (i, x) in b.iter_mut().enumerate() {
        *x = seed.wrapping_add(i as u8).wrapping_mul(31);
    }
    Sha256(b)
}

fn stream(direction: StreamDirection, mos: Option<f64>) -> StreamInfo {
    StreamInfo {
        ssrc: 0xdead_beef,
        src: "[2001:db8::1]:40000".to_owned(),
        dst: "192.0.2.10:20000".to_owned(),
        direction,
        media: "audio".to_owned(),
        payload_type: 0,
        codec: "PCMU".to_owned(),
        clock_rate: 8000,
        packets: 1500,
        bytes: 258_000,
        lost: -2,
        duplicates: 3,
        reordered: 1,
        jitter_ms: 0.5,
        max_jitter_ms: 3.25,
        max_delta_ms: 20.000_001,
        mos,
        first_ns: 1_709_210_096_000_000_000,
        last_ns: 1_709_210_126_000_000_000,
        decoded: true,
        not_decoded: None,
        // The stream without a MOS stands for an SRTP one; the others carry RTCP.
        srtp: mos.is_none(),
        rtcp: mos.map(|_| tapfleet_schemas::RtcpInfo {
            sender_reports: 12,
            sender_packets: 1480,
            sender_octets: 236_800,
            receiver_reports: 11,
            fraction_lost: 0.25,
            cumulative_lost: -1,
            jitter_ms: 1.5,
            max_jitter_ms: 4.25,
            xr_r_factor: Some(80),
            xr_mos_lq: Some(4.1),
            xr_mos_cq: None,
        }),
    }
}

pub fn manifests() -> Vec<Manifest> {
    let bare = Manifest::new(RID.to_owned(), RecordingKind::OrphanStream);
    let mut full = Manifest::new(RID.to_owned(), RecordingKind::Call);
    full.edge_id = Some("site-1".to_owned());
    full.call_id = "a84b4c76e66710@pc33.atlanta.example.com".to_owned();
    full.part = 2;
    full.linked = vec!["20240229T120000Z-00112233445566ff".to_owned()];
    full.caller = Party {
        uri: "sip:+4930123@pbx.example.com".to_owned(),
        number: "+4930123".to_owned(),
        display_name: Some("Alice \u{e9}\u{1f4de}".to_owned()),
        tag: Some("1928301774".to_owned()),
    };
    full.callee = Party {
        uri: "sip:bob@biloxi.example.com".to_owned(),
        number: "bob".to_owned(),
        display_name: None,
        tag: None,
    };
    full.direction = CallDirection::Outbound;
    full.start_ns = 1_709_210_096_000_000_000;
    full.answer_ns = Some(1_709_210_098_000_000_000);
    full.end_ns = -5;
    full.end_reason = EndReason::Bye;
    full.sip_status = Some(200);
    full.streams = vec![
        stream(StreamDirection::CallerToCallee, Some(4.41)),
        stream(StreamDirection::CalleeToCaller, None),
        stream(StreamDirection::Unknown, Some(1.0)),
    ];
    full.dtmf = vec![DtmfEvent {
        digit: "#".to_owned(),
        start_ns: 1_709_210_100_000_000_000,
        duration_ms: 160,
        direction: StreamDirection::CallerToCallee,
    }];
    full.files = vec![
        FileEntry {
            name: "call.pcap".to_owned(),
            size: 123_456_789_012,
            sha256: sha(1),
            content_type: "application/vnd.tcpdump.pcap".to_owned(),
        },
        FileEntry {
            name: "audio.wav".to_owned(),
            size: 0,
            sha256: sha(2),
            content_type: "audio/wav".to_owned(),
        },
    ];
    full.packets = u64::MAX;
    full.complete = false;
    full.incomplete = vec!["kernel drops".to_owned(), "rtp timeout".to_owned()];
    let mut out = vec![bare, full];
    for (reason, direction) in [
        (EndReason::Cancel, CallDirection::Inbound),
        (EndReason::Rejected, CallDirection::Internal),
        (EndReason::RtpTimeout, CallDirection::Unknown),
        (EndReason::CaptureEnd, CallDirection::Outbound),
        (EndReason::MaxDuration, CallDirection::Inbound),
    ] {
        let mut m = Manifest::new(RID.to_owned(), RecordingKind::Call);
        m.end_reason = reason;
        m.direction = direction;
        m.start_ns = i64::MIN;
        m.end_ns = i64::MAX;
        out.push(m);
    }
    out
}

pub fn desired_configs() -> Vec<DesiredConfig> {
    let custom = EdgeConfig {
        capture: CaptureConfig {
            interfaces: vec!["eth0".to_owned(), "any".to_owned()],
            bpf_filter: Some("udp or tcp".to_owned()),
            snaplen: 1500,
            buffer_bytes: 1 << 30,
            promiscuous: false,
            rtp_timeout_secs: 30,
            max_call_secs: 3600,
            local_networks: vec!["10.0.0.0/8".to_owned(), "2001:db8:1::/48".to_owned()],
            trunk_networks: vec!["10.0.0.254".to_owned()],
        },
        cache: CacheConfig {
            capacity_bytes: u64::MAX,
            high_water_percent: 255,
            upload_threshold_bytes: 1 << 20,
            upload_max_age_secs: 600,
            bandwidth_limit_bps: Some(1_000_000),
            upload_windows: vec![TimeWindow {
                start_minute: 1320,
                end_minute: 360,
            }],
            retention: Retention::KeepDays { days: 30 },
        },
        storage: StoragePolicy {
            target: "edge-local".to_owned(),
            keep_local_copy: true,
        },
        telemetry_interval_secs: 10,
    };
    let mut deleting = EdgeConfig::default();
    deleting.cache.retention = Retention::DeleteWhenStored;
    vec![
        DesiredConfig::new(0, EdgeConfig::default()),
        DesiredConfig::new(u64::MAX, custom),
        DesiredConfig::new(7, deleting),
    ]
}

pub fn reported_states() -> Vec<ReportedState> {
    let offline = ReportedState::offline("0.1.0".to_owned(), "pbx-host".to_owned());
    let online = ReportedState {
        online: true,
        config_version: Some(42),
        config_error: Some("unknown interface eth9".to_owned()),
        at_ms: 1_709_210_096_000,
        ..offline.clone()
    };
    vec![offline, online]
}

pub fn telemetries() -> Vec<Telemetry> {
    let zero = Telemetry::new(0);
    let full = Telemetry {
        packets: 1,
        bytes: 2,
        kernel_drops: 3,
        interface_drops: 4,
        active_calls: 5,
        recordings: RecordingCounts {
            recording: 6,
            finalized: 7,
            announced: 8,
            stored: 9,
            evicted: 10,
        },
        cache_used_bytes: 11,
        cache_capacity_bytes: 12,
        backlog_bytes: 13,
        backlog_oldest_secs: 14,
        upload_bytes_per_sec: 15,
        errors: 16,
        clock_offset_ms: Some(-17),
        transfer_failures: 18,
        interfaces: vec![tapfleet_schemas::InterfaceCounters {
            interface: "eth0".to_owned(),
            received: 19,
            kernel_drops: 20,
            interface_drops: 21,
        }],
        sip_tls_packets: 22,
        ..Telemetry::new(1_709_210_096_000)
    };
    vec![zero, full]
}

pub fn jobs() -> Vec<Job> {
    vec![
        Job::new(
            "job-1".to_owned(),
            JobAction::Upload {
                recording_id: RID.to_owned(),
                files: vec![],
            },
        ),
        Job::new(
            "job-2".to_owned(),
            JobAction::Upload {
                recording_id: RID.to_owned(),
                files: vec!["call.pcap".to_owned(), "audio.wav".to_owned()],
            },
        ),
        Job::new(
            "job-3".to_owned(),
            JobAction::Delete {
                recording_id: RID.to_owned(),
            },
        ),
        Job::new(
            "relay-4".to_owned(),
            JobAction::Download {
                transfer_id: u64::MAX,
                recording_id: RID.to_owned(),
                file: "call.pcap".to_owned(),
                size: 4096,
                sha256: sha(4),
            },
        ),
    ]
}

pub fn job_replies() -> Vec<JobReply> {
    vec![
        JobReply::new(
            Some("job-1".to_owned()),
            ReplyBody::Progress {
                done_bytes: 10,
                total_bytes: u64::MAX,
            },
        ),
        JobReply::new(Some("job-1".to_owned()), ReplyBody::Done),
        JobReply::new(
            Some("job-3".to_owned()),
            ReplyBody::Failed {
                reason: "not stored yet".to_owned(),
            },
        ),
        JobReply::new(
            None,
            ReplyBody::Offer(TransferOffer {
                recording_id: RID.to_owned(),
                file: "call.pcap".to_owned(),
                size: 4096,
                sha256: sha(3),
            }),
        ),
        JobReply::new(
            None,
            ReplyBody::DownloadAccept {
                transfer_id: 7,
                offset: 1024,
            },
        ),
        JobReply::new(
            None,
            ReplyBody::DownloadChunk {
                transfer_id: 7,
                next_offset: u64::MAX,
            },
        ),
        JobReply::new(
            None,
            ReplyBody::DownloadStored {
                transfer_id: 7,
                recording_id: RID.to_owned(),
                file: "call.pcap".to_owned(),
                sha256: sha(5),
            },
        ),
        JobReply::new(
            None,
            ReplyBody::DownloadFailed {
                transfer_id: 7,
                recording_id: RID.to_owned(),
                file: "call.pcap".to_owned(),
                reason: "sha256 mismatch".to_owned(),
            },
        ),
    ]
}

pub fn acks() -> Vec<Ack> {
    vec![
        Ack::new(AckBody::Manifest {
            recording_id: RID.to_owned(),
        }),
        Ack::new(AckBody::ManifestRefused {
            recording_id: RID.to_owned(),
            reason: "bad recording id".to_owned(),
        }),
        Ack::new(AckBody::Accept {
            recording_id: RID.to_owned(),
            file: "call.pcap".to_owned(),
            transfer_id: 9,
            offset: 65536,
        }),
        Ack::new(AckBody::Chunk {
            transfer_id: 9,
            next_offset: 131_072,
        }),
        Ack::new(AckBody::Stored {
            recording_id: RID.to_owned(),
            file: "call.pcap".to_owned(),
            target: "cloud".to_owned(),
            location: "acme/site-1/2024/02/29/x/call.pcap".to_owned(),
            sha256: sha(4),
        }),
        Ack::new(AckBody::TransferFailed {
            recording_id: RID.to_owned(),
            file: "audio.wav".to_owned(),
            transfer_id: 10,
            reason: "sha256 mismatch".to_owned(),
        }),
    ]
}

pub fn transfer_chunks() -> Vec<TransferChunk> {
    vec![
        TransferChunk::new(0, 0, Vec::new()),
        TransferChunk::new(1, 23, (0..=255u8).collect()),
        TransferChunk::new(
            u64::MAX,
            u64::MAX,
            vec![0xa5; tapfleet_schemas::MAX_CHUNK_DATA],
        ),
    ]
}

pub fn enroll_requests() -> Vec<EnrollRequest> {
    let plain = EnrollRequest::new(
        "claim-token-xyz".to_owned(),
        "s-0123".to_owned(),
        "pbx-host".to_owned(),
        "0.1.0".to_owned(),
    );
    let wishing = EnrollRequest {
        requested_edge_id: Some("pbx-host".to_owned()),
        ..plain.clone()
    };
    let with_csr = EnrollRequest {
        csr_pem: Some(
            "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
                .to_owned(),
        ),
        ..wishing.clone()
    };
    vec![plain, wishing, with_csr]
}

pub fn enroll_responses() -> Vec<EnrollResponse> {
    vec![
        EnrollResponse::new(
            "s-0123".to_owned(),
            EnrollResult::Accepted(EnrollGrant {
                tenant: "acme".to_owned(),
                edge_id: "pbx-host".to_owned(),
                username: "acme.pbx-host".to_owned(),
                password: "s3cret".to_owned(),
                certificate_pem: None,
                ca_pem: None,
            }),
        ),
        EnrollResponse::new(
            "s-0123".to_owned(),
            EnrollResult::Accepted(EnrollGrant {
                tenant: "acme".to_owned(),
                edge_id: "pbx-host".to_owned(),
                username: "pbx-host".to_owned(),
                password: "s3cret".to_owned(),
                certificate_pem: Some("-----BEGIN CERTIFICATE-----\n...".to_owned()),
                ca_pem: Some("-----BEGIN CERTIFICATE-----\n...".to_owned()),
            }),
        ),
        EnrollResponse::new(
            "s-0123".to_owned(),
            EnrollResult::Refused {
                reason: "token expired".to_owned(),
            },
        ),
    ]
}

/// One encoded sample: the message's Rust name, its CDDL rule, and its CBOR bytes.
pub struct Encoded {
    pub kind: &'static str,
    pub rule: &'static str,
    pub bytes: Vec<u8>,
}

fn enc<M: Message>(rule: &'static str, msgs: Vec<M>, out: &mut Vec<Encoded>) {
    for m in msgs {
        out.push(Encoded {
            kind: M::KIND,
            rule,
            bytes: encode(&m).expect("encoding into a Vec cannot fail"),
        });
    }
}

/// Every sample of every message type, encoded.
pub fn all_encoded() -> Vec<Encoded> {
    let mut out = Vec::new();
    enc("manifest", manifests(), &mut out);
    enc("desired-config", desired_configs(), &mut out);
    enc("reported-state", reported_states(), &mut out);
    enc("telemetry", telemetries(), &mut out);
    enc("job", jobs(), &mut out);
    enc("job-reply", job_replies(), &mut out);
    enc("ack", acks(), &mut out);
    enc("transfer-chunk", transfer_chunks(), &mut out);
    enc("enroll-request", enroll_requests(), &mut out);
    enc("enroll-response", enroll_responses(), &mut out);
    enc("event", events(), &mut out);
    out
}

pub fn events() -> Vec<Event> {
    vec![
        Event::new(
            1_700_000_000_002,
            "pbx-host".to_owned(),
            EventBody::RecordingStored {
                recording_id: "20240229T123456Z-deadbeef00010203".to_owned(),
                target: "cloud".to_owned(),
            },
        ),
        Event::new(
            1_700_000_000_003,
            "pbx-host".to_owned(),
            EventBody::AlertRaised {
                rule: "no_traffic".to_owned(),
                severity: "warning".to_owned(),
                message: "no packet for 300 s".to_owned(),
                value: 301,
                threshold: 300,
            },
        ),
        Event::new(
            1_700_000_000_004,
            "pbx-host".to_owned(),
            EventBody::AlertCleared {
                rule: "clock_skew".to_owned(),
                message: "clock offset back within 2000 ms".to_owned(),
                value: -12,
            },
        ),
    ]
}
