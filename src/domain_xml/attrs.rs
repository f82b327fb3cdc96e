//! An element's attributes, checked and read in one pass over their bytes.
//!
//! Most attributes are written `key="value"` (or with single quotes), separated
//! by whitespace: [`scan`] reads that shape without quick-xml's iterator (which
//! allocates for its duplicate check and is run once per reader pass). Anything
//! else, well-formed or not, is left to quick-xml, so that what is accepted and
//! every error message stay quick-xml's.

use std::borrow::Cow;

use quick_xml::events::attributes::Attribute;
use quick_xml::events::BytesStart;
use quick_xml::name::QName;

use super::{excerpt, malformed, XmlError};

/// At most this many attributes are scanned here; an element with more is
/// left to quick-xml.
const MAX_SCANNED: usize = 8;

/// The attributes of an element in the plain shape: where each key and value
/// is in the element's attribute bytes.
#[derive(Clone, Copy)]
pub(super) struct Scan {
    spans: [Span; MAX_SCANNED],
    len: u8,
    /// Whether an attribute declares a namespace (`xmlns`, `xmlns:p`).
    binds_namespace: bool,
}

/// An attribute's key and value, as offsets.
#[derive(Clone, Copy, Default)]
struct Span {
    key: (u32, u32),
    value: (u32, u32),
}

impl Scan {
    /// The (qualified key, raw value) pairs, given the bytes that were scanned.
    fn pairs<'s, 'a: 's>(
        &'s self,
        raw: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 's {
        let at = |(s, e): (u32, u32)| &raw[s as usize..e as usize];
        self.spans[..self.len as usize]
            .iter()
            .map(move |s| (at(s.key), at(s.value)))
    }

    pub(super) fn binds_namespace(&self) -> bool {
        self.binds_namespace
    }
}

/// XML whitespace, as quick-xml has it.
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\r' | b'\n' | b'\t')
}

/// The local part of a qualified name (after its first `:`), as quick-xml has it.
pub(super) fn local_name(name: &[u8]) -> &[u8] {
    match name.iter().position(|&b| b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

/// The attributes in `raw` (what follows the element's name) when each is
/// `key="value"` or `key='value'` with a non-empty key, none repeated, at most
/// [`MAX_SCANNED`] of them; `None` otherwise (quick-xml then decides). What this
/// accepts, quick-xml accepts with the same keys and values.
pub(super) fn scan(raw: &[u8]) -> Option<Scan> {
    // Offsets are kept as u32: larger elements are left to quick-xml.
    if u32::try_from(raw.len()).is_err() {
        return None;
    }
    let mut out = Scan {
        spans: [Span::default(); MAX_SCANNED],
        len: 0,
        binds_namespace: false,
    };
    let mut i = 0;
    loop {
        while raw.get(i).copied().is_some_and(is_ws) {
            i += 1;
        }
        if i == raw.len() {
            return Some(out);
        }
        let key_start = i;
        while raw.get(i).is_some_and(|&b| b != b'=' && !is_ws(b)) {
            i += 1;
        }
        if i == key_start || raw.get(i) != Some(&b'=') {
            return None;
        }
        let key = &raw[key_start..i];
        let quote = *raw.get(i + 1).filter(|&&q| q == b'"' || q == b'\'')?;
        let value_start = i + 2;
        let value_len = raw[value_start..].iter().position(|&b| b == quote)?;
        let len = out.len as usize;
        if len == MAX_SCANNED || out.pairs(raw).any(|(k, _)| k == key) {
            return None;
        }
        out.binds_namespace |= QName(key).as_namespace_binding().is_some();
        let end = value_start + value_len;
        // Fits: raw.len() fits in u32.
        let span = |s: usize, e: usize| (s as u32, e as u32);
        out.spans[len] = Span {
            key: span(key_start, i),
            value: span(value_start, end),
        };
        out.len += 1;
        i = end + 1;
    }
}

/// The attributes of an element virt-l3 reads: local name and unescaped value,
/// in document order.
pub(super) struct Attrs<'a> {
    list: Vec<(&'a [u8], Cow<'a, str>)>,
}

impl Attrs<'_> {
    /// The value of the attribute with local name `name`, the first if repeated
    /// under different prefixes.
    pub(super) fn get(&self, name: &str) -> Option<String> {
        self.list
            .iter()
            .find(|(k, _)| *k == name.as_bytes())
            .map(|(_, v)| v.to_string())
    }
}

