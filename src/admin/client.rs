//! A tiny blocking HTTP/1.1 client for the admin endpoint: what the CLI verbs (`status`,
//! `upstream drain`, `reload`...) and the tests use. One request per connection.

use std::time::Duration;

/// Fetches `path` from an admin endpoint at `addr` (for `smpp-proxy status` and tests): the
/// body of a 200 answer, else an error naming the status line and the body.
pub fn get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    request(addr, "GET", path, None)
}

/// Sends `POST path` to an admin endpoint, as [`get`].
pub fn post(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    request(addr, "POST", path, None)
}

/// Sends `method path` with the bearer `token` (if any), as [`get`].
pub fn request(addr: std::net::SocketAddr, method: &str, path: &str, token: Option<&str>) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        // The endpoint's errors are `{"error": "..."}`: the sentence is what a person reads.
        let error = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| body.trim().to_owned());
        return Err(std::io::Error::other(format!("{status}: {error}")));
    }
    Ok(body.to_owned())
}
