"""The Hub emulator through the real huggingface_hub client: repos, commits, LFS, downloads,
pull requests, branches and tags, and the typed errors clients rely on."""

import hashlib
import uuid
from pathlib import Path

import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationCopy,
    CommitOperationDelete,
    HfApi,
    HfFileSystem,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub.lfs import post_lfs_batch_info
from huggingface_hub.errors import (
    BadRequestError,
    EntryNotFoundError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)


def unique(name):
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def api(hub):
    return HfApi(endpoint=hub.endpoint, token=hub.token)


@pytest.fixture
def repo_id(api):
    repo_id = f"org/{unique('ds')}"
    api.create_repo(repo_id, repo_type="dataset")
    return repo_id


def download(hub, repo_id, filename, **kwargs):
    return Path(hf_hub_download(repo_id, filename, repo_type="dataset", token=hub.token, **kwargs)).read_bytes()


def test_whoami_and_tokens(hub):
    me = HfApi(token=hub.token).whoami()
    assert me["name"] == "alice" and [org["name"] for org in me["orgs"]] == ["org"]
    assert HfApi(token=hub.read_token).whoami()["auth"]["accessToken"]["role"] == "read"
    assert HfApi(token=hub.bob_token).whoami()["orgs"] == []
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(token="hf_not_a_token").whoami()
    assert err.value.response.status_code == 401


def test_create_repo_info_and_visibility(hub, api):
    repo_id = f"org/{unique('Private')}"
    url = api.create_repo(repo_id, repo_type="dataset", private=True)
    assert url == f"{hub.endpoint}/datasets/{repo_id}" and url.repo_id == repo_id
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(repo_id, repo_type="dataset")
    assert err.value.response.status_code == 409
    assert api.create_repo(repo_id, repo_type="dataset", exist_ok=True).repo_id == repo_id

    info = api.dataset_info(repo_id.upper().replace("ORG/", "org/"))  # repo ids are case-insensitive
    assert info.id == repo_id and info.private and len(info.sha) == 40
    assert [s.rfilename for s in info.siblings] == [".gitattributes"]
    commits = api.list_repo_commits(repo_id, repo_type="dataset")
    assert [(c.title, c.authors) for c in commits] == [("initial commit", ["alice"])]

    for token in (hub.bob_token, False):
        with pytest.raises(RepositoryNotFoundError):
            HfApi(token=token).dataset_info(repo_id)
    api.update_repo_settings(repo_id, repo_type="dataset", private=False)
    assert HfApi(token=False).dataset_info(repo_id).id == repo_id  # public: anonymous reads work
    api.delete_repo(repo_id, repo_type="dataset")
    assert not api.repo_exists(repo_id, repo_type="dataset")


def test_writes_need_rights_on_the_namespace(hub, api, repo_id):
    bob = HfApi(token=hub.bob_token)
    with pytest.raises(HfHubHTTPError) as err:
        bob.create_repo(f"org/{unique('x')}", repo_type="dataset")
    assert err.value.response.status_code == 403
    for token in (hub.bob_token, hub.read_token):
        with pytest.raises(HfHubHTTPError) as err:
            HfApi(token=token).upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id,
                                           repo_type="dataset")
        assert err.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(token="hf_wrong").upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id,
                                            repo_type="dataset")
    assert err.value.response.status_code == 401
    assert bob.create_repo(unique("mine"), repo_type="dataset").repo_id.startswith("bob/")


