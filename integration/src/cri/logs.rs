//! The CRI container log format: `<RFC3339Nano time> <stdout|stderr> <F|P> <content>`,
//! one line per record (`P` marks a partial line continued by the next record).

use anyhow::{bail, Result};

/// One record of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The timestamp as written.
    pub time: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// `F` (full line) or `P` (partial).
    pub tag: String,
    /// The line, without its newline.
    pub content: String,
}

/// Parses every line of a CRI log file, checking each field's format.
///
/// # Errors
/// On the first line that is not in CRI format, quoted.
pub fn parse_cri_log(text: &str) -> Result<Vec<LogLine>> {
    text.lines()
        .map(|line| {
            let mut f = line.splitn(4, ' ');
            let (time, stream, tag) = (f.next(), f.next(), f.next());
            let content = f.next().unwrap_or_default();
            match (time, stream, tag) {
                (Some(t), Some(s), Some(g))
                    if is_rfc3339_nano(t)
                        && (s == "stdout" || s == "stderr")
                        && (g == "F" || g == "P") =>
                {
                    Ok(LogLine {
                        time: t.into(),
                        stream: s.into(),
                        tag: g.into(),
                        content: content.into(),
                    })
                }
                _ => bail!("not a CRI log line: {line:?}"),
            }
        })
        .collect()
}

/// True for Go's `time.RFC3339Nano` output: `2006-01-02T15:04:05[.1-9 digits](Z|±hh:mm)`.
pub fn is_rfc3339_nano(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let fixed = digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && b.get(10) == Some(&b'T')
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19);
    if !fixed {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        let n = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&n) {
            return false;
        }
        i += 1 + n;
    }
    match b.get(i) {
        Some(b'Z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            i + 6 == b.len() && digits(i + 1..i + 3) && b[i + 3] == b':' && digits(i + 4..i + 6)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's RFC3339Nano forms pass (trailing zeros trimmed, offsets); others do not.
    #[test]
    fn recognises_rfc3339_nano() {
        for ok in [
            "2024-05-01T10:11:12.123456789Z",
            "2024-05-01T10:11:12.5+02:00",
            "2024-05-01T10:11:12Z",
        ] {
            assert!(is_rfc3339_nano(ok), "{ok}");
        }
        for bad in [
            "2024-05-01 10:11:12Z",
            "2024-05-01T10:11:12.Z",
            "2024-05-01T10:11:12.1234567890Z",
            "2024-05-01T10:11:12",
        ] {
            assert!(!is_rfc3339_nano(bad), "{bad}");
        }
    }

    /// Records split into their four fields; content keeps its spaces.
    #[test]
    fn parses_records() -> Result<()> {
        let lines = parse_cri_log(
            "2024-05-01T10:11:12.1Z stdout F hello world\n2024-05-01T10:11:12.2Z stderr P x\n",
        )?;
        assert_eq!(lines[0].content, "hello world");
        assert_eq!(lines[1].stream, "stderr");
        assert_eq!(lines[1].tag, "P");
        assert!(parse_cri_log("hello\n").is_err());
        Ok(())
    }
}
