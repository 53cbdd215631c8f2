//! Strict input: JSON bodies, query strings and the error shape every client sees.
//!
//! Every error answers `{"error": "...", "field": "..."}` (`field` only when one
//! field is to blame). Bodies are parsed with `deny_unknown_fields` types through
//! `serde_path_to_error`, so a wrong type deep inside a body names its path
//! (`params.port`), and an unknown or missing field names itself.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest accepted request body (1 MiB); one byte more is a `413`.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// An error answer: HTTP status plus the JSON body `{"error", "field"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{status} {error}")]
pub struct ApiError {
    /// HTTP status code.
    #[serde(skip)]
    pub status: u16,
    /// Human-readable message.
    pub error: String,
    /// The request field to blame, as a path (`params.port`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Extra header (`Allow` for 405, `WWW-Authenticate` for 401).
    #[serde(skip)]
    pub header: Option<(&'static str, String)>,
}

impl ApiError {
    /// An error with `status` and `message`, not tied to a field.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            error: message.into(),
            field: None,
            header: None,
        }
    }

    /// An error with `status` and `message` that blames `field`.
    pub fn field(status: u16, field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            error: message.into(),
            field: Some(field.into()),
            header: None,
        }
    }

    /// `400` blaming `field`.
    pub fn bad_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::field(400, field, message)
    }

    /// `404`: what was looked for does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    /// `500`: a handler failed; the message is safe to show.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }

    /// Adds a header to the answer.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.header = Some((name, value.into()));
        self
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| br#"{"error":"internal error"}"#.to_vec())
    }
}

/// Parses a JSON body into `T` (a `deny_unknown_fields` type), mapping every
/// failure to a `400` that names the field where one is to blame.
///
/// # Errors
/// `400` for malformed JSON, trailing data, unknown fields, missing fields and
/// wrong types.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    if start.is_none_or(|i| body[i] != b'{') {
        return Err(match serde_json::from_slice::<serde_json::Value>(body) {
            Err(e) => ApiError::new(400, format!("malformed JSON: {e}")),
            Ok(v) => {
                let kind = match v {
                    serde_json::Value::Null => "null",
                    serde_json::Value::Bool(_) => "a boolean",
                    serde_json::Value::Number(_) => "a number",
                    serde_json::Value::String(_) => "a string",
                    serde_json::Value::Array(_) => "an array",
                    serde_json::Value::Object(_) => "an object",
                };
                ApiError::new(
                    400,
                    format!("invalid type: the body must be a JSON object, got {kind}"),
                )
            }
        });
    }
    // An explicit `null` is not "omitted": no field takes null (the OpenAPI
    // schemas are not nullable), so it is refused rather than defaulted.
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(path) = first_null(&v, "")
    {
        return Err(ApiError::bad_field(
            &path,
            format!("`{path}` is null; omit it to use its default"),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => v,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            return Err(json_error(&path, &inner));
        }
    };
    if let Err(e) = de.end() {
        return Err(ApiError::new(400, format!("malformed JSON: {e}")));
    }
    Ok(value)
}

/// The path (`params.port`, `items[2]`) of the first `null` inside `v`.
fn first_null(v: &serde_json::Value, path: &str) -> Option<String> {
    match v {
        serde_json::Value::Null => Some(if path.is_empty() {
            ".".into()
        } else {
            path.into()
        }),
        serde_json::Value::Object(m) => m
            .iter()
            .find_map(|(k, v)| first_null(v, &join_path(path, k))),
        serde_json::Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| first_null(v, &format!("{path}[{i}]"))),
        _ => None,
    }
}

fn json_error(path: &str, e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::new(400, format!("malformed JSON: {e}"))
        }
        Category::Data => {
            let msg = strip_position(&e.to_string());
            let parent = if path == "." { "" } else { path };
            let field = if let Some(name) = quoted_name(&msg, "unknown field `")
                .or_else(|| quoted_name(&msg, "missing field `"))
            {
                Some(join_path(parent, &name))
            } else if parent.is_empty() {
                None
            } else {
                Some(parent.to_string())
            };
            match field {
                Some(f) => ApiError::bad_field(f, msg),
                None => ApiError::new(400, msg),
            }
        }
    }
}

/// `serde_json` ends data errors with " at line L column C"; for one-line
/// bodies that is noise next to the field name.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => msg[..i].to_string(),
        _ => msg.to_string(),
    }
}

