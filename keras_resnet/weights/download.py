"""Downloads into Keras' cache folder, hash-checked and written atomically.

A file is looked up in ``$KERAS_HOME/models`` (default ``~/.keras/models``) first; only when
it is missing (or its hash is wrong) is it downloaded from the publisher's URL. The download
goes to a temporary file beside the target (:func:`keras_resnet.utils.atomic_path`), which is
renamed only after its hash checks, so a failed or interrupted download leaves nothing behind.
Offline, the socket timeout makes it fail within ``DOWNLOAD_TIMEOUT_S`` seconds with a message
naming the URL, the expected hash and where to put the file by hand.

Expected hashes come in three forms, told apart by length: 32 hex digits are an md5
(keras.applications' files), 64 a full sha256 (the Hugging Face hub), fewer a sha256 prefix
(torchvision / torch.hub file names such as ``resnet50-11ad3fa6.pth``); osmr/imgclsmob's
file names end in a SHA-1 prefix (``algorithm="sha1"``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
import zipfile

from keras_resnet.utils import atomic_path

DOWNLOAD_TIMEOUT_S = 10


def cache_dir() -> str:
    """Keras' cache folder for model files: ``$KERAS_HOME/models`` (default ``~/.keras/models``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


def stream_hashes(f, algorithms) -> dict[str, str]:
    """``{algorithm: hex digest}`` of what the binary stream ``f`` holds, read once."""
    hashes = {a: hashlib.new(a) for a in algorithms}
    for chunk in iter(lambda: f.read(1 << 20), b""):
        for h in hashes.values():
            h.update(chunk)
    return {a: h.hexdigest() for a, h in hashes.items()}


def file_hashes(path: str, algorithms) -> dict[str, str]:
    """``{algorithm: hex digest}`` of a file, read once for all ``algorithms``."""
    with open(path, "rb") as f:
        return stream_hashes(f, algorithms)


def file_hash(path: str, algorithm: str | None = None) -> str:
    """Hex digest of a file (``algorithm`` "md5", "sha1" or "sha256", the default)."""
    algorithm = algorithm or "sha256"
    return file_hashes(path, (algorithm,))[algorithm]


def hash_kind(expected: str, algorithm: str = "sha256") -> str:
    """How an expected hash reads: "md5", "sha256" or "sha256 prefix" ("sha1 prefix" ...
    with another ``algorithm``)."""
    if len(expected) == 32 and algorithm == "sha256":
        return "md5"
    full = hashlib.new(algorithm).digest_size * 2
    return algorithm if len(expected) == full else f"{algorithm} prefix"


def hash_matches(path: str, expected: str | None, algorithm: str = "sha256") -> bool:
    """Whether the file at ``path`` has the ``expected`` md5 / sha256 / sha256 prefix
    (``algorithm="sha1"``: SHA-1 / SHA-1 prefix)."""
    if expected is None:
        return True
    kind = hash_kind(expected, algorithm)
    digest = file_hash(path, kind.split()[0])
    return digest.startswith(expected.lower()) if kind.endswith("prefix") else digest == expected.lower()


def zip_member(path: str) -> str | None:
    """The name of the one file inside the zip at ``path`` (osmr/imgclsmob ships each
    checkpoint as a zip of one file), or None for anything else (``torch.save``'s own zip
    layout holds several)."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if not n.endswith("/")]
    return names[0] if len(names) == 1 else None


def _unzip_one(archive: str, out: str) -> None:
    member = zip_member(archive)
    if member is None:
        raise OSError(f"the download is not a zip of one file ({archive})")
    with zipfile.ZipFile(archive) as z, z.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)


def fetch(fname: str, url: str, file_hash: str | None = None,
          timeout: float = DOWNLOAD_TIMEOUT_S, *, algorithm: str = "sha256",
          unzip: bool = False) -> str:
    """Path of ``fname`` in the cache, downloading it from ``url`` if needed; a cached file
    whose hash checks is used without the network. ``algorithm``: of a hash prefix
    ("sha256", or "sha1" for osmr/imgclsmob's files). ``unzip``: ``url`` serves a zip of
    ``fname`` (osmr's ``.pth.zip``), which is extracted and the file inside checked and kept.

    Raises ``OSError`` (naming the URL, the expected hash and the cache path to put the file
    at) when the file is neither cached with the right hash nor downloadable.
    """
    path = os.path.join(cache_dir(), fname)
    if os.path.isfile(path):
        if hash_matches(path, file_hash, algorithm):
            return path
        reason = f"the cached {path} has the wrong hash"
    else:
        reason = f"{path} is not cached"
    try:
        with atomic_path(path) as tmp:
            download = tmp + ".zip" if unzip else tmp
            try:
                with open(download, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                    shutil.copyfileobj(resp, out)
                if unzip:
                    _unzip_one(download, tmp)
            finally:
                if unzip and os.path.exists(download):
                    os.remove(download)
            if not hash_matches(tmp, file_hash, algorithm):
                raise OSError(f"the downloaded file has the wrong hash ({file_hash_of(tmp)})")
        return path
    except (OSError, urllib.error.URLError) as e:
        expected = f" ({hash_kind(file_hash, algorithm)} {file_hash})" if file_hash else ""
        raise OSError(
            f"Could not get {fname}: {reason}, and downloading {url} failed ({e}). "
            f"Download it on a machine with internet access and put it at {path}{expected}."
        ) from e


def file_hash_of(path: str) -> str:
    """``"sha256 <digest>"`` of a file, for messages."""
    return f"sha256 {file_hash(path)}"
