"""The Hub emulator's fidelity on what issue 13's tools rely on, through the real clients: old and
canonical repo ids, typed 404s on every route, error messages, tags, deleting files and folders,
atomic commits, parent_commit conflicts, storage fields, the Hub's repo limits and fault modes."""

import io
import uuid

import datasets
import httpx2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    HfFileSystem,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub.errors import (
    BadRequestError,
    EntryNotFoundError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.lfs import post_lfs_batch_info
from huggingface_hub.utils import get_session

BRANCH_UPDATED = "The branch was updated since you opened this page. Please refresh and try again."


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


def parquet(**columns):
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def read(hub, repo_id, filename, **kwargs):
    with open(hf_hub_download(repo_id, filename, repo_type="dataset", token=hub.token, **kwargs), "rb") as f:
        return f.read()


def files(api, repo_id, **kwargs):
    return sorted(api.list_repo_files(repo_id, repo_type="dataset", **kwargs))


# -- repo ids --------------------------------------------------------------------------------------
def test_canonical_ids_redirect_on_every_route(hub, api):
    """`gpt2`-style ids answer 307 to the repo they moved to (as the Hub does since it moved canonical
    repos under organisations): API, resolve, LFS batch, commits, PRs, refs, for models and datasets."""
    model, dataset = unique("gpt"), unique("squad")
    api.create_repo(f"org/{model}")
    api.create_repo(f"org/{dataset}", repo_type="dataset")
    hub.add_alias(model, f"org/{model}")
    hub.add_alias(dataset, f"org/{dataset}", repo_type="dataset")

    assert api.model_info(model).id == f"org/{model}"
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=model)
    api.upload_file(path_or_fileobj=b"\0weights", path_in_repo="w.bin", repo_id=model)  # LFS batch, redirected
    assert open(hf_hub_download(model, "w.bin", token=hub.token), "rb").read() == b"\0weights"
    assert [e.path for e in api.list_repo_tree(model)] == [".gitattributes", "config.json", "w.bin"]
    assert [e.path for e in api.get_paths_info(model, ["config.json", "nope"])] == ["config.json"]
    pr = api.create_commit(model, [CommitOperationAdd("a.txt", b"a")], commit_message="PR", create_pr=True)
    assert pr.pr_url == f"{hub.endpoint}/org/{model}/discussions/1"
    assert [d.num for d in api.get_repo_discussions(model)] == [1]
    assert api.get_discussion_details(model, 1).is_pull_request
    api.merge_pull_request(model, 1)
    api.create_tag(model, tag="v1")
    api.create_branch(model, branch="dev")
    refs = api.list_repo_refs(model)
    assert ([b.name for b in refs.branches], [t.name for t in refs.tags]) == (["dev", "main"], ["v1"])
    assert [c.title for c in api.list_repo_commits(model, revision="v1")][0] == "PR"
    assert any(r["status"] == 307 and f"/{model}/resolve/" in r["path"] for r in hub.requests())

    api.upload_file(path_or_fileobj=parquet(a=[1, 2]), path_in_repo="data/train.parquet", repo_id=dataset,
                    repo_type="dataset")
    snapshot = snapshot_download(dataset, repo_type="dataset", token=hub.token)
    assert open(f"{snapshot}/data/train.parquet", "rb").read() == read(hub, f"org/{dataset}", "data/train.parquet")


def test_moved_repo_id_works_with_datasets_and_hffs(hub, api):
    """`move_repo` leaves the old `ns/name` redirecting, and datasets/HfFileSystem follow it (they refuse
    single-segment ids client-side since huggingface_hub 2.x, whatever the server answers)."""
    old, new = f"org/{unique('old')}", f"org/{unique('new')}"
    datasets.Dataset.from_dict({"t": ["a", "b"]}).push_to_hub(old, token=hub.token)
    api.move_repo(old, new, repo_type="dataset")
    assert api.dataset_info(old).id == new
    assert datasets.load_dataset(old, split="train", token=hub.token)["t"] == ["a", "b"]
    fs = HfFileSystem(endpoint=hub.endpoint, token=hub.token, skip_instance_cache=True)
    assert fs.glob(f"datasets/{old}/data/*.parquet")
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(token=hub.bob_token).move_repo(new, f"bob/{unique('mine')}", repo_type="dataset")
    assert err.value.response.status_code == 403
    api.create_repo(old, repo_type="dataset")  # the old name can be taken again: no more redirect
    assert api.dataset_info(old).id == old


