//! Text taken from the XML, made safe for one-line error messages and logs, and
//! the checks on a domain's name and UUID. Imports nothing from the crate.

use std::borrow::Cow;

/// `s` with its control characters (newlines included) escaped as Rust writes
/// them (`\n`, `\u{1b}`): text taken from the XML goes into one-line error
/// messages and logs, where it must not start a line of its own.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A syntactically valid libvirt UUID (it names files in the state directory).
pub fn is_valid_uuid(u: &str) -> bool {
    u.len() == 36
        && u.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The longest domain name accepted: libvirt keeps every domain as `NAME.xml`
/// in its configuration and status directories, and a file name has at most
/// 255 bytes, so no domain libvirt can run has a longer name.
pub const MAX_NAME_BYTES: usize = 251;

/// Why a domain name is refused, if it is: a name with a `/` (libvirt refuses
/// those itself), a control character (it would break the one-line error libvirt
/// shows) or longer than [`MAX_NAME_BYTES`].
pub fn name_problem(name: &str) -> Option<String> {
    if name.len() > MAX_NAME_BYTES {
        Some(format!(
            "the domain name is {} bytes long, more than the {MAX_NAME_BYTES} bytes libvirt can store",
            name.len()
        ))
    } else if name.contains('/') {
        Some(format!("the domain name {} contains '/'", shown(name)))
    } else if name.chars().any(char::is_control) {
        Some(format!(
            "the domain name {} contains a control character",
            shown(name)
        ))
    } else {
        None
    }
}

/// A value from the XML, quoted for an error message: control characters
/// escaped, and cut after 64 characters (a hostile attribute may be megabytes).
pub fn shown(value: &str) -> String {
    const MAX: usize = 64;
    let count = value.chars().count();
    if count <= MAX {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head:?}... ({} bytes)", value.len())
    }
}

/// A domain name for the head of an error message: as is when it is harmless,
/// else [`shown`].
pub fn display_name(name: &str) -> String {
    if name.len() <= MAX_NAME_BYTES && !name.chars().any(char::is_control) {
        name.to_string()
    } else {
        shown(name)
    }
}

/// A value in a label: as written when short and printable, else [`shown`].
pub(crate) fn label_value(v: &str) -> String {
    if v.len() <= 64 && !v.chars().any(char::is_control) {
        v.to_string()
    } else {
        shown(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_control_characters_only() {
        assert!(matches!(printable("plain é"), Cow::Borrowed("plain é")));
        assert_eq!(printable("a\nb\u{1b}"), "a\\nb\\u{1b}");
    }

    #[test]
    fn uuids() {
        assert!(is_valid_uuid("c7a5fdbd-edaf-9455-926a-d65c16db1809"));
        assert!(!is_valid_uuid("c7a5fdbd-edaf-9455-926a-d65c16db180"));
        assert!(!is_valid_uuid("c7a5fdbd0edaf-9455-926a-d65c16db1809"));
        assert!(!is_valid_uuid("../5fdbd-edaf-9455-926a-d65c16db1809"));
    }

    #[test]
    fn names() {
        assert_eq!(name_problem("web-1"), None);
        assert_eq!(
            name_problem("a/b").as_deref(),
            Some("the domain name \"a/b\" contains '/'")
        );
        assert_eq!(
            name_problem("a\nb").as_deref(),
            Some("the domain name \"a\\nb\" contains a control character")
        );
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(
            name_problem(&long).as_deref(),
            Some("the domain name is 252 bytes long, more than the 251 bytes libvirt can store")
        );
        assert_eq!(name_problem(&"x".repeat(MAX_NAME_BYTES)), None);
    }

    #[test]
    fn shown_quotes_and_cuts() {
        assert_eq!(shown("ab"), "\"ab\"");
        let long = "y".repeat(70);
        assert_eq!(
            shown(&long),
            format!("\"{}\"... (70 bytes)", "y".repeat(64))
        );
        assert_eq!(display_name("web"), "web");
        assert_eq!(display_name("w\teb"), "\"w\\teb\"");
        assert_eq!(label_value("br0"), "br0");
        assert_eq!(label_value(&long), shown(&long));
    }
}
