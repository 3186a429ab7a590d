//! Binary content mode: the event's attributes travel as message headers
//! and the body is its `data` alone. Two header conventions are accepted:
//! the RabbitMQ binding (`ce-id`, `ce-time`, ...: what the CloudEvents
//! Python SDK's RabbitMQ binding and knative publish) and the AMQP binding's
//! application properties (`cloudEvents_id` or `cloudEvents:id`). The
//! message's content type is the data's (`datacontenttype`).
//!
//! A binary message is turned into the structured form and decoded by
//! [`Event::from_value`], so both modes pass exactly the same checks, fail
//! with the same reasons and, once accepted, are the same event (the same
//! dedup key, the same canonical form in the log).

use serde_json::{Map, Value};

use super::error::DecodeError;
use super::event::Event;
use crate::domain::{truncate, Timestamp};

/// The header prefixes that name a CloudEvents attribute.
pub const ATTRIBUTE_PREFIXES: [&str; 3] = ["ce-", "cloudEvents_", "cloudEvents:"];

/// A message header's value, as the AMQP client delivers it.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderValue {
    /// A string (what the SDKs send for every attribute).
    Text(String),
    /// An AMQP 0-9-1 timestamp: whole seconds since the epoch.
    Timestamp(u64),
    /// An integer; for `time`, milliseconds since the epoch (the AMQP 1.0
    /// timestamp, as the AMQP binding writes it).
    Integer(i64),
    Boolean(bool),
    /// Anything else (a table, bytes, a float): never a valid attribute.
    Other,
}

/// The attribute a header names, if it names one: its name without the
/// prefix, lowercased.
pub fn attribute_name(header: &str) -> Option<String> {
    ATTRIBUTE_PREFIXES.iter().find_map(|prefix| {
        let head = header.get(..prefix.len())?;
        let name = &header[prefix.len()..];
        (head.eq_ignore_ascii_case(prefix) && !name.is_empty()).then(|| name.to_ascii_lowercase())
    })
}

/// Whether a message whose content type is not a CloudEvents one carries an
/// event in binary mode: some header names `specversion`.
pub fn is_binary_mode<'a>(mut header_names: impl Iterator<Item = &'a str>) -> bool {
    header_names.any(|h| attribute_name(h).as_deref() == Some("specversion"))
}

impl Event {
    /// Decodes a binary-mode message: attributes from `headers` (others are
    /// ignored), the data's type from `content_type`, the data from `body`.
    /// Refuses a message whose headers and body together exceed `max_bytes`.
    pub fn decode_binary(
        headers: &[(String, HeaderValue)],
        content_type: Option<&str>,
        body: &[u8],
        max_bytes: usize,
    ) -> Result<Event, DecodeError> {
        let header_bytes: usize = headers
            .iter()
            .map(|(name, value)| {
                name.len()
                    + match value {
                        HeaderValue::Text(s) => s.len(),
                        _ => 8,
                    }
            })
            .sum();
        let size = header_bytes + body.len();
        if size > max_bytes {
            return Err(DecodeError::TooLarge {
                size,
                limit: max_bytes,
            });
        }
        let mut envelope = Map::new();
        for (header, value) in headers {
            let Some(name) = attribute_name(header) else {
                continue;
            };
            let value = attribute_value(&name, value)?;
            if let Some(earlier) = envelope.get(&name) {
                if *earlier != value {
                    return Err(DecodeError::NotCloudEvent(format!(
                        "attribute `{}` is given twice, with different values",
                        truncate(&name)
                    )));
                }
            }
            if name == "data" || name == "datacontenttype" {
                return Err(DecodeError::NotCloudEvent(format!(
                    "`{header}` cannot be a header in binary mode: the data is the body and its type the content type"
                )));
            }
            envelope.insert(name, value);
        }
        if let Some(content_type) = content_type {
            // A media type's parameters (`; charset=utf-8`) do not change
            // what the data is.
            let media_type = content_type.split(';').next().unwrap_or("").trim();
            let datacontenttype = if media_type.eq_ignore_ascii_case("application/json") {
                "application/json"
            } else {
                content_type
            };
            envelope.insert("datacontenttype".into(), Value::from(datacontenttype));
        }
        let data: Value =
            serde_json::from_slice(body).map_err(|e| DecodeError::NotJson(e.to_string()))?;
        envelope.insert("data".into(), data);
        Event::from_value(&Value::Object(envelope))
    }
}