@pytest.mark.parametrize("repo_type,prefix", [("model", ""), ("dataset", "datasets/")])
def test_resolve_404s_carry_the_error_code(hub, api, repo_type, prefix):
    """GET and HEAD on resolve: unknown repo (with or without namespace), revision or file -> 404 and the
    X-Error-Code the clients map to typed errors; EntryNotFound also names the commit."""
    repo_id = f"org/{unique('r')}"
    api.create_repo(repo_id, repo_type=repo_type)
    head = api.repo_info(repo_id, repo_type=repo_type).sha
    cases = {f"nope-{uuid.uuid4().hex[:6]}/resolve/main/x": "RepoNotFound",
             f"org/nope-{uuid.uuid4().hex[:6]}/resolve/main/x": "RepoNotFound",
             f"{repo_id}/resolve/no-such-rev/.gitattributes": "RevisionNotFound",
             f"{repo_id}/resolve/main/missing.txt": "EntryNotFound",
             f"{repo_id}/resolve/main": "EntryNotFound"}
    for path, code in cases.items():
        for method in ("GET", "HEAD"):
            response = get_session().request(method, f"{hub.endpoint}/{prefix}{path}",
                                              headers={"authorization": f"Bearer {hub.token}"})
            assert (response.status_code, response.headers.get("X-Error-Code")) == (404, code), (method, path)
            if code == "EntryNotFound":
                assert response.headers["X-Repo-Commit"] == head


def test_unknown_repo_is_repo_not_found_on_every_route(hub, api):
    for missing in (unique("nope"), f"org/{unique('nope')}"):
        calls = [lambda: api.model_info(missing), lambda: list(api.list_repo_tree(missing)),
                 lambda: api.get_paths_info(missing, ["a"]), lambda: api.list_repo_commits(missing),
                 lambda: api.list_repo_refs(missing), lambda: next(iter(api.get_repo_discussions(missing))),
                 lambda: api.create_branch(missing, branch="b"), lambda: api.create_tag(missing, tag="t"),
                 lambda: api.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id=missing),
                 lambda: api.create_pull_request(missing, title="t"),
                 lambda: hf_hub_download(missing, "config.json", token=hub.token),
                 lambda: get_hf_file_metadata(hf_hub_url(missing, "config.json"), token=hub.token),
                 lambda: post_lfs_batch_info([CommitOperationAdd("w.bin", b"\0").upload_info], token=hub.token,
                                             repo_type="model", repo_id=missing, endpoint=hub.endpoint)]
        for call in calls:
            with pytest.raises(RepositoryNotFoundError):
                call()


# -- accounts and errors ---------------------------------------------------------------------------
def test_whoami_has_what_clients_read(hub):
    me = HfApi(endpoint=hub.endpoint, token=hub.token).whoami()
    assert (me["type"], me["name"], me["fullname"]) == ("user", "alice", "Alice")
    assert [(o["name"], o["fullname"], o["type"]) for o in me["orgs"]] == [("org", "Org", "org")]
    assert me["auth"]["accessToken"]["role"] == "write" and me["auth"]["accessToken"]["displayName"]


def test_error_messages_reach_the_exception(hub, api, repo_id):
    head = api.upload_file(path_or_fileobj=b"1", path_in_repo="f.txt", repo_id=repo_id, repo_type="dataset").oid
    api.upload_file(path_or_fileobj=b"2", path_in_repo="f.txt", repo_id=repo_id, repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as err:
        api.upload_file(path_or_fileobj=b"3", path_in_repo="f.txt", repo_id=repo_id, repo_type="dataset",
                        parent_commit=head)
    assert err.value.server_message == BRANCH_UPDATED and BRANCH_UPDATED in str(err.value)

    with pytest.raises(RemoteEntryNotFoundError) as err:  # a HEAD: the message travels in X-Error-Message
        get_hf_file_metadata(hf_hub_url(repo_id, "missing.txt", repo_type="dataset"), token=hub.token)
    assert "Entry not found: missing.txt" in err.value.server_message
    with pytest.raises(EntryNotFoundError) as err:
        api.delete_file("missing.txt", repo_id, repo_type="dataset")
    assert "A file with this name doesn't exist: missing.txt" in str(err.value)
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(token=hub.bob_token).upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id=repo_id,
                                               repo_type="dataset")
    assert "403 Forbidden: pass `create_pr=1` as a query parameter to create a Pull Request" in str(err.value)

    hub.fail_next("GET", f"/api/datasets/{repo_id}$", 503, message="Le dépôt est en maintenance")
    with pytest.raises(HfHubHTTPError) as err:
        api.dataset_info(repo_id)
    assert err.value.server_message == "Le dépôt est en maintenance"  # once, not also a mangled header copy


