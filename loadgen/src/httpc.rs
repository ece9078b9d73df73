//! Request bytes for loadgen's HTTP viewers. Response heads and chunked bodies are read
//! with edge-core's parsers ([`edge_core::http::parse_response_head`],
//! [`edge_core::http::Dechunker`]), the same the tests and the engine use.

/// `GET path` with keep-alive.
pub fn get(path: &str, host: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: edge-loadgen\r\nAccept: */*\r\n\r\n"
    )
    .into_bytes()
}
