"""Hub operations shared by contribute, review and card: one authenticated HfApi, retries where
retrying is safe, and Hub errors turned into one-line messages that say what to do (and never
contain a token).

Token resolution is huggingface_hub's own: --token, else HF_TOKEN, else `hf auth login`'s file.
"""

from __future__ import annotations

import contextlib
import re
import time

from vdata_hub.errors import AuthError, HubError, VdataError

# Seconds to wait before each retry of a request the Hub refused with 429 (or 5xx where safe).
# The Hub allows about 128 commits per hour per repo; its Retry-After is honoured up to RETRY_AFTER_CAP.
BACKOFF_SECONDS = [2, 5, 15, 30, 60]
RETRY_AFTER_CAP = 300
TOKEN_PATTERN = re.compile(r"\bhf_[A-Za-z0-9_]{6,}")


def api(token: str | None = None):
    """An HfApi for the configured endpoint (HF_ENDPOINT) with the resolved token."""
    from huggingface_hub import HfApi

    return HfApi(token=token)


def _redact(message: str, token: str | None = None) -> str:
    if token:
        message = message.replace(token, "***")
    return TOKEN_PATTERN.sub("hf_***", message).splitlines()[0] if message else message


def translate(exc: Exception, repo: str | None = None, token: str | None = None, action: str = "") -> VdataError:
    """A Hub client exception as a one-line VdataError with advice."""
    from huggingface_hub.errors import (HfHubHTTPError, LocalTokenNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    where = f" {action}" if action else ""
    if isinstance(exc, LocalTokenNotFoundError):
        return AuthError("no Hub token: run `hf auth login`, set HF_TOKEN or pass --token")
    if isinstance(exc, RepositoryNotFoundError):
        return HubError(f"dataset repo {repo} not found (or not visible with this token); check --repo, "
                        f"or create it with `vdata init-repo {repo}`")
    if isinstance(exc, RevisionNotFoundError):
        return HubError(f"revision not found in {repo}{where}: {_redact(str(exc), token)}")
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        server = _redact(getattr(exc, "server_message", None) or "", token)
        if status == 401:
            return AuthError("the Hub refused the token (401 invalid credentials): run `hf auth login` "
                             "or pass a valid --token")
        if status == 403:
            return AuthError(f"no write access to {repo}{where} (403{': ' + server if server else ''}); use a "
                             "token with write access, or ask the repo's maintainers")
        if status == 429:
            return HubError(f"the Hub is rate-limiting {repo} (429) after several retries; try again later")
        return HubError(f"Hub request failed{where} ({status}{': ' + server if server else ''})")
    if isinstance(exc, (OSError, ConnectionError)) or exc.__class__.__module__.startswith(("httpx", "httpcore")):
        from huggingface_hub import constants

        return HubError(f"cannot reach the Hub at {constants.ENDPOINT}{where} "
                        f"({exc.__class__.__name__}); check the network and HF_ENDPOINT")
    return HubError(f"Hub operation failed{where}: {_redact(str(exc), token)}")


@contextlib.contextmanager
def errors(repo: str | None = None, token: str | None = None, action: str = ""):
    """Translate Hub client errors raised inside the block; VdataErrors pass through."""
    try:
        yield
    except VdataError:
        raise
    except Exception as exc:
        from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

        cause = exc  # uploads wrap the HTTP error: "Error while uploading 'x' to the Hub."
        while isinstance(cause, RuntimeError) and cause.__cause__ is not None:
            action = f"{action} ({_redact(str(cause), token)})" if cause is exc else action
            cause = cause.__cause__
        known = (HfHubHTTPError, LocalTokenNotFoundError, OSError, ConnectionError)
        if isinstance(cause, known) or cause.__class__.__module__.startswith(("httpx", "httpcore")):
            raise translate(cause, repo, token, action) from None
        raise


def status_of(exc: Exception) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def with_retries(call, *, retry_5xx: bool = False, before_retry=None):
    """Run `call()`; on 429 (and 5xx when `retry_5xx`) wait and run it again. `before_retry()` may
    return a result that makes the retry unnecessary (e.g. the PR already exists)."""
    for attempt, delay in enumerate([*BACKOFF_SECONDS, None]):
        try:
            return call()
        except Exception as exc:
            status = status_of(exc)
            retryable = status == 429 or (retry_5xx and status is not None and status >= 500)
            if not retryable or delay is None:
                raise
            retry_after = exc.response.headers.get("Retry-After") if status == 429 else None
            if retry_after and retry_after.isdigit():
                delay = max(delay, min(int(retry_after), RETRY_AFTER_CAP))
            time.sleep(delay)
            if before_retry is not None:
                done = before_retry()
                if done is not None:
                    return done
    raise AssertionError("unreachable")


def check_write_token(hf_api, repo: str, token: str | None) -> str:
    """The user's name; AuthError at once for a missing, invalid or read-only token (before any upload)."""
    with errors(repo, token, "checking the token"):
        info = hf_api.whoami()
    role = ((info.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise AuthError("this Hub token is read-only: create a token with write access "
                        "(https://huggingface.co/settings/tokens) and pass it with --token or HF_TOKEN")
    return info.get("name", "")


def main_sha(hf_api, repo: str, token: str | None = None) -> str:
    with errors(repo, token, "reading the repo"):
        return hf_api.repo_info(repo, repo_type="dataset", revision="main").sha


def file_exists(hf_api, repo: str, path: str, revision: str, token: str | None = None) -> bool:
    with errors(repo, token, f"looking for {path}"):
        return hf_api.file_exists(repo, path, repo_type="dataset", revision=revision)


def open_pull_requests(hf_api, repo: str, token: str | None = None) -> list:
    with errors(repo, token, "listing pull requests"):
        return list(hf_api.get_repo_discussions(repo, repo_type="dataset", discussion_type="pull_request",
                                                discussion_status="open"))


def pr_url(repo: str, num: int) -> str:
    from huggingface_hub import constants

    return f"{constants.ENDPOINT}/datasets/{repo}/discussions/{num}"
