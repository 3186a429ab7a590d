//! Encoding: the canonical CloudEvents JSON of an event, what the reference
//! publisher sends, what the event log stores and what `export` writes.

use serde_json::{json, Value};

use super::event::{Event, EventData, ParameterSource, ServiceConfig};

impl Event {
    /// The canonical CloudEvents JSON of this event.
    pub fn to_json(&self) -> Value {
        let mut envelope = json!({
            "specversion": "1.0",
            "id": self.id().as_str(),
            "source": self.source().as_str(),
            "type": self.event_type().name(),
            "time": self.time().to_rfc3339(),
            "datacontenttype": "application/json",
        });
        if let Some(deployment) = self.deployment() {
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
        let (deployment, data) = match self {
            Event::Heartbeat(h) => {
                return json!({"version": h.version, "interval_seconds": h.interval_seconds})
            }
            Event::Deployment(e) => (e.deployment.to_string(), &e.data),
        };
        match data {
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
