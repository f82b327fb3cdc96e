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

/// The attributes of an element in the plain shape: (qualified key, raw value).
#[derive(Clone, Copy)]
pub(super) struct Scan<'a> {
    pairs: [(&'a [u8], &'a [u8]); MAX_SCANNED],
    len: usize,
}

impl<'a> Scan<'a> {
    pub(super) fn pairs(&self) -> &[(&'a [u8], &'a [u8])] {
        &self.pairs[..self.len]
    }

    /// Whether an attribute declares a namespace (`xmlns`, `xmlns:p`).
    pub(super) fn binds_namespace(&self) -> bool {
        self.pairs()
            .iter()
            .any(|(k, _)| QName(k).as_namespace_binding().is_some())
    }
}

/// XML whitespace, as quick-xml has it.
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\r' | b'\n' | b'\t')
}

/// The attributes in `raw` (what follows the element's name) when each is
/// `key="value"` or `key='value'` with a non-empty key, none repeated, at most
/// [`MAX_SCANNED`] of them; `None` otherwise (quick-xml then decides). What this
/// accepts, quick-xml accepts with the same keys and values.
pub(super) fn scan(raw: &[u8]) -> Option<Scan<'_>> {
    let mut out = Scan {
        pairs: [(&[][..], &[][..]); MAX_SCANNED],
        len: 0,
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
        let value = &raw[value_start..value_start + value_len];
        if out.len == MAX_SCANNED || out.pairs().iter().any(|(k, _)| *k == key) {
            return None;
        }
        out.pairs[out.len] = (key, value);
        out.len += 1;
        i = value_start + value_len + 1;
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
    scan: Option<&Scan<'a>>,
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
        list.push((a.key.local_name().into_inner(), value));
        Ok(())
    };
    match scan {
        Some(scan) => {
            for &(key, value) in scan.pairs() {
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
        let Some(s) = scan(start.attributes_raw()) else {
            return false;
        };
        let theirs: Vec<_> = start
            .attributes()
            .map(|a| a.map(|a| (a.key.0.to_vec(), a.value.to_vec())))
            .collect::<Result<_, _>>()
            .expect("quick-xml accepts what the scan accepts");
        let ours: Vec<_> = s
            .pairs()
            .iter()
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
