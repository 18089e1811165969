"""Discussions and pull requests: events, status changes, diffs and merges.

A discussion is one JSON document per (repo, num), with its kind, status and author beside it as
columns so that listings filter and page in SQL and parse only the page they return. A pull request
also owns the ref ``refs/pr/N``, remembers its base branch (``base``) and the commit it started from
(``baseOid``).
"""

import difflib
import json
import uuid

from . import repos
from .errors import HubError


def new_event(kind, author, data):
    return {"id": uuid.uuid4().hex[:24], "type": kind, "createdAt": repos.now(),
            "author": {"name": author, "type": "user", "isOwner": False}, "data": data}


def comment_event(author, text):
    return new_event("comment", author, {
        "edited": False, "hidden": False, "numEdits": 0, "history": [],
        "latest": {"raw": text, "html": f"<p>{text}</p>", "updatedAt": repos.now(), "author": {"name": author}}})


def create(store, repo, author, title, description, is_pr, status, base_ref=None, base_oid=None):
    """A new discussion (or PR, with ``refs/pr/N`` at ``base_oid``) opened by its description comment."""
    with store.transaction():
        num = store.one("SELECT next_num FROM repos WHERE id = ?", repo.id)["next_num"]
        store.execute("UPDATE repos SET next_num = ? WHERE id = ?", num + 1, repo.id)
        doc = {"num": num, "title": title, "status": status, "isPullRequest": is_pr, "author": author,
               "createdAt": repos.now(), "pinned": False, "events": [comment_event(author, description)]}
        if is_pr:
            doc.update(base=base_ref, baseOid=base_oid, mergeCommitId=None)
            repos.set_ref(store, repo, f"refs/pr/{num}", base_oid)
        save(store, repo, doc)
    return doc


def save(store, repo, doc):
    store.execute("INSERT OR REPLACE INTO discussions (repo_id, num, is_pr, status, author, doc) "
                  "VALUES (?, ?, ?, ?, ?, ?)", repo.id, doc["num"], int(doc["isPullRequest"]), doc["status"],
                  doc["author"], json.dumps(doc))


def get(store, repo, num):
    row = store.one("SELECT doc FROM discussions WHERE repo_id = ? AND num = ?", repo.id, int(num))
    if row is None:
        raise HubError(404, "DiscussionNotFound", f"Discussion #{num} not found in {repo.repo_id}")
    return json.loads(row["doc"])


def for_pr_ref(store, repo, ref):
    return get(store, repo, ref.rsplit("/", 1)[1])


def summary_json(repo, doc):
    return {"num": doc["num"], "title": doc["title"], "status": doc["status"], "createdAt": doc["createdAt"],
            "isPullRequest": doc["isPullRequest"], "pinned": doc["pinned"],
            "numComments": sum(e["type"] == "comment" for e in doc["events"]),
            "author": {"name": doc["author"], "type": "user"}, "topReactions": [],
            "repo": {"name": repo.repo_id, "type": repo.type}}


def details_json(store, repo, doc):
    item = summary_json(repo, doc)
    item["events"] = doc["events"]
    if doc["isPullRequest"]:
        base, head, target = pr_trees(store, repo, doc)
        item["changes"] = {"base": doc["base"]}
        if doc.get("mergeCommitId"):
            item["changes"]["mergeCommitId"] = doc["mergeCommitId"]
        conflicts = ([] if doc["status"] in ("merged", "closed")
                     else repos.merge_trees(store, base, target, head, save=False)[1])
        item["filesWithConflicts"] = conflicts
        item["diff"] = unified_diff(store, repos.changed_paths(store, base, head))
    return item


def list_json(store, repo, page, kind, status, author, page_size=50):
    """One page of discussions, newest first, filtered as the Hub does (open includes drafts, closed merged)."""
    where, args = ["repo_id = ?"], [repo.id]
    if kind in ("discussion", "pull_request"):
        where.append("is_pr = ?")
        args.append(int(kind == "pull_request"))
    if status == "open":
        where.append("status IN ('open', 'draft')")
    elif status == "closed":
        where.append("status IN ('closed', 'merged')")
    if author:
        where.append("author = ?")
        args.append(author)
    condition = " AND ".join(where)
    counts = store.one(f"SELECT count(*) AS n, coalesce(sum(status IN ('closed', 'merged')), 0) AS closed "
                       f"FROM discussions WHERE {condition}", *args)
    start = page * page_size
    rows = store.query(f"SELECT doc FROM discussions WHERE {condition} ORDER BY num DESC LIMIT ? OFFSET ?",
                       *args, page_size, start)
    return {"discussions": [summary_json(repo, json.loads(r["doc"])) for r in rows], "count": counts["n"],
            "start": start, "numClosedDiscussions": counts["closed"]}


def pr_trees(store, repo, doc):
    """Root trees of a pull request: (where it started, its head, the target branch now)."""
    head_oid = repos.get_ref(store, repo, f"refs/pr/{doc['num']}") or doc["baseOid"]
    target_oid = repos.get_ref(store, repo, doc["base"]) or doc["baseOid"]
    return tuple(repos.root_of(store, oid) for oid in (doc["baseOid"], head_oid, target_oid))


def unified_diff(store, changes):
    """A simplified ``git diff`` of {path: (old entry, new entry)}: text files under 1 MB in full."""
    parts = []
    for path, (old, new) in sorted(changes.items()):
        parts.append(f"diff --git a/{path} b/{path}\n")
        if old is None:
            parts.append("new file mode 100644\n")
        elif new is None:
            parts.append("deleted file mode 100644\n")
        if any(e and (e[3] or e[1] > 1 << 20) for e in (old, new)):
            parts.append(f"Binary files a/{path} and b/{path} differ\n")
            continue
        before = store.read_blob(old[0]).decode("utf-8", "replace").splitlines(True) if old else []
        after = store.read_blob(new[0]).decode("utf-8", "replace").splitlines(True) if new else []
        parts.extend(difflib.unified_diff(before, after, f"a/{path}" if old else "/dev/null",
                                          f"b/{path}" if new else "/dev/null"))
    return "".join(parts)


def merge(store, repo, doc, user, comment=None, limits=None):
    """Move the base branch to a new commit holding the PR's changes; 409 when they conflict."""
    if doc["status"] != "open":
        raise HubError(400, "BadRequest", f"Pull request #{doc['num']} is {doc['status']}: only an open pull request "
                       "can be merged (change a draft's status to open first)")
    with store.transaction():
        base, head, target = pr_trees(store, repo, doc)
        merged, conflicts = repos.merge_trees(store, base, target, head)
        if conflicts:
            raise HubError(409, "MergeConflict", "Cannot merge pull request #{}: conflicting files: {}".format(
                doc["num"], ", ".join(conflicts)))
        target_oid = repos.get_ref(store, repo, doc["base"])
        oid = repos.write_commit(store, repo, doc["base"], target_oid, merged, doc["title"],
                                 f"Merge pull request #{doc['num']}", user.name, limits)
        if comment:
            doc["events"].append(comment_event(user.name, comment))
        doc["events"].append(new_event("status-change", user.name, {"status": "merged"}))
        doc.update(status="merged", mergeCommitId=oid)
        save(store, repo, doc)
    return oid
