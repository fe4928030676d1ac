//! Recording ids and UTC calendar dates, both part of the public format.
//!
//! A recording id is `YYYYMMDDTHHMMSSZ-` (the recording's start, UTC) followed by 16 lowercase hex
//! digits that the recorder derives from what identifies the call, so ids sort by time, are unique
//! per edge and call part, and are stable when the same capture is recorded again.

/// A UTC calendar date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcDateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl UtcDateTime {
    /// The UTC date and time of a Unix time in nanoseconds.
    pub fn from_unix_ns(ns: i64) -> Self {
        let secs = ns.div_euclid(1_000_000_000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        UtcDateTime {
            year,
            month,
            day,
            hour: (sod / 3600) as u32,
            minute: (sod % 3600 / 60) as u32,
            second: (sod % 60) as u32,
        }
    }

    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Builds a recording id from the start time and 8 bytes that identify the recording.
pub fn recording_id(start_ns: i64, discriminator: [u8; 8]) -> String {
    let t = UtcDateTime::from_unix_ns(start_ns);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{}",
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        hex::encode(discriminator)
    )
}

/// Whether `id` has the form of a recording id (so it is safe as a path and topic component).
pub fn is_recording_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 33
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
        && b[16] == b'-'
        && b[17..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_known_values() {
        assert_eq!(
            UtcDateTime::from_unix_ns(0).rfc3339(),
            "1970-01-01T00:00:00Z"
        );
        // 2024-02-29T12:34:56Z = 1709210096
        assert_eq!(
            UtcDateTime::from_unix_ns(1_709_210_096_000_000_000).rfc3339(),
            "2024-02-29T12:34:56Z"
        );
        assert_eq!(
            UtcDateTime::from_unix_ns(-1_000_000_000).rfc3339(),
            "1969-12-31T23:59:59Z"
        );
    }

    #[test]
    fn ids_are_well_formed() {
        let id = recording_id(
            1_709_210_096_000_000_000,
            [0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3],
        );
        assert_eq!(id, "20240229T123456Z-deadbeef00010203");
        assert!(is_recording_id(&id));
        assert!(!is_recording_id("../../etc/passwd"));
        assert!(!is_recording_id("20240229T123456Z-DEADBEEF00010203"));
    }
}
