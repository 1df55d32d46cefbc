"""Tracking and storage URIs as shown and as reached: credentials never leave the process in
anything medbench prints or logs, and a tracking store is checked and bounded in time before
MLflow opens it (an http(s) server here, the others in :mod:`medbench.store_check`).

:func:`redact` is the one redaction: ``scheme://user:password@host`` -> ``scheme://***@host``,
secret-looking query values (``?token=...``) -> ``***``, and the values of secret-named
environment variables (``MLFLOW_TRACKING_PASSWORD``, ``*_TOKEN``, ...) wherever they appear.
Params, tags, the run's ``config.yaml``, error tags, ``error.txt`` and console errors go
through it. Import-light (the standard library only): the leaderboard and the CLI use it.
"""

from __future__ import annotations

import math
import os
import re
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from medbench.errors import TrackingError

HIDDEN = "***"
# userinfo of any scheme://user[:password]@host (user names go too: some are tokens)
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@'\"<>]+@")
_SECRET_WORDS = (r"password|passwd|pwd|secret|token|access_token|api_?key|apikey|auth|"
                 r"credentials?|client_secret|sig|signature|x-amz-signature|x-amz-credential|"
                 r"x-amz-security-token|sas|key")
_QUERY = re.compile(rf"(?P<name>[?&;](?:{_SECRET_WORDS})=)[^&\s#'\"<>]+", re.IGNORECASE)
# config keys whose values are secrets whatever they look like
_SECRET_KEY = re.compile(r"(?:^|[._\-])(?:password|passwd|secret|token|api_?key|access_key|"
                         r"secret_key|credentials?)$", re.IGNORECASE)
# whole name parts: MLFLOW_TRACKING_PASSWORD, HF_TOKEN, AWS_SECRET_ACCESS_KEY (not
# TOKENIZERS_PARALLELISM=false, which would blank out every 'false')
_SECRET_ENV = re.compile(r"(?:^|_)(?:PASSWORD|PASSWD|TOKEN|SECRET|API_?KEY|ACCESS_KEY|"
                         r"CREDENTIALS?|CONNECTION_STRING)(?:_|$)", re.IGNORECASE)
_MIN_ENV_SECRET = 6  # shorter values would blank out ordinary text
_NOT_SECRETS = {"true", "false", "none", "null", "enabled", "disabled"}

# MLflow's HTTP knobs (mlflow/environment_variables.py), read at each request
TIMEOUT_VAR, RETRIES_VAR = "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
BACKOFF_VAR = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
# MLflow prints "View run ... at: <tracking URI>/#/..." when a run ends on a server: with
# credentials in the URI that line would carry them
QUIET_URL_VAR = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


def _environment() -> dict[str, str]:
    """A snapshot of the environment: MLflow's telemetry thread may unset a variable while it
    is read, and reading os.environ then raises KeyError (seen with seeds=[0,0])."""
    while True:
        try:
            return dict(os.environ)
        except (KeyError, RuntimeError):
            continue


