//! Fuzz target: arbitrary bytes decoded as every tapfleet wire message. Decoding must never
//! panic, overflow the stack or allocate without bound; whatever decodes must re-encode to bytes
//! that decode to the same message (compared by encoding, so a NaN float still compares equal).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapfleet_schemas::{
    Ack, DesiredConfig, EnrollRequest, EnrollResponse, Job, JobReply, Manifest, Message,
    ReportedState, Telemetry, TransferChunk, decode, encode,
};

fn check<M: Message + std::fmt::Debug>(data: &[u8]) {
    let Ok(first) = decode::<M>(data) else {
        return;
    };
    let bytes = match encode(&first) {
        Ok(b) => b,
        Err(e) => panic!("{}: decoded but does not encode: {e}", M::KIND),
    };
    let second = match decode::<M>(&bytes) {
        Ok(m) => m,
        Err(e) => panic!("{}: re-encoding does not decode: {e}\n{first:?}", M::KIND),
    };
    let again = match encode(&second) {
        Ok(b) => b,
        Err(e) => panic!("{}: does not encode again: {e}", M::KIND),
    };
    assert_eq!(bytes, again, "{}: round trip changed the message", M::KIND);
    assert_eq!(
        format!("{first:?}"),
        format!("{second:?}"),
        "{}: round trip changed the message",
        M::KIND
    );
}

fuzz_target!(|data: &[u8]| {
    check::<Manifest>(data);
    check::<DesiredConfig>(data);
    check::<ReportedState>(data);
    check::<Telemetry>(data);
    check::<Job>(data);
    check::<JobReply>(data);
    check::<Ack>(data);
    check::<TransferChunk>(data);
    check::<EnrollRequest>(data);
    check::<EnrollResponse>(data);
});
