//! Small value types shared by the IMAP parser and the response encoder:
//! message flags and the two IMAP date forms (RFC 3501 §9 `date`,
//! `date-time`). Values are validated when built, so a `DateTime` always
//! names a real calendar day and a valid zone.

use std::fmt;

/// A message flag (RFC 3501 §2.3.2). System flags are matched without
/// regard to case; keywords keep the spelling the client used.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
    Recent,
    /// A keyword atom such as `$Forwarded` or `NonJunk`.
    Keyword(String),
    /// A `\Name` flag that is not one of the system flags.
    Extension(String),
}

impl Flag {
    /// Parse one flag as written on the wire (`\Seen`, `$Label1`).
    pub fn from_atom(s: &str) -> Flag {
        if let Some(rest) = s.strip_prefix('\\') {
            match rest.to_ascii_lowercase().as_str() {
                "seen" => Flag::Seen,
                "answered" => Flag::Answered,
                "flagged" => Flag::Flagged,
                "deleted" => Flag::Deleted,
                "draft" => Flag::Draft,
                "recent" => Flag::Recent,
                _ => Flag::Extension(s.to_owned()),
            }
        } else {
            Flag::Keyword(s.to_owned())
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Flag::Seen => "\\Seen",
            Flag::Answered => "\\Answered",
            Flag::Flagged => "\\Flagged",
            Flag::Deleted => "\\Deleted",
            Flag::Draft => "\\Draft",
            Flag::Recent => "\\Recent",
            Flag::Keyword(s) | Flag::Extension(s) => s,
        }
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

/// A calendar day as SEARCH uses it (`1-Feb-1994`), RFC 3501 §9 `date`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        if (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month) {
            Some(Date { year, month, day })
        } else {
            None
        }
    }

    /// Parse `d-Mon-yyyy` or `dd-Mon-yyyy` (month name in any case).
    pub fn parse(s: &[u8]) -> Option<Date> {
        let s = std::str::from_utf8(s).ok()?;
        let mut it = s.split('-');
        let (d, m, y) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() || d.is_empty() || d.len() > 2 || y.len() != 4 {
            return None;
        }
        let day: u8 = digits(d)?.try_into().ok()?;
        let year: u16 = digits(y)?.try_into().ok()?;
        let month = month_from_name(m)?;
        Date::new(year, month, day)
    }

    /// Days since 1970-01-01 (may be negative), for comparisons across zones.
    pub fn days_from_epoch(&self) -> i64 {
        // Howard Hinnant's days_from_civil.
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = MONTHS
            .get(usize::from(self.month).wrapping_sub(1))
            .unwrap_or(&"Jan");
        write!(f, "{}-{}-{:04}", self.day, m, self.year)
    }
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

pub(crate) fn month_from_name(m: &str) -> Option<u8> {
    MONTHS
        .iter()
        .position(|n| n.eq_ignore_ascii_case(m))
        .and_then(|i| u8::try_from(i + 1).ok())
}

/// An INTERNALDATE (`"17-Jul-1996 02:44:25 -0700"`), RFC 3501 §9 `date-time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime {
    pub date: Date,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// Offset east of UTC in minutes (-0700 is -420).
    pub zone_minutes: i16,
}

impl DateTime {
    /// Parse the unquoted form: `dd-Mon-yyyy hh:mm:ss +zzzz`, where the day
    /// may be space-padded (` 7-Jul-1996`).
    pub fn parse(s: &[u8]) -> Option<DateTime> {
        let s = std::str::from_utf8(s).ok()?;
        let s = s.strip_prefix(' ').unwrap_or(s);
        let mut it = s.split(' ');
        let (d, t, z) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() {
            return None;
        }
        let date = Date::parse(d.as_bytes())?;
        let mut tp = t.split(':');
        let (h, mi, se) = (tp.next()?, tp.next()?, tp.next()?);
        if tp.next().is_some() || h.len() != 2 || mi.len() != 2 || se.len() != 2 {
            return None;
        }
        let hour: u8 = digits(h)?.try_into().ok()?;
        let minute: u8 = digits(mi)?.try_into().ok()?;
        let second: u8 = digits(se)?.try_into().ok()?;
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let zb = z.as_bytes();
        if zb.len() != 5 || (zb[0] != b'+' && zb[0] != b'-') {
            return None;
        }
        let zh: i16 = digits(&z[1..3])?.try_into().ok()?;
        let zm: i16 = digits(&z[3..5])?.try_into().ok()?;
        if zm > 59 {
            return None;
        }
        let mut zone_minutes = zh * 60 + zm;
        if zb[0] == b'-' {
            zone_minutes = -zone_minutes;
        }
        Some(DateTime {
            date,
            hour,
            minute,
            second,
            zone_minutes,
        })
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(&self) -> i64 {
        self.date.days_from_epoch() * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.zone_minutes) * 60
    }