fn quoted_name(msg: &str, prefix: &str) -> Option<String> {
    let rest = msg.strip_prefix(prefix)?;
    let end = rest.find('`')?;
    Some(rest[..end].to_string())
}

/// Joins a serde path and a field name; `serde_path_to_error` already ends the
/// path with an unknown field's name but not with a missing field's.
pub fn join_path(parent: &str, name: &str) -> String {
    if parent == name || parent.ends_with(&format!(".{name}")) {
        parent.to_string()
    } else if parent.is_empty() || parent == "." {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// Checks that `value` lies in `min..=max`, else a `400` naming `field`.
///
/// # Errors
/// `400` when out of range.
pub fn in_range(field: &str, value: i64, min: i64, max: i64) -> Result<(), ApiError> {
    if value < min || value > max {
        return Err(ApiError::bad_field(
            field,
            format!("`{field}` must be between {min} and {max}, got {value}"),
        ));
    }
    Ok(())
}

/// Parses a query string strictly: only the `allowed` keys, each at most once,
/// no empty keys. Values are percent-decoded.
///
/// # Errors
/// `400` naming the unknown or repeated key.
pub fn parse_query(query: &str, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k).ok_or_else(|| ApiError::new(400, "malformed query string"))?;
        let v = percent_decode(v)
            .ok_or_else(|| ApiError::bad_field(k.clone(), "malformed query value"))?;
        if !allowed.contains(&k.as_str()) {
            let expected = allowed.join(", ");
            return Err(ApiError::bad_field(
                k.clone(),
                format!("unknown query parameter `{k}`, expected one of: {expected}"),
            ));
        }
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(ApiError::bad_field(
                k.clone(),
                format!("query parameter `{k}` given twice"),
            ));
        }
        out.push((k, v));
    }
    Ok(out)
}

/// Decodes `%XX` escapes and `+` (as space); `None` when malformed or not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        service_id: String,
        duration_seconds: u32,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        port: u16,
    }

    #[test]
    fn unknown_field_is_named() {
        let e = parse_json::<Body>(br#"{"service_id":"a","duration_minutes":5}"#).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.field.as_deref(), Some("duration_minutes"));
        assert!(
            e.error.starts_with("unknown field `duration_minutes`"),
            "{}",
            e.error
        );
    }

    #[test]
    fn missing_and_wrong_type_and_nested() {
        let e = parse_json::<Body>(br#"{"service_id":"a"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("duration_seconds"));
        let e = parse_json::<Body>(br#"{"service_id":"a","duration_seconds":"5"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("duration_seconds"));
        let e =
            parse_json::<Body>(br#"{"service_id":"a","duration_seconds":5,"inner":{"port":-1}}"#)
                .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("inner.port"));
        let e = parse_json::<Body>(br#"{"service_id":"a","duration_seconds":5,"inner":{"x":1}}"#)
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("inner.x"));
    }

    #[test]
    fn explicit_null_is_refused_naming_the_field() {
        let e = parse_json::<Body>(br#"{"service_id":"a","duration_seconds":5,"inner":null}"#)
            .unwrap_err();
        assert_eq!((e.status, e.field.as_deref()), (400, Some("inner")));
        let e = parse_json::<serde_json::Value>(br#"{"params":{"port":null}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("params.port"));
    }

    #[test]
    fn malformed_and_trailing() {
        let e = parse_json::<Body>(br#"{"service_id":"#).unwrap_err();
        assert!(e.error.starts_with("malformed JSON"), "{}", e.error);
        assert_eq!(e.field, None);
        let e = parse_json::<Body>(br#"{"service_id":"a","duration_seconds":5} x"#).unwrap_err();
        assert!(e.error.starts_with("malformed JSON"));
        let e = parse_json::<Body>(b"[1]").unwrap_err();
        assert_eq!(e.status, 400);
    }

    #[test]
    fn query_strict() {
        assert_eq!(
            parse_query("status=running", &["status"]).unwrap(),
            vec![("status".to_string(), "running".to_string())]
        );
        assert_eq!(
            parse_query("x=1", &["status"])
                .unwrap_err()
                .field
                .as_deref(),
            Some("x")
        );
        assert!(parse_query("status=a&status=b", &["status"]).is_err());
        assert_eq!(percent_decode("a%2Cb+c").as_deref(), Some("a,b c"));
        assert_eq!(percent_decode("%zz"), None);
    }
}