def test_commit_regular_and_lfs_files(hub, api, repo_id):
    big = b"0123456789abcdef" * (11 * 1024 * 1024 // 16)  # text, but over the 10 MB LFS threshold
    tiny_bin = b"\x00\x01binary"
    info = api.create_commit(repo_id, [CommitOperationAdd("small.txt", b"hello"),
                                       CommitOperationAdd("data/big.txt", big),
                                       CommitOperationAdd("data/tiny.bin", tiny_bin)],
                             commit_message="add files", repo_type="dataset")
    assert info.commit_url == f"{hub.endpoint}/datasets/{repo_id}/commit/{info.oid}"

    entries = {e.path: e for e in api.get_paths_info(repo_id, ["small.txt", "data/big.txt", "data/tiny.bin",
                                                               "data", "missing"], repo_type="dataset")}
    assert set(entries) == {"small.txt", "data/big.txt", "data/tiny.bin", "data"}
    assert entries["small.txt"].lfs is None and entries["small.txt"].size == 5
    assert entries["small.txt"].blob_id == hashlib.sha1(b"blob 5\0hello").hexdigest()
    assert entries["data/big.txt"].lfs.sha256 == hashlib.sha256(big).hexdigest()
    assert entries["data/tiny.bin"].lfs.size == len(tiny_bin)  # *.bin is LFS-tracked by .gitattributes

    assert download(hub, repo_id, "data/big.txt") == big
    assert download(hub, repo_id, "data/tiny.bin") == tiny_bin
    meta = get_hf_file_metadata(hf_hub_url(repo_id, "data/big.txt", repo_type="dataset"), token=hub.token)
    assert (meta.commit_hash, meta.etag, meta.size) == (info.oid, hashlib.sha256(big).hexdigest(), len(big))
    siblings = {s.rfilename: s for s in api.dataset_info(repo_id, files_metadata=True).siblings}
    assert siblings["data/big.txt"].lfs.sha256 == hashlib.sha256(big).hexdigest()
    assert siblings["small.txt"].lfs is None and siblings["small.txt"].size == 5

    blob = Path(hub.data_dir) / "blobs" / hashlib.sha256(big).hexdigest()[:2] / hashlib.sha256(big).hexdigest()
    assert blob.stat().st_size == len(big)  # content addressed on disk

    api.create_commit(repo_id, [CommitOperationCopy("data/tiny.bin", "copies/tiny.bin"),  # LFS copy: by oid
                                CommitOperationCopy("small.txt", "copies/small.txt")],  # regular: re-sent
                      commit_message="copies", repo_type="dataset")
    assert download(hub, repo_id, "copies/tiny.bin") == tiny_bin
    assert download(hub, repo_id, "copies/small.txt") == b"hello"
    info = api.dataset_info(repo_id)  # the no-op below must return this head

    # The same content again is a no-op: preupload reports the remote oid, so no commit is made.
    again = api.upload_file(path_or_fileobj=b"hello", path_in_repo="small.txt", repo_id=repo_id,
                            repo_type="dataset")
    assert again.oid == info.sha


def test_commit_semantics(hub, api, repo_id):
    head = api.upload_folder(folder_path=make_folder(hub), repo_id=repo_id, repo_type="dataset").oid
    assert sorted(api.list_repo_files(repo_id, repo_type="dataset")) == [
        ".gitattributes", "a.txt", "sub/b.txt", "sub/deep/c.txt"]

    stale = api.list_repo_commits(repo_id, repo_type="dataset")[1].commit_id
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(repo_id, [CommitOperationAdd("x.txt", b"x")], commit_message="stale",
                          repo_type="dataset", parent_commit=stale)
    assert err.value.response.status_code == 412 and "branch was updated" in str(err.value)
    api.create_commit(repo_id, [CommitOperationAdd("x.txt", b"x")], commit_message="fresh", repo_type="dataset",
                      parent_commit=head)

    with pytest.raises(EntryNotFoundError):
        api.delete_file("nope.txt", repo_id, repo_type="dataset")
    api.create_commit(repo_id, [CommitOperationDelete("sub")], commit_message="drop a folder", repo_type="dataset")
    assert sorted(api.list_repo_files(repo_id, repo_type="dataset")) == [".gitattributes", "a.txt", "x.txt"]
    with pytest.raises(HfHubHTTPError) as err:
        api.upload_file(path_or_fileobj=b"x", path_in_repo="..\\evil", repo_id=repo_id, repo_type="dataset")
    assert err.value.response.status_code == 422


def make_folder(hub):
    folder = Path(hub.data_dir).parent / unique("folder")
    for rel, text in {"a.txt": "a", "sub/b.txt": "b", "sub/deep/c.txt": "c"}.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def test_tree_listing_paths_and_pagination(hub, api, repo_id):
    api.upload_folder(folder_path=make_folder(hub), repo_id=repo_id, repo_type="dataset", commit_message="tree")
    api.upload_file(path_or_fileobj=b"later", path_in_repo="a.txt", repo_id=repo_id, repo_type="dataset",
                    commit_message="touch a")
    top = {e.path: type(e).__name__ for e in api.list_repo_tree(repo_id, repo_type="dataset")}
    assert top == {"sub": "RepoFolder", ".gitattributes": "RepoFile", "a.txt": "RepoFile"}
    hub.settings(tree_page_size=2)  # force several Link-paginated pages
    try:
        recursive = [e.path for e in api.list_repo_tree(repo_id, repo_type="dataset", recursive=True)]
    finally:
        hub.settings(tree_page_size=1000)
    assert sorted(recursive) == [".gitattributes", "a.txt", "sub", "sub/b.txt", "sub/deep", "sub/deep/c.txt"]
    expanded = {e.path: e for e in api.list_repo_tree(repo_id, "sub", repo_type="dataset", expand=True)}
    assert expanded["sub/b.txt"].last_commit.title == "tree"
    assert {e.path: e.last_commit.title for e in api.list_repo_tree(repo_id, repo_type="dataset", expand=True)}[
        "a.txt"] == "touch a"
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(repo_id, "no/such/dir", repo_type="dataset"))


