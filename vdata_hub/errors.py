"""Errors a user can act on. The CLI prints `error: <message>` for these and exits non-zero;
any other exception is a bug and keeps its traceback."""


class VdataError(Exception):
    """Base class: the message tells the user what went wrong and what to do."""

    exit_code = 1


class SpecError(VdataError):
    """The generation spec is invalid (unknown key, wrong type, missing template...)."""

    exit_code = 2


class TemplateError(VdataError):
    """A prompt template is missing, malformed or uses an undefined variable."""

    exit_code = 2


class AuthError(VdataError):
    """An API key or Hub token was refused."""

    exit_code = 3


class LLMError(VdataError):
    """The model provider failed in a way retries cannot fix."""


class EndpointUnreachable(LLMError):
    """No connection to the model's endpoint (refused, DNS lookup failed, connect timeout)."""

    exit_code = 7


class BudgetExceeded(VdataError):
    """The spec's cost cap was reached; what was generated is kept and resumable."""

    exit_code = 4


class PartlyDone(VdataError):
    """A run ended with records that failed after their retries (the rest are kept; a rerun retries them)."""

    exit_code = 6


class ValidationFailed(VdataError):
    """A dataset did not pass validation (the report says which rows and why)."""

    exit_code = 5


class HubError(VdataError):
    """A Hub operation failed (network, permissions, conflicts)."""


class IndexStale(HubError):
    """The repo's duplicate index is missing or does not cover main: `vdata reindex` rebuilds it."""

    exit_code = 6


class SQLRefused(VdataError):
    """A SQL statement was refused by the read-only guard."""

    exit_code = 2


class EvalError(VdataError):
    """An evaluation could not run (missing data, bad model, bad predictions file)."""


class UsageError(VdataError):
    """The command line names an unknown command or option, or a value of the wrong type."""

    exit_code = 2
