"""Users, tokens and org membership: who may read and write which namespace."""

from dataclasses import dataclass, field

from .errors import HubError

DEFAULT_USERS = ["alice:hf_emulator_alice_token"]
DEFAULT_ORGS = ["org:alice"]


@dataclass(frozen=True)
class User:
    name: str
    can_write: bool

    @property
    def fullname(self):
        return self.name.title()


@dataclass
class Accounts:
    """Tokens map to users; orgs map to member names. Built from the CLI's --user/--org flags."""

    tokens: dict = field(default_factory=dict)
    orgs: dict = field(default_factory=dict)

    @classmethod
    def from_specs(cls, user_specs, org_specs):
        """``NAME:TOKEN`` (write) or ``NAME:TOKEN:read``; ``ORG:MEMBER``. Defaults when both are empty."""
        if not user_specs and not org_specs:
            user_specs, org_specs = DEFAULT_USERS, DEFAULT_ORGS
        accounts = cls()
        for spec in user_specs:
            name, token, *role = spec.split(":")
            accounts.tokens[token] = User(name, can_write=(role or ["write"])[0] != "read")
        for spec in org_specs:
            org, member = spec.split(":", 1)
            accounts.orgs.setdefault(org, set()).add(member)
        return accounts

    def user_for(self, authorization):
        """The user behind an ``Authorization: Bearer`` header; None when anonymous, 401 when unknown."""
        if not authorization:
            return None
        token = authorization.split(" ", 1)[-1].strip()
        user = self.tokens.get(token)
        if user is None:
            raise HubError(401, "InvalidCredentials", "Invalid credentials in Authorization header")
        return user

    def is_member(self, user, namespace):
        if user is None:
            return False
        return user.name.lower() == namespace.lower() or user.name in self.orgs.get(namespace, ())

    def user_orgs(self, name):
        return sorted(org for org, members in self.orgs.items() if name in members)

    def namespace_exists(self, namespace):
        return namespace in self.orgs or any(u.name == namespace for u in self.tokens.values())

    def require_user(self, user):
        if user is None:
            raise HubError(401, "Unauthorized", "You must be authenticated to do this (pass a token)")
        return user

    def require_write_token(self, user):
        """401 when anonymous, 403 for a read-only token: the Hub lets it write nothing at all, not even
        a pull request, a discussion or a comment on a repo its owner could otherwise write to."""
        self.require_user(user)
        if not user.can_write:
            raise HubError(403, "Forbidden", "This token is read-only: it cannot write (use a token with the write role)")
        return user

    def require_write(self, user, namespace):
        """401 when anonymous, 403 when the token is read-only or the namespace is someone else's."""
        self.require_write_token(user)
        if not self.is_member(user, namespace):
            raise HubError(403, "Forbidden", f"You don't have the rights to write in namespace '{namespace}'")
        return user
