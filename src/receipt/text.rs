//! The receipt text of SMPP 3.4 Appendix B and what real SMSCs make of it (`smpp-spec.md` §8):
//! `id:IIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:SSSSSSS err:E text:…`
//!
//! Labels are matched case-insensitively wherever they start a word, in any order, with or
//! without the space in `submit date` / `done date`; any field may be missing; `text:` takes
//! the rest of the message. Values are spans of the input so a rewrite can replace one and keep
//! every other octet.

use std::ops::Range;

/// A field of the receipt text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Label {
    Id,
    Sub,
    Dlvrd,
    SubmitDate,
    DoneDate,
    Stat,
    Err,
    Text,
}

const LABELS: &[(&[u8], Label)] = &[
    (b"id", Label::Id),
    (b"sub", Label::Sub),
    (b"dlvrd", Label::Dlvrd),
    (b"submit date", Label::SubmitDate),
    (b"submitdate", Label::SubmitDate),
    (b"submit_date", Label::SubmitDate),
    (b"done date", Label::DoneDate),
    (b"donedate", Label::DoneDate),
    (b"done_date", Label::DoneDate),
    (b"stat", Label::Stat),
    (b"err", Label::Err),
    (b"text", Label::Text),
];

/// Where a value lies in the text. Eight octets, not a `Range<usize>`'s sixteen: a text is at
/// most a `message_payload` (65 535 octets), and a receipt carries eight of these by value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn of(r: Range<usize>) -> Span {
        // The text is a PDU field (a message_payload at most 65 535 octets): far below u32::MAX.
        debug_assert!(u32::try_from(r.end).is_ok());
        Span {
            start: r.start as u32,
            end: r.end as u32,
        }
    }

    /// As a range of the text.
    pub(crate) fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Where each field's value lies in the text (first occurrence of each label).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Spans {
    pub(crate) id: Option<Span>,
    pub(crate) sub: Option<Span>,
    pub(crate) dlvrd: Option<Span>,
    pub(crate) submit_date: Option<Span>,
    pub(crate) done_date: Option<Span>,
    pub(crate) stat: Option<Span>,
    pub(crate) err: Option<Span>,
    pub(crate) text: Option<Span>,
}

impl Spans {
    fn slot(&mut self, label: Label) -> &mut Option<Span> {
        match label {
            Label::Id => &mut self.id,
            Label::Sub => &mut self.sub,
            Label::Dlvrd => &mut self.dlvrd,
            Label::SubmitDate => &mut self.submit_date,
            Label::DoneDate => &mut self.done_date,
            Label::Stat => &mut self.stat,
            Label::Err => &mut self.err,
            Label::Text => &mut self.text,
        }
    }
}

/// The label that ends at the colon at `colon`, if any. A label starts a word: after white space,
/// or at the start. The first label may also follow punctuation, for SMSCs that glue a prefix on
/// (`4790000000SMSAlert^id:…`). Inside a value nothing else counts, so an id like `AB$sub:1`
/// stays one value.
fn label_before(s: &[u8], colon: usize, first: bool) -> Option<(Label, usize)> {
    // Only the labels ending in the octet before the colon: one compare rules most out (this
    // runs for every colon of every receipt).
    let last = s.get(colon.checked_sub(1)?)?.to_ascii_lowercase();
    LABELS
        .iter()
        .filter(|(name, _)| name.last() == Some(&last))
        .find_map(|(name, label)| {
            let start = colon.checked_sub(name.len())?;
            if !s[start..colon].eq_ignore_ascii_case(name) {
                return None;
            }
            let boundary = start == 0 || {
                let before = s[start - 1];
                before.is_ascii_whitespace() || (first && !before.is_ascii_alphanumeric())
            };
            boundary.then_some((*label, start))
        })
}

const MAX_LABELS: usize = 16;