def test_snapshot_download_and_hffs_range_reads(hub, api, repo_id):
    payload = bytes(range(256)) * 4096  # 1 MiB of binary: LFS
    api.upload_file(path_or_fileobj=payload, path_in_repo="data/blob.bin", repo_id=repo_id, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"text", path_in_repo="notes.txt", repo_id=repo_id, repo_type="dataset")
    folder = Path(snapshot_download(repo_id, repo_type="dataset", token=hub.token))
    assert (folder / "data/blob.bin").read_bytes() == payload and (folder / "notes.txt").read_text() == "text"

    fs = HfFileSystem(endpoint=hub.endpoint, token=hub.token, skip_instance_cache=True)
    assert sorted(fs.ls(f"datasets/{repo_id}", detail=False)) == [
        f"datasets/{repo_id}/.gitattributes", f"datasets/{repo_id}/data", f"datasets/{repo_id}/notes.txt"]
    assert fs.glob(f"datasets/{repo_id}/**/*.bin") == [f"datasets/{repo_id}/data/blob.bin"]
    with fs.open(f"datasets/{repo_id}/data/blob.bin", "rb", block_size=4096) as f:
        f.seek(1000)
        assert f.read(10) == payload[1000:1010]
        f.seek(len(payload) - 7)
        assert f.read() == payload[-7:]
    assert fs.cat_file(f"datasets/{repo_id}/data/blob.bin", start=5, end=9) == payload[5:9]
    with fs.open(f"datasets/{repo_id}/notes.txt", "rb", block_size=0) as f:  # streaming read to EOF
        assert f.read() == b"text"
    ranged = [r for r in hub.requests() if "blob.bin" in r["path"] and r["status"] == 206]
    assert ranged, "HfFileSystem range reads must be answered with 206"