# -- tags and branches -----------------------------------------------------------------------------
def test_tags_pin_what_readers_load(hub, api, repo_id):
    api.upload_file(path_or_fileobj=parquet(id=["a", "b"]), path_in_repo="data/c1.parquet", repo_id=repo_id,
                    repo_type="dataset")
    api.create_tag(repo_id, tag="before-archive", tag_message="state before the move", repo_type="dataset")
    api.create_commit(repo_id, [CommitOperationDelete("data/c1.parquet"),
                                CommitOperationAdd("data/c2.parquet", parquet(id=["c"]))],
                      commit_message="move", repo_type="dataset")
    assert datasets.load_dataset(repo_id, split="train", token=hub.token)["id"] == ["c"]
    pinned = datasets.load_dataset(repo_id, split="train", token=hub.token, revision="before-archive")
    assert pinned["id"] == ["a", "b"]
    assert read(hub, repo_id, "data/c1.parquet", revision="before-archive") == parquet(id=["a", "b"])
    fs = HfFileSystem(endpoint=hub.endpoint, token=hub.token, skip_instance_cache=True)
    assert fs.ls(f"datasets/{repo_id}@before-archive/data", detail=False) == [
        f"datasets/{repo_id}@before-archive/data/c1.parquet"]

    pr = api.create_commit(repo_id, [CommitOperationAdd("x.txt", b"x")], commit_message="PR", repo_type="dataset",
                           create_pr=True)
    api.create_tag(repo_id, tag="pr-head", revision=pr.pr_revision, repo_type="dataset")
    refs = api.list_repo_refs(repo_id, repo_type="dataset", include_pull_requests=True)
    assert sorted(t.name for t in refs.tags) == ["before-archive", "pr-head"]
    assert [p.ref for p in refs.pull_requests] == [pr.pr_revision]
    assert "x.txt" in files(api, repo_id, revision="pr-head")
    with pytest.raises(HfHubHTTPError) as err:
        api.create_tag(repo_id, tag="pr-head", repo_type="dataset")
    assert err.value.response.status_code == 409
    with pytest.raises(RevisionNotFoundError):  # tags are not branches: no commits on them
        api.upload_file(path_or_fileobj=b"y", path_in_repo="y.txt", repo_id=repo_id, repo_type="dataset",
                        revision="before-archive")
    api.delete_tag(repo_id, tag="pr-head", repo_type="dataset")
    with pytest.raises(RevisionNotFoundError):
        api.delete_tag(repo_id, tag="pr-head", repo_type="dataset")
    with pytest.raises(RevisionNotFoundError):  # the Hub API has no call that deletes a PR ref
        api.delete_branch(repo_id, branch=pr.pr_revision, repo_type="dataset")


