"""The cloud emulators answer a malformed request with the service's own 400, never a crash or a 500.

Anthropic: ``{"type": "error", "error": {"type": "invalid_request_error", "message": ...}}``;
VoyageAI: ``{"detail": ...}``; Google Vision and Document AI:
``{"error": {"code": 400, "message": ..., "status": "INVALID_ARGUMENT"}}``.
"""

from __future__ import annotations

import base64
import json
import socket
from typing import Any

import httpx
import pytest

from technicia_deploy.cloud import tiny_pdf
from technicia_deploy.sandbox.cloud_emulator import anthropic_api
from technicia_deploy.sandbox.cloud_emulator.server import admin_request
from tests.unit.sandbox.test_cloud_emulator import anthropic_headers, emu, emulator, png, self_signed_jwt  # noqa: F401

MODEL = "claude-sonnet-4-6"
PING = [{"role": "user", "content": "ping"}]
MESSAGE = {"model": MODEL, "max_tokens": 1, "messages": PING}


def _send(emu, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(emu.url + path, content=raw, headers={**headers, "content-type": "application/json"})


# --------------------------------------------------------------------------- Anthropic

ANTHROPIC_INVALID: list[tuple[str, Any, str]] = [
    ("/v1/messages", b"{not json", "There was an error parsing the body of your request"),
    ("/v1/messages", b"\xff\xfe\x00{", "There was an error parsing the body"),
    ("/v1/messages", b"", "body: Field required"),
    ("/v1/messages", [MESSAGE], "body: Input should be a valid dictionary"),
    ("/v1/messages", {"max_tokens": 1, "messages": PING}, "model: Field required"),
    ("/v1/messages", {"model": MODEL, "max_tokens": 1}, "messages: Field required"),
    ("/v1/messages", {"model": MODEL, "messages": PING}, "max_tokens: Field required"),
    ("/v1/messages", {**MESSAGE, "model": 42}, "model: Input should be a valid string"),
    ("/v1/messages", {**MESSAGE, "model": ""}, "model: String should have at least 1 character"),
    ("/v1/messages", {**MESSAGE, "max_tokens": "1"}, "max_tokens: Input should be a valid integer"),
    ("/v1/messages", {**MESSAGE, "max_tokens": True}, "max_tokens: Input should be a valid integer"),
    ("/v1/messages", {**MESSAGE, "max_tokens": 1.5}, "max_tokens: Input should be a valid integer"),
    ("/v1/messages", {**MESSAGE, "max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
    ("/v1/messages", {**MESSAGE, "messages": "ping"}, "messages: Input should be a valid list"),
    ("/v1/messages", {**MESSAGE, "messages": []}, "messages: at least one message is required"),
    ("/v1/messages", {**MESSAGE, "messages": ["ping"]}, "messages.0: Input should be a valid dictionary"),
    ("/v1/messages", {**MESSAGE, "messages": [{"role": "system", "content": "x"}]}, "messages.0.role: Input should be 'user' or 'assistant'"),
    ("/v1/messages", {**MESSAGE, "messages": [{"role": "user"}]}, "messages.0.content: Field required"),
    ("/v1/messages", {**MESSAGE, "messages": [{"content": "x"}]}, "messages.0.role: Field required"),
    ("/v1/messages", {**MESSAGE, "messages": [{"role": "user", "content": 5}]}, "messages.0.content: Input should be a valid list"),
    ("/v1/messages", {**MESSAGE, "messages": [{"role": "user", "content": [{"text": "x"}]}]}, "messages.0.content.0.type: Field required"),
    ("/v1/messages", {**MESSAGE, "messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages.0.content.0.text: Field required"),
    ("/v1/messages", {**MESSAGE, "messages": [{"role": "user", "content": "x", "name": "bob"}]}, "messages.0.name: Extra inputs are not permitted"),
    ("/v1/messages", {**MESSAGE, "temperature": 1.5}, "temperature: Input should be less than or equal to 1"),
    ("/v1/messages", {**MESSAGE, "temperature": "hot"}, "temperature: Input should be a valid number"),
    ("/v1/messages", {**MESSAGE, "top_k": -1}, "top_k: Input should be greater than or equal to 0"),
    ("/v1/messages", {**MESSAGE, "stream": "no"}, "stream: Input should be a valid boolean"),
    ("/v1/messages", {**MESSAGE, "stop_sequences": "END"}, "stop_sequences: Input should be a valid list"),
    ("/v1/messages", {**MESSAGE, "stop_sequences": [1]}, "stop_sequences.0: Input should be a valid string"),
    ("/v1/messages", {**MESSAGE, "system": 5}, "system: Input should be a valid list"),
    ("/v1/messages", {**MESSAGE, "metadata": "me"}, "metadata: Input should be a valid dictionary"),
    ("/v1/messages", {**MESSAGE, "service_tier": "gold"}, "service_tier"),
    ("/v1/messages", {**MESSAGE, "prompt": "ping"}, "prompt: Extra inputs are not permitted"),
    ("/v1/messages/count_tokens", MESSAGE, "max_tokens: Extra inputs are not permitted"),
    ("/v1/messages/count_tokens", {"model": MODEL}, "messages: Field required"),
    ("/v1/messages/count_tokens", b"[", "There was an error parsing the body"),
]


@pytest.mark.parametrize(("path", "body", "expected"), ANTHROPIC_INVALID, ids=[e for _, _, e in ANTHROPIC_INVALID])
def test_anthropic_malformed_request_is_an_invalid_request_error(emu, path, body, expected):
    answer = _send(emu, path, body, anthropic_headers(emu.anthropic_key))
    assert answer.status_code == 400
    payload = answer.json()
    assert payload["type"] == "error" and payload["error"]["type"] == "invalid_request_error"
    assert expected in payload["error"]["message"]
    assert payload["request_id"] == answer.headers["request-id"]


@pytest.mark.parametrize("limit", ["abc", "0", "1001", "-1", ""])
def test_anthropic_models_list_refuses_a_bad_limit(emu, limit):
    answer = httpx.get(emu.url + f"/v1/models?limit={limit}", headers=anthropic_headers(emu.anthropic_key))
    if limit == "":  # limit= with no value is the default
        assert answer.status_code == 200
        return
    assert answer.status_code == 400 and "limit" in answer.json()["error"]["message"]


def test_anthropic_well_formed_requests_pass_through_the_sdk(emu):
    import anthropic

    with anthropic.Anthropic(api_key=emu.anthropic_key, base_url=emu.url, max_retries=0, timeout=10) as client:
        sent = client.messages.create(
            model=MODEL,
            max_tokens=2,
            system=[{"type": "text", "text": "be brief"}],
            messages=[{"role": "user", "content": [{"type": "text", "text": "ping"}]}, {"role": "assistant", "content": "O"}],
            stop_sequences=["END"],
            metadata={"user_id": "sandbox"},
            service_tier="auto",
        )
        assert sent.content[0].text
        counted = client.messages.count_tokens(model=MODEL, system="be brief", messages=PING)
        assert counted.input_tokens >= 1
        with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
            client.messages.create(model=MODEL, max_tokens=0, messages=PING)


def test_anthropic_accepts_every_field_the_installed_sdk_can_send():
    import inspect

    from anthropic.resources.messages import Messages

    def sdk_fields(method) -> set[str]:
        names = set(inspect.signature(method).parameters) - {"self", "timeout"}
        return {name for name in names if not name.startswith("extra_")}

    assert sdk_fields(Messages.create) <= anthropic_api.MESSAGE_FIELDS
    assert sdk_fields(Messages.count_tokens) <= anthropic_api.COUNT_TOKENS_FIELDS


# --------------------------------------------------------------------------- VoyageAI

EMBED = {"input": ["a"], "model": "voyage-3.5-lite"}
VOYAGE_INVALID: list[tuple[Any, str]] = [
    (b"{not json", "Request body is not valid JSON"),
    (b"\xff\xfe\x00{", "Request body is not valid JSON"),
    (b"", "Request body must be a JSON object"),
    ([EMBED], "Request body must be a JSON object"),
    ({"model": "voyage-3.5-lite"}, "Field 'input' is required"),
    ({"input": ["a"]}, "Field 'model' is required"),
    ({**EMBED, "model": None}, "Field 'model' is required"),
    ({**EMBED, "model": 5}, "Field 'model' must be a string"),
    ({**EMBED, "model": ["voyage-3.5-lite"]}, "Field 'model' must be a string"),
    ({**EMBED, "input": 5}, "Field 'input'"),
    ({**EMBED, "input": []}, "Field 'input'"),
    ({**EMBED, "input": ["a", 1]}, "Field 'input'"),
    ({**EMBED, "input": ["a"] * 1001}, "Field 'input' has 1001 texts"),
    ({**EMBED, "input_type": "search"}, "'input_type'"),
    ({**EMBED, "output_dimension": "1024"}, "'output_dimension'"),
    ({**EMBED, "output_dimension": 1024.0}, "'output_dimension'"),
    ({**EMBED, "output_dimension": 100}, "'output_dimension'"),
    ({**EMBED, "output_dimension": True}, "'output_dimension'"),
    ({**EMBED, "truncation": "yes"}, "Field 'truncation'"),
    ({**EMBED, "output_dtype": "float64"}, "'output_dtype'"),
    ({**EMBED, "encoding_format": "hex"}, "'encoding_format'"),
]


@pytest.mark.parametrize(("body", "expected"), VOYAGE_INVALID, ids=[e for _, e in VOYAGE_INVALID])
def test_voyage_malformed_request_is_a_400_with_detail(emu, body, expected):
    answer = _send(emu, "/v1/embeddings", body, {"authorization": f"Bearer {emu.voyage_key}"})
    assert answer.status_code == 400
    assert set(answer.json()) == {"detail"} and expected in answer.json()["detail"]


def test_voyage_sdk_sees_an_invalid_request_error_and_valid_options_pass(emu):
    import voyageai
    import voyageai.error

    client = voyageai.Client(api_key=emu.voyage_key, base_url=emu.url + "/v1", max_retries=0, timeout=10)
    result = client.embed(["a", "b"], model="voyage-3.5-lite", input_type="query", truncation=False, output_dimension=256)
    assert [len(e) for e in result.embeddings] == [256, 256]
    with pytest.raises(voyageai.error.InvalidRequestError, match="output_dimension"):
        client.embed(["a"], model="voyage-3.5-lite", output_dimension=100)


# --------------------------------------------------------------------------- Google Vision, Document AI


def _image(**extra: Any) -> dict[str, Any]:
    return {"image": {"content": png()}, "features": [{"type": 5}], **extra}


VISION_INVALID: list[tuple[Any, str]] = [
    (b"{not json", "Invalid JSON payload received."),
    (b"\xff\xfe\x00{", "Invalid JSON payload received."),
    ([_image()], "Invalid JSON payload received. Expected an object"),
    ({}, "requests: at least one AnnotateImageRequest is required"),
    ({"requests": []}, "requests: at least one AnnotateImageRequest is required"),
    ({"requests": "x"}, "Invalid value at 'requests'"),
    ({"requests": ["x"]}, "Invalid value at 'requests[0]'"),
    ({"requests": [{"image": "abc"}]}, "Invalid value at 'requests[0].image' (type.googleapis.com/google.cloud.vision.v1.Image)"),
    ({"requests": [{"image": {"content": 5}}]}, "Invalid value at 'requests[0].image.content' (TYPE_BYTES)"),
    ({"requests": [{"image": {"content": "***"}}]}, "Base64 decoding failed for \"***\""),
    ({"requests": [{"image": {"source": {"imageUri": 5}}}]}, "'requests[0].image.source.image_uri' (TYPE_STRING)"),
    ({"requests": [{**_image(), "features": [{"type": "TEXT"}]}]}, "'requests[0].features[0].type'"),
    ({"requests": [{**_image(), "features": [{"type": True}]}]}, "'requests[0].features[0].type'"),
    ({"requests": [{**_image(), "features": {"type": 5}}]}, "'requests[0].features'"),
    ({"requests": [{**_image(), "features": [{"type": 5, "maxResults": "ten"}]}]}, "'requests[0].features[0].max_results' (TYPE_INT32)"),
    ({"requests": [{**_image(), "features": [{"type": 5, "max_results": 2**31}]}]}, "'requests[0].features[0].max_results'"),
    ({"requests": [{**_image(), "feature": []}]}, "Unknown name \"feature\" at 'requests[0]': Cannot find field."),
    ({"requests": [{"image": {"content": png(), "uri": "x"}}]}, "Unknown name \"uri\" at 'requests[0].image'"),
    ({"requests": [_image()], "foo": 1}, "Unknown name \"foo\": Cannot find field."),
    ({"requests": [_image()], "labels": {"team": 1}}, "'labels[team]' (TYPE_STRING)"),
]


def _google(emu) -> dict[str, str]:
    return {"authorization": f"Bearer {self_signed_jwt(emu.account)}"}


def _google_error(answer: httpx.Response, expected: str) -> None:
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert expected in error["message"]


@pytest.mark.parametrize(("body", "expected"), VISION_INVALID, ids=[e for _, e in VISION_INVALID])
def test_vision_malformed_request_is_invalid_argument(emu, body, expected):
    _google_error(_send(emu, "/v1/images:annotate", body, _google(emu)), expected)


def test_vision_accepts_proto_json_spellings(emu):
    body = {"requests": [{"image": {"content": png()}, "features": [{"type": "TEXT_DETECTION", "max_results": "5"}],
                          "image_context": {"languageHints": ["fr"]}}]}
    answer = _send(emu, "/v1/images:annotate", body, _google(emu))
    assert answer.status_code == 200 and answer.json()["responses"][0]["fullTextAnnotation"]["text"]


def _pdf() -> str:
    return base64.b64encode(tiny_pdf()).decode()


def _process_path(emu, project: str | None = None) -> str:
    k = emu.keys
    return f"/v1/projects/{project or k.project_id}/locations/{k.location}/processors/{k.processor_id}:process"


DOCAI_INVALID: list[tuple[Any, str]] = [
    (b"{not json", "Invalid JSON payload received."),
    (b"\xff\xfe\x00{", "Invalid JSON payload received."),
    (b'"pdf"', "Invalid JSON payload received. Expected an object"),
    ({}, "Document is required"),
    ({"rawDocument": "x"}, "Invalid value at 'raw_document' (type.googleapis.com/google.cloud.documentai.v1.RawDocument)"),
    ({"rawDocument": {"content": 5, "mimeType": "application/pdf"}}, "'raw_document.content' (TYPE_BYTES)"),
    ({"rawDocument": {"content": "not base64!", "mimeType": "application/pdf"}}, "Base64 decoding failed"),
    ({"rawDocument": {"content": _pdf()}}, "raw_document.mime_type is required"),
    ({"rawDocument": {"content": _pdf(), "mimeType": 5}}, "'raw_document.mime_type' (TYPE_STRING)"),
    ({"rawDocument": {"content": _pdf(), "mimeType": "application/pdf", "name": "x"}}, "Unknown name \"name\" at 'raw_document'"),
    ({"rawDocument": {"content": _pdf(), "mimeType": "application/pdf"}, "document": {}}, "Unknown name \"document\""),
    ({"rawDocument": {"content": _pdf(), "mimeType": "application/pdf"}, "skipHumanReview": "yes"}, "'skip_human_review' (TYPE_BOOL)"),
    ({"gcsDocument": {"gcsUri": "gs://bucket/doc.pdf", "mimeType": "application/pdf"}}, "raw_document only"),
    ({"rawDocument": {"content": base64.b64encode(b"not a pdf").decode(), "mimeType": "application/pdf"}}, "Unsupported input file format"),
]


@pytest.mark.parametrize(("body", "expected"), DOCAI_INVALID, ids=[e for _, e in DOCAI_INVALID])
def test_document_ai_malformed_request_is_invalid_argument(emu, body, expected):
    _google_error(_send(emu, _process_path(emu), body, _google(emu)), expected)


def test_document_ai_refuses_a_malformed_body_before_looking_at_the_processor(emu):
    _google_error(_send(emu, _process_path(emu, project="other-project"), b"{", _google(emu)), "Invalid JSON payload")


def test_document_ai_accepts_proto_names_and_options(emu):
    body = {"raw_document": {"content": _pdf(), "mime_type": "application/pdf"}, "skipHumanReview": True}
    answer = _send(emu, _process_path(emu), body, _google(emu))
    assert answer.status_code == 200 and answer.json()["document"]["mimeType"] == "application/pdf"


# --------------------------------------------------------------------------- the transport and the safety net


@pytest.mark.parametrize(
    ("path", "shape"),
    [("/v1/messages", "type"), ("/v1/embeddings", "detail"), ("/v1/images:annotate", "error")],
)
def test_a_broken_content_length_is_a_400_in_the_service_shape(emu, path, shape):
    host, port = emu.httpd.server_address[:2]
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(4096):  # the emulator closes the connection after answering
            answer += chunk
    head, _, body = answer.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 400")
    assert shape in json.loads(body)


def test_an_emulator_bug_is_a_500_in_the_service_shape_not_a_dropped_connection(emu, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(anthropic_api, "handle", broken)
    answer = httpx.post(emu.url + "/v1/messages", json=MESSAGE, headers=anthropic_headers(emu.anthropic_key))
    assert answer.status_code == 500 and answer.json()["error"]["type"] == "api_error"


@pytest.mark.parametrize(
    "fault",
    [
        {"service": "anthropic", "status": "abc"},
        {"service": "anthropic", "status": 42},
        {"service": "anthropic", "status": True},
        {"service": "voyageai", "status": 429, "retry_after": "soon"},
        {"service": "vision", "delay": None},
        {"service": "vision", "delay": -1},
        {"service": "vision", "times": 0},
        {"service": "vision", "image_error": "bad"},
        {"service": "documentai", "environment": 5},
        ["anthropic"],
    ],
)
def test_a_fault_with_a_wrong_type_is_refused(emu, fault):
    with pytest.raises(Exception) as refused:
        admin_request(emu.url, "POST", "/_admin/faults", fault)
    assert "400" in str(refused.value)
