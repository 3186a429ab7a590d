//! Decoding: the only way in. [`Event::decode`] checks the size, the JSON,
//! the envelope and every field, and says precisely what is wrong; what it
//! accepts is exactly what `schemas/events.schema.json` accepts (a test
//! holds the two together).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::domain::{
    is_refused_char, truncate, DeploymentId, EventId, InstanceId, Name, Source, Timestamp,
};

use super::error::DecodeError;
use super::event::{
    DeploymentEvent, Event, EventData, Heartbeat, InstanceRegistration, Parameter, ParameterSource,
    ServiceConfig,
};
use super::event_type::EventType;
use super::json::{Json, Members};

/// The default bound on an encoded event, in bytes. A config server never
/// sends anything near this; a larger message is a bug or an attack.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

/// The largest `--max-event-bytes` allowed: a batch holds up to
/// `--batch-size` events of this size in memory at once.
pub const MAX_EVENT_BYTES_LIMIT: usize = 8 * 1024 * 1024;

/// No event time before 2000-01-01T00:00:00Z is accepted: a config server
/// reporting one has a broken clock, and the views would carry it forever.
pub const EARLIEST_EVENT_TIME_SECONDS: i64 = 946_684_800;

/// How far ahead of the receiving service's clock an event time may be
/// (see [`Event::check_clock`]): a config server whose clock runs a day
/// ahead would hide its deployments from stall detection until then.
pub const MAX_CLOCK_AHEAD_SECONDS: f64 = 86_400.0;

const MAX_REQUEST_CHARS: usize = 1024;
const MAX_VERSION_CHARS: usize = 64;
const MAX_LIST_ITEMS: usize = 256;
const MAX_EXPECTED_INSTANCES: usize = 10_000;

/// The envelope attributes of CloudEvents 1.0 and ours (`deployment`);
/// any other attribute must be a well-formed extension name.
const KNOWN_ATTRIBUTES: [&str; 10] = [
    "specversion",
    "type",
    "id",
    "source",
    "time",
    "datacontenttype",
    "deployment",
    "data",
    "dataschema",
    "subject",
];

