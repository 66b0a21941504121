"""Publish the app as a Hugging Face Space: `python scripts/deploy_space.py USER/NAME`.

The Space runs `app.py` on the embedded `tiny` model (its front matter is the README's).  What
goes up is the tracked files the app needs, no more: the package, the weights, the example
assets, the docs the README links to.  Log in first (`hf auth login`) or pass `--token`.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.utils import filter_repo_objects

ROOT = Path(__file__).resolve().parent.parent
# Folders whose files on the Space are replaced as a whole: a module or weight removed here is
# removed there too.
FOLDERS = ["dsa_core/", "weights/", "assets/", "docs/"]
FILES = ["README.md", "LICENSE", "app.py", "requirements.txt", "packages.txt", *FOLDERS]
IGNORE = ["*/__pycache__/*", "*.pyc"]


def space_files(root: Path = ROOT) -> list[str]:
    """The Space's files, relative to `root`: tracked ones only, so that no run folder or stray
    export under the checkout is published."""
    try:
        tracked = subprocess.run(["git", "ls-files", "-z"], cwd=root, check=True, capture_output=True,
                                 text=True).stdout.split("\0")
    except (OSError, subprocess.CalledProcessError) as err:
        raise SystemExit(f"{root} must be a git checkout (its tracked files are what is published): {err}") from None
    return sorted(filter_repo_objects([f for f in tracked if f], allow_patterns=FILES, ignore_patterns=IGNORE))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo_id", help="the Space, USER/NAME (created if it does not exist)")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    parser.add_argument("--hardware", help="request this hardware, e.g. cpu-basic (the default, enough for tiny) "
                                           "or zero-a10g (ZeroGPU, for wan-1.3b)")
    parser.add_argument("--token", help="a write token (default: the one `hf auth login` stored)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be published and stop")
    args = parser.parse_args(argv)

    files = space_files()
    size = sum((ROOT / f).stat().st_size for f in files)
    print(f"{len(files)} files, {size / 2**20:.1f} MiB")
    if args.dry_run:
        print("\n".join(files))
        return
    api = HfApi(token=args.token)
    url = api.create_repo(args.repo_id, repo_type="space", space_sdk="gradio", private=args.private, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    # Exact paths as the allow list: upload_folder walks the folder itself, and the list keeps
    # it to the tracked files.  Files over 10 MB (the students) go through LFS on their own.
    api.upload_folder(repo_id=args.repo_id, repo_type="space", folder_path=ROOT, allow_patterns=files,
                      delete_patterns=[f + "*" for f in FOLDERS], commit_message=f"DSA Video {commit}")
    if args.hardware:
        api.request_space_hardware(args.repo_id, args.hardware)
    print(f"published: {url}")


if __name__ == "__main__":
    main()
