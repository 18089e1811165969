"""The one exception type handlers raise; the server turns it into a JSON error with X-Error-Code."""


class HubError(Exception):
    def __init__(self, status, code, message, **extra):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
        self.headers = {}


def repo_not_found(repo_id=""):
    return HubError(404, "RepoNotFound", f"Repository not found: {repo_id}".strip())


def revision_not_found(rev):
    return HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")


def entry_not_found(path, **extra):
    return HubError(404, "EntryNotFound", f"Entry not found: {path}", **extra)
