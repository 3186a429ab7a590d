//! The event contract: CloudEvents 1.0 (structured JSON mode) with the
//! `deployment` extension attribute, and the data of each Audrey event type.
//!
//! [`Event::decode`] is the only way in: it checks the size, the JSON, the
//! envelope and every field, and says precisely what is wrong. What it
//! accepts is exactly what `schemas/events.schema.json` accepts (a test
//! holds the two together). [`Event::to_json`] writes the canonical form back.

use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::domain::{is_control, truncate, DeploymentId, InstanceId, Name, Timestamp};

/// The prefix of every Audrey event type (and routing key).
pub const TYPE_PREFIX: &str = "org.aeolusproject.audrey.";

/// The default bound on an encoded event, in bytes. A config server never
/// sends anything near this; a larger message is a bug or an attack.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

const MAX_ID_CHARS: usize = 255;
const MAX_REQUEST_CHARS: usize = 1024;
const MAX_VERSION_CHARS: usize = 64;
const MAX_LIST_ITEMS: usize = 256;
const MAX_EXPECTED_INSTANCES: usize = 10_000;

/// Why an event was refused. Each variant has a stable [`reason`] used as
/// the dead-letter header and the metric label.
///
/// [`reason`]: DecodeError::reason
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("event is {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not a CloudEvents 1.0 event: {0}")]
    NotCloudEvent(String),
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("missing field `{0}`")]
    MissingField(String),
    #[error("field `{path}` {problem}")]
    InvalidField { path: String, problem: String },
}

impl DecodeError {
    /// A short, stable, low-cardinality label for metrics and headers.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::NotJson(_) => "not_json",
            DecodeError::NotCloudEvent(_) => "not_cloudevent",
            DecodeError::UnknownType(_) => "unknown_type",
            DecodeError::MissingField(_) => "missing_field",
            DecodeError::InvalidField { .. } => "invalid_field",
        }
    }

    /// Every reason label, for pre-registering metric series.
    pub const REASONS: [&'static str; 6] = [
        "too_large",
        "not_json",
        "not_cloudevent",
        "unknown_type",
        "missing_field",
        "invalid_field",
    ];
}

/// One accepted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Unique per source: with `source` it identifies the event for dedup.
    pub id: String,
    /// The config server that observed it (heartbeats are per source).
    pub source: String,
    /// When the config server observed it: every view timestamp comes from
    /// here, never from arrival time, so order of arrival does not matter.
    pub time: Timestamp,
    /// The deployment the event belongs to; `None` only for heartbeats.
    pub deployment: Option<DeploymentId>,
    pub data: EventData,
}

/// The typed `data` of each event type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventData {
    InstanceRegistered(InstanceRegistration),
    DeploymentRegistered {
        name: Name,
        /// The instances Conductor posted configs for: the expected set.
        instances: Vec<InstanceId>,
    },
    InstanceContacted {
        instance: InstanceId,
        /// The agent's request, e.g. `GET /configs`, for the history.
        request: Option<String>,
    },
    ConfigurationStarted {
        instance: InstanceId,
        service: Name,
    },
    ConfigurationEnded {
        instance: InstanceId,
        service: Name,
        return_code: i32,
    },
    ParametersProvided {
        instance: InstanceId,
        parameters: Vec<Name>,
    },
    DeploymentDeleted,
    ConfigServerHeartbeat {
        version: String,
        interval_seconds: u32,
    },
}

/// An instance-config as Conductor posted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRegistration {
    pub deployment_name: Name,
    pub instance: InstanceId,
    pub assembly: Name,
    /// Names of the parameters the agent must report back ("return values").
    pub provided_parameters: Vec<Name>,
    pub services: Vec<ServiceConfig>,
}

/// One service of an instance-config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceConfig {
    pub name: Name,
    pub parameters: Vec<Parameter>,
}

/// One parameter of a service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Parameter {
    pub name: Name,
    pub source: ParameterSource,
}

/// Where a parameter's value comes from. References cross instances: this
/// is how one machine waits for another.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum ParameterSource {
    /// A literal value: never waits.
    Static,
    /// Provided parameter `parameter` of instance `instance`.
    ProvidedParameter {
        instance: InstanceId,
        parameter: Name,
    },
    /// The return code of service `service` on instance `instance`.
    ServiceReturnCode { instance: InstanceId, service: Name },
}

