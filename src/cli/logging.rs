//! Logs: tracing events to stderr (never stdout: libvirt may read a hook's
//! stdout as XML), at `$VIRT_L3_LOG`, else the configuration's `log_level`,
//! else warn.
//!
//! At a plain level (`warn`, `info`...) the formatting subscriber is built at
//! the first event that passes the level, not at start ([`Lazy`]): its span
//! registry allocates and zeroes 32 KiB up front, eight page faults of a hook
//! process that at the default level usually logs nothing (docs/BENCHMARKS.md).
//! Directives beyond a level (`virt_l3=debug,rtnetlink=warn`) go through
//! tracing-subscriber's `EnvFilter`, built at once.

use std::sync::OnceLock;

use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_core::span::Current;
use tracing_log::AsLog;
use tracing_subscriber::filter::LevelFilter;
use virt_l3::config::Config;

/// Installs the process's logger (once; later calls change nothing).
pub fn init(config: Option<&Config>) {
    let level = std::env::var("VIRT_L3_LOG")
        .ok()
        .or_else(|| config.map(|c| c.log_level.clone()))
        .unwrap_or_else(|| "warn".to_string());
    match level.trim().parse::<LevelFilter>() {
        Ok(level) => {
            // What `try_init` does besides: records of the `log` crate (used by
            // some dependencies) become events, at the same level.
            let _ = tracing_log::LogTracer::builder()
                .with_max_level(level.as_log())
                .init();
            let _ = tracing::subscriber::set_global_default(Lazy::new(level));
        }
        Err(_) => {
            let _ = builder()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_new(&level)
                        .unwrap_or_else(|_| "warn".into()),
                )
                .try_init();
        }
    }
}

/// The builder of [`builder`]: fmt's defaults, no time, writing to stderr.
type Builder = tracing_subscriber::fmt::SubscriberBuilder<
    tracing_subscriber::fmt::format::DefaultFields,
    tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Full, ()>,
    LevelFilter,
    fn() -> std::io::Stderr,
>;

/// The format of every log line: level and message, no time (journald and
/// libvirt's log add their own), no colours, no module path.
fn builder() -> Builder {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr as fn() -> std::io::Stderr)
        .with_target(false)
        .with_ansi(false)
        .without_time()
}

/// A level filter in front of the formatting subscriber, which it builds when
/// first needed: at the first event or span the level lets through.
pub struct Lazy {
    level: LevelFilter,
    inner: OnceLock<Box<dyn Subscriber + Send + Sync>>,
}

impl Lazy {
    pub fn new(level: LevelFilter) -> Lazy {
        Lazy {
            level,
            inner: OnceLock::new(),
        }
    }

    fn inner(&self) -> &(dyn Subscriber + Send + Sync) {
        self.inner
            .get_or_init(|| Box::new(builder().with_max_level(self.level).finish()))
            .as_ref()
    }

    /// Whether the formatting subscriber has been built.
    #[cfg(test)]
    fn built(&self) -> bool {
        self.inner.get().is_some()
    }
}

impl Subscriber for Lazy {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.enabled(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.level
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.level)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.inner().new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.inner().record(span, values)
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.inner().record_follows_from(span, follows)
    }

    fn event(&self, event: &Event<'_>) {
        self.inner().event(event)
    }

    fn enter(&self, span: &Id) {
        self.inner().enter(span)
    }

    fn exit(&self, span: &Id) {
        self.inner().exit(span)
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.inner().clone_span(id)
    }

    fn try_close(&self, id: Id) -> bool {
        self.inner().try_close(id)
    }

    fn current_span(&self) -> Current {
        match self.inner.get() {
            Some(inner) => inner.current_span(),
            None => Current::none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Below the level nothing is built; the first event at the level builds
    /// the formatter, and spans (none in virt-l3 today) go through it.
    #[test]
    fn the_formatter_is_built_at_the_first_event_the_level_lets_through() {
        let dispatch = tracing::Dispatch::new(Lazy::new(LevelFilter::WARN));
        let lazy = || dispatch.downcast_ref::<Lazy>().expect("a Lazy");
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info!("not at this level");
            tracing::debug!("nor this");
            assert!(!tracing::enabled!(tracing::Level::INFO));
            assert!(!lazy().built());
            assert!(tracing::enabled!(tracing::Level::WARN));
            tracing::warn!(test = true, "the first event at the level");
            assert!(lazy().built());
            let span = tracing::warn_span!("a span");
            let _entered = span.enter();
            tracing::error!("inside it");
        });
    }

    #[test]
    fn off_lets_nothing_through() {
        let dispatch = tracing::Dispatch::new(Lazy::new(LevelFilter::OFF));
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::error!("not even this");
            assert!(!tracing::enabled!(tracing::Level::ERROR));
        });
        assert!(!dispatch.downcast_ref::<Lazy>().expect("a Lazy").built());
    }
}
