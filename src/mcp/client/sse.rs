//! The incremental reader of an upstream's `text/event-stream` answer, linear in its bytes and
//! bounded in memory by the largest event.

use super::UpstreamError;

/// An incremental reader of `text/event-stream`: events end at a blank line, `data:` lines are
/// joined with `\n`, comments and other fields are ignored; lines end with LF, CRLF or CR.
///
/// Linear in the bytes fed: only the new bytes are searched for a line end (the unfinished line
/// kept from earlier chunks holds none), and each line is read once when it ends. An event whose
/// lines, as received, pass `max_event_bytes` is an error, so memory stays bounded however the
/// stream is cut.
pub(super) struct SseParser {
    /// The unfinished line, without a terminator.
    pub(super) pending: Vec<u8>,
    /// The last line ended with a CR: an LF right after it belongs to that line end.
    skip_lf: bool,
    /// The `data` of the event so far, lines joined with `\n`.
    data: String,
    has_data: bool,
    /// Bytes of the current event's finished lines, terminators included.
    event_bytes: usize,
    max_event_bytes: usize,
}

impl SseParser {
    pub(super) fn new(max_event_bytes: usize) -> Self {
        Self {
            pending: Vec::new(),
            skip_lf: false,
            data: String::new(),
            has_data: false,
            event_bytes: 0,
            max_event_bytes,
        }
    }

    /// Refuses an event that would pass the bound with `more` bytes of unfinished line.
    fn bound(&self, more: usize) -> Result<(), UpstreamError> {
        if self.event_bytes + self.pending.len() + more > self.max_event_bytes {
            Err(UpstreamError::TooLarge { limit: self.max_event_bytes })
        } else {
            Ok(())
        }
    }

    /// Reads `chunk`, adding the data of every event it completes to `events`.
    pub(super) fn feed(&mut self, chunk: &[u8], events: &mut Vec<String>) -> Result<(), UpstreamError> {
        let mut rest = chunk;
        loop {
            if self.skip_lf {
                match rest.first() {
                    None => return Ok(()),
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                }
                self.skip_lf = false;
            }
            let Some(end) = memchr::memchr2(b'\n', b'\r', rest) else {
                self.bound(rest.len())?;
                self.pending.extend_from_slice(rest);
                return Ok(());
            };
            self.skip_lf = rest[end] == b'\r';
            if self.pending.is_empty() {
                self.line(&rest[..end], events)?;
            } else {
                self.bound(end)?;
                let mut line = std::mem::take(&mut self.pending);
                line.extend_from_slice(&rest[..end]);
                self.line(&line, events)?;
            }
            rest = &rest[end + 1..];
        }
    }

    /// The stream ended: completes a last event that lacks its blank line.
    pub(super) fn finish(&mut self, events: &mut Vec<String>) -> Result<(), UpstreamError> {
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            self.line(&rest, events)?;
        }
        self.line(b"", events)
    }

    fn line(&mut self, line: &[u8], events: &mut Vec<String>) -> Result<(), UpstreamError> {
        if line.is_empty() {
            self.event_bytes = 0;
            if std::mem::take(&mut self.has_data) {
                let mut event = std::mem::take(&mut self.data);
                event.pop();
                events.push(event);
            }
            return Ok(());
        }
        self.event_bytes += line.len() + 1;
        if self.event_bytes > self.max_event_bytes {
            return Err(UpstreamError::TooLarge { limit: self.max_event_bytes });
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        if field == b"data" {
            self.data.push_str(&String::from_utf8_lossy(value));
            self.data.push('\n');
            self.has_data = true;
        }
        Ok(())
    }
}
