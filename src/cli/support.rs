//! What several subcommands share: the domain XML on stdin, a tokio runtime.

use std::io::Read;

use virt_l3::domain_xml::MAX_XML_BYTES;

use super::error::CliError;

/// The domain XML on stdin, at most one byte more than the parser accepts (so
/// that it can say the document is too large).
pub fn read_stdin() -> Result<Vec<u8>, CliError> {
    let mut buf = Vec::new();
    std::io::stdin()
        .take(MAX_XML_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(CliError::Stdin)?;
    Ok(buf)
}

pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
}