/// Unescapes every value (an undefined entity or invalid UTF-8 in any of them
/// is refused), from the scan, or from quick-xml when the scan did not apply.
pub(super) fn read<'a>(
    start: &'a BytesStart<'_>,
    scan: Option<&Scan>,
    position: u64,
) -> Result<Attrs<'a>, XmlError> {
    let mut list = Vec::new();
    let mut add = |a: Attribute<'a>| -> Result<(), XmlError> {
        let value = a.unescape_value().map_err(|e| match e {
            quick_xml::Error::Escape(quick_xml::escape::EscapeError::UnrecognizedEntity(
                _,
                name,
            )) => XmlError::UndefinedEntity(excerpt(&name)),
            other => malformed(position, other),
        })?;
        list.push((local_name(a.key.0), value));
        Ok(())
    };
    match scan {
        Some(scan) => {
            for (key, value) in scan.pairs(start.attributes_raw()) {
                add(Attribute {
                    key: QName(key),
                    value: Cow::Borrowed(value),
                })?;
            }
        }
        None => {
            for a in start.attributes() {
                add(a.map_err(|e| malformed(position, e))?)?;
            }
        }
    }
    Ok(Attrs { list })
}

/// Refuses malformed or repeated attributes (quick-xml's check) when the scan
/// did not apply.
pub(super) fn check(start: &BytesStart<'_>, position: u64) -> Result<(), XmlError> {
    for a in start.attributes() {
        a.map_err(|err| malformed(position, err))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scan and quick-xml agree wherever the scan applies.
    fn agrees(raw: &str) -> bool {
        let start = BytesStart::from_content(format!("e{raw}"), 1);
        let raw = start.attributes_raw();
        let Some(s) = scan(raw) else {
            return false;
        };
        let theirs: Vec<_> = start
            .attributes()
            .map(|a| a.map(|a| (a.key.0.to_vec(), a.value.to_vec())))
            .collect::<Result<_, _>>()
            .expect("quick-xml accepts what the scan accepts");
        let ours: Vec<_> = s
            .pairs(raw)
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(ours, theirs, "{raw:?}");
        true
    }

    #[test]
    fn scans_the_plain_shape_as_quick_xml_does() {
        assert!(agrees(""));
        assert!(agrees("  "));
        assert!(agrees(" a='1'"));
        assert!(agrees(" a=\"x'y\" b='x\"y'\n\tc:d=''  "));
        assert!(agrees(" a='1'b='2'"));
        assert!(agrees(" a='<&amp;>'"));
        assert!(agrees(" xmlns:p='u' p:a='1' a='2'"));
    }

    #[test]
    fn leaves_anything_else_to_quick_xml() {
        for raw in [
            " a",
            " a=1",
            " a = '1'",
            " a='1",
            " ='1'",
            " a='1' a='2'",
            " a='1' b",
            " a=",
            " 1='1' 2='2' 3='3' 4='4' 5='5' 6='6' 7='7' 8='8' 9='9'",
        ] {
            assert!(scan(raw.as_bytes()).is_none(), "{raw:?}");
        }
    }

    #[test]
    fn namespace_bindings_are_seen() {
        let binds = |raw: &str| scan(raw.as_bytes()).unwrap().binds_namespace();
        assert!(binds(" xmlns='u'"));
        assert!(binds(" a='1' xmlns:p='u'"));
        assert!(!binds(" a='1' xmlnsx='u' p:xmlns='u'"));
    }
}
