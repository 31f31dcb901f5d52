//! Sequence sets and UID sets (RFC 3501 §9 `sequence-set`, §6.4.8).
//!
//! A [`SeqSet`] is what the client wrote (`1:*`, `3,5:7`); it is resolved
//! against the selected mailbox only when used, because `*` means "the
//! largest number in use" at that moment. Resolution never allocates more
//! than the mailbox has messages, whatever range the client named.

use std::fmt::Write as _;

/// One end of a range: a number or `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeqNum {
    Value(u32),
    /// `*`: the largest message number, or the largest UID in use.
    Star,
}

impl SeqNum {
    fn resolve(self, star: u32) -> u32 {
        match self {
            SeqNum::Value(v) => v,
            SeqNum::Star => star,
        }
    }
}

/// A parsed sequence set: non-empty list of ranges (a single number is a
/// range with equal ends). Ranges keep the order and direction the client
/// wrote; `5:3` means the same as `3:5`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeqSet {
    pub ranges: Vec<(SeqNum, SeqNum)>,
}

/// Why a sequence set cannot be parsed or applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeqError {
    #[error("invalid sequence set")]
    Syntax,
    #[error("sequence set has too many ranges")]
    TooMany,
    #[error("message sequence number out of range")]
    OutOfRange,
    #[error("no messages")]
    Empty,
}

/// The most ranges one set may have; a command line limit already bounds
/// this, but a set also arrives from SEARCH results and COPYUID strings.
pub const MAX_RANGES: usize = 10_000;

impl SeqSet {
    /// Parse RFC 3501 `sequence-set` from `s` (the whole of it).
    pub fn parse(s: &[u8]) -> Result<SeqSet, SeqError> {
        let mut ranges = Vec::new();
        for part in s.split(|&b| b == b',') {
            if ranges.len() >= MAX_RANGES {
                return Err(SeqError::TooMany);
            }
            let mut ends = part.splitn(2, |&b| b == b':');
            let a = parse_num(ends.next().ok_or(SeqError::Syntax)?)?;
            let b = match ends.next() {
                Some(e) => parse_num(e)?,
                None => a,
            };
            ranges.push((a, b));
        }
        Ok(SeqSet { ranges })
    }

    /// A set of single numbers, in the given order.
    pub fn from_numbers(nums: &[u32]) -> SeqSet {
        SeqSet {
            ranges: nums
                .iter()
                .map(|&n| (SeqNum::Value(n), SeqNum::Value(n)))
                .collect(),
        }
    }

    /// True when `n` is in the set, `*` standing for `star`.
    pub fn contains(&self, n: u32, star: u32) -> bool {
        self.ranges.iter().any(|&(a, b)| {
            let (a, b) = (a.resolve(star), b.resolve(star));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            lo <= n && n <= hi
        })
    }

    /// Resolve as message sequence numbers in a mailbox of `count` messages:
    /// sorted, without duplicates. A number above `count` is an error (the
    /// session answers BAD), as is `*` in an empty mailbox.
    pub fn msns(&self, count: u32) -> Result<Vec<u32>, SeqError> {
        let mut out = Vec::new();
        for &(a, b) in &self.ranges {
            if count == 0 {
                return Err(SeqError::Empty);
            }
            let (a, b) = (a.resolve(count), b.resolve(count));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            if hi > count {
                return Err(SeqError::OutOfRange);
            }
            out.extend(lo..=hi);
            sort_dedup(&mut out);
        }
        Ok(out)
    }

    /// Resolve as a UID set against the mailbox's UIDs (ascending, as a
    /// mailbox keeps them): the 0-based indices of the messages it names,
    /// ascending. UIDs not in the mailbox are ignored (§6.4.8), and `n:*`
    /// always includes the last message even when `n` is above every UID.
    pub fn uid_indices(&self, uids: &[u32]) -> Vec<usize> {
        let Some(&max_uid) = uids.last() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for &(a, b) in &self.ranges {
            let (a, b) = (a.resolve(max_uid), b.resolve(max_uid));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let start = uids.partition_point(|&u| u < lo);
            for (i, &u) in uids.iter().enumerate().skip(start) {
                if u > hi {
                    break;
                }
                out.push(i);
            }
            if out.len() > uids.len() {
                sort_dedup(&mut out);
            }
        }
        sort_dedup(&mut out);
        out
    }

    /// The UIDs of [`SeqSet::uid_indices`].
    pub fn uids(&self, uids: &[u32]) -> Vec<u32> {
        self.uid_indices(uids)
            .into_iter()
            .filter_map(|i| uids.get(i).copied())
            .collect()
    }
}

fn sort_dedup<T: Ord>(v: &mut Vec<T>) {
    v.sort_unstable();
    v.dedup();
}

