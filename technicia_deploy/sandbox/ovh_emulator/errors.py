"""OVH's error bodies, with the status codes and fields python-ovh reads to pick its exception.

python-ovh (ovh/client.py ``call``) looks at the HTTP status and, for 403, at
``errorCode``: NOT_GRANTED_CALL, NOT_CREDENTIAL, INVALID_KEY, INVALID_CREDENTIAL,
FORBIDDEN. 400 -> BadParametersError, 404 -> ResourceNotFoundError,
409 -> ResourceConflictError, anything else -> APIError.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message", ""))
        self.status = status
        self.body = body


def _http_code(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


def auth_error(status: int, code: str, message: str) -> ApiError:
    """The authentication layer's errors carry errorCode and httpCode."""
    return ApiError(status, {"errorCode": code, "httpCode": _http_code(status), "message": message})


def invalid_key() -> ApiError:
    return auth_error(403, "INVALID_KEY", "Invalid application key")


def not_credential() -> ApiError:
    return auth_error(403, "NOT_CREDENTIAL", "You must login first")


def unknown_credential() -> ApiError:
    return auth_error(403, "INVALID_CREDENTIAL", "This credential does not exist")


def credential_not_valid() -> ApiError:
    return auth_error(403, "INVALID_CREDENTIAL", "This credential is not valid")


def query_out_of_time() -> ApiError:
    return auth_error(400, "QUERY_TIME_OUT", "Query out of time")


def invalid_signature() -> ApiError:
    return auth_error(400, "INVALID_SIGNATURE", "Invalid signature")


def not_granted() -> ApiError:
    return auth_error(403, "NOT_GRANTED_CALL", "This call has not been granted")


# The API layer's errors carry a "class" (OVH's exception class) and a message.


def not_found(message: str) -> ApiError:
    return ApiError(404, {"class": "Client::NotFound", "message": message})


def object_not_found(**keys: object) -> ApiError:
    what = ", ".join(f"{k} = {v}" for k, v in keys.items())
    return not_found(f"The requested object ({what}) does not exist")


def bad_request(message: str) -> ApiError:
    return ApiError(400, {"class": "Client::BadRequest", "message": message})


def conflict(message: str) -> ApiError:
    return ApiError(409, {"class": "Client::Conflict", "message": message})


def server_error(status: int, message: str | None = None) -> ApiError:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Server Error"
    return ApiError(status, {"class": "Server::" + phrase.replace(" ", ""), "message": message or phrase})