    /// The UTC date-time for `secs` since the epoch (zone +0000).
    pub fn from_unix_seconds(secs: i64) -> DateTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        let clamp = |v: i64, lo: i64, hi: i64| v.clamp(lo, hi);
        DateTime {
            date: Date {
                year: u16::try_from(clamp(y, 0, 9999)).unwrap_or(1970),
                month: u8::try_from(m).unwrap_or(1),
                day: u8::try_from(d).unwrap_or(1),
            },
            hour: u8::try_from(rem / 3600).unwrap_or(0),
            minute: u8::try_from(rem % 3600 / 60).unwrap_or(0),
            second: u8::try_from(rem % 60).unwrap_or(0),
            zone_minutes: 0,
        }
    }
}

impl fmt::Display for DateTime {
    /// The quoted wire form, `"17-Jul-1996 02:44:25 -0700"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = MONTHS
            .get(usize::from(self.date.month).wrapping_sub(1))
            .unwrap_or(&"Jan");
        let sign = if self.zone_minutes < 0 { '-' } else { '+' };
        let z = self.zone_minutes.unsigned_abs();
        write!(
            f,
            "\"{:02}-{}-{:04} {:02}:{:02}:{:02} {}{:02}{:02}\"",
            self.date.day,
            m,
            self.date.year,
            self.hour,
            self.minute,
            self.second,
            sign,
            z / 60,
            z % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_parse_and_print() {
        assert_eq!(
            Date::parse(b"1-Feb-1994"),
            Some(Date {
                year: 1994,
                month: 2,
                day: 1
            })
        );
        assert_eq!(Date::parse(b"01-feb-1994"), Date::new(1994, 2, 1));
        assert_eq!(Date::parse(b"29-Feb-1995"), None);
        assert_eq!(Date::parse(b"29-Feb-1996"), Date::new(1996, 2, 29));
        assert_eq!(Date::parse(b"1-Foo-1994"), None);
        assert_eq!(Date::parse(b"1-Feb-94"), None);
        assert_eq!(
            Date::new(1994, 2, 1).map(|d| d.to_string()),
            Some("1-Feb-1994".into())
        );
    }

    #[test]
    fn datetime_roundtrip() {
        let dt = DateTime::parse(b"17-Jul-1996 02:44:25 -0700").unwrap();
        assert_eq!(dt.to_string(), "\"17-Jul-1996 02:44:25 -0700\"");
        assert_eq!(dt.unix_seconds(), 837_596_665);
        let utc = DateTime::from_unix_seconds(837_596_665);
        assert_eq!(utc.to_string(), "\"17-Jul-1996 09:44:25 +0000\"");
        assert_eq!(
            DateTime::parse(b" 7-Jul-1996 02:44:25 +0200")
                .unwrap()
                .date
                .day,
            7
        );
        assert_eq!(DateTime::parse(b"17-Jul-1996 24:44:25 -0700"), None);
        assert_eq!(DateTime::parse(b"17-Jul-1996 02:44:25 0700"), None);
        assert_eq!(
            DateTime::from_unix_seconds(0).to_string(),
            "\"01-Jan-1970 00:00:00 +0000\""
        );
    }

    #[test]
    fn flags() {
        assert_eq!(Flag::from_atom("\\SEEN"), Flag::Seen);
        assert_eq!(
            Flag::from_atom("$Forwarded"),
            Flag::Keyword("$Forwarded".into())
        );
        assert_eq!(Flag::from_atom("\\Junk"), Flag::Extension("\\Junk".into()));
        assert_eq!(Flag::Deleted.to_string(), "\\Deleted");
    }
}
