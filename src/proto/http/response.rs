//! Response heads: the status line and header fields, as bytes ready to write.

use bytes::Bytes;

/// The statuses the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    NoContent,
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    /// The resource exists but not as FLV (an fstream channel of raw bytes).
    NotAcceptable,
    RequestHeaderFieldsTooLarge,
    ServiceUnavailable,
    HttpVersionNotSupported,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::NoContent => 204,
            Status::BadRequest => 400,
            Status::Unauthorized => 401,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::NotAcceptable => 406,
            Status::RequestHeaderFieldsTooLarge => 431,
            Status::ServiceUnavailable => 503,
            Status::HttpVersionNotSupported => 505,
        }
    }

    /// The reason phrase (RFC 9110 §15).
    pub fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::NoContent => "No Content",
            Status::BadRequest => "Bad Request",
            Status::Unauthorized => "Unauthorized",
            Status::Forbidden => "Forbidden",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::NotAcceptable => "Not Acceptable",
            Status::RequestHeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::ServiceUnavailable => "Service Unavailable",
            Status::HttpVersionNotSupported => "HTTP Version Not Supported",
        }
    }
}

/// A response head under construction: `HTTP/1.1 CODE REASON`, then fields in the order added.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    status: Status,
    fields: String,
}

impl ResponseHead {
    pub fn new(status: Status) -> Self {
        ResponseHead {
            status,
            fields: String::new(),
        }
    }

    pub fn status(&self) -> Status {
        self.status
    }

    /// Adds `name: value`. Control characters in `value` (which may come from the config) are
    /// dropped, so a field can never end the head early or inject another field.
    pub fn field(mut self, name: &'static str, value: &str) -> Self {
        self.fields.push_str(name);
        self.fields.push_str(": ");
        self.fields
            .extend(value.chars().filter(|c| !c.is_control()));
        self.fields.push_str("\r\n");
        self
    }

    /// Adds `Content-Length`.
    pub fn content_length(self, len: usize) -> Self {
        self.field("Content-Length", &len.to_string())
    }

    /// The head's bytes, ending with the empty line.
    pub fn encode(&self) -> Bytes {
        let status = self.status;
        Bytes::from(format!(
            "HTTP/1.1 {} {}\r\n{}\r\n",
            status.code(),
            status.reason(),
            self.fields
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_is_status_line_then_fields_then_empty_line() {
        let head = ResponseHead::new(Status::NotFound)
            .field("Content-Type", "text/plain")
            .content_length(3)
            .encode();
        assert_eq!(
            &head[..],
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\n"
        );
    }

    #[test]
    fn field_values_cannot_inject_lines() {
        let head = ResponseHead::new(Status::Ok)
            .field("Access-Control-Allow-Origin", "a\r\nSet-Cookie: x\n")
            .encode();
        assert_eq!(
            &head[..],
            b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: aSet-Cookie: x\r\n\r\n"
        );
    }
}
