"""Hub operations shared by every command that talks to the Hub (contribute, review, card, pull,
stats, eval report): one authenticated HfApi whose requests are bounded in time, retries where
retrying is safe, and Hub errors turned into one-line messages that say what to do (and never
contain a token). `errors()` is the one translation of Hub client errors.

Token resolution is huggingface_hub's own: --token, else HF_TOKEN, else `hf auth login`'s file.
"""

from __future__ import annotations

import contextlib
import os
import re
import time

from vdata_hub.errors import AuthError, HubError, VdataError

# Seconds to wait before each retry of a request the Hub refused with 429 (or 5xx where safe).
# The Hub allows about 128 commits per hour per repo; its Retry-After is honoured up to RETRY_AFTER_CAP.
BACKOFF_SECONDS = [2, 5, 15, 30, 60]
RETRY_AFTER_CAP = 300
TOKEN_PATTERN = re.compile(r"\bhf_[A-Za-z0-9_]{6,}")
# huggingface_hub's shared HTTP client waits forever for an answer; vdata gives it a limit.
CONNECT_TIMEOUT_S = 10.0
ANSWER_TIMEOUT_ENV = "VDATA_HUB_TIMEOUT"  # seconds a Hub request may wait for an answer
DEFAULT_ANSWER_TIMEOUT_S = 60.0
# Exception classes (by name, anywhere in the class's ancestry) that mean "the Hub could not be
# reached": httpx's transport errors, the built-in connection and timeout errors, DNS failures.
NETWORK_ERRORS = {"TransportError", "ConnectionError", "TimeoutError", "gaierror", "timeout", "NewConnectionError",
                  "MaxRetryError", "ClientConnectionError"}


def api(token: str | None = None):
    """An HfApi for the configured endpoint (HF_ENDPOINT) with the resolved token, its requests
    bounded in time (see use_timeouts)."""
    from huggingface_hub import HfApi

    use_timeouts()
    return HfApi(token=token)


def answer_timeout() -> float:
    value = os.environ.get(ANSWER_TIMEOUT_ENV, "")
    try:
        return float(value) if value and float(value) > 0 else DEFAULT_ANSWER_TIMEOUT_S
    except ValueError:
        return DEFAULT_ANSWER_TIMEOUT_S


def use_timeouts() -> None:
    """Give huggingface_hub's shared client (HfApi, HfFileSystem, datasets) a connect timeout and
    a limit on the wait for each answer, so a Hub that accepts connections and never answers ends
    in an error instead of a hang. Leaves alone a client factory someone else has set."""
    from huggingface_hub.utils import _http, set_client_factory

    current = getattr(_http, "_GLOBAL_CLIENT_FACTORY", None)
    if current is not _http.default_client_factory:
        return

    def bounded_client():
        client = _http.default_client_factory()
        client.timeout = type(client.timeout)(answer_timeout(), connect=CONNECT_TIMEOUT_S)
        return client

    set_client_factory(bounded_client)


def _redact(message: str, token: str | None = None) -> str:
    if token:
        message = message.replace(token, "***")
    return TOKEN_PATTERN.sub("hf_***", message).splitlines()[0] if message else message


