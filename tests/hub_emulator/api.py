"""The Hub endpoints, as huggingface_hub, datasets and HfFileSystem call them (see shared/docs/hub-api.md).

``route(req)`` maps a parsed request to one handler; handlers return JSON-able data or a ``Response``
and raise ``HubError`` for every failure, so each 4xx carries an ``X-Error-Code``.
"""

import base64
import hashlib
import hmac
import json
import re
from urllib.parse import quote

import yaml

from . import discussions, repos, trees
from .errors import HubError, Redirect, entry_not_found, repo_not_found, revision_not_found
from .server import DEFAULT_SETTINGS, Response, json_response
from .storage import BlobMismatch

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
NAME_RE = re.compile(r"^(?![-.])(?!.*(--|\.\.))[A-Za-z0-9._-]{1,96}(?<![-.])$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
PR_REF_RE = re.compile(r"^refs/pr/\d+$")


# Words that follow a repo id in a URL: `/api/models/gpt2/tree/main` is the canonical repo `gpt2`,
# not a repo `gpt2/tree`, unless a repo `gpt2/tree` exists.
REPO_ACTIONS = {"revision", "refs", "commits", "tree", "paths-info", "preupload", "commit", "branch", "tag",
                "settings", "discussions", "super-squash", "lfs-files", "resolve", "blob", "raw", "compare",
                "xet-read-token", "xet-write-token", "treesize", "parquet", "croissant"}


def route(req):
    segs, method = req.segments, req.method
    if segs[:1] == ["_emulator"]:
        return control(req, segs[1:])
    if segs[:1] == ["lfs-upload"] and method == "PUT" and len(segs) == 2:
        return lfs_upload(req, segs[1])
    if segs[:1] == ["lfs-verify"] and method == "POST" and len(segs) == 2:
        return lfs_verify(req, segs[1])
    if segs[:1] == ["api"]:
        return api_route(req, segs[1:])
    repo_type = REPO_TYPES.get(segs[0], "model") if segs else "model"
    rest = segs[1:] if segs and segs[0] in ("datasets", "spaces") else segs
    at = len(segs) - len(rest)
    for width in (2, 1):  # `ns/name.git/...` or `name.git/...`
        if len(rest) == width + 4 and rest[width - 1].endswith(".git") and rest[width:] == [
                "info", "lfs", "objects", "batch"]:
            ids = rest[:width - 1] + [rest[width - 1][:-4]]
            return lfs_batch(req, load_repo(req, repo_type, ids, at, ".git"))
    if method in ("GET", "HEAD"):
        width = resolve_width(req, repo_type, rest)
        if width:
            repo = load_repo(req, repo_type, rest[:width], at)
            rev, i = take_revision(rest, width + 1)
            return resolve(req, repo, rev, "/".join(rest[i:]))
    raise HubError(404, "NotFound", f"No such endpoint: {method} {req.raw_path}")


def resolve_width(req, repo_type, rest):
    """How many segments of ``rest`` are the repo id in a `.../resolve/{rev}/{path}` URL (0: not one)."""
    two = len(rest) >= 4 and rest[2] == "resolve"
    one = len(rest) >= 3 and rest[1] == "resolve"
    if two and one:  # `name/resolve/resolve/...`: the repo `name/resolve` if it exists
        return 2 if known(req, repo_type, rest[:2]) else 1
    return 2 if two else 1 if one else 0


def api_route(req, segs):
    method = req.method
    simple = {
        ("GET", "agent-harnesses"): lambda: {"standardEnvVars": [], "harnesses": {}},
        ("GET", "whoami-v2"): lambda: whoami(req),
        ("POST", "repos/create"): lambda: create_repo(req),
        ("DELETE", "repos/delete"): lambda: delete_repo(req),
        ("POST", "repos/move"): lambda: move_repo(req),
        ("POST", "validate-yaml"): lambda: validate_yaml(req),
    }
    key = (method, "/".join(segs))
    if key in simple:
        return simple[key]()
    if not segs or segs[0] not in REPO_TYPES:
        raise HubError(404, "NotFound", f"No such endpoint: {method} {req.raw_path}")
    repo_type = REPO_TYPES[segs[0]]
    if len(segs) == 1 and method == "GET":
        return list_repos(req, repo_type)
    ids = segs[1:]
    width = 1 if len(ids) == 1 or (ids[1] in REPO_ACTIONS and not known(req, repo_type, ids[:2])) else 2
    repo = load_repo(req, repo_type, ids[:width], 2)
    return repo_route(req, repo, ids[width:])


def known(req, repo_type, ids):
    """Whether a two-segment id names a repo or an alias (else its second segment is an action)."""
    store = req.app.store
    return bool(repos.find_repo(store, repo_type, *ids) or repos.find_alias(store, repo_type, ids))


def repo_route(req, repo, rest):
    method = req.method
    action = rest[0] if rest else ""
    if method == "GET" and action in ("", "revision"):
        rev = take_revision(rest, 1)[0] if rest[1:] else None
        return repo_info(req, repo, rev)
    if method == "GET" and action == "refs":
        return list_refs(req, repo)
    if method == "GET" and action == "commits":
        return list_commits(req, repo, take_revision(rest, 1)[0] if rest[1:] else "main")
    if method == "GET" and action == "tree" and rest[1:]:
        rev, i = take_revision(rest, 1)
        return tree(req, repo, rev, "/".join(rest[i:]))
    if method == "POST" and action in ("paths-info", "preupload", "commit") and rest[1:]:
        handler = {"paths-info": paths_info, "preupload": preupload, "commit": commit}[action]
        return handler(req, repo, take_revision(rest, 1)[0])
    if action in ("branch", "tag") and rest[1:] and method in ("POST", "DELETE"):
        name = "/".join(rest[1:])
        return (branch if action == "branch" else tag)(req, repo, name)
    if method == "PUT" and action == "settings":
        return settings(req, repo)
    if method == "POST" and action == "super-squash" and rest[1:]:
        return super_squash(req, repo, take_revision(rest, 1)[0])
    if action == "discussions":
        return discussion_route(req, repo, rest[1:])
    raise HubError(404, "NotFound", f"No such endpoint: {method} {req.raw_path}")


def take_revision(segs, i):
    """Revision starting at segment ``i`` (usually one %-encoded segment; plain ``refs/x/y`` accepted too)."""
    if segs[i] == "refs" and len(segs) >= i + 3:
        return "/".join(segs[i:i + 3]), i + 3
    return segs[i], i + 1


# -- accounts and repos ------------------------------------------------------------------------
def whoami(req):
    """The Hub's `whoami-v2` shape: what `whoami`, `login`, `auth whoami` and namespace defaults read."""
    accounts = req.app.accounts
    user = accounts.require_user(req.user)
    orgs = [{"type": "org", "id": account_id(org), "name": org, "fullname": org.title(), "email": None,
             "avatarUrl": "", "canPay": False, "periodEnd": None, "roleInOrg": "write", "isEnterprise": False}
            for org in accounts.user_orgs(user.name)]
    role = "write" if user.can_write else "read"
    return {"type": "user", "id": account_id(user.name), "name": user.name, "fullname": user.fullname,
            "email": f"{user.name}@example.invalid", "emailVerified": True, "canPay": False, "periodEnd": None,
            "isPro": False, "avatarUrl": "", "orgs": orgs,
            "auth": {"type": "access_token", "accessToken": {"displayName": "emulator", "role": role,
                                                             "createdAt": "2024-01-01T00:00:00.000Z"}}}


def account_id(name):
    return hashlib.sha1(name.encode()).hexdigest()[:24]


def load_repo(req, repo_type, ids, at=None, suffix=""):
    """The repo named by ``ids`` (found at segment ``at`` of the path), if the caller may see it.

    An old id that redirects (a canonical id like `gpt2`, or a moved repo's) answers 307 to the same
    URL with the repo's id; anything else unknown, and others' private repos, give RepoNotFound."""
    repo = repos.find_repo(req.app.store, repo_type, *ids) if len(ids) == 2 else None
    if repo is None and at is not None:
        moved = repos.find_alias(req.app.store, repo_type, ids)
        if moved is not None and not (moved.private and not req.app.accounts.is_member(req.user, moved.namespace)):
            raw = req.raw_path.split("/")[1:]
            target = [quote(moved.namespace), quote(moved.name) + suffix]
            location = "/" + "/".join(raw[:at] + target + raw[at + len(ids):])
            raise Redirect(location + (f"?{req.raw_query}" if req.raw_query else ""))
    if repo is None or (repo.private and not req.app.accounts.is_member(req.user, repo.namespace)):
        raise repo_not_found("/".join(ids))
    return repo


def _repo_body(req):
    body = req.json()
    user = req.app.accounts.require_user(req.user)
    namespace = body.get("organization") or user.name
    repo_type = body.get("type") or "model"
    if repo_type not in REPO_TYPES.values():
        raise HubError(400, "BadRequest", f"Invalid repo type: {repo_type}")
    return body, user, namespace, repo_type, str(body.get("name") or "")


def create_repo(req):
    body, user, namespace, repo_type, name = _repo_body(req)
    req.app.accounts.require_write(user, namespace)
    if not NAME_RE.match(name):
        raise HubError(400, "BadRequest", f"Invalid repo name: {name!r}")
    private = body.get("visibility") == "private" if "visibility" in body else bool(body.get("private"))
    with req.app.store.transaction():
        existing = repos.find_repo(req.app.store, repo_type, namespace, name)
        if existing:
            raise HubError(409, "RepoExists", f"You already created this {repo_type} repo",
                           url=existing.web_url(req.origin))
        repo = repos.create_repo(req.app.store, repo_type, namespace, name, private, user.name)
    return {"url": repo.web_url(req.origin), "name": repo.repo_id, "id": repo.repo_id}


def delete_repo(req):
    _, user, namespace, repo_type, name = _repo_body(req)
    repo = load_repo(req, repo_type, [namespace, name])  # no redirect: the body names the repo
    req.app.accounts.require_write(user, repo.namespace)
    repos.delete_repo(req.app.store, repo)
    return {}


def move_repo(req):
    """Rename or transfer a repo; its old id keeps working through a redirect, as on the Hub."""
    body = req.json()
    repo_type = body.get("type") or "model"
    old, new = str(body.get("fromRepo") or "").split("/"), str(body.get("toRepo") or "").split("/")
    if repo_type not in REPO_TYPES.values() or len(old) != 2 or len(new) != 2 or not NAME_RE.match(new[1]):
        raise HubError(400, "BadRequest", "fromRepo and toRepo must be namespace/name ids")
    store, accounts = req.app.store, req.app.accounts
    with store.transaction():
        repo = load_repo(req, repo_type, old)
        accounts.require_write(req.user, repo.namespace)
        accounts.require_write(req.user, new[0])
        if repos.find_repo(store, repo_type, *new):
            raise HubError(409, "RepoExists", f"You already have a {repo_type} repo named {'/'.join(new)}")
        repos.move_repo(store, repo, new)
    return {}


def settings(req, repo):
    body = req.json()
    req.app.accounts.require_write(req.user, repo.namespace)
    private = body.get("visibility") == "private" if "visibility" in body else body.get("private", repo.private)
    gated = body.get("gated", repo.gated)
    req.app.store.execute("UPDATE repos SET private = ?, gated = ? WHERE id = ?", int(bool(private)),
                          gated or None, repo.id)
    return {}


def list_repos(req, repo_type):
    author, search = req.arg("author"), (req.arg("search") or "").lower()
    found = []
    for repo in repos.all_repos(req.app.store, repo_type):
        if repo.private and not req.app.accounts.is_member(req.user, repo.namespace):
            continue
        if (author and repo.namespace != author) or search not in repo.repo_id.lower():
            continue
        sha = repos.get_ref(req.app.store, repo, "refs/heads/main")
        found.append({"id": repo.repo_id, "author": repo.namespace, "sha": sha,
                      "private": repo.private, "createdAt": repo.created_at, "downloads": 0, "likes": 0, "tags": []})
    return found[: int(req.arg("limit") or 1000)]


def repo_info(req, repo, rev):
    """Repo info at a revision. With ``expand=...`` only the named properties (plus ``_id`` and ``id``)
    are computed and returned, as on the Hub: ``expand=usedStorage`` costs no file listing."""
    store = req.app.store
    oid = repos.resolve_revision(store, repo, rev or "main")
    row = repos.commit_row(store, oid)
    wanted = set(req.query.get("expand", []) + req.query.get("expand[]", []))
    fields = {
        "author": lambda: repo.namespace, "sha": lambda: oid, "lastModified": lambda: row["date"],
        "createdAt": lambda: repo.created_at, "private": lambda: repo.private, "gated": lambda: repo.gated,
        "disabled": lambda: False, "downloads": lambda: 0, "downloadsAllTime": lambda: 0, "likes": lambda: 0,
        "tags": lambda: [], "siblings": lambda: siblings(store, row["tree"], req.flag("blobs")),
        "usedStorage": lambda: repos.storage_used(store, repo),
        "mainSize": lambda: repos.commit_row(store, repos.get_ref(store, repo, "refs/heads/main"))["size"],
        "cardData": lambda: repos.card_data(store, row["tree"]),
    }
    info = {"_id": f"{repo.id:024x}", "id": repo.repo_id}
    for name, compute in fields.items():
        if not wanted or name in wanted:
            info[name] = compute()
    if info.get("cardData", 0) is None:
        del info["cardData"]
    if repo.type == "model" and not wanted:
        info["modelId"] = repo.repo_id
    return info


def siblings(store, root, blobs):
    items = []
    for path, entry in trees.walk(store.objects, root):
        if trees.is_dir(entry):
            continue
        sha256, size, git_oid, is_lfs = entry
        item = {"rfilename": path}
        if blobs:
            item.update(size=size, blobId=git_oid)
            if is_lfs:
                item["lfs"] = {"size": size, "sha256": sha256, "pointerSize": len(repos.lfs_pointer(sha256, size))}
        items.append(item)
    return items


def list_refs(req, repo):
    refs = repos.list_refs(req.app.store, repo)

    def items(prefix):
        return [{"name": name[len(prefix):], "ref": name, "targetCommit": oid}
                for name, oid in sorted(refs.items()) if name.startswith(prefix)]

    result = {"branches": items("refs/heads/"), "converts": items("refs/convert/"), "tags": items("refs/tags/")}
    if req.flag("include_prs"):
        result["pullRequests"] = [dict(item, name=f"pr/{item['name']}") for item in items("refs/pr/")]
    return result


def paginate(req, items, page_size):
    """One page of ``items`` plus an absolute ``Link: rel="next"`` header when more remain."""
    start = int(req.arg("cursor") or 0)
    page = items[start:start + page_size]
    headers = {}
    if start + page_size < len(items):
        headers["Link"] = f'<{req.next_url(cursor=start + page_size)}>; rel="next"'
    return page, headers


def list_commits(req, repo, rev):
    """A page of first-parent history; the cursor is the oid of the next commit, so a page costs
    its own length whatever the depth."""
    store = req.app.store
    start = req.arg("cursor") or repos.resolve_revision(store, repo, rev)
    if repos.commit_row(store, start) is None:
        raise HubError(400, "BadRequest", f"Invalid cursor: {start}")
    size = req.app.settings["commits_page_size"]
    rows = repos.history(store, start, size + 1)
    formatted = "formatted" in req.query.get("expand[]", []) + req.query.get("expand", [])
    headers = {"Link": f'<{req.next_url(cursor=rows[size]["oid"])}>; rel="next"'} if len(rows) > size else {}
    items = []
    for row in rows[:size]:
        item = {"id": row["oid"], "title": row["title"], "message": row["message"], "date": row["date"],
                "authors": [{"user": row["author"], "avatar": ""}]}
        if formatted:
            item["formatted"] = {"title": row["title"], "message": row["message"]}
        items.append(item)
    return json_response(items, headers=headers)


def tree(req, repo, rev, path):
    store = req.app.store
    oid = repos.resolve_revision(store, repo, rev)
    root = repos.root_of(store, oid)
    expand = req.flag("expand")
    recursive = req.flag("recursive")
    listing = req.app.listings.get((root, path.strip("/"), recursive),
                                   lambda: repos.list_tree(store, root, path, recursive))
    size = req.app.settings["tree_expand_page_size" if expand else "tree_page_size"]
    page, headers = paginate(req, listing, size)
    return json_response(repos.entries_json(store, repo, oid, page, expand), headers=headers)


def paths_info(req, repo, rev):
    store = req.app.store
    form = req.form()
    oid = repos.resolve_revision(store, repo, rev)
    root = repos.root_of(store, oid)
    items = []
    for path in form.get("paths", []):
        path = path.strip("/")
        entry = repos.lookup(store, root, path) if path else None
        if entry is not None:
            items.append(("directory" if trees.is_dir(entry) else "file", path, entry))
    expand = (form.get("expand") or ["false"])[0].lower() == "true"
    return repos.entries_json(store, repo, oid, items, expand)


def validate_yaml(req):
    body = req.json()
    raw = repos.front_matter(str(body.get("content") or ""))
    if raw is None:
        return {"errors": [], "warnings": []}
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        return json_response({"errors": [{"message": f"Invalid YAML: {err}"}], "warnings": []}, 400)
    if data is None:
        return {"errors": [], "warnings": [{"message": "Empty metadata"}]}
    errors = metadata_errors(data)
    if errors:
        return json_response({"errors": [{"message": m} for m in errors], "warnings": []}, 400)
    return {"errors": [], "warnings": []}


def metadata_errors(data):
    """The few checks the Hub makes that clients can trip: a mapping, a model-index list, sane configs."""
    if not isinstance(data, dict):
        return ["Metadata must be a YAML mapping"]
    errors = []
    if "model-index" in data and not isinstance(data["model-index"], list):
        errors.append('"model-index" must be an array')
    configs = data.get("configs", [])
    if not isinstance(configs, list):
        errors.append('"configs" must be an array')
    else:
        for config in configs:
            if not isinstance(config, dict) or not isinstance(config.get("config_name"), str):
                errors.append('"configs[]" items must be objects with a string "config_name"')
            elif "data_files" in config and not isinstance(config["data_files"], (str, list)):
                errors.append(f'"configs[{config["config_name"]}].data_files" must be a string or an array')
    return errors


# -- uploads and commits -----------------------------------------------------------------------
def require_commit_rights(req, repo, rev, create_pr):
    """Every commit needs a write-capable token. With one, anyone who can read the repo may open a PR
    and a PR's author may push to it; pushing to a branch needs write rights on the namespace."""
    accounts = req.app.accounts
    user = accounts.require_write_token(req.user)
    if create_pr or accounts.is_member(user, repo.namespace):
        return user
    if PR_REF_RE.match(rev):
        doc = discussions.for_pr_ref(req.app.store, repo, rev)
        if doc is None:
            raise revision_not_found(rev)
        if doc["author"] != user.name:
            raise HubError(403, "Forbidden", f"Only the author of {rev} or the repo owners can push to it")
        return user
    raise HubError(403, "Forbidden", "pass `create_pr=1` as a query parameter to create a Pull Request")


def preupload(req, repo, rev):
    store = req.app.store
    body = req.json()
    create_pr = req.flag("create_pr")
    require_commit_rights(req, repo, rev, create_pr)
    head = repos.resolve_revision(store, repo, rev)
    root = repos.root_of(store, head)
    lfs = repos.lfs_patterns(repos.text_file(store, root, ".gitattributes"))
    gitignore = body.get("gitIgnore")
    ignored = repos.ignore_patterns(gitignore if gitignore is not None else
                                    repos.text_file(store, root, ".gitignore"))
    files = []
    for item in body.get("files", []):
        path = str(item.get("path", ""))
        sample = base64.b64decode(item.get("sample") or "")
        mode = repos.upload_mode(path, int(item.get("size") or 0), sample, lfs)
        entry = repos.lookup(store, root, path)
        remote_oid = None if entry is None or trees.is_dir(entry) else (entry[0] if entry[3] else entry[2])
        files.append({"path": path, "uploadMode": mode, "shouldIgnore": repos.is_ignored(path, ignored),
                      "oid": remote_oid})
    return {"files": files, "commitOid": head}


def lfs_signature(req, oid, size):
    return hmac.new(req.app.secret.encode(), f"{oid}:{size}".encode(), "sha256").hexdigest()


def lfs_batch(req, repo):
    body = req.json()
    req.app.accounts.require_write_token(req.user)
    if body.get("operation") != "upload":
        raise HubError(400, "BadRequest", "The emulator's LFS batch API supports only the upload operation")
    objects = []
    for obj in body.get("objects", []):
        oid, size = str(obj.get("oid", "")), obj.get("size")
        if not SHA256_RE.match(oid) or not isinstance(size, int) or size < 0:
            objects.append({"oid": oid, "size": size or 0, "error": {"code": 422, "message": "Invalid oid or size"}})
        elif req.app.store.has_blob(oid):
            objects.append({"oid": oid, "size": size})
        else:
            upload = f"{req.origin}/lfs-upload/{oid}?size={size}&sig={lfs_signature(req, oid, size)}"
            objects.append({"oid": oid, "size": size, "authenticated": True, "actions": {
                "upload": {"href": upload},
                "verify": {"href": f"{req.origin}/lfs-verify/{oid}"}}})
    return json_response({"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                         headers={"Content-Type": "application/vnd.git-lfs+json"})


def lfs_upload(req, oid):
    """Basic-transfer PUT: authorized by the signed URL (the client sends no token), streamed to disk."""
    size = int(req.arg("size") or -1)
    if not hmac.compare_digest(req.arg("sig") or "", lfs_signature(req, oid, size)):
        raise HubError(403, "Forbidden", "Invalid or expired upload URL")
    if req.content_length is not None and req.content_length != size:
        raise HubError(400, "BadRequest", f"Content-Length {req.content_length} does not match size {size}")
    if req.app.store.has_blob(oid):
        return Response(200)
    try:
        req.app.store.put_stream(req.read_into, size, expected_sha256=oid, git_oid=False)
    except BlobMismatch as err:
        raise HubError(400, "BadRequest", str(err)) from None
    return Response(200)


def lfs_verify(req, oid):
    req.app.accounts.require_write_token(req.user)
    body = req.json()
    store = req.app.store
    if not store.has_blob(oid) or store.blob_path(oid).stat().st_size != body.get("size"):
        raise HubError(404, "LfsObjectNotFound", f"LFS object {oid} of size {body.get('size')} was not uploaded")
    return {"oid": oid, "size": body.get("size")}


def parse_ndjson(body):
    """(header, operations iterator) of an NDJSON commit body, read one line at a time."""
    def parsed():
        for line in body:
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError:
                    raise HubError(400, "BadRequest", "A commit line is not valid JSON") from None

    lines = parsed()
    first = next(lines, None)
    if not first or first.get("key") != "header":
        raise HubError(400, "BadRequest", "The first line of a commit must be its header")
    return first.get("value") or {}, lines


def commit(req, repo, rev):
    """Apply an NDJSON commit to a branch or a PR ref, or open a PR with it (``create_pr=1``); all or
    nothing: an error anywhere (a missing file to delete, a limit) leaves no commit, ref or PR."""
    store, settings = req.app.store, req.app.settings
    create_pr = req.flag("create_pr")
    user = require_commit_rights(req, repo, rev, create_pr)
    with req.body_file() as body, store.transaction():
        header, operations = parse_ndjson(body)
        title, description = header.get("summary") or "Commit", header.get("description") or ""
        parent = header.get("parentCommit")
        ref = repos.full_ref(store, repo, rev)
        if create_pr:
            if not (ref or "").startswith("refs/heads/"):
                raise revision_not_found(rev)
            base_oid = repos.resolve_revision(store, repo, parent) if parent else repos.get_ref(store, repo, ref)
        else:
            if ref is None or not (ref.startswith("refs/heads/") or PR_REF_RE.match(ref)):
                raise revision_not_found(rev)
            base_oid = repos.get_ref(store, repo, ref)
            if parent and not base_oid.startswith(parent):
                raise HubError(412, "PreconditionFailed",
                               "The branch was updated since you opened this page. Please refresh and try again.")
        root, _ = repos.apply_operations(store, repos.root_of(store, base_oid), operations,
                                         settings.get("max_files_per_commit"))
        if create_pr:
            doc = discussions.create(store, repo, user.name, title, description, True, "open", ref, base_oid)
            ref = f"refs/pr/{doc['num']}"
        else:
            doc = discussions.for_pr_ref(store, repo, ref) if PR_REF_RE.match(ref) else None
            if doc and doc["status"] == "merged":
                raise HubError(400, "BadRequest", f"Pull request #{doc['num']} is already merged")
        oid = repos.write_commit(store, repo, ref, base_oid, root, title, description, user.name, settings)
        if doc:
            doc["events"].append(discussions.new_event("commit", user.name, {"subject": title, "oid": oid}))
            discussions.save(store, repo, doc)
    result = {"success": True, "commitOid": oid, "commitUrl": f"{repo.web_url(req.origin)}/commit/{oid}",
              "hookOutput": ""}
    if create_pr:
        result["pullRequestUrl"] = f"{repo.web_url(req.origin)}/discussions/{doc['num']}"
    return result


def super_squash(req, repo, branch):
    """Replace a branch's history by one commit holding its current tree (``super_squash_history``).

    As on the Hub, other refs (tags, PR refs) keep the old commits, and so does ``usedStorage``."""
    store = req.app.store
    user = req.app.accounts.require_write(req.user, repo.namespace)
    with store.transaction():
        ref = repos.full_ref(store, repo, branch)
        if ref is None:
            raise revision_not_found(branch)
        if not ref.startswith("refs/heads/"):
            raise HubError(400, "BadRequest", f"Invalid reference for a branch: {branch}")
        title = str(req.json().get("message") or f"Super-squash branch '{branch}'")
        root = repos.root_of(store, repos.get_ref(store, repo, ref))
        oid = repos.write_commit(store, repo, ref, None, root, title, "", user.name)
    return {"commitId": oid}


# -- branches and tags -------------------------------------------------------------------------
def check_ref_name(name):
    if not repos.REF_NAME_RE.match(name) or name.startswith("refs/"):
        raise HubError(400, "BadRequest", f"Invalid reference name: {name!r}")


def branch(req, repo, name):
    store = req.app.store
    body = req.json() if req.method == "POST" else {}
    req.app.accounts.require_write(req.user, repo.namespace)
    ref = f"refs/heads/{name}"
    with store.transaction():
        if req.method == "DELETE":
            if name == "main":
                raise HubError(403, "Forbidden", "Cannot delete refs/heads/main")
            if not repos.get_ref(store, repo, ref):
                raise revision_not_found(name)
            repos.delete_ref(store, repo, ref)
            return {}
        check_ref_name(name)
        if repos.get_ref(store, repo, ref):
            raise HubError(409, "Conflict", f"Reference {ref} already exists")
        oid = repos.resolve_revision(store, repo, body.get("startingPoint") or "main")
        repos.set_ref(store, repo, ref, oid)
    return {}


def tag(req, repo, name):
    store = req.app.store
    req.app.accounts.require_write(req.user, repo.namespace)
    with store.transaction():
        if req.method == "DELETE":
            if not repos.get_ref(store, repo, f"refs/tags/{name}"):
                raise revision_not_found(name)
            repos.delete_ref(store, repo, f"refs/tags/{name}")
            return {}
        body = req.json()
        tag_name = str(body.get("tag") or "")
        oid = repos.resolve_revision(store, repo, name)
        check_ref_name(tag_name)
        ref = f"refs/tags/{tag_name}"
        if repos.get_ref(store, repo, ref):
            raise HubError(409, "Conflict", f"Reference {ref} already exists")
        repos.set_ref(store, repo, ref, oid)
    return {}


# -- downloads ---------------------------------------------------------------------------------
def resolve(req, repo, rev, path):
    """Raw file bytes with X-Repo-Commit/ETag; exact single-range support (206/416)."""
    store = req.app.store
    oid = repos.resolve_revision(store, repo, rev)
    entry = repos.lookup(store, repos.root_of(store, oid), path) if path else None
    if entry is None or trees.is_dir(entry):
        err = entry_not_found(path)
        err.headers["X-Repo-Commit"] = oid  # lets the client cache the miss under .no_exist/<sha>
        raise err
    sha256, size, git_oid, is_lfs = entry
    etag = sha256 if is_lfs else git_oid
    headers = {"X-Repo-Commit": oid, "ETag": f'"{etag}"', "Accept-Ranges": "bytes",
               "Content-Type": "application/octet-stream",
               "Content-Disposition": f"inline; filename*=UTF-8''{path.rsplit('/', 1)[-1]}"}
    if is_lfs:
        headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(size)})
    start, end, status = 0, size - 1, 200
    range_header = req.headers.get("Range") if req.method == "GET" else None
    if range_header:
        start, end = parse_range(range_header, size, headers)
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return Response(status, headers=headers, file=str(store.blob_path(sha256)), offset=start,
                    length=max(end - start + 1, 0))


def parse_range(value, size, headers):
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", value)
    if not match or match.groups() == ("", ""):
        raise HubError(416, "RangeNotSatisfiable", f"Unsupported Range header: {value}")
    first, last = match.groups()
    if first == "":
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise HubError(416, "RangeNotSatisfiable", f"Range {value} not satisfiable for size {size}")
    return start, end


# -- discussions -------------------------------------------------------------------------------
def discussion_route(req, repo, rest):
    store, method = req.app.store, req.method
    if not rest:
        if method == "GET":
            return discussions.list_json(store, repo, int(req.arg("p") or 0), req.arg("type"), req.arg("status"),
                                         req.arg("author"))
        if method == "POST":
            return create_discussion(req, repo)
    doc = discussions.get(store, repo, rest[0]) if rest and rest[0].isdigit() else None
    if doc is None:
        raise HubError(404, "NotFound", f"No such endpoint: {method} {req.raw_path}")
    if method == "GET" and len(rest) == 1:
        return discussions.details_json(store, repo, doc)
    if method != "POST" or len(rest) not in (2, 4):
        raise HubError(404, "NotFound", f"No such endpoint: {method} {req.raw_path}")
    body = req.json()
    user = req.app.accounts.require_write_token(req.user)
    is_writer = req.app.accounts.is_member(user, repo.namespace)
    action = rest[1] if len(rest) == 2 else rest[3]
    with store.transaction():
        doc = discussions.get(store, repo, doc["num"])
        if len(rest) == 4 and rest[1] == "comment":
            result = edit_comment(doc, rest[2], action, body, user, is_writer)
        elif action == "merge":
            req.app.accounts.require_write(user, repo.namespace)
            if not doc["isPullRequest"]:
                raise HubError(400, "BadRequest", f"#{doc['num']} is a discussion, not a pull request")
            discussions.merge(store, repo, doc, user, body.get("comment"), req.app.settings)
            return {}
        else:
            result = discussion_action(doc, action, body, user, is_writer)
        discussions.save(store, repo, doc)
    return result


def create_discussion(req, repo):
    store = req.app.store
    body = req.json()
    user = req.app.accounts.require_write_token(req.user)
    title = str(body.get("title") or "").strip()
    if not title:
        raise HubError(400, "BadRequest", "A discussion needs a title")
    is_pr = bool(body.get("pullRequest"))
    description = str(body.get("description") or "")
    with store.transaction():
        base_oid = repos.get_ref(store, repo, "refs/heads/main") if is_pr else None
        doc = discussions.create(store, repo, user.name, title, description, is_pr, "draft" if is_pr else "open",
                                 "refs/heads/main" if is_pr else None, base_oid)
    return {"num": doc["num"], "url": f"{repo.web_url(req.origin)}/discussions/{doc['num']}"}


def discussion_action(doc, action, body, user, is_writer):
    may_moderate = is_writer or doc["author"] == user.name
    if action == "comment":
        event = discussions.comment_event(user.name, str(body.get("comment") or ""))
        doc["events"].append(event)
        return {"newMessage": event}
    if not may_moderate:
        raise HubError(403, "Forbidden", f"Only the author of #{doc['num']} or the repo owners can do this")
    if action == "title":
        new_title = str(body.get("title") or "").strip()
        event = discussions.new_event("title-change", user.name, {"from": doc["title"], "to": new_title})
        doc["title"] = new_title
        doc["events"].append(event)
        return {"newTitle": event}
    if action == "status":
        status = body.get("status")
        if status not in ("open", "closed") or doc["status"] == "merged":
            raise HubError(400, "BadRequest", f"Cannot set status {status!r} on a {doc['status']} discussion")
        if body.get("comment"):
            doc["events"].append(discussions.comment_event(user.name, body["comment"]))
        event = discussions.new_event("status-change", user.name, {"status": status})
        doc["status"] = status
        doc["events"].append(event)
        return {"newStatus": event}
    raise HubError(404, "NotFound", f"No such discussion action: {action}")


def edit_comment(doc, comment_id, action, body, user, is_writer):
    event = next((e for e in doc["events"] if e["id"] == comment_id.lower() and e["type"] == "comment"), None)
    if event is None:
        raise HubError(404, "NotFound", f"No comment {comment_id} in #{doc['num']}")
    is_author = event["author"]["name"] == user.name
    if action == "edit" and is_author:
        data = event["data"]
        data["history"].insert(0, dict(data["latest"]))
        data["latest"] = {"raw": str(body.get("content") or ""), "html": f"<p>{body.get('content') or ''}</p>",
                          "updatedAt": repos.now(), "author": {"name": user.name}}
        data.update(edited=True, numEdits=data["numEdits"] + 1)
        return {"updatedComment": event}
    if action == "hide" and (is_author or is_writer):
        event["data"]["hidden"] = True
        return {"updatedComment": event}
    raise HubError(403, "Forbidden", f"You cannot {action} this comment")


# -- emulator control (tests and benchmarks only) ----------------------------------------------
def control(req, segs):
    app, method, what = req.app, req.method, "/".join(segs)
    if what == "health":
        return {"ok": True}
    if what == "faults" and method == "POST":
        fault = req.json()
        re.compile(fault["path_regex"])
        if fault.get("when", "before") not in ("before", "after"):
            raise HubError(400, "BadRequest", "when must be 'before' or 'after'")
        with app.lock:
            app.faults.append({"method": fault.get("method", "*").upper(), "path_regex": fault["path_regex"],
                               "status": int(fault.get("status") or 500), "count": int(fault.get("count", 1)),
                               "code": fault.get("code"), "message": fault.get("message"),
                               "skip": int(fault.get("skip") or 0), "when": fault.get("when") or "before",
                               "disconnect": bool(fault.get("disconnect"))})
        return {"faults": len(app.faults)}
    if what == "faults" and method == "DELETE":
        with app.lock:
            app.faults.clear()
        return {}
    if what == "settings" and method == "POST":
        values = req.json()
        unknown = sorted(set(values) - set(app.settings))
        if unknown:
            raise HubError(400, "BadRequest", f"Unknown settings: {', '.join(unknown)}")
        app.settings.update({k: None if v is None else int(v) for k, v in values.items()})
        return app.settings
    if what == "settings" and method == "DELETE":
        app.settings.clear()
        app.settings.update(DEFAULT_SETTINGS)
        return app.settings
    if what == "aliases" and method == "POST":
        return add_alias(req)
    if what == "requests":
        if method == "DELETE":
            app.log.clear()
            return {}
        return list(app.log)
    raise HubError(404, "NotFound", f"No such control endpoint: {method} {req.raw_path}")


def add_alias(req):
    """Make an old id (``gpt2``, or a moved repo's ``ns/old``) redirect to an existing repo, as the Hub does
    for the canonical repos it moved under organisations in 2024 and for renamed repos."""
    body = req.json()
    repo_type = body.get("type") or "model"
    old, target = str(body.get("alias") or "").split("/"), str(body.get("repo_id") or "").split("/")
    if repo_type not in REPO_TYPES.values() or len(old) > 2 or len(target) != 2 or not all(map(NAME_RE.match, old)):
        raise HubError(400, "BadRequest", "Need a type, an alias of one or two segments and a repo_id ns/name")
    store = req.app.store
    with store.transaction():
        repo = repos.find_repo(store, repo_type, *target)
        if repo is None:
            raise repo_not_found("/".join(target))
        if (len(old) == 2 and repos.find_repo(store, repo_type, *old)) or repos.find_alias(store, repo_type, old):
            raise HubError(409, "Conflict", f"{'/'.join(old)} is already a repo or an alias")
        repos.add_alias(store, repo, old)
    return {"alias": "/".join(old), "repo_id": repo.repo_id}
