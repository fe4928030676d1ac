//! What the edge takes from MQTT, decoded and checked without IO: on its config channel a
//! [`DesiredConfig`] that passes [`validate_config`] (an empty payload is a cleared retained
//! config), on its acks an [`Ack`], on its jobs a [`Job`], on its download channel a
//! [`TransferChunk`] (a download into its local storage), each bounded by the schemas crate.
//! The service's core task calls [`decode`] for every message on its own topics; the fuzz target
//! `edge_inbound` feeds it arbitrary bytes. Pure: no feature gate, no IO.

use tapfleet_schemas::{
    Ack, Channel, DecodeError, DesiredConfig, EdgeConfig, Job, TransferChunk, decode as cbor,
};

/// One decoded inbound message.
#[derive(Debug)]
pub enum Inbound {
    Config(Box<DesiredConfig>),
    /// An empty retained config: nothing to apply.
    ConfigCleared,
    Ack(Ack),
    Job(Job),
    /// A chunk of a download (manager -> edge).
    Chunk(TransferChunk),
}

/// Why an inbound message is not used.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// The payload is not the channel's message (malformed, oversized, wrong version).
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// A config that decodes but cannot be applied; the reason names the field.
    #[error("{0}")]
    Invalid(String),
    /// A channel the edge does not subscribe to.
    #[error("the edge takes nothing on its {0} channel")]
    NotInbound(&'static str),
}

/// Decodes a message received on the edge's own `channel`. Never panics, whatever the bytes.
pub fn decode(channel: Channel, payload: &[u8]) -> Result<Inbound, InboundError> {
    match channel {
        Channel::Config if payload.is_empty() => Ok(Inbound::ConfigCleared),
        Channel::Config => {
            let cfg = cbor::<DesiredConfig>(payload)?;
            validate_config(&cfg.edge).map_err(InboundError::Invalid)?;
            Ok(Inbound::Config(Box::new(cfg)))
        }
        Channel::Acks => Ok(Inbound::Ack(cbor::<Ack>(payload)?)),
        Channel::Jobs => Ok(Inbound::Job(cbor::<Job>(payload)?)),
        Channel::Download => Ok(Inbound::Chunk(cbor::<TransferChunk>(payload)?)),
        other => Err(InboundError::NotInbound(other.as_str())),
    }
}

/// Checks a desired config before applying it; the error names the field.
pub fn validate_config(cfg: &EdgeConfig) -> Result<(), String> {
    if cfg.cache.capacity_bytes == 0 {
        return Err("cache.capacity_bytes must be more than 0".to_owned());
    }
    if cfg.cache.high_water_percent == 0 || cfg.cache.high_water_percent > 100 {
        return Err("cache.high_water_percent must be within 1..=100".to_owned());
    }
    if cfg.capture.snaplen < 256 {
        return Err("capture.snaplen must be at least 256".to_owned());
    }
    if let Some(w) = cfg
        .cache
        .upload_windows
        .iter()
        .find(|w| w.start_minute >= 1440 || w.end_minute > 1440)
    {
        return Err(format!(
            "cache.upload_windows: {}..{} is not within 0..1440 minutes",
            w.start_minute, w.end_minute
        ));
    }
    if cfg.cache.bandwidth_limit_bps == Some(0) {
        return Err("cache.bandwidth_limit_bps must be more than 0 (or absent)".to_owned());
    }
    if cfg.storage.target.is_empty() {
        return Err("storage.target must name a target".to_owned());
    }
    crate::calls::direction::SiteNetworks::parse(
        &cfg.capture.local_networks,
        &cfg.capture.trunk_networks,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapfleet_schemas::{AckBody, encode};

    #[test]
    fn malformed_oversized_and_misplaced_messages_are_errors() {
        let ack = Ack::new(AckBody::Manifest {
            recording_id: "20240229T123456Z-00".into(),
        });
        assert!(matches!(
            decode(Channel::Acks, &encode(&ack).expect("cbor")),
            Ok(Inbound::Ack(_))
        ));
        assert!(matches!(
            decode(Channel::Config, b""),
            Ok(Inbound::ConfigCleared)
        ));
        let big = vec![0x5au8; 8 * 1024 * 1024];
        for (ch, bytes) in [
            (Channel::Jobs, encode(&ack).expect("cbor")),
            (Channel::Config, encode(&ack).expect("cbor")),
            (Channel::Acks, b"\xbf\xbf\xbf".to_vec()),
            (Channel::Jobs, big),
        ] {
            assert!(
                matches!(decode(ch, &bytes), Err(InboundError::Decode(_))),
                "{ch:?}"
            );
        }
        let chunk = TransferChunk::new(3, 0, vec![1, 2, 3]);
        assert!(matches!(
            decode(Channel::Download, &encode(&chunk).expect("cbor")),
            Ok(Inbound::Chunk(c)) if c == chunk
        ));
        assert!(matches!(
            decode(Channel::Download, &encode(&ack).expect("cbor")),
            Err(InboundError::Decode(_))
        ));
        assert!(matches!(
            decode(Channel::Manifests, b""),
            Err(InboundError::NotInbound("manifests"))
        ));
        let mut cfg = DesiredConfig::new(1, EdgeConfig::default());
        assert!(decode(Channel::Config, &encode(&cfg).expect("cbor")).is_ok());
        cfg.edge.cache.high_water_percent = 0;
        assert!(matches!(
            decode(Channel::Config, &encode(&cfg).expect("cbor")),
            Err(InboundError::Invalid(r)) if r.contains("high_water_percent")
        ));
        cfg.edge.cache.high_water_percent = 80;
        cfg.edge.capture.local_networks = vec!["10.0.0.0/8".into(), "192.168.1.0/24".into()];
        assert!(decode(Channel::Config, &encode(&cfg).expect("cbor")).is_ok());
        cfg.edge.capture.trunk_networks = vec!["sbc.example.com".into()];
        assert!(matches!(
            decode(Channel::Config, &encode(&cfg).expect("cbor")),
            Err(InboundError::Invalid(r)) if r.starts_with("capture.trunk_networks[0]: \"sbc.example.com\"")
        ));
    }
}
