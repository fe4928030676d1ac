//! B2BUA legs: a back-to-back user agent turns one call into two dialogs (two Call-IDs), each
//! recorded on its own. Two calls are taken as legs of one when their INVITEs carry the same
//! caller and callee numbers (the last 9 digits of each user part; a caller with no digits, e.g.
//! `anonymous`, matches one with none) and start within [`LEG_WINDOW_NS`] of each other. A
//! heuristic: unrelated calls between the same two numbers started that close are linked too.
//! Pure: starts come in with their time; only the last [`LEG_WINDOW_NS`] of starts are kept.

use std::collections::VecDeque;

use super::CallKey;

/// Legs of one call start at most this far apart (a B2BUA sends its INVITE right away).
pub const LEG_WINDOW_NS: i64 = 2_000_000_000;

/// Digits of a number kept for matching: national and international forms of one number
/// (`+4930123456789`, `030123456789`) agree on their last 9.
const DIGITS: usize = 9;

/// The matching form of a SIP user part: its last [`DIGITS`] digits.
fn digits(user: &str) -> String {
    let d: Vec<char> = user.chars().filter(char::is_ascii_digit).collect();
    d[d.len().saturating_sub(DIGITS)..].iter().collect()
}

#[derive(Debug)]
struct Start {
    at_ns: i64,
    key: CallKey,
    caller: String,
    callee: String,
    recording_id: String,
}

/// Recent call starts, to find the other legs of a call.
#[derive(Debug, Default)]
pub struct Legs {
    recent: VecDeque<Start>,
}

impl Legs {
    /// Notes a call started at `at_ns` and returns the earlier calls it is a leg with (their key
    /// and recording id). A callee number of fewer than 3 digits links nothing.
    pub fn start(
        &mut self,
        key: CallKey,
        caller: &str,
        callee: &str,
        at_ns: i64,
        recording_id: &str,
    ) -> Vec<(CallKey, String)> {
        while self
            .recent
            .front()
            .is_some_and(|s| at_ns - s.at_ns > LEG_WINDOW_NS)
        {
            self.recent.pop_front();
        }
        let (caller, callee) = (digits(caller), digits(callee));
        if callee.len() < 3 {
            return Vec::new();
        }
        let legs = self
            .recent
            .iter()
            .filter(|s| s.key != key && s.caller == caller && s.callee == callee)
            .filter(|s| (at_ns - s.at_ns).abs() <= LEG_WINDOW_NS)
            .map(|s| (s.key, s.recording_id.clone()))
            .collect();
        self.recent.push_back(Start {
            at_ns,
            key,
            caller,
            callee,
            recording_id: recording_id.to_string(),
        });
        legs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_numbers_close_in_time_are_legs() {
        let mut l = Legs::default();
        let s = 1_000_000_000;
        assert!(
            l.start(1, "unavailable", "030123456789", s, "r1")
                .is_empty()
        );
        // The B2BUA's outgoing leg 6 ms later, the callee in international form.
        assert_eq!(
            l.start(2, "anonymous", "+4930123456789", s + 6_000_000, "r2"),
            [(1, "r1".to_string())]
        );
        // Another caller, or the same numbers 3 s later, or a callee without a number: not legs.
        assert!(
            l.start(3, "1001", "030123456789", s + 10_000_000, "r3")
                .is_empty()
        );
        assert!(
            l.start(4, "", "030123456789", s + 3_000_000_000, "r4")
                .is_empty()
        );
        assert!(
            l.start(5, "", "service", s + 3_000_000_000, "r5")
                .is_empty()
        );
        assert!(l.start(6, "", "12", s + 3_000_000_000, "r6").is_empty());
        // Old starts are forgotten.
        assert!(l.recent.iter().all(|r| r.key >= 3));
    }
}