/// An attribute's header value as the JSON the structured form would hold.
fn attribute_value(name: &str, value: &HeaderValue) -> Result<Value, DecodeError> {
    Ok(match (name, value) {
        (_, HeaderValue::Text(s)) => Value::from(s.as_str()),
        ("time", HeaderValue::Timestamp(seconds)) => {
            let seconds = i64::try_from(*seconds).unwrap_or(i64::MAX);
            Value::from(Timestamp::from_unix_seconds(seconds).to_rfc3339())
        }
        ("time", HeaderValue::Integer(millis)) => {
            Value::from(Timestamp::from_nanos(millis.saturating_mul(1_000_000)).to_rfc3339())
        }
        (_, HeaderValue::Timestamp(seconds)) => Value::from(*seconds),
        (_, HeaderValue::Integer(n)) => Value::from(*n),
        (_, HeaderValue::Boolean(b)) => Value::from(*b),
        (_, HeaderValue::Other) => {
            return Err(DecodeError::InvalidField {
                path: name.to_owned(),
                problem: "is not a string".into(),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::contract::DEFAULT_MAX_EVENT_BYTES;

    const DEPLOYMENT: &str = "3c9e8f2a-5b1d-4c7e-9f10-2a6b8d4e1c53";
    const INSTANCE: &str = "0b6a4d1e-7c2f-4a8b-9e3d-5f1a2b3c4d5e";

    fn text(name: &str, value: &str) -> (String, HeaderValue) {
        (name.to_owned(), HeaderValue::Text(value.to_owned()))
    }

    fn headers(prefix: &str) -> Vec<(String, HeaderValue)> {
        vec![
            text(&format!("{prefix}specversion"), "1.0"),
            text(&format!("{prefix}id"), "e1"),
            text(&format!("{prefix}source"), "/configserver/cs-01"),
            text(
                &format!("{prefix}type"),
                "org.aeolusproject.audrey.instance.contacted",
            ),
            text(&format!("{prefix}time"), "2026-11-25T16:00:00.500000+02:00"),
            text(&format!("{prefix}deployment"), DEPLOYMENT),
            ("x-delivery-count".to_owned(), HeaderValue::Integer(0)),
        ]
    }

    fn structured() -> Event {
        let value = json!({
            "specversion": "1.0", "id": "e1", "source": "/configserver/cs-01",
            "type": "org.aeolusproject.audrey.instance.contacted",
            "time": "2026-11-25T14:00:00.5Z", "deployment": DEPLOYMENT,
            "datacontenttype": "application/json",
            "data": {"instance": INSTANCE, "request": "GET /configs"}
        });
        Event::from_value(&value).unwrap()
    }

    fn body() -> Vec<u8> {
        json!({"instance": INSTANCE, "request": "GET /configs"})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn every_header_convention_gives_the_structured_event() {
        for prefix in ["ce-", "cloudEvents_", "cloudEvents:", "CE-"] {
            let event = Event::decode_binary(
                &headers(prefix),
                Some("application/json"),
                &body(),
                DEFAULT_MAX_EVENT_BYTES,
            )
            .unwrap();
            assert_eq!(event, structured(), "{prefix}");
        }
        let no_content_type =
            Event::decode_binary(&headers("ce-"), None, &body(), DEFAULT_MAX_EVENT_BYTES);
        assert_eq!(no_content_type.unwrap(), structured());
        let with_charset = Event::decode_binary(
            &headers("ce-"),
            Some("application/json; charset=utf-8"),
            &body(),
            DEFAULT_MAX_EVENT_BYTES,
        );
        assert_eq!(with_charset.unwrap(), structured());
    }

    #[test]
    fn time_may_be_an_amqp_timestamp_or_milliseconds() {
        let mut h = headers("ce-");
        h[4].1 = HeaderValue::Integer(1_795_615_200_500);
        let event = Event::decode_binary(&h, None, &body(), DEFAULT_MAX_EVENT_BYTES).unwrap();
        assert_eq!(event, structured());
        h[4].1 = HeaderValue::Timestamp(1_795_615_200);
        let event = Event::decode_binary(&h, None, &body(), DEFAULT_MAX_EVENT_BYTES).unwrap();
        assert_eq!(event.time().to_rfc3339(), "2026-11-25T14:00:00Z");
    }

    #[test]
    fn binary_messages_are_refused_for_the_same_reasons() {
        let reason = |h: &[(String, HeaderValue)], ct: Option<&str>, body: &[u8]| {
            Event::decode_binary(h, ct, body, 1000)
                .unwrap_err()
                .reason()
        };
        assert_eq!(reason(&headers("ce-"), None, b"{nope"), "not_json");
        assert_eq!(
            reason(&headers("ce-"), Some("text/plain"), &body()),
            "invalid_field"
        );
        assert_eq!(reason(&headers("ce-"), None, &[b' '; 1000]), "too_large");
        let mut h = headers("ce-");
        h.retain(|(n, _)| n != "ce-deployment");
        assert_eq!(reason(&h, None, &body()), "missing_field");
        let mut h = headers("ce-");
        h[3].1 = HeaderValue::Text("org.aeolusproject.audrey.nope".into());
        assert_eq!(reason(&h, None, &body()), "unknown_type");
        let mut h = headers("ce-");
        h[1].1 = HeaderValue::Integer(7);
        assert_eq!(reason(&h, None, &body()), "invalid_field");
        let mut h = headers("ce-");
        h.push(text("cloudEvents_id", "other"));
        assert_eq!(reason(&h, None, &body()), "not_cloudevent");
    }

    #[test]
    fn binary_mode_is_told_by_a_specversion_header() {
        assert!(is_binary_mode(
            ["x-delivery-count", "ce-specversion"].into_iter()
        ));
        assert!(is_binary_mode(["cloudEvents:specversion"].into_iter()));
        assert!(!is_binary_mode(["ce-id", "specversion"].into_iter()));
    }
}
