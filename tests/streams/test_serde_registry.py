"""Confluent wire format against the real registry (Apicurio's ccompat API)."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from practiceflow.schemas.avro_gen import load_schema_text
from practiceflow.streams.serde import AvroSerde, SerdeError, registry_client

pytestmark = pytest.mark.broker

OBS = {
    "practice_id": "p1",
    "patient_id": "MRN1",
    "observation_id": "o1",
    "code": {"code": "2345-7"},
    "value_numeric": 182.0,
    "source": {"feed": "hl7v2", "message_id": "m1"},
}


def test_our_bytes_are_confluent_wire_format(stack):
    serde = AvroSerde(registry_client(stack.registry_url))
    subject = f"t{uuid.uuid4().hex[:6]}.norm.observation-value"
    data = serde.encode(subject, "Observation", OBS)
    assert data[0] == 0
    ctx = SerializationContext(subject.removesuffix("-value"), MessageField.VALUE)
    decoded = AvroDeserializer(serde.client)(data, ctx)
    assert decoded["value_numeric"] == 182.0 and decoded["code"]["code"] == "2345-7"
    # and the other way: confluent's serializer output decodes with ours
    theirs = AvroSerializer(serde.client, load_schema_text("Observation"))(OBS, ctx)
    assert serde.decode(theirs, "Observation")["observation_id"] == "o1"


def test_registry_refuses_a_backward_incompatible_schema(stack):
    client = registry_client(stack.registry_url)
    subject = f"compat-{uuid.uuid4().hex[:8]}-value"
    v1 = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}]}
    client.register_schema(subject, Schema(json.dumps(v1), "AVRO"))
    bad = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}, {"name": "b", "type": "long"}]}
    with pytest.raises(SchemaRegistryError) as err:
        client.register_schema(subject, Schema(json.dumps(bad), "AVRO"))
    assert err.value.http_status_code == 409
    good = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "a", "type": "string"}, {"name": "b", "type": "long", "default": 0}],
    }
    assert client.register_schema(subject, Schema(json.dumps(good), "AVRO")) > 0


def test_garbage_is_a_serde_error_not_a_crash(stack):
    serde = AvroSerde(registry_client(stack.registry_url))
    with pytest.raises(SerdeError):
        serde.decode(b"\x01abc")
    with pytest.raises(SerdeError):
        serde.decode(b"\x00")
