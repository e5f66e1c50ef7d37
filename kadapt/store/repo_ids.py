"""What a Hugging Face Hub name looks like (no network): ``owner/name`` repo ids and canonical names."""
from __future__ import annotations

import re

#: what a Hub repo id looks like (``owner/name``); a missing local path of that shape is tried on the Hub
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")


def is_repo_id(name: str) -> bool:
    return bool(REPO_ID.match(str(name))) and ".." not in str(name)


def is_hub_name(name: str) -> bool:
    """A repo id, or a canonical model name without an owner (``roberta-large``)."""
    return is_repo_id(name) or bool(re.match(r"^[A-Za-z0-9][\w.-]{0,95}$", str(name))) and ".." not in str(name)