def test_pull_request_flow(hub, api, repo_id):
    api.upload_file(path_or_fileobj=b"v1\n", path_in_repo="f.txt", repo_id=repo_id, repo_type="dataset")
    pr = api.create_commit(repo_id, [CommitOperationAdd("f.txt", b"v2\n"), CommitOperationAdd("new.txt", b"n")],
                           commit_message="Propose v2", commit_description="please", repo_type="dataset",
                           create_pr=True)
    assert pr.pr_url == f"{hub.endpoint}/datasets/{repo_id}/discussions/{pr.pr_num}"
    assert pr.pr_revision == f"refs/pr/{pr.pr_num}"
    assert download(hub, repo_id, "f.txt") == b"v1\n"  # main untouched
    assert download(hub, repo_id, "f.txt", revision=pr.pr_revision) == b"v2\n"
    snap = Path(snapshot_download(repo_id, repo_type="dataset", revision=pr.pr_revision, token=hub.token))
    assert (snap / "new.txt").read_bytes() == b"n"

    bob = HfApi(token=hub.bob_token)  # anyone may open a PR on a public repo and push to their own PR
    bob_pr = bob.create_commit(repo_id, [CommitOperationAdd("bob.txt", b"b")], commit_message="Bob's idea",
                               repo_type="dataset", create_pr=True)
    bob.create_commit(repo_id, [CommitOperationAdd("bob2.txt", b"b2")], commit_message="more",
                      repo_type="dataset", revision=bob_pr.pr_revision)
    with pytest.raises(HfHubHTTPError) as err:
        bob.create_commit(repo_id, [CommitOperationAdd("f.txt", b"x")], commit_message="sneaky",
                          repo_type="dataset", revision=pr.pr_revision)
    assert err.value.response.status_code == 403

    api.create_commit(repo_id, [CommitOperationAdd("more.txt", b"m")], commit_message="follow-up",
                      repo_type="dataset", revision=pr.pr_revision)
    assert [c.title for c in api.list_repo_commits(repo_id, repo_type="dataset", revision=pr.pr_revision)][:2] == [
        "follow-up", "Propose v2"]

    listed = list(api.get_repo_discussions(repo_id, repo_type="dataset"))
    assert [d.num for d in listed] == [bob_pr.pr_num, pr.pr_num]  # newest first
    assert [d.num for d in api.get_repo_discussions(repo_id, repo_type="dataset", author="bob")] == [bob_pr.pr_num]
    details = api.get_discussion_details(repo_id, pr.pr_num, repo_type="dataset")
    assert details.is_pull_request and details.status == "open" and details.target_branch == "refs/heads/main"
    assert "-v1\n+v2" in details.diff and details.conflicting_files == []
    assert [e.type for e in details.events] == ["comment", "commit", "commit"]
    assert details.events[0].content == "please"

    comment = api.comment_discussion(repo_id, pr.pr_num, "looks good", repo_type="dataset")
    edited = api.edit_discussion_comment(repo_id, pr.pr_num, comment.id, "looks great", repo_type="dataset")
    assert edited.content == "looks great" and edited.edited
    assert api.hide_discussion_comment(repo_id, pr.pr_num, comment.id, repo_type="dataset").hidden
    assert api.rename_discussion(repo_id, pr.pr_num, "v2 please", repo_type="dataset").new_title == "v2 please"

    api.merge_pull_request(repo_id, pr.pr_num, comment="merging", repo_type="dataset")
    merged = api.get_discussion_details(repo_id, pr.pr_num, repo_type="dataset")
    assert merged.status == "merged" and merged.merge_commit_oid == api.dataset_info(repo_id).sha
    assert download(hub, repo_id, "more.txt") == b"m" and download(hub, repo_id, "f.txt") == b"v2\n"
    assert [d.num for d in api.get_repo_discussions(repo_id, repo_type="dataset", discussion_status="open")] == [
        bob_pr.pr_num]


def forbidden(call, *args, **kwargs):
    """Run a client call that must fail with 403; return the error."""
    with pytest.raises(HfHubHTTPError) as err:
        call(*args, **kwargs)
    assert err.value.response.status_code == 403, err.value
    return err.value


