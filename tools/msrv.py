#!/usr/bin/env python3
"""The lowest Rust version each published crate's locked dependency tree allows.

For every workspace member that is published (no `publish = false`), walks its normal and
build dependencies (not dev-dependencies: they are not built by users) in the locked
resolve of `cargo metadata --all-features` (every optional dependency counts, as on docs.rs)
and takes the highest `rust-version` that the crate and its dependencies declare. Prints one
line per crate: name, declared rust-version, the highest rust-version in its tree, and the
dependency that sets it.

With `--names`, prints only the names of the published crates, one a line (what CI packages).

With `--check`, fails when a crate declares no `rust-version` or one lower than its tree's
(the claim would be false). A higher one is reported: the crate's own code may need it
(clippy's `incompatible_msrv` checks that code against the declared version).
"""
import json
import subprocess
import sys


def version_key(v):
    parts = [int(x) for x in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    check = "--check" in sys.argv[1:]
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked", "--all-features"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    members = [packages[i] for i in meta["workspace_members"]]
    member_ids = set(meta["workspace_members"])
    published = [p for p in members if p.get("publish") is None or p.get("publish") != []]

    if "--names" in sys.argv[1:]:
        for pkg in sorted(published, key=lambda p: p["name"]):
            print(pkg["name"])
        return 0

    failed = False
    print(f"{'crate':<14} {'declared':>9} {'tree':>9}  set by")
    for pkg in sorted(published, key=lambda p: p["name"]):
        best, by, by_member = "1.0", "-", False
        seen, stack = set(), [pkg["id"]]
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            dep = packages[pid]
            if pid != pkg["id"]:
                rv = dep.get("rust_version")
                # On a tie, name a registry dependency rather than a workspace crate (which
                # only passes on what its own dependencies need).
                if rv and (
                    version_key(rv) > version_key(best)
                    or (version_key(rv) == version_key(best) and by_member and pid not in member_ids)
                ):
                    best, by = rv, f"{dep['name']} {dep['version']}"
                    by_member = pid in member_ids
            for edge in nodes[pid]["deps"]:
                kinds = {k["kind"] for k in edge["dep_kinds"]}
                if kinds & {None, "build"}:
                    stack.append(edge["pkg"])
        declared = pkg.get("rust_version") or "-"
        mark = ""
        if declared == "-" or version_key(declared) < version_key(best):
            mark, failed = "  <- declared lower than the tree needs", True
        elif version_key(declared) > version_key(best):
            mark = "  (declared higher: the crate's own code needs it)"
        print(f"{pkg['name']:<14} {declared:>9} {best:>9}  {by}{mark}")
    if check and failed:
        print("rust-version is lower than the locked dependency tree needs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
