//! Fuzz target: the edge service's inbound step (`tapfleet_edge::inbound::decode`): the first
//! byte picks the channel (config, acks, jobs, download, or one the edge does not take), the rest is the
//! payload. It must never panic or allocate without bound; a config that decodes must also have
//! passed validation, and an error must name its cause.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapfleet_edge::inbound::{Inbound, decode, validate_config};
use tapfleet_schemas::Channel;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let channel = Channel::ALL[usize::from(pick) % Channel::ALL.len()];
    match decode(channel, payload) {
        Ok(Inbound::Config(cfg)) => {
            assert_eq!(channel, Channel::Config);
            assert!(validate_config(&cfg.edge).is_ok());
        }
        Ok(Inbound::ConfigCleared) => assert!(channel == Channel::Config && payload.is_empty()),
        Ok(Inbound::Ack(_)) => assert_eq!(channel, Channel::Acks),
        Ok(Inbound::Job(_)) => assert_eq!(channel, Channel::Jobs),
        Ok(Inbound::Chunk(c)) => {
            assert_eq!(channel, Channel::Download);
            assert!(c.data.len() <= tapfleet_schemas::MAX_CHUNK_DATA + 1024);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
