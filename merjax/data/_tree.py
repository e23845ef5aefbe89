"""Released datasets read the same way from an unzipped folder or straight from the zip archive."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import os
import posixpath
import zipfile

from merjax.errors import MerjaxError


@functools.lru_cache(maxsize=8)
def _zip(location: str) -> zipfile.ZipFile:
  # One open archive per process: workers read thousands of members from it.
  try:
    return zipfile.ZipFile(location)
  except zipfile.BadZipFile:
    if looks_like_zip(location):
      raise MerjaxError(f"damaged zip archive: {location}") from None
    raise MerjaxError(f"{location}: expected a folder or a zip archive") from None
  except OSError as error:
    raise MerjaxError(f"{location}: cannot read ({error.strerror or error})") from None


def looks_like_zip(path: str) -> bool:
  """Whether ``path`` is meant to be a zip archive: its name, or a zip local-file signature."""
  if path.lower().endswith(".zip"):
    return True
  try:
    with open(path, "rb") as f:
      return f.read(4) == b"PK\x03\x04"
  except OSError:
    return False


def readable_zip(path: str) -> bool:
  """Whether ``path`` is a readable zip archive.

  Raises:
    MerjaxError: ``damaged zip archive: PATH`` when it is meant to be one (name or signature)
      but its directory cannot be read, e.g. a download cut short.
  """
  if zipfile.is_zipfile(path):
    return True
  if looks_like_zip(path):
    raise MerjaxError(f"damaged zip archive: {path}")
  return False


def _ignored(rel: str) -> bool:
  # macOS archivers add __MACOSX/ trees and ._* resource forks that look like audio files.
  parts = rel.split("/")
  return any(p == "__MACOSX" or p.startswith("._") for p in parts)


@dataclasses.dataclass(frozen=True)
class AudioRef:
  """A picklable pointer to one file: a plain path, or a member of a zip archive."""

  path: str
  member: str | None = None

  @property
  def label(self) -> str:
    """How messages name the file (``archive.zip!folder/file.mp3`` for zip members)."""
    return self.path if self.member is None else f"{self.path}!{self.member}"

  def read_bytes(self) -> bytes:
    try:
      if self.member is None:
        with open(self.path, "rb") as f:
          return f.read()
      return _zip(self.path).read(self.member)
    except (OSError, KeyError, zipfile.BadZipFile) as error:
      raise MerjaxError(f"{self.label}: cannot read ({error})") from None


@dataclasses.dataclass(frozen=True)
class Tree:
  """A folder, or a folder inside a zip archive; paths are POSIX and relative to ``prefix``.

  Attributes:
    location: absolute path of the folder or of the zip archive.
    prefix: folder inside ``location`` that the relative paths start from ("" for the top).
  """

  location: str
  prefix: str = ""

  @functools.cached_property
  def is_zip(self) -> bool:
    return os.path.isfile(self.location)

  @functools.cached_property
  def _files(self) -> tuple[str, ...]:
    base = self.prefix + "/" if self.prefix else ""
    if self.is_zip:
      names = (n for n in _zip(self.location).namelist() if not n.endswith("/"))
      rels = (n[len(base):] for n in names if n.startswith(base))
    else:
      root = os.path.join(self.location, self.prefix)
      rels = (os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/")
              for d, _, files in os.walk(root) for f in files)
    return tuple(sorted(r for r in rels if not _ignored(r)))

  def files(self) -> tuple[str, ...]:
    """Every file below the root, sorted, without macOS archive debris."""
    return self._files

  @functools.cached_property
  def _file_set(self) -> frozenset[str]:
    return frozenset(self._files)

  def exists(self, rel: str) -> bool:
    return rel in self._file_set

  def path(self, rel: str) -> str:
    """Filesystem path (folders) or archive member name (zips) of ``rel``."""
    if self.is_zip:
      return posixpath.join(self.prefix, rel) if self.prefix else rel
    return os.path.join(self.location, self.prefix, *rel.split("/"))

  def ref(self, rel: str) -> AudioRef:
    if self.is_zip:
      return AudioRef(self.location, self.path(rel))
    return AudioRef(self.path(rel))

  def label(self, rel: str) -> str:
    return self.ref(rel).label

  @property
  def root_label(self) -> str:
    """How messages name the dataset root."""
    if self.is_zip:
      return f"{self.location}!{self.prefix}/" if self.prefix else self.location
    return os.path.join(self.location, self.prefix) if self.prefix else self.location

  def read_text(self, rel: str) -> str:
    data = self.ref(rel).read_bytes()
    try:
      return data.decode("utf-8-sig")
    except UnicodeDecodeError:
      return data.decode("latin-1")  # older spreadsheet exports

  def writable_dir(self) -> str:
    """The folder next to the data where derived files (e.g. a drawn split) are written."""
    if self.is_zip:
      return os.path.dirname(self.location)
    return os.path.join(self.location, self.prefix)


def _shallowest(rels, marker: str) -> str | None:
  hits = [r for r in rels if posixpath.basename(r) == marker]
  return min(hits, key=lambda r: (r.count("/"), r)) if hits else None


def _tree_in_zip(location: str, marker: str) -> Tree | None:
  hit = _shallowest(Tree(location).files(), marker)
  return None if hit is None else Tree(location, posixpath.dirname(hit))


def locate(path: str | os.PathLike, *, marker: str, top_folder: str | None = None) -> Tree:
  """Finds the dataset root holding ``marker`` in a folder, a zip, or a folder/zip inside ``path``.

  Args:
    path: the unzipped dataset folder, its zip archive, or a folder containing either.
    marker: a file name only the dataset root contains (e.g. its metadata CSV).
    top_folder: the released top-level folder name (``MERGE_Audio_Balanced``), tried first.

  Returns:
    The :class:`Tree` rooted where ``marker`` lies.

  Raises:
    MerjaxError: nothing under ``path`` holds ``marker``.
  """
  path = os.path.abspath(os.fspath(path))
  if not os.path.exists(path):
    raise MerjaxError(f"{path}: no such file or folder")
  if os.path.isfile(path):
    if not readable_zip(path):
      raise MerjaxError(f"{path}: expected a folder or a zip archive")
    tree = _tree_in_zip(path, marker)
    if tree is None:
      raise MerjaxError(f"{path}: the archive contains no {marker}")
    return tree
  candidates = [path]
  if top_folder:
    candidates += [os.path.join(path, top_folder), os.path.join(path, top_folder + ".zip")]
  entries = sorted(os.listdir(path))
  candidates += [os.path.join(path, e) for e in entries if os.path.isdir(os.path.join(path, e))]
  candidates += [os.path.join(path, e) for e in entries if e.lower().endswith(".zip")]
  damaged = []
  for candidate in dict.fromkeys(candidates):
    if os.path.isdir(candidate) and os.path.isfile(os.path.join(candidate, marker)):
      return Tree(candidate)
    if os.path.isfile(candidate):
      try:
        if not readable_zip(candidate):
          continue
      except MerjaxError:
        damaged.append(candidate)
        continue
      tree = _tree_in_zip(candidate, marker)
      if tree is not None:
        return tree
  if damaged:
    raise MerjaxError(f"damaged zip archive: {damaged[0]}" + (
        f" (and {len(damaged) - 1} more: {', '.join(damaged[1:])})" if len(damaged) > 1 else "")
        + f"; no {marker} found elsewhere in {path}")
  expected = (f" (expected the unzipped {top_folder}/ folder or {top_folder}.zip)"
              if top_folder else "")
  raise MerjaxError(f"{path}: no {marker} found in it or in the folders and zip archives "
                    f"directly inside it{expected}")


def content_hash(data: bytes) -> str:
  """Identity of a file's bytes (decode caches are keyed by content, not by path)."""
  return hashlib.sha1(data).hexdigest()


def bytes_io(ref: AudioRef, data: bytes) -> io.BytesIO:
  stream = io.BytesIO(data)
  stream.name = ref.label  # how decoding errors name it
  return stream