impl ParameterSource {
    /// The referenced instance and what of it is awaited, for references.
    pub fn reference(&self) -> Option<(InstanceId, Awaited)> {
        match self {
            ParameterSource::Static => None,
            ParameterSource::ProvidedParameter {
                instance,
                parameter,
            } => Some((*instance, Awaited::Parameter(parameter.clone()))),
            ParameterSource::ServiceReturnCode { instance, service } => {
                Some((*instance, Awaited::ServiceReturnCode(service.clone())))
            }
        }
    }
}

/// What a reference waits for on its source instance.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Awaited {
    Parameter(Name),
    ServiceReturnCode(Name),
}

/// The event types, with their short names (the type without the prefix).
pub const EVENT_TYPES: [&str; 8] = [
    "instance.registered",
    "deployment.registered",
    "instance.contacted",
    "service.configuration_started",
    "service.configuration_ended",
    "instance.parameters_provided",
    "deployment.deleted",
    "configserver.heartbeat",
];

impl EventData {
    /// The type without the `org.aeolusproject.audrey.` prefix.
    pub fn short_type(&self) -> &'static str {
        let index = match self {
            EventData::InstanceRegistered(_) => 0,
            EventData::DeploymentRegistered { .. } => 1,
            EventData::InstanceContacted { .. } => 2,
            EventData::ConfigurationStarted { .. } => 3,
            EventData::ConfigurationEnded { .. } => 4,
            EventData::ParametersProvided { .. } => 5,
            EventData::DeploymentDeleted => 6,
            EventData::ConfigServerHeartbeat { .. } => 7,
        };
        EVENT_TYPES[index]
    }

    /// The instance the event is about, if it is about one.
    pub fn instance(&self) -> Option<InstanceId> {
        match self {
            EventData::InstanceRegistered(r) => Some(r.instance),
            EventData::InstanceContacted { instance, .. }
            | EventData::ConfigurationStarted { instance, .. }
            | EventData::ConfigurationEnded { instance, .. }
            | EventData::ParametersProvided { instance, .. } => Some(*instance),
            _ => None,
        }
    }

    /// The service the event is about, if it is about one.
    pub fn service(&self) -> Option<&Name> {
        match self {
            EventData::ConfigurationStarted { service, .. }
            | EventData::ConfigurationEnded { service, .. } => Some(service),
            _ => None,
        }
    }
}

impl Event {
    /// The full CloudEvents type, e.g. `org.aeolusproject.audrey.instance.contacted`.
    pub fn event_type(&self) -> String {
        format!("{TYPE_PREFIX}{}", self.data.short_type())
    }

    /// Decodes one message body, refusing anything over `max_bytes`.
    pub fn decode(body: &[u8], max_bytes: usize) -> Result<Event, DecodeError> {
        if body.len() > max_bytes {
            return Err(DecodeError::TooLarge {
                size: body.len(),
                limit: max_bytes,
            });
        }
        let value: Value =
            serde_json::from_slice(body).map_err(|e| DecodeError::NotJson(e.to_string()))?;
        Self::from_value(&value)
    }