def test_read_token_writes_nothing(hub, api, repo_id):
    """A read token may not write at all, even where its user has write rights: no PR, discussion,
    comment, status change, merge, LFS upload, branch, tag, settings or repo."""
    pr = api.create_commit(repo_id, [CommitOperationAdd("f.txt", b"x")], commit_message="PR", repo_type="dataset",
                           create_pr=True)
    comment = api.comment_discussion(repo_id, pr.pr_num, "hi", repo_type="dataset")
    read = HfApi(token=hub.read_token)
    small, large = CommitOperationAdd("r.txt", b"r"), CommitOperationAdd("r.bin", b"\0" * 100)
    for operation in (small, large):
        assert "read-only" in str(forbidden(read.create_commit, repo_id, [operation], commit_message="r",
                                            repo_type="dataset", create_pr=True))
    forbidden(read.create_commit, repo_id, [small], commit_message="r", repo_type="dataset",
              revision=pr.pr_revision)
    forbidden(read.create_pull_request, repo_id, title="r", repo_type="dataset")
    forbidden(read.create_discussion, repo_id, title="r", repo_type="dataset")
    for call, args in [(read.comment_discussion, ("r",)), (read.rename_discussion, ("r",)),
                       (read.change_discussion_status, ("closed",)), (read.merge_pull_request, ()),
                       (read.edit_discussion_comment, (comment.id, "r")),
                       (read.hide_discussion_comment, (comment.id,))]:
        forbidden(call, repo_id, pr.pr_num, *args, repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as err:  # the LFS batch API too, called as the client calls it
        post_lfs_batch_info([large.upload_info], token=hub.read_token, repo_type="dataset", repo_id=repo_id,
                            endpoint=hub.endpoint)
    assert err.value.response.status_code == 403
    forbidden(read.create_branch, repo_id, branch="r", repo_type="dataset")
    forbidden(read.create_tag, repo_id, tag="r", repo_type="dataset")
    forbidden(read.update_repo_settings, repo_id, private=True, repo_type="dataset")
    forbidden(read.create_repo, f"org/{unique('r')}", repo_type="dataset")
    forbidden(read.delete_repo, repo_id, repo_type="dataset")
    details = api.get_discussion_details(repo_id, pr.pr_num, repo_type="dataset")
    assert (details.status, details.title, len(details.events)) == ("open", "PR", 3)
    assert [d.num for d in api.get_repo_discussions(repo_id, repo_type="dataset")] == [pr.pr_num]
    assert read.list_repo_files(repo_id, repo_type="dataset") == [".gitattributes"]  # reads still work


def test_outsider_may_open_prs_and_discuss_but_not_push_or_merge(hub, api, repo_id):
    """bob (write token, not in org) on org's public repo: PRs, discussions and comments yes; pushing to a
    branch, merging, or moderating others' threads no. On a private repo of org he sees nothing."""
    bob = HfApi(token=hub.bob_token)
    pr = bob.create_commit(repo_id, [CommitOperationAdd("b.txt", b"b"), CommitOperationAdd("b.bin", b"\0" * 100)],
                           commit_message="Bob's PR", repo_type="dataset", create_pr=True)
    discussion = bob.create_discussion(repo_id, title="A question", repo_type="dataset")
    draft = bob.create_pull_request(repo_id, title="Bob's draft", repo_type="dataset")
    alice_pr = api.create_pull_request(repo_id, title="Alice's", repo_type="dataset")
    bob.comment_discussion(repo_id, alice_pr.num, "a remark", repo_type="dataset")
    assert bob.rename_discussion(repo_id, pr.pr_num, "Bob's PR v2", repo_type="dataset").new_title == "Bob's PR v2"
    assert bob.change_discussion_status(repo_id, draft.num, "closed", repo_type="dataset").new_status == "closed"

    err = forbidden(bob.create_commit, repo_id, [CommitOperationAdd("b.txt", b"b")], commit_message="direct",
                    repo_type="dataset")
    assert "create_pr=1" in str(err)
    forbidden(bob.merge_pull_request, repo_id, pr.pr_num, repo_type="dataset")
    forbidden(bob.rename_discussion, repo_id, alice_pr.num, "mine", repo_type="dataset")
    forbidden(bob.change_discussion_status, repo_id, alice_pr.num, "closed", repo_type="dataset")
    forbidden(bob.create_branch, repo_id, branch="bob", repo_type="dataset")
    forbidden(bob.create_tag, repo_id, tag="bob", repo_type="dataset")
    forbidden(bob.delete_repo, repo_id, repo_type="dataset")
    assert api.list_repo_files(repo_id, repo_type="dataset") == [".gitattributes"]

    api.merge_pull_request(repo_id, pr.pr_num, repo_type="dataset")  # the owners can merge bob's PR
    assert sorted(api.list_repo_files(repo_id, repo_type="dataset")) == [".gitattributes", "b.bin", "b.txt"]
    assert api.get_discussion_details(repo_id, discussion.num, repo_type="dataset").author == "bob"

    private = f"org/{unique('private')}"
    api.create_repo(private, repo_type="dataset", private=True)
    for call in (bob.create_discussion, bob.create_pull_request):
        with pytest.raises(RepositoryNotFoundError):
            call(private, title="x", repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        bob.create_commit(private, [CommitOperationAdd("x", b"x")], commit_message="x", repo_type="dataset",
                          create_pr=True)


def test_draft_pull_request_and_conflicting_merge(hub, api, repo_id):
    api.upload_file(path_or_fileobj=b"base", path_in_repo="f.txt", repo_id=repo_id, repo_type="dataset")
    draft = api.create_pull_request(repo_id, title="Draft", repo_type="dataset")
    assert draft.status == "draft"
    assert api.dataset_info(repo_id, revision=f"refs/pr/{draft.num}").sha == api.dataset_info(repo_id).sha
    api.create_commit(repo_id, [CommitOperationAdd("f.txt", b"from draft")], commit_message="draft change",
                      repo_type="dataset", revision=f"refs/pr/{draft.num}")
    with pytest.raises(BadRequestError):
        api.merge_pull_request(repo_id, draft.num, repo_type="dataset")
    api.change_discussion_status(repo_id, draft.num, "open", repo_type="dataset")

    other = api.create_commit(repo_id, [CommitOperationAdd("f.txt", b"from other")], commit_message="other change",
                              repo_type="dataset", create_pr=True)
    api.merge_pull_request(repo_id, other.pr_num, repo_type="dataset")
    assert api.get_discussion_details(repo_id, draft.num, repo_type="dataset").conflicting_files == ["f.txt"]
    with pytest.raises(HfHubHTTPError) as err:
        api.merge_pull_request(repo_id, draft.num, repo_type="dataset")
    assert err.value.response.status_code == 409 and "f.txt" in str(err.value)
    closed = api.change_discussion_status(repo_id, draft.num, "closed", comment="superseded", repo_type="dataset")
    assert closed.new_status == "closed"

    discussion = api.create_discussion(repo_id, title="A question", description="why?", repo_type="dataset")
    assert not discussion.is_pull_request and discussion.status == "open"
    with pytest.raises(RevisionNotFoundError):
        api.create_commit(repo_id, [CommitOperationAdd("z", b"z")], commit_message="z", repo_type="dataset",
                          revision=api.dataset_info(repo_id).sha, create_pr=True)


def test_branches_and_tags(hub, api, repo_id):
    api.create_branch(repo_id, branch="dev", repo_type="dataset")
    api.create_branch(repo_id, branch="dev", repo_type="dataset", exist_ok=True)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_branch(repo_id, branch="dev", repo_type="dataset")
    assert err.value.response.status_code == 409
    api.upload_file(path_or_fileobj=b"dev only", path_in_repo="d.txt", repo_id=repo_id, repo_type="dataset",
                    revision="dev")
    assert download(hub, repo_id, "d.txt", revision="dev") == b"dev only"
    with pytest.raises(EntryNotFoundError):
        download(hub, repo_id, "d.txt")
    api.create_branch(repo_id, branch="feature/x", revision="dev", repo_type="dataset")
    assert download(hub, repo_id, "d.txt", revision="feature/x") == b"dev only"

    api.create_tag(repo_id, tag="v1", revision="dev", tag_message="first", repo_type="dataset")
    with pytest.raises(HfHubHTTPError):
        api.create_tag(repo_id, tag="v1", repo_type="dataset")
    with pytest.raises(RevisionNotFoundError):
        api.create_tag(repo_id, tag="v2", revision="nope", repo_type="dataset")
    assert download(hub, repo_id, "d.txt", revision="v1") == b"dev only"
    refs = api.list_repo_refs(repo_id, repo_type="dataset", include_pull_requests=True)
    assert sorted(b.name for b in refs.branches) == ["dev", "feature/x", "main"]
    assert [t.name for t in refs.tags] == ["v1"] and refs.pull_requests == []

    api.delete_branch(repo_id, branch="feature/x", repo_type="dataset")
    api.delete_tag(repo_id, tag="v1", repo_type="dataset")
    with pytest.raises(HfHubHTTPError, match="Cannot delete refs/heads/main"):
        api.delete_branch(repo_id, branch="main", repo_type="dataset")
    with pytest.raises(RevisionNotFoundError):
        api.dataset_info(repo_id, revision="v1")


def test_typed_errors(hub, api, repo_id):
    missing_repo = f"org/{unique('missing')}"
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info(missing_repo)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(missing_repo, "README.md", repo_type="dataset", token=hub.token)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("gpt2")
    with pytest.raises(RevisionNotFoundError):
        api.dataset_info(repo_id, revision="nope")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, ".gitattributes", repo_type="dataset", revision="nope", token=hub.token)
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(repo_id, "missing.txt", repo_type="dataset", token=hub.token)
    assert api.file_exists(repo_id, ".gitattributes", repo_type="dataset")
    assert not api.file_exists(repo_id, "missing.txt", repo_type="dataset")
    with pytest.raises(ValueError, match="Invalid metadata"):
        api.upload_file(path_or_fileobj=b"---\nmodel-index: foo\n---\n", path_in_repo="README.md",
                        repo_id=repo_id, repo_type="dataset")


def test_fault_injection(hub, api, repo_id):
    hub.fail_next("GET", f"/api/datasets/{repo_id}$", 503)
    with pytest.raises(HfHubHTTPError) as err:
        api.dataset_info(repo_id)
    assert err.value.response.status_code == 503
    assert api.dataset_info(repo_id).id == repo_id  # only the next matching request fails
    hub.fail_next("HEAD", r"/resolve/.*/\.gitattributes", 404, code="EntryNotFound", count=2)
    assert not api.file_exists(repo_id, ".gitattributes", repo_type="dataset")
    assert not api.file_exists(repo_id, ".gitattributes", repo_type="dataset")
    assert api.file_exists(repo_id, ".gitattributes", repo_type="dataset")


def test_model_repo(hub, api):
    repo_id = f"alice/{unique('model')}"
    url = api.create_repo(repo_id)
    assert url == f"{hub.endpoint}/{repo_id}"
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=repo_id)
    assert Path(hf_hub_download(repo_id, "config.json", token=hub.token)).read_bytes() == b"{}"
    assert api.model_info(repo_id).id == repo_id


def test_run_by_hand_with_default_user_and_persistent_data(tmp_path):
    """`python -m tests.hub_emulator` with no --user: alice/hf_emulator_alice_token; state survives a restart."""
    import socket

    from tests.hub_emulator.auth import DEFAULT_USERS
    from tests.hub_emulator.fixtures import start_emulator

    token = DEFAULT_USERS[0].split(":")[1]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    for round_ in range(2):
        process = start_emulator(port, tmp_path, [], [])
        try:
            api = HfApi(endpoint=endpoint, token=token)
            assert api.whoami()["name"] == "alice"
            if round_ == 0:
                api.create_repo("org/kept", repo_type="dataset")
                api.upload_file(path_or_fileobj=b"still here", path_in_repo="f.txt", repo_id="org/kept",
                                repo_type="dataset")
            path = hf_hub_download("org/kept", "f.txt", repo_type="dataset", endpoint=endpoint, token=token,
                                   cache_dir=tmp_path / f"cache{round_}")
            assert Path(path).read_bytes() == b"still here"
        finally:
            process.terminate()
            process.wait()
