"""What handlers raise: HubError (a JSON error with X-Error-Code) or Redirect (a 307)."""


class HubError(Exception):
    def __init__(self, status, code, message, **extra):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
        self.headers = {}


class Redirect(Exception):
    """Answer 307 to ``location`` (a path on this server): the Hub's answer for a moved repo's old id."""

    def __init__(self, location):
        super().__init__(location)
        self.location = location


def repo_not_found(repo_id=""):
    return HubError(404, "RepoNotFound", f"Repository not found: {repo_id}".strip())


def revision_not_found(rev):
    return HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")


def entry_not_found(path, **extra):
    return HubError(404, "EntryNotFound", f"Entry not found: {path}", **extra)