/// Decodes the `data` of one deployment event type, given the deployment
/// the envelope names.
type DataDecoder = fn(&Obj<'_>, DeploymentId) -> Result<EventData, DecodeError>;

impl Event {
    /// Decodes one message body, refusing anything over `max_bytes`.
    pub fn decode(body: &[u8], max_bytes: usize) -> Result<Event, DecodeError> {
        if body.len() > max_bytes {
            return Err(DecodeError::TooLarge {
                size: body.len(),
                limit: max_bytes,
            });
        }
        let document = Json::parse(body).map_err(|e| DecodeError::NotJson(e.to_string()))?;
        Self::from_document(&document)
    }

    /// Decodes an already parsed JSON value (used by `import`).
    pub fn from_value(value: &Value) -> Result<Event, DecodeError> {
        Self::from_document(&Json::of_value(value))
    }

    fn from_document(document: &Json<'_>) -> Result<Event, DecodeError> {
        let Some(envelope) = document.as_object() else {
            return Err(DecodeError::NotCloudEvent(
                "the body is not a JSON object".into(),
            ));
        };
        match envelope.get("specversion") {
            None => {
                return Err(DecodeError::NotCloudEvent(
                    "no `specversion` attribute".into(),
                ))
            }
            Some(Json::String(v)) if v == "1.0" => {}
            Some(other) => {
                return Err(DecodeError::NotCloudEvent(format!(
                    "`specversion` is {}, expected \"1.0\"",
                    truncate(&other.to_string())
                )))
            }
        }
        let top = Obj {
            map: envelope,
            path: String::new(),
        };
        let type_name = top.str("type", 1, 255)?;
        let Some(event_type) = EventType::parse(type_name) else {
            return Err(DecodeError::UnknownType(truncate(type_name)));
        };
        let id = top.parsed("id", EventId::parse)?;
        let source = top.parsed("source", Source::parse)?;
        let time = top.timestamp("time")?;
        if let Some(content_type) = envelope.get("datacontenttype") {
            if content_type.as_str() != Some("application/json") {
                return Err(top.invalid("datacontenttype", "must be \"application/json\""));
            }
        }
        let is_attribute_name = |key: &str| {
            KNOWN_ATTRIBUTES.contains(&key)
                || ((1..=20).contains(&key.len())
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        };
        // Of several refused names, the first in byte order is named.
        if let Some(key) = envelope.keys().filter(|k| !is_attribute_name(k)).min() {
            return Err(DecodeError::NotCloudEvent(format!(
                "attribute name `{}` is not 1 to 20 lowercase letters and digits",
                truncate(key)
            )));
        }
        let deployment_event = |decode: DataDecoder| -> Result<Event, DecodeError> {
            let deployment = top.deployment_id("deployment")?;
            let data = decode(&top.object("data")?, deployment)?;
            Ok(Event::Deployment(DeploymentEvent {
                id: id.clone(),
                source: source.clone(),
                time,
                deployment,
                data,
            }))
        };
        match event_type {
            EventType::InstanceRegistered => deployment_event(instance_registered),
            EventType::DeploymentRegistered => deployment_event(deployment_registered),
            EventType::InstanceContacted => deployment_event(instance_contacted),
            EventType::ConfigurationStarted => deployment_event(configuration_started),
            EventType::ConfigurationEnded => deployment_event(configuration_ended),
            EventType::ParametersProvided => deployment_event(parameters_provided),
            EventType::DeploymentDeleted => deployment_event(deployment_deleted),
            EventType::ConfigServerHeartbeat => {
                // Optional on heartbeats and ignored, but never malformed.
                if envelope.get("deployment").is_some() {
                    top.deployment_id("deployment")?;
                }
                let data = top.object("data")?;
                Ok(Event::Heartbeat(Heartbeat {
                    id,
                    source,
                    time,
                    version: data.text("version", MAX_VERSION_CHARS)?,
                    interval_seconds: data.integer("interval_seconds", 1, 86_400)? as u32,
                }))
            }
        }
    }
}

impl Event {
    /// Refuses an event whose time is more than [`MAX_CLOCK_AHEAD_SECONDS`]
    /// after `now`, the receiving service's clock. Applied to events as they
    /// arrive (live and `import`), never to the log, whose events were
    /// accepted once already.
    pub fn check_clock(&self, now: Timestamp) -> Result<(), DecodeError> {
        let latest = now.plus_seconds(MAX_CLOCK_AHEAD_SECONDS);
        if self.time() <= latest {
            return Ok(());
        }
        let ahead = (self.time().nanos() as f64 - now.nanos() as f64) / 1e9;
        Err(DecodeError::InvalidField {
            path: "time".into(),
            problem: format!(
                "is {:.0} s ahead of this service's clock (at most {MAX_CLOCK_AHEAD_SECONDS:.0} s): \
                 is the config server's clock right?",
                ahead
            ),
        })
    }
}

fn instance_registered(data: &Obj<'_>, deployment: DeploymentId) -> Result<EventData, DecodeError> {
    let deployment_obj = data.object("deployment")?;
    check_same_deployment(&deployment_obj, deployment)?;
    let instance_obj = data.object("instance")?;
    let services = data
        .array("services", 0, MAX_LIST_ITEMS)?
        .into_iter()
        .map(|(path, v)| {
            let service = Obj::of(v, path)?;
            let parameters = service
                .array("parameters", 0, MAX_LIST_ITEMS)?
                .into_iter()
                .map(|(path, v)| decode_parameter(&Obj::of(v, path)?))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ServiceConfig {
                name: service.name("name")?,
                parameters,
            })
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    let mut seen = BTreeSet::new();
    for (i, s) in services.iter().enumerate() {
        if !seen.insert(&s.name) {
            return Err(data.invalid(
                &format!("services[{i}].name"),
                &format!("repeats service `{}`", s.name),
            ));
        }
        // A service's parameters are named like its services are: once.
        // The reports key what a parameter waits for by its name (the
        // XSD's uniqueness constraints), so a repeat could not be shown.
        let mut names = BTreeSet::new();
        for (j, p) in s.parameters.iter().enumerate() {
            if !names.insert(&p.name) {
                return Err(data.invalid(
                    &format!("services[{i}].parameters[{j}].name"),
                    &format!("repeats parameter `{}` of service `{}`", p.name, s.name),
                ));
            }
        }
    }
    Ok(EventData::InstanceRegistered(InstanceRegistration {
        deployment_name: deployment_obj.name("name")?,
        instance: instance_obj.instance_id("uuid")?,
        assembly: instance_obj.name("assembly")?,
        provided_parameters: data.name_list("provided_parameters", 0, true)?,
        services,
    }))
}

fn deployment_registered(
    data: &Obj<'_>,
    deployment: DeploymentId,
) -> Result<EventData, DecodeError> {
    let deployment_obj = data.object("deployment")?;
    check_same_deployment(&deployment_obj, deployment)?;
    let instances = data
        .array("instances", 1, MAX_EXPECTED_INSTANCES)?
        .into_iter()
        .map(|(path, v)| match v.as_str() {
            Some(s) => InstanceId::parse(s).map_err(|problem| DecodeError::InvalidField {
                path,
                problem: format!("is not a UUID: {problem}"),
            }),
            None => Err(DecodeError::InvalidField {
                path,
                problem: "must be a string".into(),
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = BTreeSet::new();
    if let Some(twice) = instances.iter().find(|i| !seen.insert(**i)) {
        return Err(data.invalid("instances", &format!("lists {twice} twice")));
    }
    Ok(EventData::DeploymentRegistered {
        name: deployment_obj.name("name")?,
        instances,
    })
}

fn instance_contacted(data: &Obj<'_>, _: DeploymentId) -> Result<EventData, DecodeError> {
    Ok(EventData::InstanceContacted {
        instance: data.instance_id("instance")?,
        request: data.optional_text("request", MAX_REQUEST_CHARS)?,
    })
}

fn configuration_started(data: &Obj<'_>, _: DeploymentId) -> Result<EventData, DecodeError> {
    Ok(EventData::ConfigurationStarted {
        instance: data.instance_id("instance")?,
        service: data.name("service")?,
    })
}

fn configuration_ended(data: &Obj<'_>, _: DeploymentId) -> Result<EventData, DecodeError> {
    Ok(EventData::ConfigurationEnded {
        instance: data.instance_id("instance")?,
        service: data.name("service")?,
        return_code: data.integer("return_code", i32::MIN as i64, i32::MAX as i64)? as i32,
    })
}

fn parameters_provided(data: &Obj<'_>, _: DeploymentId) -> Result<EventData, DecodeError> {
    Ok(EventData::ParametersProvided {
        instance: data.instance_id("instance")?,
        parameters: data.name_list("parameters", 1, false)?,
    })
}

fn deployment_deleted(data: &Obj<'_>, deployment: DeploymentId) -> Result<EventData, DecodeError> {
    if data.deployment_id("deployment")? != deployment {
        return Err(data.invalid(
            "deployment",
            "differs from the event's `deployment` attribute",
        ));
    }
    Ok(EventData::DeploymentDeleted)
}

fn check_same_deployment(
    deployment_obj: &Obj<'_>,
    deployment: DeploymentId,
) -> Result<(), DecodeError> {
    if deployment_obj.deployment_id("uuid")? != deployment {
        return Err(
            deployment_obj.invalid("uuid", "differs from the event's `deployment` attribute")
        );
    }
    Ok(())
}

fn decode_parameter(param: &Obj<'_>) -> Result<Parameter, DecodeError> {
    let name = param.name("name")?;
    let kind = param.str("kind", 1, 64)?;
    let source = match kind {
        "static" => ParameterSource::Static,
        "parameter-reference" => ParameterSource::ProvidedParameter {
            instance: param.instance_id("assembly")?,
            parameter: param.name("parameter")?,
        },
        "service-reference" => ParameterSource::ServiceReturnCode {
            instance: param.instance_id("assembly")?,
            service: param.name("service")?,
        },
        other => {
            return Err(param.invalid(
                "kind",
                &format!(
                    "is `{}`, expected static, parameter-reference or service-reference",
                    truncate(other)
                ),
            ))
        }
    };
    Ok(Parameter { name, source })
}

/// A JSON object being decoded, with its path for error messages.
struct Obj<'a> {
    map: &'a Members<'a>,
    path: String,
}

impl<'a> Obj<'a> {
    fn of(value: &'a Json<'a>, path: String) -> Result<Obj<'a>, DecodeError> {
        match value.as_object() {
            Some(map) => Ok(Obj { map, path }),
            None => Err(DecodeError::InvalidField {
                path,
                problem: "must be an object".into(),
            }),
        }
    }

    fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn invalid(&self, key: &str, problem: &str) -> DecodeError {
        DecodeError::InvalidField {
            path: self.path(key),
            problem: problem.to_owned(),
        }
    }

    fn get(&self, key: &str) -> Result<&'a Json<'a>, DecodeError> {
        match self.map.get(key) {
            None | Some(Json::Null) => Err(DecodeError::MissingField(self.path(key))),
            Some(v) => Ok(v),
        }
    }

    fn object(&self, key: &str) -> Result<Obj<'a>, DecodeError> {
        Obj::of(self.get(key)?, self.path(key))
    }

    /// A string of `min` to `max` characters, borrowed from the document.
    fn str(&self, key: &str, min: usize, max: usize) -> Result<&'a str, DecodeError> {
        let Json::String(s) = self.get(key)? else {
            return Err(self.invalid(key, "must be a string"));
        };
        let chars = s.chars().count();
        if chars < min {
            return Err(self.invalid(key, "is empty"));
        }
        if chars > max {
            return Err(self.invalid(key, &format!("is longer than {max} characters")));
        }
        Ok(s)
    }

    /// Free text that will be shown in reports: bounded, no control characters.
    fn text(&self, key: &str, max: usize) -> Result<String, DecodeError> {
        let s = self.str(key, 1, max)?;
        if s.chars().any(is_refused_char) {
            return Err(self.invalid(
                key,
                "contains a refused character (a control character, U+FFFE or U+FFFF)",
            ));
        }
        Ok(s.to_owned())
    }

    fn optional_text(&self, key: &str, max: usize) -> Result<Option<String>, DecodeError> {
        match self.map.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(_) => self.text(key, max).map(Some),
        }
    }

    /// A string turned into a newtype by `parse`, whose error is the problem.
    fn parsed<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, DecodeError> {
        let Json::String(s) = self.get(key)? else {
            return Err(self.invalid(key, "must be a string"));
        };
        parse(s).map_err(|problem| self.invalid(key, &problem))
    }

    fn name(&self, key: &str) -> Result<Name, DecodeError> {
        let Json::String(s) = self.get(key)? else {
            return Err(self.invalid(key, "must be a string"));
        };
        Name::parse(s).map_err(|problem| self.invalid(key, &problem))
    }

    fn instance_id(&self, key: &str) -> Result<InstanceId, DecodeError> {
        let s = self.str(key, 0, 64)?;
        InstanceId::parse(s).map_err(|problem| self.invalid(key, &problem))
    }

    /// A deployment UUID, never the nil one (the event log keeps heartbeats
    /// under the nil UUID: a deployment there would share their range).
    fn deployment_id(&self, key: &str) -> Result<DeploymentId, DecodeError> {
        let s = self.str(key, 0, 64)?;
        let id = DeploymentId::parse(s).map_err(|problem| self.invalid(key, &problem))?;
        if id == DeploymentId::from_bytes([0; 16]) {
            return Err(self.invalid(key, "is the nil UUID, which names no deployment"));
        }
        Ok(id)
    }

    /// An event time, not before [`EARLIEST_EVENT_TIME_SECONDS`].
    fn timestamp(&self, key: &str) -> Result<Timestamp, DecodeError> {
        let s = self.str(key, 1, 64)?;
        let time = Timestamp::parse_rfc3339(s).map_err(|problem| self.invalid(key, &problem))?;
        if time < Timestamp::from_unix_seconds(EARLIEST_EVENT_TIME_SECONDS) {
            return Err(self.invalid(
                key,
                &format!(
                    "`{}` is before 2000-01-01: is the config server's clock right?",
                    truncate(s)
                ),
            ));
        }
        Ok(time)
    }

    fn integer(&self, key: &str, min: i64, max: i64) -> Result<i64, DecodeError> {
        let value = self.get(key)?;
        let Some(n) = value.as_i64() else {
            return Err(self.invalid(key, "must be an integer"));
        };
        if n < min || n > max {
            return Err(self.invalid(key, &format!("is {n}, outside {min}..={max}")));
        }
        Ok(n)
    }

    fn array(
        &self,
        key: &str,
        min: usize,
        max: usize,
    ) -> Result<Vec<(String, &'a Json<'a>)>, DecodeError> {
        let Json::Array(items) = self.get(key)? else {
            return Err(self.invalid(key, "must be an array"));
        };
        if items.len() < min {
            return Err(self.invalid(key, &format!("must have at least {min} item(s)")));
        }
        if items.len() > max {
            return Err(self.invalid(key, &format!("has more than {max} items")));
        }
        let base = self.path(key);
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{base}[{i}]"), v))
            .collect())
    }

    /// A list of names; repeats are refused when `unique`, else dropped.
    fn name_list(&self, key: &str, min: usize, unique: bool) -> Result<Vec<Name>, DecodeError> {
        let names =
            self.array(key, min, MAX_LIST_ITEMS)?
                .into_iter()
                .map(|(path, v)| match v.as_str() {
                    Some(s) => Name::parse(s)
                        .map_err(|problem| DecodeError::InvalidField { path, problem }),
                    None => Err(DecodeError::InvalidField {
                        path,
                        problem: "must be a string".into(),
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?;
        let mut seen = BTreeSet::new();
        let mut kept = Vec::with_capacity(names.len());
        for name in names {
            if seen.insert(name.clone()) {
                kept.push(name);
            } else if unique {
                return Err(self.invalid(key, &format!("lists `{name}` twice")));
            }
        }
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const DEPLOYMENT: &str = "3c9e8f2a-5b1d-4c7e-9f10-2a6b8d4e1c53";
    const INSTANCE: &str = "0b6a4d1e-7c2f-4a8b-9e3d-5f1a2b3c4d5e";

    fn contacted() -> Value {
        json!({
            "specversion": "1.0", "id": "e1", "source": "/configserver/cs-01",
            "type": "org.aeolusproject.audrey.instance.contacted",
            "time": "2026-11-25T14:00:00.123+01:00", "deployment": DEPLOYMENT,
            "data": {"instance": INSTANCE, "request": "GET /configs"}
        })
    }

    fn decode(v: &Value) -> Result<Event, DecodeError> {
        Event::decode(v.to_string().as_bytes(), DEFAULT_MAX_EVENT_BYTES)
    }

    #[test]
    fn decodes_a_contact_and_stores_utc() {
        let event = decode(&contacted()).unwrap();
        assert_eq!(event.time().to_rfc3339(), "2026-11-25T13:00:00.123Z");
        let Event::Deployment(event) = event else {
            panic!("a contact is a deployment's event")
        };
        assert_eq!(
            event.data,
            EventData::InstanceContacted {
                instance: InstanceId::parse(INSTANCE).unwrap(),
                request: Some("GET /configs".into())
            }
        );
    }

    #[test]
    fn canonical_json_decodes_to_the_same_event() {
        let event = decode(&contacted()).unwrap();
        assert_eq!(decode(&event.to_json()).unwrap(), event);
    }

    #[test]
    fn errors_say_precisely_what_is_wrong() {
        let cases: Vec<(Value, &str, &str)> = vec![
            (json!([1]), "not_cloudevent", "not a JSON object"),
            (
                {
                    let mut v = contacted();
                    v["specversion"] = json!("0.3");
                    v
                },
                "not_cloudevent",
                "\"0.3\"",
            ),
            (
                {
                    let mut v = contacted();
                    v["type"] = json!("org.aeolusproject.audrey.nope");
                    v
                },
                "unknown_type",
                "nope",
            ),
            (
                {
                    let mut v = contacted();
                    v.as_object_mut().unwrap().remove("time");
                    v
                },
                "missing_field",
                "`time`",
            ),
            (
                {
                    let mut v = contacted();
                    v["data"]["instance"] = json!("xyz");
                    v
                },
                "invalid_field",
                "data.instance",
            ),
            (
                {
                    let mut v = contacted();
                    v.as_object_mut().unwrap().remove("deployment");
                    v
                },
                "missing_field",
                "deployment",
            ),
            (
                {
                    let mut v = contacted();
                    v["data"]["request"] = json!("a\u{7}b");
                    v
                },
                "invalid_field",
                "data.request",
            ),
        ];
        for (value, reason, needle) in cases {
            let err = decode(&value).unwrap_err();
            assert_eq!(err.reason(), reason, "{err}");
            assert!(
                err.to_string().contains(needle),
                "`{err}` should mention {needle}"
            );
        }
        let err = Event::decode(b"{not json", 100).unwrap_err();
        assert_eq!(err.reason(), "not_json");
        let err = Event::decode(&[b' '; 101], 100).unwrap_err();
        assert_eq!(
            err,
            DecodeError::TooLarge {
                size: 101,
                limit: 100
            }
        );
    }

    #[test]
    fn nested_paths_name_the_offending_item() {
        let mut v = json!({
            "specversion": "1.0", "id": "e2", "source": "/cs",
            "type": "org.aeolusproject.audrey.instance.registered",
            "time": "2026-11-25T14:00:00Z", "deployment": DEPLOYMENT,
            "data": {
                "deployment": {"uuid": DEPLOYMENT, "name": "blog"},
                "instance": {"uuid": INSTANCE, "assembly": "wordpress"},
                "provided_parameters": ["hostname"],
                "services": [{"name": "wordpress", "parameters": [
                    {"name": "ip", "kind": "parameter-reference", "assembly": INSTANCE}
                ]}]
            }
        });
        let err = decode(&v).unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing field `data.services[0].parameters[0].parameter`"
        );
        v["data"]["services"][0]["parameters"][0]["parameter"] = json!("ipaddress");
        assert!(decode(&v).is_ok());
        v["data"]["deployment"]["uuid"] = json!(INSTANCE);
        assert!(decode(&v)
            .unwrap_err()
            .to_string()
            .contains("data.deployment.uuid"));
    }

    /// Of several refused attribute names, the same one is named whatever
    /// their order in the body: the first in byte order.
    #[test]
    fn of_several_refused_attribute_names_the_first_in_byte_order_is_named() {
        let body = contacted().to_string();
        let body = format!(r#"{{"Zed": 1, "Bad!": 2, {}"#, &body[1..]);
        let err = Event::decode(body.as_bytes(), DEFAULT_MAX_EVENT_BYTES).unwrap_err();
        assert!(err.to_string().contains("`Bad!`"), "{err}");
        let value: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            Event::from_value(&value).unwrap_err().to_string(),
            err.to_string()
        );
    }

    /// Found by `core/tests/fuzz.rs` and `api/tests/xml_safety.rs`: an
    /// empty attribute name passed as an extension (the schema wants 1 to
    /// 20 characters), and a service could name two parameters alike
    /// (which no report can show: the XSD keys them by name).
    #[test]
    fn empty_attribute_names_and_repeated_parameters_are_refused() {
        let mut v = contacted();
        v[""] = json!("x");
        let err = decode(&v).unwrap_err();
        assert_eq!(err.reason(), "not_cloudevent", "{err}");
        v.as_object_mut().unwrap().remove("");
        v["a1"] = json!("x");
        assert!(decode(&v).is_ok(), "a 2-character extension is fine");

        let mut v = json!({
            "specversion": "1.0", "id": "e3", "source": "/cs",
            "type": "org.aeolusproject.audrey.instance.registered",
            "time": "2026-11-25T14:00:00Z", "deployment": DEPLOYMENT,
            "data": {
                "deployment": {"uuid": DEPLOYMENT, "name": "blog"},
                "instance": {"uuid": INSTANCE, "assembly": "wordpress"},
                "provided_parameters": [],
                "services": [
                    {"name": "mysql", "parameters": [{"name": "a", "kind": "static"}]},
                    {"name": "wordpress", "parameters": [
                        {"name": "a", "kind": "parameter-reference", "assembly": INSTANCE, "parameter": "ip"},
                        {"name": "a", "kind": "service-reference", "assembly": INSTANCE, "service": "mysql"}
                    ]}
                ]
            }
        });
        let err = decode(&v).unwrap_err();
        assert_eq!(err.reason(), "invalid_field", "{err}");
        assert!(
            err.to_string()
                .contains("data.services[1].parameters[1].name"),
            "{err}"
        );
        v["data"]["services"][1]["parameters"][1]["name"] = json!("b");
        assert!(decode(&v).is_ok(), "one name per service, not per instance");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        for body in [
            &b""[..],
            b"null",
            b"1",
            b"\"x\"",
            b"{}",
            b"{\"specversion\":null}",
            &[0xff, 0xfe],
        ] {
            assert!(Event::decode(body, 1000).is_err());
        }
    }
}