fn parse_num(s: &[u8]) -> Result<SeqNum, SeqError> {
    if s == b"*" {
        return Ok(SeqNum::Star);
    }
    // nz-number: no leading zero, no sign, fits u32, not zero.
    if s.is_empty() || s.len() > 10 || s[0] == b'0' || !s.iter().all(u8::is_ascii_digit) {
        return Err(SeqError::Syntax);
    }
    let v = s
        .iter()
        .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
    u32::try_from(v)
        .map(SeqNum::Value)
        .map_err(|_| SeqError::Syntax)
}

impl std::fmt::Display for SeqSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, &(a, b)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            write_num(f, a)?;
            if a != b {
                f.write_char(':')?;
                write_num(f, b)?;
            }
        }
        Ok(())
    }
}

fn write_num(f: &mut std::fmt::Formatter<'_>, n: SeqNum) -> std::fmt::Result {
    match n {
        SeqNum::Value(v) => write!(f, "{v}"),
        SeqNum::Star => f.write_char('*'),
    }
}

/// Format numbers as a compact set, keeping their order (COPYUID pairs the
/// n-th source UID with the n-th destination UID, RFC 4315 §3): ascending
/// runs of consecutive numbers become `a:b`. Empty input gives "".
pub fn format_numbers(nums: &[u32]) -> String {
    let mut s = String::new();
    let mut i = 0;
    while i < nums.len() {
        let start = nums[i];
        let mut end = start;
        while i + 1 < nums.len() && end.checked_add(1) == Some(nums[i + 1]) {
            i += 1;
            end = nums[i];
        }
        if !s.is_empty() {
            s.push(',');
        }
        if start == end {
            let _ = write!(s, "{start}");
        } else {
            let _ = write!(s, "{start}:{end}");
        }
        i += 1;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        for s in ["1:*", "*", "3,5:7", "2,4:7,9,12:*", "4294967295", "7:3"] {
            assert_eq!(SeqSet::parse(s.as_bytes()).unwrap().to_string(), s);
        }
        for bad in [
            "",
            "0",
            "1:",
            ":2",
            "1,,2",
            "01",
            "4294967296",
            "a",
            "1:2:3",
            "-1",
        ] {
            assert_eq!(
                SeqSet::parse(bad.as_bytes()),
                Err(SeqError::Syntax),
                "{bad}"
            );
        }
    }

    #[test]
    fn msns_resolve_star_and_reject_out_of_range() {
        let s = SeqSet::parse(b"2,4:7,9,12:*").unwrap();
        assert_eq!(s.msns(15).unwrap(), vec![2, 4, 5, 6, 7, 9, 12, 13, 14, 15]);
        assert_eq!(SeqSet::parse(b"*:4").unwrap().msns(5).unwrap(), vec![4, 5]);
        assert_eq!(SeqSet::parse(b"1:*").unwrap().msns(0), Err(SeqError::Empty));
        assert_eq!(
            SeqSet::parse(b"3").unwrap().msns(2),
            Err(SeqError::OutOfRange)
        );
        // A huge claimed range over a small mailbox is rejected, not expanded.
        assert_eq!(
            SeqSet::parse(b"1:4294967295").unwrap().msns(3),
            Err(SeqError::OutOfRange)
        );
    }

    #[test]
    fn uid_sets_follow_rfc3501_6_4_8() {
        let uids = [3, 7, 8, 20];
        let all = SeqSet::parse(b"1:*").unwrap();
        assert_eq!(all.uids(&uids), vec![3, 7, 8, 20]);
        // 559:* includes the last message even though 559 > every UID.
        assert_eq!(SeqSet::parse(b"559:*").unwrap().uids(&uids), vec![20]);
        assert_eq!(
            SeqSet::parse(b"4:7,8,100").unwrap().uid_indices(&uids),
            vec![1, 2]
        );
        assert_eq!(SeqSet::parse(b"8:7,7").unwrap().uids(&uids), vec![7, 8]);
        assert!(SeqSet::parse(b"1:*").unwrap().uids(&[]).is_empty());
        assert!(SeqSet::parse(b"21:4294967295")
            .unwrap()
            .uids(&uids)
            .is_empty());
    }

    #[test]
    fn contains_with_star() {
        let s = SeqSet::parse(b"5:*").unwrap();
        assert!(s.contains(9, 9));
        assert!(!s.contains(4, 9));
        assert!(s.contains(3, 3)); // 5:* with * = 3 is 3:5
    }

    #[test]
    fn format_keeps_order() {
        assert_eq!(format_numbers(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(format_numbers(&[9, 4, 5]), "9,4:5");
        assert_eq!(format_numbers(&[]), "");
        assert_eq!(format_numbers(&[u32::MAX]), "4294967295");
    }
}