/// Finds the receipt fields in `s`. `None` unless an `id:` with a value is present.
pub(crate) fn parse(s: &[u8]) -> Option<Spans> {
    // (label, label start, value start), in text order. A fixed array: receipts are parsed on
    // the hot path, and more labels than this means the rest is junk to ignore.
    let mut found = [(Label::Id, 0usize, 0usize); MAX_LABELS];
    let mut count = 0;
    // Every label ends in ':', and receipts have few colons: look only there.
    for colon in memchr::memchr_iter(b':', s) {
        if let Some((label, start)) = label_before(s, colon, count == 0) {
            found[count] = (label, start, colon + 1);
            count += 1;
            if label == Label::Text || count == MAX_LABELS {
                break;
            }
        }
    }
    let found = &found[..count];
    let mut spans = Spans::default();
    for (n, &(label, _, value_start)) in found.iter().enumerate() {
        let slot = spans.slot(label);
        if slot.is_some() {
            continue;
        }
        let range = if label == Label::Text {
            value_start..s.len()
        } else {
            let end = found.get(n + 1).map_or(s.len(), |next| next.1);
            word(s, value_start..end)
        };
        *slot = Some(Span::of(range));
    }
    spans.id.filter(|r| r.start < r.end)?;
    Some(spans)
}

/// The value of a field: its first word (values never hold white space; a NUL ends it too).
fn word(s: &[u8], r: Range<usize>) -> Range<usize> {
    let start = (r.start..r.end).find(|&i| !s[i].is_ascii_whitespace()).unwrap_or(r.end);
    let end = (start..r.end)
        .find(|&i| s[i].is_ascii_whitespace() || s[i] == 0)
        .unwrap_or(r.end);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<'a>(s: &'a [u8], r: &Option<Span>) -> &'a [u8] {
        &s[r.unwrap().range()]
    }

    #[test]
    fn appendix_b_format_also_in_capitals() {
        let lower = b"id:0059113978 sub:001 dlvrd:001 submit date:1002101730 done date:1002101731 stat:DELIVRD err:000 text:@$#!%&/:";
        for s in [&lower[..], &lower.to_ascii_uppercase()] {
            appendix_b(s);
        }
    }

    fn appendix_b(s: &[u8]) {
        let p = parse(s).unwrap();
        assert_eq!(field(s, &p.id), b"0059113978");
        assert_eq!(field(s, &p.sub), b"001");
        assert_eq!(field(s, &p.dlvrd), b"001");
        assert_eq!(field(s, &p.submit_date), b"1002101730");
        assert_eq!(field(s, &p.done_date), b"1002101731");
        assert_eq!(field(s, &p.stat), b"DELIVRD");
        assert_eq!(field(s, &p.err), b"000");
        assert_eq!(field(s, &p.text), b"@$#!%&/:");
    }

    #[test]
    fn variants_real_smscs_send() {
        // Reordered, no space in the date labels, capital Text, empty err, prefix before id.
        let s = b"4790000000SMSAlert^stat:UNDELIV err: submitdate:201012161259 id:A1b2 donedate:20101216125959 Text:hi there";
        let p = parse(s).unwrap();
        assert_eq!(field(s, &p.id), b"A1b2");
        assert_eq!(field(s, &p.stat), b"UNDELIV");
        assert_eq!(field(s, &p.err), b"");
        assert_eq!(field(s, &p.submit_date), b"201012161259");
        assert_eq!(field(s, &p.done_date), b"20101216125959");
        assert_eq!(field(s, &p.text), b"hi there");
        assert!(p.sub.is_none() && p.dlvrd.is_none());
    }

    #[test]
    fn labels_inside_words_and_the_text_do_not_count() {
        let s = b"id:7 stat:DELIVRD text:my id:9 err:1";
        let p = parse(s).unwrap();
        assert_eq!(field(s, &p.id), b"7");
        assert!(p.err.is_none());
        assert!(parse(b"paid:5 stat:DELIVRD").is_none(), "'paid:' is not 'id:'");
        assert!(parse(b"hello world").is_none());
        assert!(parse(b"id: stat:DELIVRD").is_none(), "an empty id is no receipt");
    }
}