# -- deleting files and folders --------------------------------------------------------------------
def test_delete_files_and_folders(hub, api, repo_id):
    layout = {f"data/{axis}/c{i}.parquet": b"\0" + bytes([i]) for axis in ("age", "gender") for i in range(3)}
    layout.update({"contributions/c0.json": b"{}", "README.md": b"# card\n"})
    api.create_commit(repo_id, [CommitOperationAdd(p, c) for p, c in layout.items()], commit_message="layout",
                      repo_type="dataset")
    api.delete_file("data/age/c0.parquet", repo_id, repo_type="dataset")
    api.delete_folder("data/gender", repo_id, repo_type="dataset")
    api.create_commit(repo_id, [CommitOperationDelete("contributions/")], commit_message="folder with a slash",
                      repo_type="dataset")
    assert files(api, repo_id) == [".gitattributes", "README.md", "data/age/c1.parquet", "data/age/c2.parquet"]
    with pytest.raises(EntryNotFoundError):  # a trailing slash only matches a folder
        api.create_commit(repo_id, [CommitOperationDelete("README.md/")], commit_message="x", repo_type="dataset")
    with pytest.raises(EntryNotFoundError):
        api.delete_folder("data/gender", repo_id, repo_type="dataset")

    # Compaction's shape: one PR commit that deletes the small shards and adds the large one.
    pr = api.create_commit(repo_id, [CommitOperationDelete("data/age/c1.parquet"),
                                     CommitOperationDelete("data/age/c2.parquet"),
                                     CommitOperationAdd("data/age/large-0000.parquet", b"\0large")],
                           commit_message="Compact age", repo_type="dataset", create_pr=True)
    details = api.get_discussion_details(repo_id, pr.pr_num, repo_type="dataset")
    assert details.diff.count("deleted file mode") == 2 and details.diff.count("new file mode") == 1
    api.merge_pull_request(repo_id, pr.pr_num, repo_type="dataset")
    assert files(api, repo_id) == [".gitattributes", "README.md", "data/age/large-0000.parquet"]
    assert [e.path for e in api.list_repo_tree(repo_id, "data", repo_type="dataset")] == ["data/age"]
    api.delete_file("data/age/large-0000.parquet", repo_id, repo_type="dataset")  # empty folders vanish
    assert [e.path for e in api.list_repo_tree(repo_id, repo_type="dataset")] == [".gitattributes", "README.md"]
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(repo_id, "data", repo_type="dataset"))


def test_a_failing_commit_changes_nothing(hub, api, repo_id):
    """A commit is all or nothing: a missing path to delete leaves no commit, no file and no PR behind."""
    head = api.upload_file(path_or_fileobj=b"x", path_in_repo="keep.txt", repo_id=repo_id, repo_type="dataset").oid
    operations = [CommitOperationAdd("new.bin", b"\0new"), CommitOperationDelete("missing.parquet")]
    for create_pr in (False, True):
        with pytest.raises(EntryNotFoundError):
            api.create_commit(repo_id, operations, commit_message="half", repo_type="dataset", create_pr=create_pr)
    assert api.dataset_info(repo_id).sha == head
    assert files(api, repo_id) == [".gitattributes", "keep.txt"]
    assert list(api.get_repo_discussions(repo_id, repo_type="dataset")) == []


def test_parent_commit_keeps_concurrent_maintainers_apart(hub, api, repo_id):
    """Two maintainers read the same head; the second commit based on it is refused with 412, and
    a PR opened from that head keeps its base (its merge is a three-way merge)."""
    seen = api.upload_file(path_or_fileobj=b"v1", path_in_repo="card.md", repo_id=repo_id,
                           repo_type="dataset").oid
    api.create_commit(repo_id, [CommitOperationAdd("card.md", b"v2 by A")], commit_message="A",
                      repo_type="dataset", parent_commit=seen)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(repo_id, [CommitOperationAdd("card.md", b"v2 by B")], commit_message="B",
                          repo_type="dataset", parent_commit=seen)
    assert err.value.response.status_code == 412
    assert read(hub, repo_id, "card.md") == b"v2 by A"
    pr = api.create_commit(repo_id, [CommitOperationAdd("other.md", b"o")], commit_message="B as a PR",
                           repo_type="dataset", create_pr=True, parent_commit=seen)
    assert api.list_repo_commits(repo_id, revision=pr.pr_revision, repo_type="dataset")[1].commit_id == seen
    api.merge_pull_request(repo_id, pr.pr_num, repo_type="dataset")
    assert read(hub, repo_id, "card.md") == b"v2 by A" and read(hub, repo_id, "other.md") == b"o"


# -- storage fields --------------------------------------------------------------------------------
def test_used_storage_counts_history_and_pr_refs(hub, api):
    archive = f"org/{unique('archive')}"
    api.create_repo(archive, repo_type="dataset")
    base = api.dataset_info(archive, expand=["usedStorage"]).used_storage  # the .gitattributes
    api.upload_file(path_or_fileobj=b"\0" * 1000, path_in_repo="data/a.parquet", repo_id=archive,
                    repo_type="dataset")
    info = api.dataset_info(archive, expand=["usedStorage", "mainSize"])
    assert (info.used_storage, info.main_size, info.siblings) == (base + 1000, base + 1000, None)
    api.delete_file("data/a.parquet", archive, repo_type="dataset")
    pr = api.create_commit(archive, [CommitOperationAdd("data/b.parquet", b"\1" * 500)], commit_message="PR",
                           repo_type="dataset", create_pr=True)
    api.change_discussion_status(archive, pr.pr_num, "closed", repo_type="dataset")
    info = api.dataset_info(archive, expand=["usedStorage", "mainSize"])
    assert info.used_storage == base + 1500  # history and a closed PR's ref keep their files stored
    assert info.main_size == base
    full = api.dataset_info(archive, files_metadata=True)
    assert [s.rfilename for s in full.siblings] == [".gitattributes"] and full.used_storage == base + 1500


