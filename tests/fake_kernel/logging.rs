//! What reaches the log.

use super::*;

/// Everything logged (at debug and above) while `f` runs.
fn logged(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buf.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn a_control_character_in_a_domain_name_never_reaches_the_log_raw() {
    let lab = Lab::new();
    lab.hook("start").unwrap();
    // The same domain (same UUID), renamed with a newline and an escape: its plan
    // fails, and reconnect re-applies the record, saying so in the log.
    let text = String::from_utf8(xml()).unwrap().replace(
        "<name>i-2-10-VM</name>",
        "<name>i-2-10-VM&#10;forged line&#27;[31m</name>",
    );
    let log = logged(|| {
        lab.hook_with(
            "reconnect",
            "i-2-10-VM\nforged line\u{1b}[31m",
            text.as_bytes(),
        )
        .unwrap();
    });
    assert!(
        log.contains("re-applying the recorded state instead"),
        "{log}"
    );
    assert!(log.contains(r#"i-2-10-VM\nforged line\u{1b}[31m"#), "{log}");
    assert!(!log.contains('\u{1b}'), "{log}");
    assert!(!log.contains("\nforged"), "{log}");
    assert_eq!(lab.routes(), expected_routes(&lab, 100));
}
