//! What a delivery holds: a CloudEvent in structured content mode (the
//! body is the event) or in binary content mode (the attributes are
//! headers, the body is the data). The content type tells them apart, as
//! the CloudEvents AMQP and RabbitMQ bindings say: `application/cloudevents`
//! is structured; anything else with a `specversion` attribute header is
//! binary; anything else is read as structured (publishers that leave the
//! content type out).

use lapin::message::Delivery;
use lapin::types::AMQPValue;

use audrey_core::contract::binary::{is_binary_mode, HeaderValue};
use audrey_core::contract::{DecodeError, TrustedSources};
use audrey_core::{Event, Timestamp};

/// What a delivery must pass beyond the contract's shape.
#[derive(Debug, Clone)]
pub struct Checks {
    /// Larger events are refused unread.
    pub max_bytes: usize,
    /// Events from other sources are refused (`untrusted_source`).
    pub trusted: TrustedSources,
}

/// Decodes a delivery in whichever content mode it uses, refusing anything
/// over the size limit, from an untrusted source, or with a time too far
/// ahead of `now` (the receiving clock: see [`Event::check_clock`]).
pub fn decode(delivery: &Delivery, checks: &Checks, now: Timestamp) -> Result<Event, DecodeError> {
    let event = decode_modes(delivery, checks.max_bytes)?;
    checks.trusted.check(&event)?;
    event.check_clock(now)?;
    Ok(event)
}

fn decode_modes(delivery: &Delivery, max_bytes: usize) -> Result<Event, DecodeError> {
    let properties = &delivery.properties;
    let content_type = properties.content_type().as_ref().map(|t| t.as_str());
    let structured = content_type.is_some_and(|t| {
        t.get(..23)
            .is_some_and(|head| head.eq_ignore_ascii_case("application/cloudevents"))
    });
    let headers = properties.headers().as_ref();
    let binary = !structured
        && headers.is_some_and(|h| is_binary_mode(h.inner().keys().map(|k| k.as_str())));
    match headers {
        Some(table) if binary => {
            let headers: Vec<(String, HeaderValue)> = table
                .inner()
                .iter()
                .map(|(name, value)| (name.as_str().to_owned(), header_value(value)))
                .collect();
            Event::decode_binary(&headers, content_type, &delivery.data, max_bytes)
        }
        _ => Event::decode(&delivery.data, max_bytes),
    }
}

fn header_value(value: &AMQPValue) -> HeaderValue {
    match value {
        AMQPValue::LongString(s) => HeaderValue::Text(String::from_utf8_lossy(s.as_bytes()).into()),
        AMQPValue::ShortString(s) => HeaderValue::Text(s.as_str().to_owned()),
        AMQPValue::Timestamp(seconds) => HeaderValue::Timestamp(*seconds),
        AMQPValue::ShortShortInt(n) => HeaderValue::Integer((*n).into()),
        AMQPValue::ShortShortUInt(n) => HeaderValue::Integer((*n).into()),
        AMQPValue::ShortInt(n) => HeaderValue::Integer((*n).into()),
        AMQPValue::ShortUInt(n) => HeaderValue::Integer((*n).into()),
        AMQPValue::LongInt(n) => HeaderValue::Integer((*n).into()),
        AMQPValue::LongUInt(n) => HeaderValue::Integer((*n).into()),
        AMQPValue::LongLongInt(n) => HeaderValue::Integer(*n),
        AMQPValue::Boolean(b) => HeaderValue::Boolean(*b),
        _ => HeaderValue::Other,
    }
}