# -- limits ----------------------------------------------------------------------------------------
def test_folder_limit_as_the_hub_enforces_it(hub, api, repo_id):
    assert hub.settings()["max_entries_per_folder"] == 10_000
    def add(*numbers):
        return [CommitOperationAdd(f"data/gender/c{i}.parquet", b"\0" + bytes([i])) for i in numbers]

    with hub.temporary_settings(max_entries_per_folder=3):
        api.create_commit(repo_id, add(0, 1), commit_message="two", repo_type="dataset")
        waiting = api.create_commit(repo_id, add(2), commit_message="third", repo_type="dataset", create_pr=True)
        api.create_commit(repo_id, add(3), commit_message="also third", repo_type="dataset")
        with pytest.raises(BadRequestError) as err:
            api.create_commit(repo_id, add(2), commit_message="fourth", repo_type="dataset")
        assert ("Your push was rejected because it contains too many files per directory. Each directory in "
                "your git repo can only contain up to 3 files. Offending reference: refs/heads/main Offending "
                "directories: /data/gender/") in str(err.value)
        with pytest.raises(BadRequestError):
            api.merge_pull_request(repo_id, waiting.pr_num, repo_type="dataset")
        assert api.get_discussion_details(repo_id, waiting.pr_num, repo_type="dataset").status == "open"
        api.create_commit(repo_id, [CommitOperationDelete("data/gender/c0.parquet"), *add(2)],
                          commit_message="swap", repo_type="dataset")  # deleting makes room in the same commit
    assert len(files(api, repo_id)) == 4


def test_optional_repo_and_commit_limits(hub, api, repo_id):
    assert hub.settings()["max_files_per_repo"] is None and hub.settings()["max_files_per_commit"] is None
    with hub.temporary_settings(max_files_per_commit=2, max_files_per_repo=3):
        with pytest.raises(BadRequestError, match="max_files_per_commit"):
            api.create_commit(repo_id, [CommitOperationAdd(f"{i}.txt", b"x") for i in range(3)],
                              commit_message="three", repo_type="dataset")
        api.create_commit(repo_id, [CommitOperationAdd(f"{i}.txt", b"x") for i in range(2)],
                          commit_message="two", repo_type="dataset")
        with pytest.raises(BadRequestError, match="max_files_per_repo"):  # .gitattributes + 2 + 1
            api.upload_file(path_or_fileobj=b"x", path_in_repo="3.txt", repo_id=repo_id, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"x", path_in_repo="3.txt", repo_id=repo_id, repo_type="dataset")