def _env_secrets() -> list[str]:
    values = {v for k, v in _environment().items() if _SECRET_ENV.search(k)
              and len(v) >= _MIN_ENV_SECRET and v.lower() not in _NOT_SECRETS}
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with URI credentials, secret query values and secret environment values
    replaced by ``***``."""
    text = _USERINFO.sub(rf"\g<scheme>{HIDDEN}@", str(text))
    text = _QUERY.sub(rf"\g<name>{HIDDEN}", text)
    for secret in _env_secrets():
        text = text.replace(secret, HIDDEN)
    return text


def is_secret_key(key: str) -> bool:
    """Whether a config key names a secret (``...password``, ``api_key``, ``token``)."""
    return bool(_SECRET_KEY.search(str(key)))


def redact_value(key: str, value: Any) -> str:
    """A param or tag value as logged: ``***`` under a secret key, else :func:`redact`."""
    return HIDDEN if is_secret_key(key) and value not in (None, "") else redact(str(value))


def redact_config(config: Any, key: str = "") -> Any:
    """A copy of a plain config (dicts, lists, scalars) with every string redacted and every
    value under a secret key replaced: what the run's ``config.yaml`` holds."""
    if isinstance(config, Mapping):
        return {k: redact_config(v, str(k)) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [redact_config(v, key) for v in config]
    if is_secret_key(key) and config not in (None, ""):
        return HIDDEN
    return redact(config) if isinstance(config, str) else config


def drop_secrets(config: Mapping[str, Any], prefix: str = "") -> tuple[dict[str, Any],
                                                                       list[str]]:
    """A copy of ``config`` without the values :func:`redact_config` would change, and their
    dotted keys: for a config file meant to run again (a placeholder would not)."""
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            kept[key], inner = drop_secrets(value, f"{name}.")
            dropped += inner
        elif redact_config(value, str(key)) != value:
            dropped.append(name)
        else:
            kept[key] = value
    return kept, dropped


def has_credentials(uri: str) -> bool:
    return redact(uri) != uri


def shown(uri: str) -> str:
    """The URI as a message names it: scheme, host, port and path, nothing secret."""
    parts = urlsplit(uri)
    if not parts.scheme or not parts.hostname:
        return redact(uri)
    port = f":{parts.port}" if parts.port else ""
    text = redact(f"{parts.scheme}://{parts.hostname}{port}{parts.path}")
    return f"{text} (credentials hidden)" if has_credentials(uri) else text


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def bound_http(uri: str, timeout_s: float, retries: int) -> None:
    """Sets MLflow's request timeout and retries (its defaults: 120 s and 7 retries with
    backoff, about 4 minutes for a refused connection) and quiets its run-link lines when the
    URI holds credentials. Called before the first client call; the process keeps them."""
    if not is_http(uri):
        return
    if timeout_s is None or float(timeout_s) <= 0:
        raise TrackingError(f"tracking.timeout_s: expected seconds > 0, got {timeout_s}")
    if retries is None or int(retries) < 0:
        raise TrackingError(f"tracking.retries: expected an integer >= 0, got {retries}")
    os.environ[TIMEOUT_VAR] = str(max(1, math.ceil(float(timeout_s))))  # MLflow reads an int
    os.environ[RETRIES_VAR] = str(int(retries))
    os.environ[BACKOFF_VAR] = "1"
    if has_credentials(uri):
        os.environ[QUIET_URL_VAR] = "true"


def probe(uri: str, timeout_s: float, setting: str = "tracking.uri") -> None:
    """One request to an http(s) tracking server, bounded by ``timeout_s``: any HTTP answer
    (even 401 or 404) will do; none raises a one-line :class:`TrackingError` naming the server
    without its credentials. No credentials are sent; certificates are not checked here (the
    server's own client does that)."""
    if not is_http(uri):
        return
    parts = urlsplit(uri)
    port = f":{parts.port}" if parts.port else ""
    url = f"{parts.scheme}://{parts.hostname}{port}{parts.path.rstrip('/')}/health"
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
    try:
        opener.open(url, timeout=float(timeout_s)).close()
        return
    except urllib.error.HTTPError:  # it answered
        return
    except urllib.error.URLError as err:
        what = _failure(err.reason, timeout_s)
    except OSError as err:  # TimeoutError, ConnectionRefusedError, RemoteDisconnected
        what = _failure(err, timeout_s)
    except Exception as err:  # http.client: an answer that is not HTTP
        what = f"answered, but not as an HTTP server ({type(err).__name__})"
    raise TrackingError(f"tracking server {shown(uri)} {what}: start it, or set {setting} to "
                        f"a running server or a sqlite:///<file> store (tracking.timeout_s="
                        f"{float(timeout_s):g} bounds the wait)")


def _failure(reason: object, timeout_s: float) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "refused the connection"
    if isinstance(reason, TimeoutError):
        return f"did not answer within {float(timeout_s):g} s"
    if isinstance(reason, socket.gaierror):
        return "cannot be found (unknown host)"
    return f"cannot be reached ({redact(str(reason)).splitlines()[0] if str(reason) else ''})"


def reach(uri: str, timeout_s: float = 5, retries: int = 2, setting: str = "tracking.uri",
          create: bool = True) -> None:
    """:func:`bound_http`, then :func:`probe`; any other store is checked by
    :func:`medbench.store_check.check_store` (a SQLite file that is not a readable MLflow
    store, a database server that never answers; ``create``: whether a missing store may be
    made). A fault costs about ``timeout_s`` and one line, not minutes and a traceback
    (``setting``: what the message tells the user to change)."""
    if timeout_s is None or float(timeout_s) <= 0:
        raise TrackingError(f"tracking.timeout_s: expected seconds > 0, got {timeout_s}")
    if is_http(uri):
        bound_http(uri, timeout_s, retries)
        probe(uri, timeout_s, setting)
        return
    from medbench.store_check import check_store

    check_store(uri, timeout_s, setting, create)