def network_cause(exc: BaseException | None) -> BaseException | None:
    """The connection failure behind `exc` (refused, DNS, timeout, reset), following the chain
    of causes; None when the failure is something else."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if {klass.__name__ for klass in type(exc).__mro__} & NETWORK_ERRORS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def unreachable(cause: BaseException, action: str = "") -> HubError:
    """The one line for a Hub that cannot be reached: the endpoint, what happened, what to check."""
    from huggingface_hub import constants

    where = f" while {action}" if action else ""
    names = {klass.__name__ for klass in type(cause).__mro__}
    text = str(cause).lower()
    if "OfflineModeIsEnabled" in names:
        return HubError(f"HF_HUB_OFFLINE is set, so the Hub at {constants.ENDPOINT} is not asked{where}; "
                        "unset HF_HUB_OFFLINE")
    if names & {"TimeoutException", "TimeoutError", "timeout", "ConnectTimeout", "ReadTimeout"}:
        what = f"no answer within {answer_timeout():g} s (${ANSWER_TIMEOUT_ENV} sets the limit)"
    elif "refused" in text:
        what = "connection refused"
    elif "gaierror" in names or any(s in text for s in ("name or service not known", "name resolution",
                                                         "nodename nor servname", "no address associated")):
        what = "host name not found"
    else:
        what = _redact(str(cause)) or cause.__class__.__name__
    return HubError(f"cannot reach the Hub at {constants.ENDPOINT}{where}: {what}; check the network and HF_ENDPOINT")


def translate(exc: Exception, repo: str | None = None, token: str | None = None, action: str = "",
              revision: str | None = None) -> VdataError:
    """A Hub client exception as a one-line VdataError with advice (the one place that does this)."""
    from huggingface_hub.errors import (HfHubHTTPError, LocalTokenNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    where = f" {action}" if action else ""
    cause = network_cause(exc)
    if cause is not None:
        return unreachable(cause, action)
    if isinstance(exc, LocalTokenNotFoundError):
        return AuthError("no Hub token: run `hf auth login`, set HF_TOKEN or pass `token`")
    if isinstance(exc, RepositoryNotFoundError):
        return HubError(f"dataset repo {repo} not found on the Hub (or not visible with this token): check the "
                        f"name, or create it with `vdata init-repo {repo}`")
    if isinstance(exc, RevisionNotFoundError):
        return HubError(f"revision {revision!r} not found in {repo}: use a branch, tag, commit or refs/pr/N"
                        if revision else f"revision not found in {repo}{where}: {_redact(str(exc), token)}")
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        server = _redact(getattr(exc, "server_message", None) or "", token)
        if status == 401:
            return AuthError("the Hub refused the token (401 invalid credentials): run `hf auth login` "
                             "or pass a valid `token`")
        if status == 403:
            return AuthError(f"no write access to {repo}{where} (403{': ' + server if server else ''}); pass a "
                             "`token` with write access, or ask the repo's maintainers")
        if status == 429:
            return HubError(f"the Hub is rate-limiting {repo} (429) after several retries; try again later")
        return HubError(f"Hub request failed{where} ({status}{': ' + server if server else ''})")
    return HubError(f"Hub operation failed{where}: {_redact(str(exc), token)}")


@contextlib.contextmanager
def errors(repo: str | None = None, token: str | None = None, action: str = "", revision: str | None = None):
    """Translate Hub client errors raised inside the block (HTTP errors, a missing token, a Hub
    that cannot be reached); VdataErrors and other exceptions pass through."""
    try:
        yield
    except VdataError:
        raise
    except Exception as exc:
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, LocalTokenNotFoundError

        cause = exc  # uploads wrap the HTTP error: "Error while uploading 'x' to the Hub."
        while isinstance(cause, RuntimeError) and cause.__cause__ is not None:
            action = f"{action} ({_redact(str(cause), token)})" if cause is exc else action
            cause = cause.__cause__
        if isinstance(cause, LocalEntryNotFoundError) and isinstance(cause.__cause__, HfHubHTTPError):
            cause = cause.__cause__  # a download whose HEAD failed (a 5xx) and that had no cached copy
        if isinstance(cause, (HfHubHTTPError, LocalTokenNotFoundError)) or network_cause(exc) is not None:
            raise translate(cause, repo, token, action, revision) from None
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
                        "(https://huggingface.co/settings/tokens) and pass it as `token` or HF_TOKEN")
    return info.get("name", "")


def dataset_info(hf_api, repo: str, revision: str | None = None, files_metadata: bool = False):
    """The repo's info at `revision` (commit, files): one request, not retried, bounded in time
    (huggingface_hub would pass it no time limit), so a Hub that cannot be reached fails fast."""
    return hf_api.dataset_info(repo, revision=revision, files_metadata=files_metadata, timeout=answer_timeout())


def main_sha(hf_api, repo: str, token: str | None = None) -> str:
    """The commit main points at; only that is asked for (a plain repo_info lists every file)."""
    with errors(repo, token, "reading the repo"):
        return hf_api.dataset_info(repo, revision="main", expand=["sha"], timeout=answer_timeout()).sha


def repo_exists(hf_api, repo: str, token: str | None = None) -> bool:
    from huggingface_hub.errors import RepositoryNotFoundError

    with errors(repo, token, "looking for the repo"):
        try:
            dataset_info(hf_api, repo)
        except RepositoryNotFoundError:
            return False
    return True


def commits(repo: str, revision: str, token: str | None = None):
    """Commit ids of `revision`'s history, newest first, a page at a time (HfApi.list_repo_commits
    reads every page first: thousands of merges are dozens of requests)."""
    from urllib.parse import quote

    from huggingface_hub import constants
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = f"{constants.ENDPOINT}/api/datasets/{repo}/commits/{quote(revision, safe='')}"
    while url:  # the next page is the Link header's URL, verbatim
        response = get_session().get(url, headers=build_hf_headers(token=token), timeout=answer_timeout())
        hf_raise_for_status(response)
        yield from (commit["id"] for commit in response.json())
        url = response.links.get("next", {}).get("url")


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