# -- big folders -----------------------------------------------------------------------------------
def test_big_folders_list_diff_and_merge(hub, api, repo_id):
    """A folder split into buckets (hundreds of entries) behaves like a small one: listing, paths-info,
    lastCommit, PR diffs, merges of PRs opened from older heads, deletions down to empty."""
    first = [CommitOperationAdd(f"data/age/{i:04d}.json", f"{i}".encode()) for i in range(300)]
    api.create_commit(repo_id, first, commit_message="300 files", repo_type="dataset")
    prs = [api.create_commit(repo_id, [CommitOperationAdd(f"data/age/pr{n}.json", b"p")],
                             commit_message=f"PR {n}", repo_type="dataset", create_pr=True) for n in range(2)]
    api.create_commit(repo_id, [CommitOperationDelete(f"data/age/{i:04d}.json") for i in range(0, 300, 2)]
                      + [CommitOperationAdd("data/age/0001.json", b"changed")], commit_message="thin out",
                      repo_type="dataset")
    for pr in prs:
        api.merge_pull_request(repo_id, pr.pr_num, repo_type="dataset")
    listed = [e.path for e in api.list_repo_tree(repo_id, "data/age", repo_type="dataset")]
    expected = sorted([f"data/age/{i:04d}.json" for i in range(1, 300, 2)] + ["data/age/pr0.json",
                                                                            "data/age/pr1.json"])
    assert listed == expected
    hub.settings(tree_expand_page_size=7)
    try:
        last = {e.path: e.last_commit.title for e in api.list_repo_tree(repo_id, "data/age", expand=True,
                                                                         repo_type="dataset")}
    finally:
        hub.reset_settings()
    assert (last["data/age/0001.json"], last["data/age/0003.json"], last["data/age/pr1.json"]) == (
        "thin out", "300 files", "PR 1")
    data = api.get_paths_info(repo_id, ["data", "data/age/0299.json"], expand=True, repo_type="dataset")
    assert [(e.path, e.last_commit.title) for e in data] == [("data", "PR 1"), ("data/age/0299.json", "300 files")]
    assert read(hub, repo_id, "data/age/0001.json") == b"changed"
    api.delete_folder("data/age", repo_id, repo_type="dataset")
    assert files(api, repo_id) == [".gitattributes"]


# -- faults ----------------------------------------------------------------------------------------
def test_fault_modes_for_interruption_tests(hub, api, repo_id):
    hub.fail_next("POST", f"/api/datasets/{repo_id}/commit/", 500, skip=1)  # the second commit fails
    api.upload_file(path_or_fileobj=b"1", path_in_repo="1.txt", repo_id=repo_id, repo_type="dataset")
    with pytest.raises(HfHubHTTPError):
        api.upload_file(path_or_fileobj=b"2", path_in_repo="2.txt", repo_id=repo_id, repo_type="dataset")
    assert files(api, repo_id) == [".gitattributes", "1.txt"]

    hub.fail_next("POST", f"/api/datasets/{repo_id}/commit/", 504, when="after")  # done, but the answer is lost
    with pytest.raises(HfHubHTTPError) as err:
        api.upload_file(path_or_fileobj=b"3", path_in_repo="3.txt", repo_id=repo_id, repo_type="dataset")
    assert err.value.response.status_code == 504 and "3.txt" in files(api, repo_id)

    pr = api.create_commit(repo_id, [CommitOperationAdd("4.txt", b"4")], commit_message="PR", repo_type="dataset",
                           create_pr=True)
    hub.fail_next("POST", rf"/discussions/{pr.pr_num}/merge", disconnect=True, when="after")
    with pytest.raises(httpx2.TransportError):
        api.merge_pull_request(repo_id, pr.pr_num, repo_type="dataset")
    assert api.get_discussion_details(repo_id, pr.pr_num, repo_type="dataset").status == "merged"
    hub.fail_next("POST", f"/api/datasets/{repo_id}/commit/", disconnect=True)
    with pytest.raises(httpx2.TransportError):
        api.upload_file(path_or_fileobj=b"5", path_in_repo="5.txt", repo_id=repo_id, repo_type="dataset")
    assert files(api, repo_id) == [".gitattributes", "1.txt", "3.txt", "4.txt"]
    assert [r["status"] for r in hub.requests() if r["path"].endswith("/merge")][-1] == "disconnected"


def test_super_squash_keeps_tree_drops_history(hub, api, repo_id):
    for i in range(3):
        api.upload_file(path_or_fileobj=f"{i}".encode(), path_in_repo=f"{i}.txt", repo_id=repo_id,
                        repo_type="dataset")
    api.create_tag(repo_id, tag="before-squash", repo_type="dataset")
    storage = api.dataset_info(repo_id, expand=["usedStorage"]).used_storage
    api.super_squash_history(repo_id, commit_message="Squashed", repo_type="dataset")
    assert [c.title for c in api.list_repo_commits(repo_id, repo_type="dataset")] == ["Squashed"]
    assert files(api, repo_id) == [".gitattributes", "0.txt", "1.txt", "2.txt"]
    assert len(api.list_repo_commits(repo_id, revision="before-squash", repo_type="dataset")) == 4
    assert api.dataset_info(repo_id, expand=["usedStorage"]).used_storage == storage  # the tag keeps history
    with pytest.raises(BadRequestError):
        api.super_squash_history(repo_id, branch="before-squash", repo_type="dataset")