    /// Decodes an already parsed JSON value (used by `import`).
    pub fn from_value(value: &Value) -> Result<Event, DecodeError> {
        let Some(envelope) = value.as_object() else {
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
            Some(Value::String(v)) if v == "1.0" => {}
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
        let event_type = top.string("type", 1, 255)?;
        let Some(short_type) = event_type
            .strip_prefix(TYPE_PREFIX)
            .filter(|t| EVENT_TYPES.contains(t))
        else {
            return Err(DecodeError::UnknownType(truncate(&event_type)));
        };
        let id = top.string("id", 1, MAX_ID_CHARS)?;
        let source = top.string("source", 1, MAX_ID_CHARS)?;
        let time = top.timestamp("time")?;
        if let Some(content_type) = envelope.get("datacontenttype") {
            if content_type.as_str() != Some("application/json") {
                return Err(top.invalid("datacontenttype", "must be \"application/json\""));
            }
        }
        for key in envelope.keys() {
            let known = [
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
            let valid_extension = key.len() <= 20
                && key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !known.contains(&key.as_str()) && !valid_extension {
                return Err(DecodeError::NotCloudEvent(format!(
                    "attribute name `{}` is not lowercase alphanumeric (at most 20)",
                    truncate(key)
                )));
            }
        }
        let is_heartbeat = short_type == "configserver.heartbeat";
        let deployment = if is_heartbeat {
            // Optional on heartbeats and ignored, but never malformed.
            if envelope.get("deployment").is_some() {
                top.deployment_id("deployment")?;
            }
            None
        } else {
            Some(top.deployment_id("deployment")?)
        };
        let data = top.object("data")?;
        let data = decode_data(short_type, &data, deployment)?;
        Ok(Event {
            id,
            source,
            time,
            deployment,
            data,
        })
    }

    /// The canonical CloudEvents JSON of this event (what the reference
    /// publisher sends and what `export` writes).
    pub fn to_json(&self) -> Value {
        let mut envelope = json!({
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.event_type(),
            "time": self.time.to_rfc3339(),
            "datacontenttype": "application/json",
        });
        if let Some(deployment) = self.deployment {
            envelope["deployment"] = json!(deployment.to_string());
        }
        envelope["data"] = self.data_json();
        envelope
    }

    /// The canonical JSON bytes of this event.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_json()).expect("a JSON value always serialises")
    }

    /// The `data` object alone.
    pub fn data_json(&self) -> Value {
        let deployment = self.deployment.map(|d| d.to_string());
        match &self.data {
            EventData::InstanceRegistered(r) => json!({
                "deployment": {"uuid": deployment, "name": r.deployment_name},
                "instance": {"uuid": r.instance.to_string(), "assembly": r.assembly},
                "provided_parameters": r.provided_parameters,
                "services": r.services.iter().map(service_json).collect::<Vec<_>>(),
            }),
            EventData::DeploymentRegistered { name, instances } => json!({
                "deployment": {"uuid": deployment, "name": name},
                "instances": instances.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
            }),
            EventData::InstanceContacted { instance, request } => {
                let mut data = json!({"instance": instance.to_string()});
                if let Some(request) = request {
                    data["request"] = json!(request);
                }
                data
            }
            EventData::ConfigurationStarted { instance, service } => {
                json!({"instance": instance.to_string(), "service": service})
            }
            EventData::ConfigurationEnded {
                instance,
                service,
                return_code,
            } => json!({
                "instance": instance.to_string(),
                "service": service,
                "return_code": return_code,
            }),
            EventData::ParametersProvided {
                instance,
                parameters,
            } => json!({"instance": instance.to_string(), "parameters": parameters}),
            EventData::DeploymentDeleted => json!({"deployment": deployment}),
            EventData::ConfigServerHeartbeat {
                version,
                interval_seconds,
            } => json!({"version": version, "interval_seconds": interval_seconds}),
        }
    }
}

fn service_json(service: &ServiceConfig) -> Value {
    let parameters: Vec<Value> = service
        .parameters
        .iter()
        .map(|p| match &p.source {
            ParameterSource::Static => json!({"name": p.name, "kind": "static"}),
            ParameterSource::ProvidedParameter {
                instance,
                parameter,
            } => json!({
                "name": p.name, "kind": "parameter-reference",
                "assembly": instance.to_string(), "parameter": parameter,
            }),
            ParameterSource::ServiceReturnCode { instance, service } => json!({
                "name": p.name, "kind": "service-reference",
                "assembly": instance.to_string(), "service": service,
            }),
        })
        .collect();
    json!({"name": service.name, "parameters": parameters})
}

fn decode_data(
    short_type: &str,
    data: &Obj<'_>,
    deployment: Option<DeploymentId>,
) -> Result<EventData, DecodeError> {
    Ok(match short_type {
        "instance.registered" => {
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
            let mut seen = std::collections::BTreeSet::new();
            for (i, s) in services.iter().enumerate() {
                if !seen.insert(&s.name) {
                    return Err(data.invalid(
                        &format!("services[{i}].name"),
                        &format!("repeats service `{}`", s.name),
                    ));
                }
            }
            EventData::InstanceRegistered(InstanceRegistration {
                deployment_name: deployment_obj.name("name")?,
                instance: instance_obj.instance_id("uuid")?,
                assembly: instance_obj.name("assembly")?,
                provided_parameters: data.name_list("provided_parameters", 0, true)?,
                services,
            })
        }
        "deployment.registered" => {
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
            let mut seen = std::collections::BTreeSet::new();
            if let Some(twice) = instances.iter().find(|i| !seen.insert(**i)) {
                return Err(data.invalid("instances", &format!("lists {twice} twice")));
            }
            EventData::DeploymentRegistered {
                name: deployment_obj.name("name")?,
                instances,
            }
        }
        "instance.contacted" => EventData::InstanceContacted {
            instance: data.instance_id("instance")?,
            request: data.optional_text("request", MAX_REQUEST_CHARS)?,
        },
        "service.configuration_started" => EventData::ConfigurationStarted {
            instance: data.instance_id("instance")?,
            service: data.name("service")?,
        },
        "service.configuration_ended" => EventData::ConfigurationEnded {
            instance: data.instance_id("instance")?,
            service: data.name("service")?,
            return_code: data.integer("return_code", i32::MIN as i64, i32::MAX as i64)? as i32,
        },
        "instance.parameters_provided" => EventData::ParametersProvided {
            instance: data.instance_id("instance")?,
            parameters: data.name_list("parameters", 1, false)?,
        },
        "deployment.deleted" => {
            let named = data.deployment_id("deployment")?;
            if Some(named) != deployment {
                return Err(data.invalid(
                    "deployment",
                    "differs from the event's `deployment` attribute",
                ));
            }
            EventData::DeploymentDeleted
        }
        "configserver.heartbeat" => EventData::ConfigServerHeartbeat {
            version: data.text("version", MAX_VERSION_CHARS)?,
            interval_seconds: data.integer("interval_seconds", 1, 86_400)? as u32,
        },
        other => return Err(DecodeError::UnknownType(other.to_owned())),
    })
}

fn check_same_deployment(
    deployment_obj: &Obj<'_>,
    deployment: Option<DeploymentId>,
) -> Result<(), DecodeError> {
    if Some(deployment_obj.deployment_id("uuid")?) != deployment {
        return Err(
            deployment_obj.invalid("uuid", "differs from the event's `deployment` attribute")
        );
    }
    Ok(())
}

fn decode_parameter(param: &Obj<'_>) -> Result<Parameter, DecodeError> {
    let name = param.name("name")?;
    let kind = param.string("kind", 1, 64)?;
    let source = match kind.as_str() {
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
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    fn of(value: &'a Value, path: String) -> Result<Obj<'a>, DecodeError> {
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

    fn get(&self, key: &str) -> Result<&'a Value, DecodeError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Err(DecodeError::MissingField(self.path(key))),
            Some(v) => Ok(v),
        }
    }

    fn object(&self, key: &str) -> Result<Obj<'a>, DecodeError> {
        Obj::of(self.get(key)?, self.path(key))
    }

    fn string(&self, key: &str, min: usize, max: usize) -> Result<String, DecodeError> {
        let Value::String(s) = self.get(key)? else {
            return Err(self.invalid(key, "must be a string"));
        };
        let chars = s.chars().count();
        if chars < min {
            return Err(self.invalid(key, "is empty"));
        }
        if chars > max {
            return Err(self.invalid(key, &format!("is longer than {max} characters")));
        }
        Ok(s.clone())
    }

    /// Free text that will be shown in reports: bounded, no control characters.
    fn text(&self, key: &str, max: usize) -> Result<String, DecodeError> {
        let s = self.string(key, 1, max)?;
        if s.chars().any(is_control) {
            return Err(self.invalid(key, "contains a control character"));
        }
        Ok(s)
    }

    fn optional_text(&self, key: &str, max: usize) -> Result<Option<String>, DecodeError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.text(key, max).map(Some),
        }
    }

    fn name(&self, key: &str) -> Result<Name, DecodeError> {
        let Value::String(s) = self.get(key)? else {
            return Err(self.invalid(key, "must be a string"));
        };
        Name::parse(s).map_err(|problem| self.invalid(key, &problem))
    }

    fn instance_id(&self, key: &str) -> Result<InstanceId, DecodeError> {
        let s = self.string(key, 0, 64)?;
        InstanceId::parse(&s).map_err(|problem| self.invalid(key, &problem))
    }

    fn deployment_id(&self, key: &str) -> Result<DeploymentId, DecodeError> {
        let s = self.string(key, 0, 64)?;
        DeploymentId::parse(&s).map_err(|problem| self.invalid(key, &problem))
    }

    fn timestamp(&self, key: &str) -> Result<Timestamp, DecodeError> {
        let s = self.string(key, 1, 64)?;
        Timestamp::parse_rfc3339(&s).map_err(|problem| self.invalid(key, &problem))
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
    ) -> Result<Vec<(String, &'a Value)>, DecodeError> {
        let Value::Array(items) = self.get(key)? else {
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
        let mut seen = std::collections::BTreeSet::new();
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
        assert_eq!(event.time.to_rfc3339(), "2026-11-25T13:00:00.123Z");
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
